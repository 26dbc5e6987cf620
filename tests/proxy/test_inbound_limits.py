"""PROXY_MAX_TEXT_LENGTH: a text longer than the cap is stored and neither forwarded nor
answered (issue: a 1 MB text was sent on as 6,854 SMS parts)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.test import Client

from smsproxy.proxy.models import Message
from smsproxy.proxy.services.inbound import TOO_LONG
from tests.proxy.fixtures import ALICE, ALICE_PROXY, INBOUND_URL, conversation_make

pytestmark = pytest.mark.django_db


def _inbound(text: str, message_id: str = "LONG1", **extra: str) -> Any:
    params = {
        "msisdn": ALICE.lstrip("+"),
        "to": ALICE_PROXY.lstrip("+"),
        "messageId": message_id,
        "text": text,
        "type": "text",
        **extra,
    }
    return Client().post(INBOUND_URL, params)


def _outbound() -> int:
    return Message.objects.filter(direction=Message.Direction.OUTBOUND).count()


def test_a_text_at_the_cap_is_forwarded(settings: Any) -> None:
    settings.PROXY_MAX_TEXT_LENGTH = 20
    conversation_make()

    assert _inbound("x" * 20).status_code == HTTPStatus.OK

    assert _outbound() == 1


@pytest.mark.parametrize("length", [21, 1_000_000])
def test_a_text_over_the_cap_is_stored_rejected_and_not_forwarded(
    settings: Any, length: int
) -> None:
    settings.PROXY_MAX_TEXT_LENGTH = 20
    conversation = conversation_make()

    assert _inbound("x" * length).status_code == HTTPStatus.OK

    message = Message.objects.get(vonage_message_id="LONG1")
    assert (message.status, message.error_code, len(message.text)) == (
        Message.Status.REJECTED,
        TOO_LONG,
        length,
    )
    assert message.conversation == conversation
    assert _outbound() == 0


def test_an_out_of_session_text_over_the_cap_gets_no_reply(settings: Any) -> None:
    settings.PROXY_MAX_TEXT_LENGTH = 20
    conversation_make()
    Message.objects.all().delete()

    response = Client().post(
        INBOUND_URL,
        {"msisdn": "447700901999", "to": ALICE_PROXY.lstrip("+"), "messageId": "L2",
         "text": "y" * 50, "type": "text"},
    )  # fmt: skip

    assert response.status_code == HTTPStatus.OK
    assert Message.objects.get(vonage_message_id="L2").status == Message.Status.REJECTED
    assert _outbound() == 0


def test_a_concatenated_text_over_the_cap_is_joined_and_not_forwarded(settings: Any) -> None:
    settings.PROXY_MAX_TEXT_LENGTH = 25
    conversation_make()

    for part in (1, 2):
        _inbound(
            "z" * 15,
            message_id=f"C{part}",
            concat="true",
            **{"concat-ref": "9", "concat-total": "2", "concat-part": str(part)},
        )

    joined = Message.objects.get(direction=Message.Direction.INBOUND)
    assert (joined.status, len(joined.text)) == (Message.Status.REJECTED, 30)
    assert _outbound() == 0
