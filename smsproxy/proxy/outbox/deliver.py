"""Sending one queued outbound SMS: the delivery function both dispatchers call (DESIGN.md §6).

`message_deliver` claims the row (`claim`: exactly one worker gets it, and the claim commits
before the HTTP call), waits for the shared rate limit, sends, and writes the result in a
second, short transaction: no database transaction is ever held open while Vonage is being
called.

Outcomes:
- Vonage accepted every part → `sent`, with one MessagePart per part (its message id and price)
  for the receipts.
- Transient failure (status 1 throttled, 5 internal error, HTTP 429/5xx, timeout, connection)
  → back to `queued` with `next_attempt_at` after a jittered exponential backoff
  (RETRY_BASE_DELAY doubling up to RETRY_MAX_DELAY), until the row's `max_attempts` is used up
  → `failed` with the last error. Parts Vonage accepted before the failure are kept but marked
  superseded: the whole text is sent again, so the recipient gets it complete.
- Permanent failure (any other status: invalid number, no credit, barred, ...) → `failed` with
  Vonage's code and text.
- A sender that is not one of our active numbers (VirtualNumber) → `failed` with code
  `sender_not_proxy`, nothing sent: rule 9's last line of defence, and a released number may
  already be someone else's.
- A receipt already named a current part of the message (an earlier attempt that ended in a
  timeout or a dropped connection did reach Vonage) → `sent` without calling Vonage again, its
  status following the receipts: Vonage has no idempotency key, so a new send would deliver
  the text twice.
- An unexpected exception (a bug, not an answer from Vonage) → `failed` with code
  `internal_error`: it may have happened after Vonage accepted the text, so it is not retried
  automatically; staff can retry it from the admin once the cause is fixed.

A row left in `sending` by a killed worker (decision): Vonage has no idempotency key, so after
a crash between the HTTP call and the write of its result nobody knows whether the SMS went
out. After STALE_SENDING_AFTER (far longer than any send can take, the SDK's own resends
included) the sweep of either dispatcher (`outbox_recover_stale`) decides:
- the row has parts (a receipt arrived and named it): Vonage accepted it → `sent`;
- otherwise it is re-queued once, with error code `interrupted` (at-least-once delivery): a
  forwarded text that silently vanishes breaks the conversation and the users' trust in it,
  while a rare duplicate of one text is harmless. The crash window is milliseconds wide, so a
  duplicate is rare;
- a row interrupted again right after such a re-queue (error code still `interrupted`), or
  with no attempts left, is `failed` with code `interrupted`: a message that keeps killing its
  worker must not loop, and staff see it in the admin.
A live worker is never mistaken for a dead one: the claim's clock restarts once the rate
limiter lets the send go (a long wait for a token is not a crash), and a worker whose row the
sweep took back meanwhile does not send it; a late result of such a worker never overwrites
the outcome of the attempt that owns the row now, except a success (Vonage took the text).
A wait shorter than CLAIM_RESTAMP_AFTER (1 s) skips that restart and its check: the sweep takes
a row back only STALE_SENDING_AFTER (300 times as long) after its claim, so it cannot have
taken it yet, and the send keeps all but that second of its window.

Round trips (they bound a worker's rate: SMS_RATE_LIMIT may be raised far above 25/s): a sent
message costs the claim — one UPDATE … RETURNING that also reads the fields to send and
whether the sender is ours — then one transaction: the UPDATE to `sent` (which takes the row
lock receipts take too), one SELECT of the parts already there (a receipt may have come first)
and one INSERT of the new ones; the message's status is derived from the parts read, without
reading them again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from smsproxy.gateway import get_provider
from smsproxy.gateway.base import ProviderError, SendResult, SentPart
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.parts import message_parts_store, message_status_refresh
from smsproxy.proxy.outbox.ratelimit import rate_limiter_get

logger = logging.getLogger(__name__)

RETRY_BASE_DELAY = timedelta(seconds=20)
RETRY_MAX_DELAY = timedelta(minutes=30)
STALE_SENDING_AFTER = timedelta(minutes=5)
# A wait for a rate-limit token (counted from the claim) at least this long restarts the claim's
# clock before the send; see the module docstring.
CLAIM_RESTAMP_AFTER = timedelta(seconds=1)
INTERRUPTED = "interrupted"
INTERNAL_ERROR = "internal_error"
SENDER_NOT_PROXY = "sender_not_proxy"


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"  # not claimed: not queued, not due, or another worker has it


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    message: Message | None = None
    detail: str = ""


def receipt_callback_url() -> str:
    return settings.PUBLIC_BASE_URL + reverse("vonage-delivery-receipt")


def retry_delay(*, attempts: int) -> timedelta:
    """Backoff before attempt `attempts + 1`: exponential with jitter, capped.

    The jitter ("equal jitter": between half and all of the exponential step) spreads the
    retries of messages that failed together, e.g. throttled in one burst.
    """
    step = RETRY_BASE_DELAY * (2 ** max(0, attempts - 1))
    ceiling = min(step, RETRY_MAX_DELAY).total_seconds()
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def message_deliver(*, message_id: int) -> DeliveryResult:
    """Send one queued outbound message if it is due and nobody else is sending it."""
    claim = message_claim(message_id=message_id, now=timezone.now())
    if claim is None:
        return DeliveryResult(Outcome.SKIPPED, detail="not due, or claimed by another worker")
    message = claim.message
    if not claim.sender_is_ours:
        # Rule 9, enforced where every SMS leaves: only our own numbers ever send, so no bug
        # upstream can put a participant's real number in front of the other participant.
        return _record_failure(
            message_id=message_id,
            code=SENDER_NOT_PROXY,
            text=f"Refused to send from {message.sender}: not one of our active proxy numbers.",
        )
    if claim.accepted_before:
        # Vonage has no idempotency key: sending again would deliver the text twice.
        return _record_sent(message=message, result=SendResult(parts=()))
    try:
        rate_limiter_get().acquire()
    except Exception:
        # The limiter's store (Redis) is unreachable: give the claim back untouched.
        Message.objects.filter(pk=message_id, status=Message.Status.SENDING).update(
            status=Message.Status.QUEUED,
            attempts=F("attempts") - 1,
            claimed_at=None,
            updated_at=timezone.now(),
        )
        raise
    # The wait for a token can be long (a low SMS_RATE_LIMIT shared by many workers): restart
    # the stale clock now, and check that the sweep did not take the row back meanwhile — then
    # it is someone else's to send, and sending it here too would send it twice. Measured on
    # the clock the sweep reads; a shorter wait needs neither (module docstring).
    restamped_at = timezone.now()
    if message.claimed_at is None or restamped_at - message.claimed_at >= CLAIM_RESTAMP_AFTER:
        if not Message.objects.filter(
            pk=message_id, status=Message.Status.SENDING, claimed_at=message.claimed_at
        ).update(claimed_at=restamped_at):
            return DeliveryResult(
                Outcome.SKIPPED,
                detail="taken back by the stale sweep while waiting for the limiter",
            )
        message.claimed_at = restamped_at
    try:
        result = get_provider().send_sms(
            sender=message.sender,
            recipient=message.recipient,
            text=message.text,
            client_ref=str(message.pk),
            callback_url=receipt_callback_url(),
        )
    except ProviderError as error:
        if error.transient:
            return _record_transient_failure(message_id=message_id, error=error)
        return _record_failure(
            message_id=message_id,
            code=error.code or "error",
            text=error.text,
            accepted_parts=error.accepted_parts,
        )
    except Exception as error:
        logger.exception("Sending message %s failed unexpectedly.", message_id)
        return _record_failure(
            message_id=message_id, code=INTERNAL_ERROR, text=f"{type(error).__name__}: {error}"
        )
    return _record_sent(message=message, result=result)


def _record_sent(*, message: Message, result: SendResult) -> DeliveryResult:
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
        if not Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            **sent_fields
        ):
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


def _record_transient_failure(*, message_id: int, error: ProviderError) -> DeliveryResult:
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != Message.Status.SENDING:
            logger.warning("Message %s was %s when its send failed.", message_id, message.status)
            return DeliveryResult(Outcome.SKIPPED, message, f"no longer sending: {error}")
        if message.attempts >= message.max_attempts:
            if error.accepted_parts:
                message_parts_store(message=message, parts=error.accepted_parts)
            _fail(
                message,
                code=error.code or "error",
                text=f"{error.text} (gave up after {message.attempts} attempts)",
            )
            return DeliveryResult(Outcome.FAILED, message, message.error_text)
        if error.accepted_parts:
            message_parts_store(message=message, parts=error.accepted_parts, superseded=True)
        delay = retry_delay(attempts=message.attempts)
        _requeue(message, at=timezone.now() + delay, code=error.code, text=error.text)
    return DeliveryResult(
        Outcome.RETRY,
        message,
        f"{error.text} (code {error.code or '-'}); attempt {message.attempts} of "
        f"{message.max_attempts}, next in {delay.total_seconds():.0f}s",
    )


def _record_failure(
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
                "Message %s was %s when its send failed (%s: %s).",
                message_id,
                message.status,
                code,
                text,
            )
            return DeliveryResult(Outcome.SKIPPED, message, f"no longer sending: {text}")
        if accepted_parts:
            message_parts_store(message=message, parts=accepted_parts)
        _fail(message, code=code, text=text)
    return DeliveryResult(Outcome.FAILED, message, f"{text} (code {code})")


def _requeue(message: Message, *, at: datetime, code: str, text: str) -> None:
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
        ]
    )


def _fail(message: Message, *, code: str, text: str) -> None:
    message.status = Message.Status.FAILED
    message.error_code = code[:32]
    message.error_text = text
    message.next_attempt_at = None
    message.save(
        update_fields=["status", "error_code", "error_text", "next_attempt_at", "updated_at"]
    )


def outbox_recover_stale(*, now: datetime | None = None, limit: int = 500) -> list[Message]:
    """Settle rows left in `sending` by a dead worker (policy in the module docstring)."""
    now = now or timezone.now()
    stale = Q(status=Message.Status.SENDING) & (
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - STALE_SENDING_AFTER)
    )
    ids = list(Message.objects.filter(stale).order_by("pk").values_list("pk", flat=True)[:limit])
    settled = []
    for message_id in ids:
        with transaction.atomic():
            message = Message.objects.select_for_update().filter(stale, pk=message_id).first()
            if message is None:
                continue
            if message.parts.filter(superseded=False).exists():
                message.status = Message.Status.SENT
                message.sent_at = message.claimed_at or now
                message.save(update_fields=["status", "sent_at", "updated_at"])
                message_status_refresh(message=message)
                logger.warning(
                    "Message %s was stuck in sending with receipts: marked sent.", message.pk
                )
            elif message.error_code == INTERRUPTED or message.attempts >= message.max_attempts:
                _fail(
                    message,
                    code=INTERRUPTED,
                    text="The worker sending this message stopped before recording the result, "
                    "again: it may or may not have been sent. Not retried automatically.",
                )
                logger.error("Message %s interrupted again while sending: failed.", message.pk)
            else:
                _requeue(
                    message,
                    at=now,
                    code=INTERRUPTED,
                    text="The worker sending this message stopped before recording the result; "
                    "sent again (the recipient may get it twice).",
                )
                logger.warning("Message %s was stuck in sending: re-queued once.", message.pk)
            settled.append(message)
    return settled
