"""The numbers and jobs lists read at a glance: badges, flags, a ✓ for the webhook, and a link
from a number to its live conversations."""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.services.conversations import conversation_close
from tests.factories import ProvisioningJobFactory, VirtualNumberFactory
from tests.proxy.specs import open_between

from ..conftest import WEBHOOK_URL
from .conftest import CHANGELIST

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:numbers_provisioningjob_changelist")
CONVERSATIONS = reverse("admin:proxy_conversation_changelist")


def test_numbers_list_cells(admin_client: Client, django_assert_max_num_queries) -> None:
    VirtualNumberFactory.create(msisdn="+447700900001", inbound_webhook_url=WEBHOOK_URL)
    VirtualNumberFactory.create(msisdn="+447700900002", inbound_webhook_url="", reserved=True)
    VirtualNumberFactory.create(
        msisdn="+447700900003", status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
    )

    with django_assert_max_num_queries(12):
        response = admin_client.get(CHANGELIST)

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert f'<span title="{WEBHOOK_URL}" style="color:#1e6b34">✓</span>' in content
    assert "✗ not set" in content  # the unconfigured one
    assert content.count("status-reserved") == 1  # no ✗ for the unreserved ones
    assert "icon-no.svg" not in content
    assert "status-active" in content and "status-released" in content
    assert 'color:#9aa0a6">+447700900003' in content  # released: greyed
    assert WEBHOOK_URL + "</td>" not in content  # the URL is no longer a column


def test_a_number_links_to_its_live_conversations(admin_client: Client) -> None:
    VirtualNumberFactory.create_batch(2)
    live = open_between("+447700900501", "+447700900502", reference="booking-1")
    proxy = live.participants.order_by("id")[0].proxy_number
    ended = open_between("+447700900503", "+447700900504", reference="booking-2")
    conversation_close(conversation=ended, reason="api")

    numbers_page = admin_client.get(CHANGELIST).content.decode()
    query = f"status=active&amp;q=%2B{proxy.msisdn[1:]}"
    assert f'href="{CONVERSATIONS}?{query}"' in numbers_page

    link = urlsplit(f"{CONVERSATIONS}?{query.replace('&amp;', '&')}")
    response = admin_client.get(link.path, {k: v[0] for k, v in parse_qs(link.query).items()})
    assert [row.pk for row in response.context["cl"].result_list] == [live.pk]


def test_jobs_list_shows_a_status_badge(admin_client: Client) -> None:
    ProvisioningJobFactory.create()

    response = admin_client.get(JOBS)

    assert response.status_code == HTTPStatus.OK
    assert "status-badge" in response.content.decode()
