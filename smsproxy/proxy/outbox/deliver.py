"""Sending one queued outbound SMS: the delivery function both dispatchers call (DESIGN.md §6).

`message_deliver` claims the row (`claim`: exactly one worker gets it, and the claim commits
before the HTTP call), waits for the shared rate limit, sends, and writes the result in a
second, short transaction: no database transaction is ever held open while Vonage is being
called.

Outcomes:
- Vonage accepted every part → `sent`, with one MessagePart per part (its message id and price)
  for the receipts.
- The sending number is at SMS_RATE_LIMIT_PER_SENDER (its own bucket, not the shared one, is
  empty) → back to `queued` at once, due when its token is there (with Celery, when the slot the
  shared limiter reserved for it is), the attempt given back, and nothing sent: the worker goes
  on with other numbers' messages instead of sleeping (`ratelimit`).
- Throttled (status 1, HTTP 429) → back to `queued`, due again in about a second
  (THROTTLE_RETRY_DELAY, jittered), the attempt given back: throttling is not a failure, so no
  throttle however long fails a message. The limiter is told, and slows the shared rate down
  (AIMD, see `ratelimit`).
- Transient failure (status 5 internal error, HTTP 5xx, timeout, connection)
  → back to `queued` with `next_attempt_at` after a jittered exponential backoff
  (RETRY_BASE_DELAY doubling up to RETRY_MAX_DELAY), until the row's `max_attempts` is used up
  → `failed` with the last error. Parts Vonage accepted before the failure (or the throttle)
  are kept but marked superseded: the whole text is sent again, so the recipient gets it
  complete.
- Permanent failure (any other status: invalid number, no credit, barred, ...) → `failed` with
  Vonage's code and text.
- A sender that is not one of our active numbers (VirtualNumber) → `failed` with code
  `sender_not_proxy`, nothing sent: rule 9's last line of defence, and a released number may
  already be someone else's.
- A recipient no phone can take an SMS on (premium, toll-free, landline, non-geographic such as
  +881/+882: `phone_receives_sms`) → `failed` with code `recipient_not_mobile`, nothing sent:
  the last line of defence against texting numbers that cost us or reach nobody.
- A receipt already named a current part of the message (an earlier attempt that ended in a
  timeout or a dropped connection did reach Vonage) → `sent` without calling Vonage again, its
  status following the receipts: Vonage has no idempotency key, so a new send would deliver
  the text twice.
- An unexpected exception (a bug, not an answer from Vonage) → `failed` with code
  `internal_error`: it may have happened after Vonage accepted the text, so it is not retried
  automatically; staff can retry it from the admin once the cause is fixed.

Writing the outcome: once Vonage has answered, the outcome is known; a database error while
writing it (a restart, a failover) is retried on a fresh connection for about 7.5 s
(`record.outcome_write`), so a blip does not leave an accepted text in `sending` to be sent
again.

The remaining crash window: Vonage has no idempotency key, so if the worker dies (killed,
host lost) between the HTTP call and the write of its result, or the database stays down
longer than those retries, nobody knows whether the SMS went out, and the row stays `sending`.
After OUTBOX_STALE_SENDING_AFTER (a setting, 300 s by default: far longer than any send can
take, the SDK's own resends included) the sweep of either dispatcher (`stale.outbox_recover_stale`)
decides:
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
a row back only OUTBOX_STALE_SENDING_AFTER (at least 60 s) after its claim, so it cannot have
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
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from smsproxy.common.metrics import NO_STATUS, SENDS, THROTTLES
from smsproxy.common.phone import phone_receives_sms
from smsproxy.common.privacy import mask_number
from smsproxy.gateway import get_provider
from smsproxy.gateway.base import ProviderError, SendResult
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.intercept import forward_intercept
from smsproxy.proxy.outbox.ratelimit import RateLimiter, SenderBusy, rate_limiter_get
from smsproxy.proxy.outbox.record import (
    DeliveryResult,
    Outcome,
    outcome_write,
    record_failure,
    record_sender_busy,
    record_sent,
    record_throttled,
    record_transient_failure,
)

logger = logging.getLogger(__name__)

# A wait for a rate-limit token (counted from the claim) at least this long restarts the claim's
# clock before the send; see the module docstring.
CLAIM_RESTAMP_AFTER = timedelta(seconds=1)
INTERNAL_ERROR = "internal_error"
SENDER_NOT_PROXY = "sender_not_proxy"
RECIPIENT_NOT_MOBILE = "recipient_not_mobile"
# Vonage's SMS status for "throttled"; the HTTP API answers 429 instead.
THROTTLED_STATUS = "1"
# Vonage's SMS status for "accepted".
ACCEPTED_STATUS = "0"

__all__ = ["DeliveryResult", "Outcome", "message_deliver", "receipt_callback_url"]


def receipt_callback_url() -> str:
    return settings.PUBLIC_BASE_URL + reverse("vonage-delivery-receipt")


def is_throttled(error: ProviderError) -> bool:
    if error.http_status is not None:
        return error.http_status == 429
    return error.code == THROTTLED_STATUS


def message_deliver(*, message_id: int) -> DeliveryResult:
    """Send one queued outbound message if it is due and nobody else is sending it."""
    result, status = _message_deliver(message_id=message_id)
    SENDS.labels(outcome=result.outcome, status=status).inc()
    return result


def vonage_status(error: ProviderError) -> str:
    """The status Vonage answered a failed send with (its SMS status, else the HTTP code)."""
    if error.code:
        return error.code
    return str(error.http_status) if error.http_status is not None else NO_STATUS


def _message_deliver(*, message_id: int) -> tuple[DeliveryResult, str]:
    """The result, and Vonage's status for the metrics (NO_STATUS when it was not asked)."""
    claim = message_claim(message_id=message_id, now=timezone.now())
    if claim is None:
        return DeliveryResult(
            Outcome.SKIPPED, detail="not due, or claimed by another worker"
        ), NO_STATUS
    message = claim.message
    if not claim.sender_is_ours:
        # Rule 9, enforced where every SMS leaves: only our own numbers ever send, so no bug
        # upstream can put a participant's real number in front of the other participant.
        return outcome_write(
            lambda: record_failure(
                message_id=message_id,
                code=SENDER_NOT_PROXY,
                text=f"Refused to send from {mask_number(message.sender)}: not one of our "
                "active proxy numbers.",
            )
        ), NO_STATUS
    if not phone_receives_sms(message.recipient):
        # Premium, toll-free, landline and non-geographic numbers: whatever queued this text
        # (rule 6's replies above all, where the sender picks the number), it must not go out.
        return outcome_write(
            lambda: record_failure(
                message_id=message_id,
                code=RECIPIENT_NOT_MOBILE,
                text=f"Refused to send to {mask_number(message.recipient)}: not a number that "
                "receives SMS (premium, toll-free, landline or non-geographic).",
            )
        ), NO_STATUS
    if claim.accepted_before:
        # Vonage has no idempotency key: sending again would deliver the text twice.
        return outcome_write(
            lambda: record_sent(message=message, result=SendResult(parts=()))
        ), NO_STATUS
    # The marketplace's verdict on a forward (DESIGN.md §11), before it takes a send token.
    intercepted = forward_intercept(message=message)
    if intercepted is not None:
        return intercepted, NO_STATUS
    limiter = rate_limiter_get()
    try:
        limiter.acquire(message.sender, defer_busy_sender=True, ticket=str(message.pk))
    except SenderBusy as busy:
        # Sleeping here would hold every other number's messages behind this one's cap.
        return outcome_write(
            partial(record_sender_busy, message=message, wait=busy.wait)
        ), NO_STATUS
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
            ), NO_STATUS
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
        status = vonage_status(error)
        if is_throttled(error):
            THROTTLES.inc()
            outcome = outcome_write(partial(record_throttled, message_id=message_id, error=error))
            _slow_down(limiter)
            return outcome, status
        if error.transient:
            return outcome_write(
                partial(record_transient_failure, message_id=message_id, error=error)
            ), status
        return outcome_write(
            partial(
                record_failure,
                message_id=message_id,
                code=error.code or "error",
                text=error.text,
                accepted_parts=error.accepted_parts,
            )
        ), status
    except Exception as error:
        logger.exception("Sending message %s failed unexpectedly.", message_id)
        return outcome_write(
            partial(
                record_failure,
                message_id=message_id,
                code=INTERNAL_ERROR,
                text=f"{type(error).__name__}: {error}",
            )
        ), NO_STATUS
    return outcome_write(lambda: record_sent(message=message, result=result)), ACCEPTED_STATUS


def _slow_down(limiter: RateLimiter) -> None:
    try:
        limiter.throttled()
    except Exception:
        # The limiter's store is unreachable: the next acquire will say so; the row is queued.
        logger.warning("Could not lower the shared send rate after a throttle.", exc_info=True)
