"""The voice answer and event webhooks end to end, from saved Vonage payloads (DESIGN §12)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.gateway.voice_signatures import voice_signature_header
from smsproxy.proxy.models import Message
from tests.proxy.fixtures import (
    ALICE,
    ALICE_PROXY,
    BOB,
    BOB_PROXY,
    INBOUND_URL,
    conversation_end,
    conversation_make,
    payload,
    send_webhook,
)
from tests.proxy.voice import (
    ANSWER_URL,
    CONVERSATION_UUID,
    EVENT_URL,
    SECRET,
    send_voice,
    voice_payload,
)

pytestmark = pytest.mark.django_db

ENCODINGS = ("get", "json")
ENDED = [{"action": "talk", "text": "This conversation has ended."}]


@pytest.fixture(autouse=True)
def voice_on(settings: Any) -> None:
    settings.PROXY_VOICE = True
    settings.VONAGE_SIGNATURE_SECRET = ""


def connect_to_bob() -> list[dict[str, Any]]:
    return [
        {
            "action": "connect",
            "from": BOB_PROXY.removeprefix("+"),
            "endpoint": [{"type": "phone", "number": BOB.removeprefix("+")}],
        }
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_participant_calling_their_proxy_number_is_connected_to_the_other(
    client: Client, encoding: str
) -> None:
    conversation_make()

    response = send_voice(client, ANSWER_URL, voice_payload("voice_answer"), encoding)

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    # Bob sees his own proxy number calling, never Alice's number.
    assert response.json() == connect_to_bob()
    assert ALICE.removeprefix("+") not in response.content.decode()


def test_the_other_direction_connects_to_alice_showing_her_proxy_number(client: Client) -> None:
    conversation_make()
    answer = voice_payload("voice_answer", **{"from": BOB[1:], "to": BOB_PROXY[1:]})

    ncco = send_voice(client, ANSWER_URL, answer, "get").json()

    assert ncco[0]["from"] == ALICE_PROXY[1:]
    assert ncco[0]["endpoint"] == [{"type": "phone", "number": ALICE[1:]}]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # no conversation at all
        {"from": "447700901999"},  # a stranger calling Alice's proxy number
        {"to": BOB_PROXY[1:]},  # Alice calling Bob's proxy number: not her route
        {"from": ""},  # a withheld caller id
        {"from": "Unknown"},
    ],
)
def test_a_caller_without_a_live_route_hears_the_talk(
    client: Client, overrides: dict[str, str]
) -> None:
    if overrides:
        conversation_make()

    response = send_voice(client, ANSWER_URL, voice_payload("voice_answer", **overrides), "get")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == ENDED


def test_a_closed_conversation_connects_no_call(client: Client) -> None:
    conversation_end(conversation_make())

    assert send_voice(client, ANSWER_URL, voice_payload("voice_answer"), "get").json() == ENDED


def test_an_expired_conversation_connects_no_call(client: Client) -> None:
    conversation_make(expires_at=timezone.now() - timedelta(seconds=1))

    assert send_voice(client, ANSWER_URL, voice_payload("voice_answer"), "json").json() == ENDED


def test_with_voice_off_no_call_is_connected(client: Client, settings: Any) -> None:
    settings.PROXY_VOICE = False
    conversation_make()

    assert send_voice(client, ANSWER_URL, voice_payload("voice_answer"), "get").json() == ENDED


# --- signed webhooks -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [ANSWER_URL, EVENT_URL])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_valid_jwt_is_accepted(client: Client, settings: Any, url: str, encoding: str) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    conversation_make()
    data = voice_payload("voice_answer" if url == ANSWER_URL else "voice_event_started")

    response = send_voice(client, url, data, encoding, secret=SECRET)

    assert response.status_code in (HTTPStatus.OK, HTTPStatus.NO_CONTENT)
    if url == ANSWER_URL:
        assert response.json() == connect_to_bob()


def _token(body: bytes, *, secret: str = SECRET, issued_at: float | None = None) -> str:
    return voice_signature_header(body=body, secret=secret, api_key="k", issued_at=issued_at)


@pytest.mark.parametrize("url", [ANSWER_URL, EVENT_URL])
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("", id="missing"),
        pytest.param("Bearer", id="empty-token"),
        pytest.param("Basic dXNlcjpwdw==", id="not-bearer"),
        pytest.param("Bearer not.a.jwt", id="garbage"),
        pytest.param(_token(b"", secret="another-secret-0123456789abcdef01"), id="wrong-secret"),
        pytest.param(_token(b"{}"), id="wrong-payload-hash"),
        pytest.param(_token(b"", issued_at=time.time() - 3600), id="stale"),
        pytest.param(_token(b"", issued_at=time.time() + 3600), id="future"),
        pytest.param("Bearer " + "A" * 100_000, id="absurd"),
    ],
)
def test_a_voice_webhook_without_a_valid_jwt_gets_401_and_changes_nothing(
    client: Client, settings: Any, url: str, authorization: str
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    conversation_make()
    data = voice_payload("voice_answer" if url == ANSWER_URL else "voice_event_started")

    # GET: the body is empty, so a token hashing "{}" does not match it.
    response = send_voice(client, url, data, "get", authorization=authorization)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "invalid_signature"
    assert not Message.objects.exists()


def test_a_jwt_for_another_body_is_refused(client: Client, settings: Any) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    conversation_make()
    signed_for = json.dumps(voice_payload("voice_event_started")).encode()
    tampered = voice_payload("voice_event_started", status="completed")

    response = send_voice(client, EVENT_URL, tampered, "json", authorization=_token(signed_for))

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert not Message.objects.exists()


# --- hostile input -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [ANSWER_URL, EVENT_URL])
@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b"\xff\xfe", b'"a string"'],
)
def test_a_broken_body_is_400(client: Client, url: str, body: bytes) -> None:
    response = client.post(url, body, content_type="application/json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "malformed"


@pytest.mark.parametrize(
    ("url", "name", "overrides"),
    [
        (ANSWER_URL, "voice_answer", {"to": ""}),
        (ANSWER_URL, "voice_answer", {"to": "not-a-number"}),
        (ANSWER_URL, "voice_answer", {"uuid": ""}),
        (ANSWER_URL, "voice_answer", {"uuid": "x" * 10_000}),
        (ANSWER_URL, "voice_answer", {"conversation_uuid": "CON-\x00; DROP"}),
        (EVENT_URL, "voice_event_started", {"uuid": None}),
        (EVENT_URL, "voice_event_started", {"conversation_uuid": "a" * 65}),
        (EVENT_URL, "voice_event_started", {"direction": "sideways"}),
    ],
)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_malformed_voice_webhook_is_400_with_a_code(
    client: Client, url: str, name: str, overrides: dict[str, Any], encoding: str
) -> None:
    conversation_make()

    response = send_voice(client, url, voice_payload(name, **overrides), encoding)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.json()
    assert body["code"] == "malformed" and body["detail"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_nul_bytes_and_absurd_values_never_make_a_5xx(client: Client, encoding: str) -> None:
    conversation_make()
    hostile = {
        "from": "44770\x0090100" + "9" * 5000,
        "to": "\x00447700900200",
        "duration": "9" * 400,
        "status": "completed",
        "timestamp": "\x00" * 100,
    }

    answer = send_voice(client, ANSWER_URL, voice_payload("voice_answer", **hostile), encoding)
    event = send_voice(client, EVENT_URL, voice_payload("voice_event_started", **hostile), encoding)

    assert answer.status_code == HTTPStatus.OK and answer.json() == ENDED
    assert event.status_code == HTTPStatus.NO_CONTENT
    call = Message.objects.get(direction=Message.Direction.CALL)
    # Not a route (the numbers are not ours), stored cleaned and bounded, the duration dropped.
    assert call.conversation is None
    assert "\x00" not in call.sender + call.recipient and len(call.sender) <= 16
    assert call.duration is None


@pytest.mark.parametrize("url", [ANSWER_URL, EVENT_URL])
def test_other_methods_are_405(client: Client, url: str) -> None:
    response = client.put(url, "{}", content_type="application/json")

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response["Allow"] == "GET, POST"


def test_events_that_are_not_a_leg_status_are_ignored_with_204(client: Client) -> None:
    conversation_make()

    transfer = send_voice(client, EVENT_URL, voice_payload("voice_event_transfer"), "json")
    unknown = send_voice(
        client, EVENT_URL, voice_payload("voice_event_started", status="machine"), "json"
    )

    assert transfer.status_code == unknown.status_code == HTTPStatus.NO_CONTENT
    assert not Message.objects.exists()


# --- cost ----------------------------------------------------------------------------------------


def test_the_answer_webhook_is_two_reads_and_costs_no_more_than_the_sms_webhook_on_sqlite(
    client: Client,
) -> None:
    conversation_make()
    with CaptureQueriesContext(connection) as sms_queries:
        sms = send_webhook(client, INBOUND_URL, payload("inbound_sms_text"), "get")
    with CaptureQueriesContext(connection) as call_queries:
        answer = send_voice(client, ANSWER_URL, voice_payload("voice_answer"), "get")

    assert sms.status_code == answer.status_code == HTTPStatus.OK
    assert answer.json() == connect_to_bob()
    # The route (the indexed lookup of rule 2) and the other participant; nothing written.
    assert len(call_queries) == 2
    if connection.vendor == "postgresql":
        # There the SMS webhook's route, inbound row and forward are one statement.
        assert len(sms_queries) == 1
    else:
        assert len(call_queries) <= len(sms_queries), (len(call_queries), len(sms_queries))
    assert all(query["sql"].lstrip().upper().startswith("SELECT") for query in call_queries)


def test_a_recorded_call_belongs_to_its_conversation(client: Client) -> None:
    conversation = conversation_make()

    response = send_voice(client, EVENT_URL, voice_payload("voice_event_started"), "get")

    assert response.status_code == HTTPStatus.NO_CONTENT and response.content == b""
    call = Message.objects.get()
    assert (call.direction, call.status, call.conversation) == ("call", "started", conversation)
    assert call.vonage_message_id == CONVERSATION_UUID
