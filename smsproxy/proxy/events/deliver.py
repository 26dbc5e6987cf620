"""Delivering events (DESIGN.md §11): at least once, in order per conversation, with backoff.

Order: an event is due only while no earlier event of its conversation is still pending, so
the marketplace receives a conversation's events in the order they happened (by first
successful delivery); an event given up on (`failed`) no longer holds the others back.

The claim is a lease: one conditional UPDATE moves the event's `next_attempt_at` CLAIM_LEASE
ahead and counts the attempt, so exactly one worker sends it, and one that dies meanwhile
leaves it due again once the lease ends (at least once). The status stays `pending` during the
send, which keeps the conversation's later events waiting.

Backoff: RETRY_DELAYS — the first three retries within a minute of the first try, then growing
to an hour between tries — for GIVE_UP_AFTER from the first try, then `failed`; staff resend
from the admin. A 2xx answer is success; anything else, a timeout or a connection error is
retried. Repeats carry the same `webhook-id`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from smsproxy.common.audit import audit_change
from smsproxy.proxy.events import dispatch
from smsproxy.proxy.events.payloads import datetime_data
from smsproxy.proxy.events.webhook import webhook_post
from smsproxy.proxy.models import Event

logger = logging.getLogger(__name__)

# Seconds after each failed try; the last repeats.
RETRY_DELAYS = (5, 15, 30, 120, 300, 900, 1800, 3600)
GIVE_UP_AFTER = timedelta(hours=24)
# (connect, read) seconds of one POST.
EVENT_TIMEOUT = (3.05, 10.0)
# Longer than a POST can take: a claimed event is due again after this.
CLAIM_LEASE = timedelta(seconds=60)
BATCH_SIZE = 20


@dataclass(frozen=True)
class EventsDelivered:
    delivered: int
    failed: int  # tries that failed (retried later, or given up)
    more: bool  # a full batch: more may be due now


def retry_delay(*, attempts: int) -> timedelta:
    """The wait after the `attempts`-th try failed."""
    return timedelta(seconds=RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1])


def _due_q(now: datetime) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def _earlier_pending() -> Exists:
    return Exists(
        Event.objects.filter(
            conversation_id=OuterRef("conversation_id"),
            status=Event.Status.PENDING,
            pk__lt=OuterRef("pk"),
        )
    )


def events_due(*, now: datetime) -> QuerySet[Event]:
    """Pending events due at `now` that no earlier pending event of their conversation holds
    back, oldest first."""
    return (
        Event.objects.filter(status=Event.Status.PENDING)
        .filter(_due_q(now))
        .exclude(_earlier_pending())
        .order_by("pk")
    )


def events_deliver_due(*, limit: int = BATCH_SIZE) -> EventsDelivered:
    """Deliver one small batch of due events (the dispatchers call this)."""
    if not settings.PROXY_EVENTS_URL:
        return EventsDelivered(0, 0, more=False)
    ids = list(events_due(now=timezone.now()).values_list("pk", flat=True)[:limit])
    delivered = failed = 0
    for event_id in ids:
        outcome = event_deliver(event_id=event_id)
        if outcome is True:
            delivered += 1
        elif outcome is False:
            failed += 1
    return EventsDelivered(delivered, failed, more=len(ids) == limit)


def event_next_due_at() -> datetime | None:
    """When the next pending event is due (for the Celery task to come back then)."""
    return (
        Event.objects.filter(status=Event.Status.PENDING, next_attempt_at__isnull=False)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )


def event_body(event: Event) -> str:
    return json.dumps(
        {
            "id": event.public_id,
            "type": event.type,
            "created_at": datetime_data(event.created_at),
            "data": event.data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def event_deliver(*, event_id: int) -> bool | None:
    """Send one due event: True delivered, False failed (retried later or given up), None not
    claimed (not due, held back by an earlier one, or another worker has it)."""
    now = timezone.now()
    claimed = (
        Event.objects.filter(pk=event_id, status=Event.Status.PENDING)
        .filter(_due_q(now))
        .exclude(_earlier_pending())
        .update(
            next_attempt_at=now + CLAIM_LEASE,
            attempts=F("attempts") + 1,
            first_attempt_at=Coalesce(F("first_attempt_at"), now),
        )
    )
    if not claimed:
        return None
    event = Event.objects.get(pk=event_id)
    try:
        response = webhook_post(
            url=settings.PROXY_EVENTS_URL,
            message_id=event.public_id,
            body=event_body(event),
            timeout=EVENT_TIMEOUT,  # type: ignore[arg-type]
        )
    except requests.RequestException as error:
        return _record_failure(event, error=f"{type(error).__name__}: {error}"[:500])
    if 200 <= response.status_code < 300:
        Event.objects.filter(pk=event.pk, status=Event.Status.PENDING).update(
            status=Event.Status.DELIVERED,
            delivered_at=timezone.now(),
            next_attempt_at=None,
            last_error="",
        )
        return True
    return _record_failure(event, error=f"HTTP {response.status_code}: {response.text[:300]}")


def _record_failure(event: Event, *, error: str) -> bool:
    now = timezone.now()
    started = event.first_attempt_at or now
    if now - started >= GIVE_UP_AFTER:
        Event.objects.filter(pk=event.pk, status=Event.Status.PENDING).update(
            status=Event.Status.FAILED, next_attempt_at=None, last_error=error
        )
        logger.error(
            "Event %s (%s) given up after %s attempts: %s",
            event.public_id,
            event.type,
            event.attempts,
            error,
        )
        return False
    Event.objects.filter(pk=event.pk, status=Event.Status.PENDING).update(
        next_attempt_at=now + retry_delay(attempts=event.attempts), last_error=error
    )
    logger.warning(
        "Event %s (%s) attempt %s failed: %s", event.public_id, event.type, event.attempts, error
    )
    return False


def event_resend(*, event: Event, actor: AbstractBaseUser | None = None) -> Event:
    """Staff's resend: pending again, due now, with a fresh 24 hours of retries.

    Resent by staff (`actor`): written to the event's admin history in the same transaction.
    """
    with transaction.atomic():
        locked = Event.objects.select_for_update().get(pk=event.pk)
        was, attempts = locked.status, locked.attempts
        locked.status = Event.Status.PENDING
        locked.attempts = 0
        locked.next_attempt_at = None
        locked.first_attempt_at = None
        locked.delivered_at = None
        locked.last_error = ""
        locked.save(
            update_fields=[
                "status",
                "attempts",
                "next_attempt_at",
                "first_attempt_at",
                "delivered_at",
                "last_error",
            ]
        )
        if actor is not None:
            audit_change(
                actor=actor,
                obj=locked,
                change=f"Resent: status {was} → {locked.status}, attempts {attempts} → "
                f"{locked.attempts}; due now.",
            )
        transaction.on_commit(dispatch.events_dispatch, robust=True)
    return locked
