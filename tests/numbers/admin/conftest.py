"""What the admin tests share: the pages' URLs, posting an action, the history, the worker."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from smsproxy.numbers.models import ProvisioningJob, VirtualNumber

CHANGELIST = reverse("admin:numbers_virtualnumber_changelist")
BUY = reverse("admin:numbers_virtualnumber_buy")
SYNC = reverse("admin:numbers_virtualnumber_sync")
JOBS = reverse("admin:numbers_provisioningjob_changelist")


def action(client: Client, name: str, numbers: list[VirtualNumber], **extra: str) -> Any:
    data = {"action": name, "_selected_action": [number.pk for number in numbers], **extra}
    return client.post(CHANGELIST, data, follow=not extra.get("_no_follow"))


def history(number: VirtualNumber | ProvisioningJob) -> list[tuple[int, str]]:
    return list(
        LogEntry.objects.filter(
            object_id=str(number.pk), content_type=ContentType.objects.get_for_model(number)
        )
        .order_by("pk")
        .values_list("action_flag", "change_message")
    )


def run_worker() -> str:
    """One pass of the embedded worker (no broker), which runs pending provisioning jobs."""
    out = StringIO()
    call_command("run_outbox", "--once", stdout=out)
    return out.getvalue()


@pytest.fixture
def viewer(client: Client, django_user_model: Any) -> Client:
    """A client logged in as staff who may only view numbers and jobs."""
    staff = django_user_model.objects.create_user("viewer", password="pw-123456", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(codename__in=["view_virtualnumber", "view_provisioningjob"])
    )
    client.force_login(staff)
    return client
