"""The two Vonage webhooks end to end, driven by saved payloads in all three encodings."""

from __future__ import annotations

import logging
import time
from http import HTTPStatus

import pytest
from django.test import Client

from smsproxy.gateway.signatures import sign_params
from smsproxy.proxy.models import InboundPart, Message, MessagePart
from tests.factories import MessageFactory
from tests.proxy.fixtures import (
    ALICE,
    ALICE_PROXY,
    BOB,
    BOB_PROXY,
    ENCODINGS,
    INBOUND_URL,
    RECEIPT_URL,
    conversation_make,
    payload,
    send_webhook,
)

pytestmark = pytest.mark.django_db

SECRET = "webhook-signature-secret-for-tests"


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.mark.parametrize("url", [INBOUND_URL, RECEIPT_URL])
def test_bare_get_answers_ok_and_stores_nothing(client: Client, url: str) -> None:
    response = client.get(url)

    assert response.status_code == HTTPStatus.OK
    assert Message.objects.count() == 0
    assert MessagePart.objects.count() == 0


@pytest.mark.parametrize("url", [INBOUND_URL, RECEIPT_URL])
def test_bare_get_answers_ok_even_when_signatures_are_on(
    client: Client, settings, url: str
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET

    assert client.get(url).status_code == HTTPStatus.OK


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_inbound_sms_is_stored_and_its_forward_queued(client: Client, encoding: str) -> None:
    conversation = conversation_make()
    params = payload("inbound_sms_text")

    response = send_webhook(client, INBOUND_URL, params, encoding)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}
    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    assert inbound.vonage_message_id == params["messageId"]
    assert (inbound.sender, inbound.recipient) == (ALICE, ALICE_PROXY)
    assert inbound.status == Message.Status.RECEIVED
    assert inbound.conversation == conversation
    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert (forward.sender, forward.recipient) == (BOB_PROXY, BOB)
    assert forward.text == params["text"]
    assert forward.forwarded_from == inbound
    # Answered without calling Vonage: the forward waits for a dispatcher.
    assert forward.status == Message.Status.QUEUED


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unicode_text_survives_every_encoding(client: Client, encoding: str) -> None:
    conversation_make()
    params = payload("inbound_sms_unicode")

    response = send_webhook(client, INBOUND_URL, params, encoding)

    assert response.status_code == HTTPStatus.OK
    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert forward.text == "Привет! Я у двери 🚪 — 5 минут"  # noqa: RUF001


@pytest.mark.parametrize("first,second", [("get", "get"), ("get", "json"), ("form", "json")])
def test_repeated_delivery_changes_nothing(client: Client, first: str, second: str) -> None:
    conversation_make()
    params = payload("inbound_sms_text")

    assert send_webhook(client, INBOUND_URL, params, first).status_code == HTTPStatus.OK
    response = send_webhook(client, INBOUND_URL, params, second)

    assert response.status_code == HTTPStatus.OK
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1
    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).count() == 1


def test_concatenated_parts_through_the_webhook(client: Client) -> None:
    conversation_make()
    parts = [payload(f"inbound_sms_concat_part{n}") for n in (2, 3, 1)]

    for part in parts[:2]:
        assert send_webhook(client, INBOUND_URL, part, "json").status_code == HTTPStatus.OK
        assert not Message.objects.exists()
    assert send_webhook(client, INBOUND_URL, parts[2], "json").status_code == HTTPStatus.OK

    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert forward.text == "".join(
        payload(f"inbound_sms_concat_part{n}")["text"] for n in (1, 2, 3)
    )
    assert InboundPart.objects.filter(message=forward.forwarded_from).count() == 3


# --- signatures ---------------------------------------------------------------------------------


def _signed(
    params: dict[str, str], *, secret: str = SECRET, method: str = "md5hash", **kw
) -> dict[str, str]:
    return sign_params(
        {**params, "nonce": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"},
        secret=secret,
        method=method,
        **kw,
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("method", ["md5hash", "sha256"])
def test_signed_inbound_sms_is_accepted(
    client: Client, settings, encoding: str, method: str
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_SIGNATURE_METHOD = method
    conversation_make()

    response = send_webhook(
        client, INBOUND_URL, _signed(payload("inbound_sms_text"), method=method), encoding
    )

    assert response.status_code == HTTPStatus.OK
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_bad_signature_is_refused_and_nothing_stored(
    client: Client, settings, encoding: str
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    conversation_make()
    params = _signed(payload("inbound_sms_text"), secret="someone-elses-secret")

    response = send_webhook(client, INBOUND_URL, params, encoding)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "invalid_signature"
    assert Message.objects.count() == 0


def test_tampered_text_is_refused(client: Client, settings) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    conversation_make()
    params = _signed(payload("inbound_sms_text"))
    params["text"] = "Call me on 07700 900999 instead"

    response = send_webhook(client, INBOUND_URL, params, "form")

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert Message.objects.count() == 0


def test_missing_signature_is_refused(client: Client, settings) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    conversation_make()

    response = send_webhook(client, INBOUND_URL, payload("inbound_sms_text"), "get")

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert Message.objects.count() == 0


def test_stale_signature_is_refused(client: Client, settings) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_SIGNATURE_MAX_AGE = 3600
    conversation_make()
    params = _signed(payload("inbound_sms_text"), timestamp=int(time.time()) - 7200)

    response = send_webhook(client, INBOUND_URL, params, "json")

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert "ago" in response.json()["detail"]
    assert Message.objects.count() == 0


def test_unsigned_receipt_is_refused_when_signatures_are_on(client: Client, settings) -> None:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    message = MessageFactory.create(status=Message.Status.SENT)
    MessagePart.objects.create(message=message, vonage_message_id="0C0000001234567B")
    params = payload("delivery_receipt_delivered", client_ref=str(message.pk))

    assert send_webhook(client, RECEIPT_URL, params, "get").status_code == HTTPStatus.UNAUTHORIZED
    assert MessagePart.objects.get().status == MessagePart.Status.SENT

    response = send_webhook(client, RECEIPT_URL, _signed(params), "get")

    assert response.status_code == HTTPStatus.OK
    assert MessagePart.objects.get().status == MessagePart.Status.DELIVERED


# --- malformed requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,field",
    [
        ({"messageId": ""}, "messageId"),
        ({"to": "not-a-number"}, "to"),
        ({"msisdn": ""}, "msisdn"),
        (
            {"concat": "true", "concat-ref": "7", "concat-total": "2", "concat-part": "3"},
            "concat-part",
        ),
        (
            {"concat": "true", "concat-ref": "7", "concat-total": "x", "concat-part": "1"},
            "concat-part",
        ),
    ],
)
def test_malformed_inbound_sms_is_a_400(client: Client, change: dict[str, str], field: str) -> None:
    conversation_make()
    params = {**payload("inbound_sms_text"), **change}

    response = send_webhook(client, INBOUND_URL, params, "form")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "malformed"
    assert field in response.json()["fields"]
    assert Message.objects.count() == 0
    assert InboundPart.objects.count() == 0


@pytest.mark.parametrize("url", [INBOUND_URL, RECEIPT_URL])
@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_broken_json_is_a_400(client: Client, url: str, body: bytes) -> None:
    response = client.post(url, body, content_type="application/json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "malformed"


def test_receipt_without_status_is_a_400(client: Client) -> None:
    params = payload("delivery_receipt_delivered")
    del params["status"]

    response = send_webhook(client, RECEIPT_URL, params, "json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "status" in response.json()["fields"]


@pytest.mark.parametrize("url", [INBOUND_URL, RECEIPT_URL])
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_are_not_allowed(client: Client, url: str, method: str) -> None:
    response = getattr(client, method)(url)

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response["Allow"] == "GET, POST"
    assert response.json()["code"] == "method_not_allowed"
    assert method.upper() in response.json()["detail"]


# --- deliberately ignored: answered 200 so that Vonage does not retry for days -------------------


def test_an_sms_from_an_overlong_sender_id_is_ignored(client: Client, caplog) -> None:
    conversation_make()
    params = payload("inbound_sms_text", msisdn="A" * 17)

    response = send_webhook(client, INBOUND_URL, params, "form")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}
    assert Message.objects.count() == 0
    assert "Ignored inbound-sms webhook" in caplog.text
    assert [record.levelname for record in caplog.records if "Ignored" in record.getMessage()] == [
        "WARNING"
    ]


def test_a_receipt_with_an_unknown_status_is_ignored(client: Client, caplog) -> None:
    message = MessageFactory.create(status=Message.Status.SENT, sender=BOB_PROXY, recipient=BOB)
    MessagePart.objects.create(message=message, vonage_message_id="0C0000001234567B")
    params = payload("delivery_receipt_delivered", client_ref=str(message.pk), status="teleported")

    response = send_webhook(client, RECEIPT_URL, params, "get")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}
    assert message.parts.get().status == MessagePart.Status.SENT
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert "unknown status 'teleported'" in caplog.text
    assert [record.levelname for record in caplog.records if "Ignored" in record.getMessage()] == [
        "WARNING"
    ]


# --- logs ---------------------------------------------------------------------------------------


def test_the_inbound_log_masks_the_sender(client: Client, caplog) -> None:
    caplog.set_level(logging.INFO)
    conversation_make()

    response = send_webhook(client, INBOUND_URL, payload("inbound_sms_text"), "form")

    assert response.status_code == HTTPStatus.OK
    assert "Inbound SMS 0A0000000123ABCD1 from +44*******001 to +447700900100: routed." in (
        caplog.text
    )
    assert ALICE.removeprefix("+") not in caplog.text


# --- receipts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_delivered_receipt_marks_the_message_delivered(client: Client, encoding: str) -> None:
    message = MessageFactory.create(status=Message.Status.SENT, sender=BOB_PROXY, recipient=BOB)
    MessagePart.objects.create(message=message, vonage_message_id="0C0000001234567B")
    params = payload("delivery_receipt_delivered", client_ref=str(message.pk))

    response = send_webhook(client, RECEIPT_URL, params, encoding)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.delivered_at is not None
    part = message.parts.get()
    assert part.network == "23410"
    assert str(part.price) == "0.03330"


def test_receipt_for_an_unknown_message_is_ignored(client: Client) -> None:
    params = payload("delivery_receipt_delivered", client_ref="someone-else")

    response = send_webhook(client, RECEIPT_URL, params, "get")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}
    assert MessagePart.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_by_a_database_restart_is_replaced_not_answered_500(
    client: Client, monkeypatch
) -> None:
    """Kept connections are not health-checked per request: the first statement after a
    database restart fails on a dead one, and the webhook runs again on a new connection."""
    from django.db import OperationalError

    from smsproxy.proxy import webhooks

    conversation_make()
    real_receive = webhooks.inbound_receive
    calls = []

    def receive_on_a_dead_connection_first(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real_receive(**kwargs)

    monkeypatch.setattr(webhooks, "inbound_receive", receive_on_a_dead_connection_first)
    response = client.get(INBOUND_URL, payload("inbound_sms_text"))

    assert response.status_code == HTTPStatus.OK
    assert len(calls) == 2
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_database_that_stays_down_is_still_a_500(client: Client, monkeypatch) -> None:
    """Tried twice, then the outage shows (Vonage retries the webhook later)."""
    from django.db import OperationalError

    from smsproxy.proxy import webhooks

    calls = []

    def receive_on_a_dead_database(**kwargs):
        calls.append(kwargs)
        raise OperationalError("connection refused")

    monkeypatch.setattr(webhooks, "inbound_receive", receive_on_a_dead_database)
    client.raise_request_exception = False

    response = client.get(INBOUND_URL, payload("inbound_sms_text"))

    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert len(calls) == 2
