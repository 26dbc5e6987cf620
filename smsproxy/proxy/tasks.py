"""Celery tasks of the outbox (used only when `CELERY_BROKER_URL` is set).

Tasks take an id and call the same services as the embedded worker. A task may run twice for
one message (a duplicate enqueue, the sweep, a redelivery after a worker died with the task
unacknowledged): the claim in `message_deliver` lets exactly one send through.

This module sits above the outbox: nothing in it imports this (`dispatch` enqueues delivery by
the task's name), and Celery finds it through `app.autodiscover_tasks()`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

# The project's app first: Celery is no longer loaded with Django, and a shared task used
# (`.delay`, patched in a test) before the app exists would bind to Celery's unconfigured default.
import smsproxy.celery  # noqa: F401
from smsproxy.common.heartbeat import OUTBOX_WORKER, heartbeat_record
from smsproxy.common.privacy import text_mask_numbers
from smsproxy.proxy.events import dispatch as events_dispatch
from smsproxy.proxy.events.deliver import event_next_due_at, events_deliver_due
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox import dispatch
from smsproxy.proxy.outbox.deliver import Outcome, message_deliver
from smsproxy.proxy.outbox.queue import outbox_redispatch
from smsproxy.proxy.services import sweep

logger = logging.getLogger(__name__)

# A retry due this soon gets a task of its own at its time; later ones wait for the beat.
EVENTS_SOON = timedelta(seconds=60)


@shared_task(name=dispatch.DELIVER_TASK, ignore_result=True)
def deliver_message(message_id: int) -> str:
    result = message_deliver(message_id=message_id)
    retried = result.outcome in (Outcome.RETRY, Outcome.DEFERRED)
    if retried and result.message and result.message.next_attempt_at:
        # Retry on time, ahead of the newly queued messages (`dispatch.RETRY_PRIORITY`); the
        # sweep would also find it, later.
        reply = result.message.purpose == Message.Purpose.OUT_OF_SESSION
        deliver_message.apply_async(
            args=(message_id,),
            eta=result.message.next_attempt_at,
            # A reply stays behind the forwards (rule 6).
            priority=dispatch.LOW_PRIORITY if reply else dispatch.RETRY_PRIORITY,
        )
    logger.info(
        "Message %s: %s %s",
        message_id,
        result.outcome,
        text_mask_numbers(result.detail),
        extra={"event": "send", "outcome": str(result.outcome), "message_id": message_id},
    )
    return str(result.outcome)


@shared_task(name="smsproxy.proxy.outbox_sweep", ignore_result=True)
def outbox_sweep() -> dict[str, Any]:
    """The periodic sweep (beat): everything the on-commit hand-off may have missed.

    Settles rows stuck in `sending`, joins concatenated SMS whose parts timed out, closes
    expired conversations, and re-enqueues due queued rows nobody picked up.
    """
    now = timezone.now()
    # /readyz reads it: beat, the broker and a worker of the default queue are alive.
    heartbeat_record(name=OUTBOX_WORKER, now=now)
    swept = sweep.outbox_sweep(now=now)
    for message in swept.recovered:
        if message.status == Message.Status.QUEUED:  # re-queued once: send it again now
            dispatch.message_dispatch(
                message_id=message.pk,
                low_priority=message.purpose == Message.Purpose.OUT_OF_SESSION,
            )
    redispatched = outbox_redispatch(now=now)
    summary = {
        "recovered": len(swept.recovered),
        "concat_flushed": len(swept.flushed),
        "expired": swept.expired,
        "redispatched": len(redispatched),
    }
    if any(summary.values()):
        logger.info("Outbox sweep: %s", summary)
    return summary


@shared_task(name=events_dispatch.DELIVER_EVENTS_TASK, ignore_result=True)
def deliver_events() -> dict[str, Any]:
    """Deliver a small batch of due events (routed to the `events` queue, never the SMS one).

    Comes back at once while a full batch was due, and on time for a retry due within the
    next minute (the first retries come seconds apart); later ones are found by the beat
    schedule, which runs this every 10 seconds. Duplicates are harmless (the claim).
    """
    result = events_deliver_due()
    if result.more:
        events_dispatch.events_dispatch()
    else:
        now = timezone.now()
        next_due = event_next_due_at()
        if next_due is not None and now < next_due <= now + EVENTS_SOON:
            events_dispatch.events_dispatch(eta=next_due)
    summary = {"delivered": result.delivered, "failed": result.failed}
    if result.delivered or result.failed:
        logger.info("Events: %s", summary)
    return summary
