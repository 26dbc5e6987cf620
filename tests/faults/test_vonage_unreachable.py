"""Vonage unreachable, then back (issue 10): connection refused and timeouts for a while, then
200s — every queued message is delivered exactly once, its attempts counted, nothing lost.

Service level on the embedded worker (`run_outbox --once`), Vonage faked with `responses` and
the clock moved past each retry's backoff: fast, so in the normal suite (no `faults` marker).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.core.management import call_command
from django.utils import timezone

from smsproxy.proxy.models import MessagePart
from smsproxy.proxy.outbox.record import RETRY_MAX_DELAY
from tests.proxy.fixtures import SMS_SEND_URL, vonage_answer
from tests.proxy.outbox.helpers import queued

pytestmark = pytest.mark.django_db

# What a send meets while Vonage cannot be reached, in turn.
OUTAGE_ERRORS = (
    lambda: requests.ConnectionError("[Errno 111] Connection refused"),
    lambda: requests.ConnectTimeout("connect timed out"),
    lambda: requests.ReadTimeout("read timed out"),
)


class FakeVonage:
    """Down (each send raises the next outage error) until `back`, then accepting every send."""

    def __init__(self) -> None:
        self.down = True
        self._errors = itertools.cycle(OUTAGE_ERRORS)
        self.attempts: Counter[str] = Counter()  # client-ref → sends tried
        self.accepted: Counter[str] = Counter()  # client-ref → sends Vonage took

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        client_ref = parse_qs(body)["client-ref"][0]
        self.attempts[client_ref] += 1
        if self.down:
            raise next(self._errors)()
        self.accepted[client_ref] += 1
        answer = vonage_answer("sms_send_ok", CLIENT_REF=client_ref)
        answer["messages"][0]["message-id"] = f"0C0000000000{client_ref:>04}"
        return 200, {}, json.dumps(answer)


class Clock:
    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock)
    return clock


@pytest.fixture
def fake_vonage(settings, mocked_responses: responses.RequestsMock) -> Iterator[FakeVonage]:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "api-secret-for-tests"
    settings.VONAGE_REST_HOST = "rest.nexmo.com"
    settings.SMS_RATE_LIMIT = 0
    fake = FakeVonage()
    mocked_responses.add_callback(responses.POST, SMS_SEND_URL, callback=fake)
    yield fake


def worker_pass(clock: Clock) -> None:
    """One pass of the embedded worker, then time enough for every backoff to run out."""
    call_command("run_outbox", "--once", stdout=StringIO())
    clock.now += RETRY_MAX_DELAY + timedelta(seconds=1)


@pytest.mark.parametrize("failed_attempts", [1, 3, 7])  # 7: all but the last of 8 attempts
def test_everything_queued_during_an_outage_is_delivered_once_when_vonage_is_back(
    fake_vonage: FakeVonage, clock: Clock, failed_attempts: int
) -> None:
    messages = [queued(text=f"Message {n}") for n in range(3)]
    refs = [str(message.pk) for message in messages]

    for _ in range(failed_attempts):
        worker_pass(clock)
    for message in messages:
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("queued", failed_attempts)
        assert message.error_code in {"connection", "timeout"}

    fake_vonage.down = False
    for _ in range(3):  # the first pass sends; later ones must find nothing left to send
        worker_pass(clock)

    assert fake_vonage.accepted == Counter({ref: 1 for ref in refs})
    assert fake_vonage.attempts == Counter({ref: failed_attempts + 1 for ref in refs})
    for message in messages:
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("sent", failed_attempts + 1)
        assert (message.error_code, message.error_text, message.next_attempt_at) == ("", "", None)
        assert MessagePart.objects.filter(message=message, superseded=False).count() == 1
