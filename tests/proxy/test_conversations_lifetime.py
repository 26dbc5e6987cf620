"""PROXY_TTL_FROM (DESIGN.md §3): the TTL counts from creation, or from the last message."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.gateway.webhooks import InboundSms
from smsproxy.proxy.models import Conversation
from smsproxy.proxy.services.inbound import Outcome, inbound_receive
from tests.factories import VirtualNumberFactory
from tests.proxy.fixtures import ALICE, ALICE_PROXY, conversation_make
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TTL = 3600


def lived(conversation: Conversation, *, ago: timedelta) -> Conversation:
    """The conversation as if opened `ago` with a TTL of TTL seconds."""
    created = timezone.now() - ago
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=created, expires_at=created + timedelta(seconds=TTL), ttl=TTL
    )
    conversation.refresh_from_db()
    return conversation


def receive(text: str = "Still there?", message_id: str = "0A0000000000000A1") -> Any:
    return inbound_receive(
        sms=InboundSms(vonage_message_id=message_id, sender=ALICE, recipient=ALICE_PROXY, text=text)
    )


def test_create_stores_the_ttl(settings: Any) -> None:
    VirtualNumberFactory.create()
    settings.PROXY_CONVERSATION_TTL = 600
    assert open_between("+447700900501", "+447700900502").ttl == 600
    assert open_between("+447700900503", "+447700900504", ttl=90).ttl == 90
    settings.PROXY_CONVERSATION_TTL = 0
    forever = open_between("+447700900505", "+447700900506")
    assert (forever.ttl, forever.expires_at) == (0, None)


def test_by_default_a_message_does_not_move_the_expiry(settings: Any) -> None:
    assert settings.PROXY_TTL_FROM == "created"
    conversation = lived(conversation_make(), ago=timedelta(minutes=50))
    expires_at = conversation.expires_at

    assert receive().outcome == Outcome.ROUTED

    conversation.refresh_from_db()
    assert conversation.expires_at == expires_at


def test_from_the_last_message_a_routed_message_pushes_the_expiry(settings: Any) -> None:
    settings.PROXY_TTL_FROM = "last_message"
    conversation = lived(conversation_make(), ago=timedelta(minutes=50))
    before = timezone.now()

    assert receive().outcome == Outcome.ROUTED

    conversation.refresh_from_db()
    assert conversation.expires_at is not None
    assert before + timedelta(seconds=TTL) <= conversation.expires_at
    assert conversation.expires_at <= timezone.now() + timedelta(seconds=TTL)


def test_from_the_last_message_a_conversation_without_ttl_keeps_no_expiry(settings: Any) -> None:
    settings.PROXY_TTL_FROM = "last_message"
    conversation = conversation_make()
    assert receive().outcome == Outcome.ROUTED
    conversation.refresh_from_db()
    assert conversation.expires_at is None


def test_intros_do_not_push_the_expiry(settings: Any) -> None:
    settings.PROXY_TTL_FROM = "last_message"
    VirtualNumberFactory.create()
    conversation = open_between("+447700900501", "+447700900502", ttl=TTL)
    created_expiry = conversation.expires_at
    conversation.refresh_from_db()
    assert conversation.expires_at == created_expiry  # the two intros changed nothing


def test_a_routed_sms_costs_one_update_more_only_with_last_message(settings: Any) -> None:
    """The webhook's hot path (see test_inbound's pinned three statements): the push is one
    UPDATE of the conversation the route lookup already read, and nothing else."""
    lived(conversation_make(), ago=timedelta(minutes=5))

    def statements(message_id: str) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert receive(message_id=message_id).outcome == Outcome.ROUTED
        return [query["sql"].split()[0].upper() for query in queries.captured_queries]

    if connection.vendor == "postgresql":
        # The route, the inbound row and the forward are one statement (its own transaction).
        assert statements("0A0000000000000B1") == ["WITH"]
        settings.PROXY_TTL_FROM = "last_message"
        assert statements("0A0000000000000B2") == ["SAVEPOINT", "WITH", "UPDATE", "RELEASE"]
        return
    assert statements("0A0000000000000B1") == [
        "SAVEPOINT",
        "SELECT",
        "INSERT",
        "INSERT",
        "RELEASE",
    ]
    settings.PROXY_TTL_FROM = "last_message"
    assert statements("0A0000000000000B2") == [
        "SAVEPOINT",
        "SELECT",
        "INSERT",
        "UPDATE",
        "INSERT",
        "RELEASE",
    ]


def test_an_expired_conversation_is_not_brought_back_by_a_message(settings: Any) -> None:
    settings.PROXY_TTL_FROM = "last_message"
    conversation = lived(conversation_make(), ago=timedelta(hours=2))

    assert receive().outcome == Outcome.UNROUTED

    conversation.refresh_from_db()
    assert conversation.expires_at is not None and conversation.expires_at < timezone.now()


def settings_error(value: str) -> str:
    env = {key: val for key, val in os.environ.items() if not key.startswith(("DJANGO_", "PROXY_"))}
    env.update({"DJANGO_READ_DOT_ENV": "0", "DJANGO_DEBUG": "1", "PROXY_TTL_FROM": value})
    result = subprocess.run(
        [sys.executable, "-c", "from smsproxy import settings; print(settings.PROXY_TTL_FROM)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else result.stderr


def test_the_setting_is_checked_at_startup() -> None:
    assert settings_error("last_message") == "last_message"
    assert settings_error("created") == "created"
    error = settings_error("last-message")
    assert "ImproperlyConfigured" in error and "PROXY_TTL_FROM" in error
