"""The webhook's one-statement path on PostgreSQL (`services.inbound_statement`).

PostgreSQL only (DATABASE_URL): SQLite has no INSERT inside WITH and always takes the full path,
which tests/proxy/test_inbound.py covers on both databases.
"""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from smsproxy.common.redaction import REDACTED_NUMBER
from smsproxy.gateway.webhooks import InboundSms
from smsproxy.proxy.models import Message, Participant
from smsproxy.proxy.outbox import dispatch
from smsproxy.proxy.services.inbound import Outcome, inbound_receive
from smsproxy.proxy.services.inbound_statement import _statement_plan
from tests.proxy.fixtures import (
    ALICE,
    ALICE_PROXY,
    BOB,
    BOB_PROXY,
    conversation_end,
    conversation_make,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"),
]

STRANGER = "+447700901999"


def sms(text: str = "On my way", *, sender: str = ALICE, message_id: str = "0A01") -> InboundSms:
    return InboundSms(vonage_message_id=message_id, sender=sender, recipient=ALICE_PROXY, text=text)


def statements_of(message: InboundSms) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        result = inbound_receive(sms=message)
    return result, [query["sql"].split()[0].upper() for query in queries.captured_queries]


def columns(message: Message) -> dict[str, Any]:
    return {field.attname: getattr(message, field.attname) for field in Message._meta.fields}


def test_a_routed_sms_is_stored_and_forwarded_by_one_statement() -> None:
    conversation = conversation_make()

    result, statements = statements_of(sms("On my way"))

    assert statements == ["WITH"]
    assert result.outcome == Outcome.ROUTED
    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert (inbound.status, inbound.conversation, inbound.text) == (
        Message.Status.RECEIVED,
        conversation,
        "On my way",
    )
    assert (forward.status, forward.purpose, forward.sender, forward.recipient) == (
        Message.Status.QUEUED,
        Message.Purpose.CONVERSATION,
        BOB_PROXY,
        BOB,
    )
    assert forward.forwarded_from == inbound and forward.conversation == conversation
    # The returned instances are the rows as stored, column for column.
    assert columns(result.message) == columns(inbound)
    assert columns(result.forward) == columns(forward)
    assert result.message.conversation == conversation


def test_the_rows_have_every_default_the_orm_would_write() -> None:
    """A field added to Message gets its default in the statement's rows as with create()."""
    conversation_make()
    result, _ = statements_of(sms("On my way"))
    by_orm = Message.objects.create(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.QUEUED,
        sender=BOB_PROXY,
        recipient=BOB,
        text="On my way",
        conversation=result.forward.conversation,
        forwarded_from=result.message,
    )
    differing = {"id", "created_at", "updated_at"}

    stored = columns(Message.objects.get(pk=result.forward.pk))
    expected = columns(by_orm)
    assert {k: v for k, v in stored.items() if k not in differing} == {
        k: v for k, v in expected.items() if k not in differing
    }


def test_the_forward_is_handed_to_the_dispatcher_after_the_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    conversation_make()

    with (
        mock.patch.object(dispatch, "message_dispatch") as message_dispatch,
        django_capture_on_commit_callbacks(execute=True),
    ):
        result = inbound_receive(sms=sms())

    assert result.forward is not None
    message_dispatch.assert_called_once_with(message_id=result.forward.pk, low_priority=False)


def test_a_repeated_message_id_is_one_statement_that_writes_nothing() -> None:
    conversation_make()
    inbound_receive(sms=sms(message_id="0A0DUPE"))

    again, statements = statements_of(sms(message_id="0A0DUPE"))

    assert again.outcome == Outcome.DUPLICATE
    assert statements == ["WITH"]  # ON CONFLICT DO NOTHING: no error, no second look-up
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1
    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).count() == 1


def test_a_stranger_is_stored_unrouted_by_one_statement() -> None:
    conversation_make()

    result, statements = statements_of(sms("Who is this?", sender=STRANGER))

    assert statements == ["WITH"]
    assert result.outcome == Outcome.UNROUTED and result.forward is None
    assert result.message is not None and result.message.conversation is None
    assert list(Message.objects.values_list("status", flat=True)) == [Message.Status.UNROUTED]


def test_an_earlier_participant_is_left_to_the_full_path_which_answers() -> None:
    """Rule 6 may answer: the statement declines and writes nothing; the full path replies."""
    conversation_end(conversation_make())

    result, statements = statements_of(sms("Still there?"))

    assert statements[0] == "WITH" and "SAVEPOINT" in statements
    assert result.outcome == Outcome.UNROUTED
    assert result.forward is not None
    assert result.forward.purpose == Message.Purpose.OUT_OF_SESSION
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1


def test_without_a_reply_configured_an_earlier_participant_is_one_statement(
    settings: Any,
) -> None:
    settings.PROXY_OUT_OF_SESSION_REPLY = ""
    conversation_end(conversation_make())

    result, statements = statements_of(sms("Still there?"))

    assert statements == ["WITH"]
    assert result.outcome == Outcome.UNROUTED
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()


def test_the_forward_is_redacted_and_the_inbound_kept_as_received(settings: Any) -> None:
    settings.PROXY_REDACT_NUMBERS = True
    conversation_make()

    result, _ = statements_of(sms("Call me on 07700 900123"))

    assert result.message is not None and result.message.text == "Call me on 07700 900123"
    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert forward.text == f"Call me on {REDACTED_NUMBER}"


def test_a_conversation_without_its_second_participant_forwards_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conversation = conversation_make()
    Participant.objects.filter(conversation=conversation, real_number=BOB).delete()

    with caplog.at_level(logging.ERROR):
        result = inbound_receive(sms=sms())

    assert result.outcome == Outcome.ROUTED and result.forward is None
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
    assert "has no second participant" in caplog.text


def test_an_empty_text_is_stored_and_not_forwarded() -> None:
    conversation_make()

    result, statements = statements_of(sms(""))

    assert statements == ["WITH"]
    assert result.outcome == Outcome.ROUTED and result.forward is None
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()


def test_the_statement_is_short_enough_for_psycopg_to_cache_its_conversion() -> None:
    """Longer than this, psycopg parses the statement's placeholders again on every request."""
    sql, constants, _ = _statement_plan()

    assert len(sql) <= psycopg._queries.MAX_CACHED_STATEMENT_LENGTH
    assert len(constants) + 9 <= psycopg._queries.MAX_CACHED_STATEMENT_PARAMS
