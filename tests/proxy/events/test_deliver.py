"""Delivering events (DESIGN.md §11): signed, at least once, in order per conversation, backoff
for at least 24 hours; never in the way of an SMS."""

from __future__ import annotations

import json
from datetime import timedelta
from http import HTTPStatus

import pytest
import requests
import responses
from django.utils import timezone
from standardwebhooks import Webhook

from smsproxy.proxy.events.deliver import (
    GIVE_UP_AFTER,
    event_deliver,
    event_resend,
    events_deliver_due,
    retry_delay,
)
from smsproxy.proxy.events.record import EventType, event_record
from smsproxy.proxy.models import Conversation, Event
from tests.factories import ConversationFactory
from tests.proxy.events.conftest import EVENTS_URL, SECRET

pytestmark = pytest.mark.django_db


def event(conversation: Conversation | None = None, n: int = 0) -> Event:
    written = event_record(
        type=EventType.CONVERSATION_CLOSED, conversation=conversation, data={"n": n}
    )
    assert written is not None
    return written


def received(marketplace: responses.RequestsMock) -> list[dict]:
    return [json.loads(call.request.body or "") for call in marketplace.calls]


def due_now(*events: Event) -> None:
    Event.objects.filter(pk__in=[e.pk for e in events]).update(next_attempt_at=timezone.now())


def test_an_event_is_posted_signed_as_standard_webhooks_says(marketplace) -> None:
    marketplace.add(responses.POST, EVENTS_URL, status=HTTPStatus.NO_CONTENT)
    written = event(ConversationFactory.create())

    assert events_deliver_due().delivered == 1

    [call] = marketplace.calls
    headers = dict(call.request.headers)
    body = Webhook(SECRET).verify(call.request.body, headers)
    assert body["id"] == written.public_id == headers["webhook-id"]
    assert body["type"] == "conversation.closed" and body["data"] == {"n": 0}
    assert body["created_at"]
    written.refresh_from_db()
    assert written.status == Event.Status.DELIVERED and written.delivered_at is not None
    assert written.attempts == 1


def test_a_forged_signature_does_not_verify(marketplace) -> None:
    marketplace.add(responses.POST, EVENTS_URL)
    event()
    events_deliver_due()

    [call] = marketplace.calls
    other = Webhook("whsec_" + "b3RoZXItc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmctLS0=")
    with pytest.raises(Exception, match="signature"):
        other.verify(call.request.body, dict(call.request.headers))


def test_a_failed_try_is_retried_with_the_same_webhook_id(marketplace) -> None:
    marketplace.add(responses.POST, EVENTS_URL, status=HTTPStatus.INTERNAL_SERVER_ERROR)
    marketplace.add(responses.POST, EVENTS_URL, status=HTTPStatus.OK)
    written = event()

    assert events_deliver_due().failed == 1
    written.refresh_from_db()
    assert written.status == Event.Status.PENDING
    assert written.last_error.startswith("HTTP 500")
    assert written.next_attempt_at is not None and written.next_attempt_at > timezone.now()
    assert events_deliver_due().delivered == 0  # not due yet

    due_now(written)
    assert events_deliver_due().delivered == 1
    ids = [call.request.headers["webhook-id"] for call in marketplace.calls]
    assert ids == [written.public_id, written.public_id]


def test_a_conversations_later_events_wait_for_its_failing_first_one(marketplace) -> None:
    conversation = ConversationFactory.create()
    other_conversation = ConversationFactory.create()
    first, second = event(conversation, 1), event(conversation, 2)
    event(other_conversation, 3)
    failures_left = {1: 2}  # the first event fails twice, then its endpoint is back

    def answer(request):
        n = json.loads(request.body)["data"]["n"]
        if failures_left.get(n):
            failures_left[n] -= 1
            return (HTTPStatus.SERVICE_UNAVAILABLE, {}, "")
        return (HTTPStatus.OK, {}, "")

    marketplace.add_callback(responses.POST, EVENTS_URL, callback=answer)

    events_deliver_due()  # the first fails, the unrelated one goes, the second waits
    assert [body["data"]["n"] for body in received(marketplace)] == [1, 3]
    second.refresh_from_db()
    assert second.attempts == 0 and second.status == Event.Status.PENDING

    due_now(first)
    events_deliver_due()  # fails again: the second still waits
    due_now(first)
    events_deliver_due()  # delivered: the second is due from the next pass on
    events_deliver_due()
    assert [body["data"]["n"] for body in received(marketplace)] == [1, 3, 1, 1, 2]
    assert {e.status for e in Event.objects.all()} == {Event.Status.DELIVERED}


def test_the_backoff_retries_three_times_within_a_minute_then_grows_to_an_hour() -> None:
    delays = [retry_delay(attempts=n) for n in range(1, 20)]

    assert sum(delays[:3], timedelta()) <= timedelta(minutes=1)
    assert delays == sorted(delays)
    assert max(delays) == timedelta(hours=1)
    # Tries for 24 hours need at most that many: the give-up is by time, not by count.
    assert sum(delays, timedelta()) < GIVE_UP_AFTER


def test_an_event_is_given_up_after_24_hours_of_tries(marketplace) -> None:
    marketplace.add(responses.POST, EVENTS_URL, body=requests.ConnectionError("refused"))
    written = event()
    events_deliver_due()
    written.refresh_from_db()
    assert written.status == Event.Status.PENDING and "ConnectionError" in written.last_error

    # A try just inside the 24 hours is not the last.
    Event.objects.filter(pk=written.pk).update(
        first_attempt_at=timezone.now() - GIVE_UP_AFTER + timedelta(minutes=5),
        next_attempt_at=timezone.now(),
    )
    events_deliver_due()
    written.refresh_from_db()
    assert written.status == Event.Status.PENDING

    Event.objects.filter(pk=written.pk).update(
        first_attempt_at=timezone.now() - GIVE_UP_AFTER, next_attempt_at=timezone.now()
    )
    events_deliver_due()
    written.refresh_from_db()
    assert written.status == Event.Status.FAILED and written.next_attempt_at is None
    assert written.attempts == 3


def test_a_failed_event_holds_nothing_back_and_can_be_resent(marketplace) -> None:
    marketplace.add(responses.POST, EVENTS_URL)
    conversation = ConversationFactory.create()
    first, second = event(conversation, 1), event(conversation, 2)
    Event.objects.filter(pk=first.pk).update(status=Event.Status.FAILED, attempts=40)

    events_deliver_due()
    assert [body["data"]["n"] for body in received(marketplace)] == [2]

    event_resend(event=first)
    first.refresh_from_db()
    assert first.status == Event.Status.PENDING and first.attempts == 0
    events_deliver_due()
    assert [body["data"]["n"] for body in received(marketplace)] == [2, 1]
    second.refresh_from_db()
    assert second.status == Event.Status.DELIVERED


def test_a_claimed_event_is_not_sent_twice(marketplace) -> None:
    marketplace.add(responses.POST, EVENTS_URL)
    written = event()

    assert event_deliver(event_id=written.pk) is True
    assert event_deliver(event_id=written.pk) is None
    assert len(marketplace.calls) == 1


def test_nothing_is_sent_when_events_are_off(settings, mocked_responses) -> None:
    settings.PROXY_EVENTS_URL = EVENTS_URL
    settings.PROXY_EVENTS_SECRET = SECRET
    event()
    settings.PROXY_EVENTS_URL = ""

    assert events_deliver_due().delivered == 0
    assert not mocked_responses.calls
