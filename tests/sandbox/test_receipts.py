"""The sandbox's delivery receipts: HTTP GETs to the receipt webhook, a moment after the send.

`responses` plays the receipt webhook (it patches `requests` for every thread, the sender's
included); `receipt_sender.stop()` sends what is queued at once, so a test needs no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from django.db import transaction

from smsproxy.gateway.signatures import verify_signature
from smsproxy.sandbox import receipts as receipts_module
from smsproxy.sandbox.models import SandboxMessage
from smsproxy.sandbox.provider import SandboxProvider
from smsproxy.sandbox.receipts import RECEIPT_DELAY_SECONDS, ReceiptSender, receipt_sender

from .conftest import CALLBACK, send

pytestmark = pytest.mark.django_db

Received = list[dict[str, str]]


@dataclass
class ReceiptWebhook:
    mock: responses.RequestsMock
    received: Received


def query_of(url: str | None) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url or "").query, keep_blank_values=True))


@pytest.fixture
def webhook(settings: Any) -> Iterator[ReceiptWebhook]:
    """Receipts switched on; the receipt webhook at CALLBACK records what it is sent (see
    `receipts`), other URLs are the test's to add."""
    settings.SANDBOX_DELIVERY_RECEIPTS = True
    received: Received = []

    def record(request: Any) -> tuple[int, dict[str, str], str]:
        assert request.method == "GET"
        received.append(query_of(request.url))
        return 200, {}, '{"status": "ok"}'

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, CALLBACK, callback=record)
        yield ReceiptWebhook(mock, received)
        receipt_sender.stop()


@pytest.fixture
def receipts(webhook: ReceiptWebhook) -> Received:
    """The query parameters of every receipt the webhook at CALLBACK was sent."""
    return webhook.received


def test_a_delivered_receipt_per_part_after_the_callers_commit(
    sandbox: SandboxProvider,
    receipts: Received,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        result = send(sandbox, "x" * 200)
        assert receipt_sender.stop() == 0  # nothing queued before the caller's commit

    assert receipts == []  # and not at once after it either: a moment later
    assert receipt_sender.stop() == 0
    assert [receipt["messageId"] for receipt in receipts] == result.message_ids
    first = receipts[0]
    assert {key: first[key] for key in ("msisdn", "to", "status", "err-code", "client-ref")} == {
        "msisdn": "447700901234",
        "to": "447700900001",
        "status": "delivered",
        "err-code": "0",
        "client-ref": "17",
    }
    assert {"network-code", "price", "scts", "message-timestamp"} <= set(first)
    assert "sig" not in first  # no secret, no signature


def test_the_sender_sends_every_receipt_on_one_session(
    sandbox: SandboxProvider,
    receipts: Received,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """One keep-alive connection for them all, not a new connection per receipt."""
    with mock.patch.object(receipts_module.requests, "Session", wraps=requests.Session) as new:
        with django_capture_on_commit_callbacks(execute=True):
            first = send(sandbox, "x" * 200)
            second = send(sandbox, "Hello")
        receipt_sender.stop()

    assert [receipt["messageId"] for receipt in receipts] == [
        *first.message_ids,
        *second.message_ids,
    ]
    assert new.call_count == 1


def test_receipts_are_signed_when_a_secret_is_set(
    sandbox: SandboxProvider,
    receipts: Received,
    settings: Any,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = "sandbox-secret"
    settings.VONAGE_SIGNATURE_METHOD = "sha256"

    with django_capture_on_commit_callbacks(execute=True):
        send(sandbox, "Hello")
    receipt_sender.stop()

    [params] = receipts
    assert {"sig", "timestamp", "nonce"} <= set(params)
    verify_signature(params, secret="sandbox-secret", method="sha256", max_age=60)


def test_receipts_can_be_switched_off(
    sandbox: SandboxProvider,
    receipts: Received,
    settings: Any,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    settings.SANDBOX_DELIVERY_RECEIPTS = False

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        send(sandbox, "Hello")
    receipt_sender.stop()

    assert callbacks == []
    assert receipts == []


def test_an_sms_without_a_callback_gets_no_receipt(
    sandbox: SandboxProvider,
    receipts: Received,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        send(sandbox, "Hello", callback_url="")

    assert callbacks == []


@pytest.mark.parametrize("status", [404, 500])
def test_a_refusing_webhook_is_logged_once_per_receipt(
    sandbox: SandboxProvider,
    webhook: ReceiptWebhook,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Callable[..., Any],
    status: int,
) -> None:
    url = "https://proxy.example.com/refusing/"
    webhook.mock.get(url, status=status)

    with django_capture_on_commit_callbacks(execute=True):
        result = send(sandbox, "x" * 200, callback_url=url)
    receipt_sender.stop()

    assert len(result.parts) == 2  # the send itself succeeded
    warnings = [r.getMessage() for r in caplog.records if r.name == "smsproxy.sandbox.receipts"]
    assert warnings == [
        f"[sandbox] delivery receipt for {message_id}: {url} answered HTTP {status}"
        for message_id in result.message_ids
    ]


def test_an_unreachable_webhook_is_logged_once_per_receipt(
    sandbox: SandboxProvider,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    settings.SANDBOX_DELIVERY_RECEIPTS = True
    url = "http://127.0.0.1:9/webhooks/vonage/delivery-receipt/"  # the discard port: refused

    with django_capture_on_commit_callbacks(execute=True):
        result = send(sandbox, "x" * 200, callback_url=url)
    receipt_sender.stop()

    warnings = [r.getMessage() for r in caplog.records if r.name == "smsproxy.sandbox.receipts"]
    assert len(warnings) == 2
    for message_id, warning in zip(result.message_ids, warnings, strict=True):
        assert warning.startswith(f"[sandbox] delivery receipt for {message_id} not delivered")
    assert SandboxMessage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_send_outside_any_transaction_is_answered_a_moment_later(
    sandbox: SandboxProvider, receipts: Received
) -> None:
    sent_at = time.monotonic()
    result = send(sandbox, "Hello")

    assert receipts == []  # not during send_sms: the caller has not stored the ids yet
    deadline = sent_at + RECEIPT_DELAY_SECONDS + 5
    while not receipts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [receipt["messageId"] for receipt in receipts] == result.message_ids
    assert time.monotonic() - sent_at >= RECEIPT_DELAY_SECONDS


def test_stopping_is_bounded_and_drops_what_it_could_not_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "https://proxy.example.com/slow/"
    release = threading.Event()
    received: list[str] = []

    def slow(request: Any) -> tuple[int, dict[str, str], str]:
        received.append(request.url)
        release.wait(10)
        return 200, {}, ""

    sender = ReceiptSender(delay=60)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as webhook:
        webhook.add_callback(responses.GET, url, callback=slow)
        sender.submit(url, [{"messageId": "a"}, {"messageId": "b"}, {"messageId": "c"}])
        started = time.monotonic()
        # Not waiting the 60 s: stopping sends at once, and gives up after its timeout.
        dropped = sender.stop(timeout=0.5)
        elapsed = time.monotonic() - started
        release.set()

    assert elapsed < 2
    assert len(received) == 1  # the one in flight
    assert dropped == 2
    assert "2 delivery receipt(s) dropped" in caplog.text


def test_a_stopped_sender_starts_again_on_the_next_receipt() -> None:
    url = "https://proxy.example.com/again/"
    sender = ReceiptSender(delay=0)
    with responses.RequestsMock() as webhook:
        webhook.get(url)
        sender.submit(url, [{"messageId": "first"}])
        assert sender.stop() == 0
        sender.submit(url, [{"messageId": "second"}])
        assert sender.stop() == 0

        ids = [query_of(call.request.url)["messageId"] for call in webhook.calls]
        assert ids == ["first", "second"]


def test_the_queue_is_bounded_when_the_webhook_cannot_keep_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A webhook slower than the sends (receipts due in a minute here): the queue stops growing
    # at max_queued, whatever the number of SMS sent meanwhile.
    url = "https://proxy.example.com/saturated/"
    warning = "receipts dropped until it answers faster"
    sender = ReceiptSender(delay=60, max_queued=3)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as webhook:
        webhook.get(url)
        for number in range(1000):
            sender.submit(url, [{"messageId": f"m{number}"}])

        assert len(sender._queue) == 3
        assert sender.dropped_full == 997
        assert caplog.text.count(warning) == 1
        # The webhook takes one now and then (here m2, the heap's last leaf): room for one
        # more, the next dropped again, and no warning per receipt while it stays that slow.
        with sender._condition:
            sender._queue.pop()
        sender.submit(url, [{"messageId": "m1000"}])
        sender.submit(url, [{"messageId": "m1001"}])
        assert len(sender._queue) == 3
        assert sender.dropped_full == 998
        assert caplog.text.count(warning) == 1
        # What was queued still leaves.
        assert sender.stop() == 0
        sent = [query_of(call.request.url)["messageId"] for call in webhook.calls]
        assert sent == ["m0", "m1", "m1000"]
        # Drained: receipts are queued again, and a new overflow is told again.
        sender.submit(url, [{"messageId": "after"}])
        sender.submit(url, [{"messageId": "part"}] * 3)
        assert len(sender._queue) == 1
        assert caplog.text.count(warning) == 2
        sender.stop()
