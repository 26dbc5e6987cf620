"""The intercept hook before a forward is sent (DESIGN.md §11), in the delivery worker.

`forward_intercept` runs after the claim, before the rate limiter: the marketplace's verdict
on the inbound text decides whether the claimed forward goes out, with which text, or not at
all. The forward's `intercept` field keeps what happened (the message log shows it), and a
verdict is asked for once: a retry after a Vonage error does not ask again, a held forward
does.
- passed / replaced: sent (a replacement redacted again with PROXY_REDACT_NUMBERS);
- blocked (403): the forward and the inbound text both `blocked`, a `message.blocked` event;
- the hook unavailable: PROXY_INTERCEPT_FAILURE `forward` sends it (`error_forwarded`);
  `hold` gives the forward back to the queue with the outbox's backoff (`held`), asked again
  on its next attempt, and `failed` (code `intercept_unavailable`) once its attempts are used.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from smsproxy.common.phone import phone_region
from smsproxy.common.redaction import text_redact_numbers
from smsproxy.proxy.events.intercept import Verdict, intercept_ask
from smsproxy.proxy.events.record import EventType, event_message
from smsproxy.proxy.models import Message, Participant
from smsproxy.proxy.outbox.record import (
    DeliveryResult,
    Outcome,
    fail,
    outcome_write,
    requeue,
    retry_delay,
)

logger = logging.getLogger(__name__)

BLOCKED = "blocked"
INTERCEPT_UNAVAILABLE = "intercept_unavailable"
# Verdicts that stand for the forward's later attempts.
_DECIDED = (
    Message.Intercept.PASSED,
    Message.Intercept.REPLACED,
    Message.Intercept.ERROR_FORWARDED,
)


def forward_intercept(*, message: Message) -> DeliveryResult | None:
    """Ask the hook about a claimed forward: None to send it (`message.text` may have been
    replaced), else the result that ends this attempt (blocked, held)."""
    if (
        not settings.PROXY_INTERCEPT_URL
        or message.forwarded_from_id is None
        or message.intercept in _DECIDED
    ):
        return None
    inbound = Message.objects.select_related("conversation").get(pk=message.forwarded_from_id)
    conversation = inbound.conversation
    if conversation is None:
        return None
    name = (
        Participant.objects.filter(conversation_id=conversation.pk, real_number=inbound.sender)
        .values_list("name", flat=True)
        .first()
    )
    answer = intercept_ask(conversation=conversation, sender_name=name or "", text=inbound.text)
    if answer.verdict == Verdict.BLOCK:
        return outcome_write(lambda: _record_blocked(message_id=message.pk, inbound=inbound))
    if answer.verdict == Verdict.UNAVAILABLE and settings.PROXY_INTERCEPT_FAILURE == "hold":
        return outcome_write(lambda: _record_held(message_id=message.pk, detail=answer.detail))
    fields: dict[str, str] = {}
    if answer.verdict == Verdict.REPLACE:
        text = answer.text
        if settings.PROXY_REDACT_NUMBERS:
            text = text_redact_numbers(text=text, region=phone_region(inbound.sender))
        message.text = fields["text"] = text
        fields["intercept"] = Message.Intercept.REPLACED
    elif answer.verdict == Verdict.UNAVAILABLE:
        logger.warning(
            "Intercept hook unavailable (%s): forwarding message %s.", answer.detail, message.pk
        )
        fields["intercept"] = Message.Intercept.ERROR_FORWARDED
    else:
        fields["intercept"] = Message.Intercept.PASSED
    message.intercept = fields["intercept"]
    Message.objects.filter(pk=message.pk).update(**fields, updated_at=timezone.now())
    return None


def _record_blocked(*, message_id: int, inbound: Message) -> DeliveryResult:
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != Message.Status.SENDING:
            return DeliveryResult(Outcome.SKIPPED, message, "no longer sending")
        text = "The marketplace's intercept hook blocked this text (HTTP 403)."
        message.status = Message.Status.BLOCKED
        message.intercept = Message.Intercept.BLOCKED
        message.error_code = BLOCKED
        message.error_text = text
        message.next_attempt_at = None
        message.save(
            update_fields=[
                "status",
                "intercept",
                "error_code",
                "error_text",
                "next_attempt_at",
                "updated_at",
            ]
        )
        inbound.status = Message.Status.BLOCKED
        inbound.error_code = BLOCKED
        inbound.error_text = text
        inbound.save(update_fields=["status", "error_code", "error_text", "updated_at"])
        event_message(
            type=EventType.MESSAGE_BLOCKED, message=inbound, conversation=inbound.conversation
        )
    logger.info(
        "Forward %s of inbound message %s blocked by the intercept hook.", message_id, inbound.pk
    )
    return DeliveryResult(Outcome.BLOCKED, message, text)


def _record_held(*, message_id: int, detail: str) -> DeliveryResult:
    text = f"The intercept hook did not answer ({detail}): held, to be asked again."
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != Message.Status.SENDING:
            return DeliveryResult(Outcome.SKIPPED, message, "no longer sending")
        message.intercept = Message.Intercept.HELD
        if message.attempts >= message.max_attempts:
            message.save(update_fields=["intercept", "updated_at"])
            fail(
                message,
                code=INTERCEPT_UNAVAILABLE,
                text=f"The intercept hook did not answer ({detail}) in "
                f"{message.attempts} attempts: not forwarded.",
            )
            return DeliveryResult(Outcome.FAILED, message, message.error_text)
        delay = retry_delay(attempts=message.attempts)
        requeue(
            message,
            at=timezone.now() + delay,
            code=INTERCEPT_UNAVAILABLE,
            text=text,
            extra_fields=("intercept",),
        )
    return DeliveryResult(Outcome.RETRY, message, f"{text} Next in {delay.total_seconds():.0f}s.")
