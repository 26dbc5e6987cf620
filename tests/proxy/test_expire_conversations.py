"""`manage.py expire_conversations` through call_command."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Participant
from smsproxy.proxy.services.conversations import conversation_create
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import participant_specs

pytestmark = pytest.mark.django_db


def open_pair(index: int, ttl: int | None = None) -> Conversation:
    return conversation_create(
        participants=participant_specs(
            f"+447700900{500 + 2 * index:03d}", f"+447700900{501 + 2 * index:03d}"
        ),
        ttl=ttl,
    )


def run(*args: str) -> str:
    out = StringIO()
    call_command("expire_conversations", *args, stdout=out)
    return out.getvalue()


def test_expires_past_conversations_with_progress_and_summary() -> None:
    VirtualNumberFactory.create()
    expired = [open_pair(i, ttl=60) for i in range(3)]
    running = open_pair(5, ttl=3600)
    Conversation.objects.filter(pk__in=[c.pk for c in expired]).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    output = run("--batch-size", "2")

    assert "closed 2 (so far 2)" in output
    assert "closed 1 (so far 3)" in output
    assert "Closed 3 expired conversation(s)." in output
    assert set(
        Conversation.objects.filter(close_reason="expired").values_list("pk", flat=True)
    ) == {c.pk for c in expired}
    assert not Participant.objects.filter(conversation__in=expired, active=True).exists()
    running.refresh_from_db()
    assert running.status == Conversation.Status.ACTIVE

    assert "No expired conversations to close." in run()


def test_quiet_run_prints_only_the_summary() -> None:
    VirtualNumberFactory.create()
    conversation = open_pair(0, ttl=60)
    Conversation.objects.filter(pk=conversation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert run("--verbosity", "0").strip() == "Closed 1 expired conversation(s)."


def test_rejects_a_bad_batch_size() -> None:
    with pytest.raises(CommandError, match="batch-size"):
        run("--batch-size", "0")


def test_help() -> None:
    from smsproxy.proxy.management.commands.expire_conversations import Command

    parser = Command().create_parser("manage.py", "expire_conversations")
    assert "expiry time has passed" in parser.format_help()


def test_recount_loads_repairs_the_numbers_stored_load() -> None:
    number = VirtualNumberFactory.create()
    open_pair(0)
    VirtualNumber.objects.filter(pk=number.pk).update(assigned_participants=9)

    out = run("--recount-loads")

    assert "Recounted the numbers' loads: 1 corrected." in out
    number.refresh_from_db()
    assert number.assigned_participants == 2
