"""Writing the outcome of one send attempt (policy in `deliver`'s docstring).

Each outcome is written in one short transaction that takes the row lock first, as every writer
of parts does. The outcome is known when these run — Vonage answered, or did not — so a write
that fails on a database blip (`OperationalError`, `InterfaceError`: a restart, a failover, a
dropped connection) is tried again a few times on a fresh connection (`outcome_write`): giving
up would leave the row in `sending`, and the stale sweep would send an accepted text twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from django.db import InterfaceError, OperationalError, connections, router, transaction
from django.db.models import F, Field
from django.utils import timezone

from smsproxy.gateway.base import ProviderError, SendResult, SentPart
from smsproxy.proxy.events.record import event_message_status
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.parts import message_parts_store, message_status_refresh

logger = logging.getLogger(__name__)

RETRY_BASE_DELAY = timedelta(seconds=20)
RETRY_MAX_DELAY = timedelta(minutes=30)
# A throttled send is tried again about this long after (jittered by half either way).
THROTTLE_RETRY_DELAY = timedelta(seconds=1)
# Pauses between tries of an outcome write that failed on a database error (7.5 s in all):
# a database restart or failover, not an outage; after that the row stays `sending` for the
# stale sweep (the remaining crash window, see `deliver`).
WRITE_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
_sleep = time.sleep  # replaced by tests


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    # The sending number is at SMS_RATE_LIMIT_PER_SENDER: due again when its token is there.
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"  # not claimed: not queued, not due, or another worker has it
    BLOCKED = "blocked"  # the intercept hook refused the forward


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    message: Message | None = None
    detail: str = ""


def retry_delay(*, attempts: int) -> timedelta:
    """Backoff before attempt `attempts + 1`: exponential with jitter, capped.

    The jitter ("equal jitter": between half and all of the exponential step) spreads the
    retries of messages that failed together.
    """
    step = RETRY_BASE_DELAY * (2 ** max(0, attempts - 1))
    ceiling = min(step, RETRY_MAX_DELAY).total_seconds()
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def throttle_delay() -> timedelta:
    """About THROTTLE_RETRY_DELAY, jittered so that a throttled burst does not come back as one."""
    seconds = THROTTLE_RETRY_DELAY.total_seconds()
    return timedelta(seconds=random.uniform(seconds / 2, seconds * 1.5))


def outcome_write(write: Callable[[], DeliveryResult]) -> DeliveryResult:
    """Run `write`, again on a fresh connection after each database error, a bounded number of
    times; the last error propagates (the row is left to the stale sweep)."""
    for delay in (*WRITE_RETRY_DELAYS, None):
        try:
            return write()
        except (OperationalError, InterfaceError) as error:
            if delay is None:
                raise
            logger.warning(
                "Writing a delivery outcome failed (%s: %s); trying again in %gs.",
                type(error).__name__,
                error,
                delay,
            )
            connection = connections[router.db_for_write(Message)]
            if not connection.in_atomic_block:
                # A broken connection stays broken: the next try must open a new one. (Inside
                # a caller's transaction the failed savepoint was rolled back; that is all.)
                connection.close()
            _sleep(delay)
    raise AssertionError("unreachable")


def record_sent(*, message: Message, result: SendResult) -> DeliveryResult:
    now = timezone.now()
    sent_fields = {
        "status": Message.Status.SENT,
        "sent_at": now,
        "price": result.price,
        "next_attempt_at": None,
        "error_code": "",
        "error_text": "",
        "updated_at": now,
    }
    with transaction.atomic():
        # The UPDATE takes the row lock first, as every writer of parts does.
        if not _sending_update(message_id=message.pk, fields=sent_fields):
            # The stale sweep gave up on this send meanwhile; Vonage did take it, and that wins.
            status = (
                Message.objects.select_for_update()
                .values_list("status", flat=True)
                .get(pk=message.pk)
            )
            logger.warning("Message %s was %s when its send succeeded.", message.pk, status)
            Message.objects.filter(pk=message.pk).update(**sent_fields)
        for name, value in sent_fields.items():
            setattr(message, name, value)
        event_message_status(message_id=message.pk)
        current = message_parts_store(message=message, parts=result.parts)
        message_status_refresh(message=message, parts=current)
    count = len(result.parts)
    if not count:
        return DeliveryResult(
            Outcome.SENT,
            message,
            "accepted by an earlier attempt (a receipt named it): not sent again",
        )
    return DeliveryResult(
        Outcome.SENT,
        message,
        f"{count} part{'s' if count != 1 else ''}: {', '.join(result.message_ids)}",
    )


def _sending_update(*, message_id: int, fields: dict[str, Any]) -> int:
    """`Message.objects.filter(pk=message_id, status=SENDING).update(**fields)` with its SQL
    built once per set of fields: the ORM compiled that UPDATE again for every message sent,
    which cost more CPU than the statement itself. Returns the rows updated (0 or 1)."""
    connection = connections[router.db_for_write(Message)]
    sql, columns = _sending_update_sql(connection.vendor, tuple(fields))
    params = [field.get_db_prep_save(fields[field.name], connection) for field in columns]
    params += [message_id, Message.Status.SENDING.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


@cache
def _sending_update_sql(
    vendor: str, names: tuple[str, ...]
) -> tuple[str, list[Field[object, object]]]:
    connection = connections[router.db_for_write(Message)]
    quote = connection.ops.quote_name
    meta = Message._meta
    columns = [field for name in names if isinstance(field := meta.get_field(name), Field)]
    # Only the model's own table and column names are interpolated; the values are parameters.
    sql = "UPDATE {} SET {} WHERE {} = %s AND {} = %s".format(  # noqa: S608
        quote(meta.db_table),
        ", ".join(f"{quote(str(field.column))} = %s" for field in columns),
        quote(str(meta.pk.column)),
        quote(str(meta.get_field("status").column)),
    )
    return sql, columns


def record_throttled(*, message_id: int, error: ProviderError) -> DeliveryResult:
    """Vonage throttled the send: due again in about a second, the attempt given back."""
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != Message.Status.SENDING:
            logger.warning("Message %s was %s when it was throttled.", message_id, message.status)
            return DeliveryResult(Outcome.SKIPPED, message, f"no longer sending: {error.text}")
        if error.accepted_parts:
            message_parts_store(message=message, parts=error.accepted_parts, superseded=True)
        delay = throttle_delay()
        message.attempts = max(0, message.attempts - 1)
        requeue(
            message,
            at=timezone.now() + delay,
            code=error.code,
            text=error.text,
            extra_fields=("attempts",),
        )
    return DeliveryResult(
        Outcome.RETRY,
        message,
        f"throttled: {error.text} (code {error.code or '-'}); attempt not counted, "
        f"next in {delay.total_seconds():.1f}s",
    )


def record_sender_busy(*, message: Message, wait: float) -> DeliveryResult:
    """The sending number's own rate limit holds the claimed `message` back: due again in
    `wait` seconds, the attempt given back, nothing else changed (one statement: this is not
    a failure, and it happens to many messages of a busy pool)."""
    now = timezone.now()
    due = now + timedelta(seconds=wait)
    requeued = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED,
        attempts=F("attempts") - 1,
        claimed_at=None,
        next_attempt_at=due,
        updated_at=now,
    )
    if not requeued:
        return DeliveryResult(Outcome.SKIPPED, message, "no longer sending")
    message.status, message.attempts = Message.Status.QUEUED, message.attempts - 1
    message.claimed_at, message.next_attempt_at, message.updated_at = None, due, now
    return DeliveryResult(
        Outcome.DEFERRED,
        message,
        f"the sending number is at SMS_RATE_LIMIT_PER_SENDER; due again in {wait:.2f}s",
    )


def record_transient_failure(*, message_id: int, error: ProviderError) -> DeliveryResult:
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != Message.Status.SENDING:
            logger.warning("Message %s was %s when its send failed.", message_id, message.status)
            return DeliveryResult(Outcome.SKIPPED, message, f"no longer sending: {error}")
        if message.attempts >= message.max_attempts:
            if error.accepted_parts:
                message_parts_store(message=message, parts=error.accepted_parts)
            fail(
                message,
                code=error.code or "error",
                text=f"{error.text} (gave up after {message.attempts} attempts)",
            )
            return DeliveryResult(Outcome.FAILED, message, message.error_text)
        if error.accepted_parts:
            message_parts_store(message=message, parts=error.accepted_parts, superseded=True)
        delay = retry_delay(attempts=message.attempts)
        requeue(message, at=timezone.now() + delay, code=error.code, text=error.text)
    return DeliveryResult(
        Outcome.RETRY,
        message,
        f"{error.text} (code {error.code or '-'}); attempt {message.attempts} of "
        f"{message.max_attempts}, next in {delay.total_seconds():.0f}s",
    )


def record_failure(
    *, message_id: int, code: str, text: str, accepted_parts: tuple[SentPart, ...] = ()
) -> DeliveryResult:
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != Message.Status.SENDING:
            # The stale sweep took the row back meanwhile and another attempt owns it now (it
            # may even have been sent): this late failure must not overwrite that outcome.
            if accepted_parts:
                message_parts_store(message=message, parts=accepted_parts, superseded=True)
            logger.warning(
                "Message %s was %s when its send failed (%s).", message_id, message.status, code
            )
            return DeliveryResult(Outcome.SKIPPED, message, f"no longer sending: {text}")
        if accepted_parts:
            message_parts_store(message=message, parts=accepted_parts)
        fail(message, code=code, text=text)
    return DeliveryResult(Outcome.FAILED, message, f"{text} (code {code})")


def requeue(
    message: Message,
    *,
    at: datetime,
    code: str,
    text: str,
    extra_fields: tuple[str, ...] = (),
) -> None:
    """Give a claimed row back to the queue, due at `at`, with the error that sent it back."""
    message.status = Message.Status.QUEUED
    message.next_attempt_at = at
    message.claimed_at = None
    message.error_code = code[:32]
    message.error_text = text
    message.save(
        update_fields=[
            "status",
            "next_attempt_at",
            "claimed_at",
            "error_code",
            "error_text",
            "updated_at",
            *extra_fields,
        ]
    )


def fail(message: Message, *, code: str, text: str) -> None:
    message.status = Message.Status.FAILED
    message.error_code = code[:32]
    message.error_text = text
    message.next_attempt_at = None
    message.save(
        update_fields=["status", "error_code", "error_text", "next_attempt_at", "updated_at"]
    )
    event_message_status(message_id=message.pk)
