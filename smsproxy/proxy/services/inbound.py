"""Inbound SMS: store once, join concatenated parts, route (DESIGN.md §5 rules 2, 6, 8, 9).

Each webhook is handled in one transaction: the inbound Message row (or InboundPart row), the
routing decision and the queued forward (or out-of-session reply) commit together, and the
forward is handed to a dispatcher only after that commit. Nothing here calls Vonage.

Idempotency: Vonage retries a webhook until it gets a 2xx, so one `messageId` may arrive many
times, even concurrently. The unique constraints on `Message.vonage_message_id` and
`InboundPart.vonage_message_id` decide: the second insert fails, its transaction (or the
part's savepoint) rolls back, and the repeat is answered as a duplicate without changing
anything. On PostgreSQL a whole text (not a part) is usually one statement
(`inbound_statement`): there the repeat inserts nothing (`ON CONFLICT DO NOTHING`).

Concatenated SMS (rule 8): each part is kept as an InboundPart until all `concat-total` parts of
(`msisdn`, `to`, `concat-ref`) are there, in whatever order they came; then they are joined in
`concat-part` order into one inbound Message and routed once. A group still incomplete
CONCAT_TIMEOUT after its first part arrived is joined as it is by the sweep
(`inbound_parts_flush_stale`, run by `run_outbox` and by Celery beat) — a fixed constant, not a
setting: mobile networks deliver the parts of one text within seconds, and ten minutes covers
Vonage's own webhook retries after a short outage of ours.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from smsproxy.common.inserts import row_insert
from smsproxy.common.phone import phone_receives_sms, phone_region
from smsproxy.common.privacy import mask_number
from smsproxy.common.redaction import text_may_hold_a_number, text_redact_numbers
from smsproxy.gateway.webhooks import InboundSms
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.events.record import (
    EventType,
    event_message,
    event_message_unrouted,
    events_enabled,
)
from smsproxy.proxy.models import InboundPart, Message, Participant
from smsproxy.proxy.outbox.queue import message_dispatch_on_commit, message_queue_outbound
from smsproxy.proxy.selectors import participant_route_get
from smsproxy.proxy.services.inbound_statement import inbound_statement_run
from smsproxy.proxy.services.lifetime import TTL_FROM_LAST_MESSAGE, conversation_expiry_push

logger = logging.getLogger(__name__)

CONCAT_TIMEOUT = timedelta(minutes=10)
OUT_OF_SESSION_REPLY_INTERVAL = timedelta(hours=1)


TOO_LONG = "too_long"


class Outcome(StrEnum):
    ROUTED = "routed"  # stored in a live conversation, forward queued (when there is text)
    UNROUTED = "unrouted"  # stored without a conversation
    PART_STORED = "part_stored"  # a part of a concatenated SMS, waiting for the others
    DUPLICATE = "duplicate"  # this messageId was already handled; nothing changed
    REJECTED = (
        "rejected"  # stored, longer than PROXY_MAX_TEXT_LENGTH: neither forwarded nor answered
    )


@dataclass(frozen=True)
class InboundResult:
    outcome: Outcome
    message: Message | None = None
    forward: Message | None = None  # the queued forward, or the out-of-session reply


def inbound_receive(*, sms: InboundSms) -> InboundResult:
    """Store, route and forward one inbound SMS (or one part of a concatenated one)."""
    if sms.is_part:
        return _part_receive(sms=sms)
    if connection.vendor == "postgresql" and len(sms.text) <= settings.PROXY_MAX_TEXT_LENGTH:
        result = _receive_in_one_statement(sms=sms)
        if result is not None:
            return result
    try:
        # No savepoint around the insert: nothing is written before it, so a repeat's
        # IntegrityError may roll the whole transaction back (two round trips fewer per SMS).
        with transaction.atomic():
            route = participant_route_get(sender=sms.sender, proxy_number=sms.recipient)
            message = _inbound_store(
                route=route,
                sender=sms.sender,
                recipient=sms.recipient,
                text=sms.text,
                vonage_message_id=sms.vonage_message_id,
            )
            return _message_forward(message=message, route=route)
    except IntegrityError:
        if Message.objects.filter(vonage_message_id=sms.vonage_message_id).exists():
            logger.info("Inbound SMS %s received again: ignored.", sms.vonage_message_id)
            return InboundResult(Outcome.DUPLICATE)
        raise


def _receive_in_one_statement(*, sms: InboundSms) -> InboundResult | None:
    """The common cases in one statement (`inbound_statement`); None when it declined (rule 6
    may answer this sender): nothing was written, the full path decides."""
    events_or_expiry = events_enabled() or settings.PROXY_TTL_FROM == TTL_FROM_LAST_MESSAGE
    reply_possible = bool(settings.PROXY_OUT_OF_SESSION_REPLY.strip()) and sms.sender.startswith(
        "+"
    )
    forward_text = sms.text
    if settings.PROXY_REDACT_NUMBERS and text_may_hold_a_number(forward_text):
        forward_text = text_redact_numbers(text=forward_text, region=phone_region(sms.sender))
    # Alone, the statement is its own transaction; the event or the expiry joins it in one.
    with transaction.atomic() if events_or_expiry else nullcontext():
        stored = inbound_statement_run(
            sender=sms.sender,
            recipient=sms.recipient,
            text=sms.text,
            forward_text=forward_text,
            vonage_message_id=sms.vonage_message_id,
            reply_possible=reply_possible,
            now=timezone.now(),
        )
        if stored.declined:
            return None
        message = stored.message
        if message is None:
            logger.info("Inbound SMS %s received again: ignored.", sms.vonage_message_id)
            return InboundResult(Outcome.DUPLICATE)
        conversation = stored.conversation
        if conversation is None:
            event_message_unrouted(message=message)
            if reply_possible and not stored.recipient_is_ours and phone_receives_sms(sms.sender):
                _not_ours_warn(message=message)
            return InboundResult(Outcome.UNROUTED, message)
        conversation_expiry_push(conversation=conversation)
        if events_enabled():  # the participants are built for the event only
            event_message(
                type=EventType.MESSAGE_RECEIVED,
                message=message,
                conversation=conversation,
                participants=stored.participants,
            )
        if not stored.partner_found:
            logger.error("Conversation %s has no second participant.", conversation.pk)
        elif stored.forward is None:
            logger.info("Inbound SMS #%s has no text to forward.", message.pk)
        else:
            message_dispatch_on_commit(message=stored.forward)
        return InboundResult(Outcome.ROUTED, message, stored.forward)


def _inbound_store(
    *,
    route: Participant | None,
    sender: str,
    recipient: str,
    text: str,
    vonage_message_id: str | None = None,
) -> Message:
    """The inbound Message row: `received` in the route's conversation, else `unrouted`;
    `rejected` (code `too_long`) when the text is longer than PROXY_MAX_TEXT_LENGTH.

    A text that long is no conversation between two people (a flood, a pasted document): it is
    kept for the record and never forwarded or answered, so one webhook can neither turn into
    thousands of SMS parts nor make the webhook's work grow with it.
    """
    too_long = len(text) > settings.PROXY_MAX_TEXT_LENGTH
    if too_long:
        status = Message.Status.REJECTED
    else:
        status = Message.Status.RECEIVED if route else Message.Status.UNROUTED
    return row_insert(
        Message(
            direction=Message.Direction.INBOUND,
            status=status,
            conversation=route.conversation if route else None,
            sender=sender,
            recipient=recipient,
            text=text,
            vonage_message_id=vonage_message_id,
            error_code=TOO_LONG if too_long else "",
            error_text=(
                f"{len(text)} characters, more than the {settings.PROXY_MAX_TEXT_LENGTH} forwarded."
                if too_long
                else ""
            ),
        )
    )


def _message_forward(*, message: Message, route: Participant | None) -> InboundResult:
    """Queue the forward of a stored inbound message, or answer it when it has no route."""
    if message.status == Message.Status.REJECTED:
        logger.warning(
            "Inbound SMS #%s is %s: %s", message.pk, message.error_code, message.error_text
        )
        return InboundResult(Outcome.REJECTED, message)
    if route is None:
        event_message_unrouted(message=message)
        reply = _out_of_session_reply(message=message)
        return InboundResult(Outcome.UNROUTED, message, reply)
    conversation_expiry_push(conversation=route.conversation)
    other = route.partner
    event_message(
        type=EventType.MESSAGE_RECEIVED,
        message=message,
        conversation=route.conversation,
        participants=[route] if other is None else [route, other],
    )
    if other is None:
        logger.error("Conversation %s has no second participant.", route.conversation_id)
        return InboundResult(Outcome.ROUTED, message)
    if not message.text:
        logger.info("Inbound SMS #%s has no text to forward.", message.pk)
        return InboundResult(Outcome.ROUTED, message)
    text = message.text
    if settings.PROXY_REDACT_NUMBERS:
        text = text_redact_numbers(text=text, region=phone_region(message.sender))
    forward = message_queue_outbound(
        sender=other.proxy_number.msisdn,
        recipient=other.real_number,
        text=text,
        purpose=Message.Purpose.CONVERSATION,
        conversation=route.conversation,
        forwarded_from=message,
    )
    return InboundResult(Outcome.ROUTED, message, forward)


def _out_of_session_reply(*, message: Message) -> Message | None:
    """Rule 6: answer a sender with no live route — only one who was once a participant on
    this number, at most once an hour per sender and number, and at most
    PROXY_OUT_OF_SESSION_LIMIT replies an hour in all, so that texting the pool from random
    numbers cannot make smsproxy text strangers (or premium numbers) at our cost.
    """
    reply_text = settings.PROXY_OUT_OF_SESSION_REPLY.strip()
    if not reply_text or not message.sender.startswith("+"):
        return None
    if not phone_receives_sms(message.sender):
        # A spoofed premium, toll-free or non-geographic sender: answering would pay them.
        return None
    our_numbers = dict(
        VirtualNumber.objects.filter(
            msisdn__in=[message.recipient, message.sender], status=VirtualNumber.Status.ACTIVE
        ).values_list("msisdn", "pk")
    )
    if message.recipient not in our_numbers:
        _not_ours_warn(message=message)
        return None
    if message.sender in our_numbers:
        # Two of our own numbers must never answer each other in a loop.
        return None
    # Any conversation, any time; on the (real_number, created_at) index.
    was_participant = Participant.objects.filter(
        real_number=message.sender, proxy_number_id=our_numbers[message.recipient]
    ).exists()
    if not was_participant:
        return None
    # One lock for every reply: two webhooks at once must not both take the hour's last reply
    # (nor both answer one sender). Taken only for earlier participants, so random senders
    # never queue on it.
    _transaction_lock("out-of-session")
    since = timezone.now() - OUT_OF_SESSION_REPLY_INTERVAL
    replies = Message.objects.filter(purpose=Message.Purpose.OUT_OF_SESSION, created_at__gte=since)
    if replies.filter(recipient=message.sender, sender=message.recipient).exists():
        return None
    if replies.count() >= settings.PROXY_OUT_OF_SESSION_LIMIT:
        logger.warning(
            "Out-of-session replies reached PROXY_OUT_OF_SESSION_LIMIT (%s an hour): "
            "inbound SMS #%s not answered.",
            settings.PROXY_OUT_OF_SESSION_LIMIT,
            message.pk,
        )
        return None
    return message_queue_outbound(
        sender=message.recipient,
        recipient=message.sender,
        text=reply_text,
        purpose=Message.Purpose.OUT_OF_SESSION,
    )


def _not_ours_warn(*, message: Message) -> None:
    logger.warning(
        "Inbound SMS #%s to %s, not an active number of ours.",
        message.pk,
        mask_number(message.recipient),
    )


def _part_receive(*, sms: InboundSms) -> InboundResult:
    with transaction.atomic():
        # Serialise the parts of one group: the one that completes it must see all the others.
        _transaction_lock(f"concat:{sms.sender}:{sms.recipient}:{sms.concat_ref}")
        try:
            with transaction.atomic():
                InboundPart.objects.create(
                    vonage_message_id=sms.vonage_message_id,
                    sender=sms.sender,
                    recipient=sms.recipient,
                    concat_ref=sms.concat_ref,
                    concat_total=sms.concat_total,
                    concat_part=sms.concat_part,
                    text=sms.text,
                )
        except IntegrityError:
            # This messageId again, or this part of a pending group under another id.
            logger.info(
                "Part %s/%s of %s (%s) received again: ignored.",
                sms.concat_part,
                sms.concat_total,
                sms.concat_ref,
                sms.vonage_message_id,
            )
            return InboundResult(Outcome.DUPLICATE)
        parts = list(_pending_group(sms.sender, sms.recipient, sms.concat_ref))
        if len({part.concat_part for part in parts}) < sms.concat_total:
            return InboundResult(Outcome.PART_STORED)
        return _parts_join(parts=parts)


def _pending_group(sender: str, recipient: str, concat_ref: str) -> list[InboundPart]:
    return list(
        InboundPart.objects.filter(
            sender=sender, recipient=recipient, concat_ref=concat_ref, message__isnull=True
        ).order_by("concat_part", "id")
    )


def _parts_join(*, parts: list[InboundPart]) -> InboundResult:
    """Make one inbound Message of a group's parts (in part order) and route it."""
    first = parts[0]
    route = participant_route_get(sender=first.sender, proxy_number=first.recipient)
    message = _inbound_store(
        route=route,
        sender=first.sender,
        recipient=first.recipient,
        text="".join(part.text for part in sorted(parts, key=lambda part: part.concat_part)),
    )
    InboundPart.objects.filter(pk__in=[part.pk for part in parts]).update(message=message)
    return _message_forward(message=message, route=route)


def inbound_parts_flush_stale(*, now: datetime | None = None) -> list[InboundResult]:
    """Rule 8's timeout: join and route, as they are, groups incomplete for CONCAT_TIMEOUT."""
    now = now or timezone.now()
    cutoff = now - CONCAT_TIMEOUT
    groups = list(
        InboundPart.objects.filter(message__isnull=True)
        .values("sender", "recipient", "concat_ref")
        .annotate(first_received=Min("received_at"))
        .filter(first_received__lt=cutoff)
        .order_by("first_received")[:500]
    )
    results = []
    for group in groups:
        with transaction.atomic():
            _transaction_lock(
                f"concat:{group['sender']}:{group['recipient']}:{group['concat_ref']}"
            )
            parts = _pending_group(group["sender"], group["recipient"], group["concat_ref"])
            if not parts or min(part.received_at for part in parts) >= cutoff:
                continue  # completed (or flushed) meanwhile
            logger.warning(
                "Concatenated SMS %s from %s incomplete after %s: forwarding parts %s of %s.",
                group["concat_ref"],
                mask_number(group["sender"]),
                CONCAT_TIMEOUT,
                ",".join(str(part.concat_part) for part in parts),
                parts[0].concat_total,
            )
            results.append(_parts_join(parts=parts))
    return results


def _transaction_lock(key: str) -> None:
    """Hold a lock on `key` until the current transaction ends.

    PostgreSQL: a transaction-level advisory lock. SQLite needs none: its transactions begin
    IMMEDIATE (settings), so writers already run one at a time.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [key])
