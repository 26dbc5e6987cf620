"""Inbound SMS: store once, join concatenated parts, route (DESIGN.md §5 rules 2, 6, 8, 9).

Each webhook is handled in one transaction: the inbound Message row (or InboundPart row), the
routing decision and the queued forward (or out-of-session reply) commit together, and the
forward is handed to a dispatcher only after that commit. Nothing here calls Vonage.

Idempotency: Vonage retries a webhook until it gets a 2xx, so one `messageId` may arrive many
times, even concurrently. The unique constraints on `Message.vonage_message_id` and
`InboundPart.vonage_message_id` decide: the second insert fails, its transaction (or the
part's savepoint) rolls back, and the repeat is answered as a duplicate without changing
anything.

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
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import phonenumbers
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from smsproxy.common.privacy import mask_number
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import InboundPart, Message, Participant
from smsproxy.proxy.selectors import participant_live_list
from smsproxy.proxy.services.outbox import message_queue_outbound
from smsproxy.proxy.services.vonage_params import WebhookIgnored, e164_from_vonage, malformed

logger = logging.getLogger(__name__)

CONCAT_TIMEOUT = timedelta(minutes=10)
OUT_OF_SESSION_REPLY_INTERVAL = timedelta(hours=1)
REDACTED_NUMBER = "[number removed]"

# Seven or more digits, single spaces, dots or dashes allowed between them: what is left of a
# phone number that `phonenumbers` did not recognise (unusual grouping, a foreign format).
_DIGIT_RUN_RE = re.compile(r"\+?\d(?:[ .\-]?\d){6,}")
# Digit runs that are not phone numbers, though both passes would take them for one:
# "10.30 - 11.45", "9:00-17:30" (a time range), "24.11.2026", "24-11-26", "2026-11-24" (a date).
_TIME_RANGE_RE = re.compile(
    r"(?:[01]?\d|2[0-4])[.:][0-5]\d\s*[-\u2013]\s*(?:[01]?\d|2[0-4])[.:][0-5]\d"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DATE_RE = re.compile(
    rf"{_DAY}([.\-]){_MONTH}\1(?:\d{{4}}|\d{{2}})|{_MONTH}([.\-]){_DAY}\2(?:\d{{4}}|\d{{2}})"
    rf"|\d{{4}}-{_MONTH}-{_DAY}"
)
# An amount after a currency sign ("£1 250 000", "$ 2,500,000.50") is not a number to call —
# only when grouped as amounts are (thousands), so that "£ 07700 900123" is still redacted.
_CURRENCY_SIGNS = "£$€¥₹₽₺₩₪₦₱฿"
_AMOUNT_RE = re.compile(r"[1-9]\d{0,2}([ ,.])\d{3}(?:\1\d{3})*(?:[.,]\d{1,2})?")


class Outcome(StrEnum):
    ROUTED = "routed"  # stored in a live conversation, forward queued (when there is text)
    UNROUTED = "unrouted"  # stored without a conversation
    PART_STORED = "part_stored"  # a part of a concatenated SMS, waiting for the others
    DUPLICATE = "duplicate"  # this messageId was already handled; nothing changed


@dataclass(frozen=True)
class InboundSms:
    vonage_message_id: str
    sender: str  # E.164 with '+', or an alphanumeric sender id as received
    recipient: str  # E.164 with '+': our number
    text: str
    concat_ref: str = ""
    concat_total: int = 0
    concat_part: int = 0

    @property
    def is_part(self) -> bool:
        return bool(self.concat_ref) and self.concat_total > 1


@dataclass(frozen=True)
class InboundResult:
    outcome: Outcome
    message: Message | None = None
    forward: Message | None = None  # the queued forward, or the out-of-session reply


def inbound_parse(params: dict[str, str]) -> InboundSms:
    """Read an inbound-SMS webhook's parameters.

    ApplicationError(code="malformed") when unusable; WebhookIgnored for a well-formed SMS we
    cannot store (a sender id longer than any network sends).
    """
    for field in ("msisdn", "to", "messageId"):
        if not params.get(field, "").strip():
            raise malformed(f"Inbound SMS without {field}.", field, "This field is required.")
    vonage_message_id = params["messageId"].strip()
    if len(vonage_message_id) > 64:
        raise malformed("messageId is longer than 64 characters.", "messageId", "Too long.")
    recipient = e164_from_vonage(params["to"])
    if recipient is None:
        raise malformed(f"`to` {params['to']!r} is not a phone number.", "to", "Not a number.")
    raw_sender = params["msisdn"].strip()
    sender = e164_from_vonage(raw_sender)
    if sender is None:
        # An alphanumeric sender id ("Vonage", a short code): stored, never routed or answered.
        if len(raw_sender) > 16:
            raise WebhookIgnored(
                f"Inbound SMS {vonage_message_id} from a sender id of {len(raw_sender)} "
                "characters (16 at most): ignored."
            )
        sender = raw_sender
    sms_type = params.get("type", "text").strip().lower() or "text"
    # A binary SMS carries `data`/`udh` rather than text: nothing a person can read is forwarded.
    text = "" if sms_type == "binary" else params.get("text", "")
    concat_ref = params.get("concat-ref", "").strip()
    concat_total = concat_part = 0
    if params.get("concat", "").strip().lower() == "true" or concat_ref:
        if not concat_ref or len(concat_ref) > 32:
            raise malformed("A concatenated part needs a concat-ref.", "concat-ref", "Invalid.")
        try:
            concat_total = int(params.get("concat-total", ""))
            concat_part = int(params.get("concat-part", ""))
        except ValueError:
            raise malformed(
                "concat-total and concat-part must be integers.", "concat-part", "Not a number."
            ) from None
        if not 1 <= concat_part <= concat_total <= 255:
            raise malformed(
                f"concat-part {concat_part} of concat-total {concat_total} is out of range.",
                "concat-part",
                "Out of range.",
            )
    return InboundSms(
        vonage_message_id=vonage_message_id,
        sender=sender,
        recipient=recipient,
        text=text,
        concat_ref=concat_ref if concat_total > 1 else "",
        concat_total=concat_total if concat_total > 1 else 0,
        concat_part=concat_part if concat_total > 1 else 0,
    )


def inbound_receive(*, sms: InboundSms) -> InboundResult:
    """Store, route and forward one inbound SMS (or one part of a concatenated one)."""
    if sms.is_part:
        return _part_receive(sms=sms)
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


def _inbound_store(
    *,
    route: Participant | None,
    sender: str,
    recipient: str,
    text: str,
    vonage_message_id: str | None = None,
) -> Message:
    """The inbound Message row: `received` in the route's conversation, else `unrouted`."""
    return Message.objects.create(
        direction=Message.Direction.INBOUND,
        status=Message.Status.RECEIVED if route else Message.Status.UNROUTED,
        conversation=route.conversation if route else None,
        sender=sender,
        recipient=recipient,
        text=text,
        vonage_message_id=vonage_message_id,
    )


def participant_route_get(*, sender: str, proxy_number: str) -> Participant | None:
    """Rule 2: the live participant whose real number texted this proxy number.

    One lookup on the (real_number, proxy_number) index of live participants, joined to the
    number by its unique msisdn.
    """
    return (
        participant_live_list()
        .filter(real_number=sender, proxy_number__msisdn=proxy_number)
        .select_related("conversation")
        .first()
    )


def _message_forward(*, message: Message, route: Participant | None) -> InboundResult:
    """Queue the forward of a stored inbound message, or answer it when it has no route."""
    if route is None:
        reply = _out_of_session_reply(message=message)
        return InboundResult(Outcome.UNROUTED, message, reply)
    other = (
        Participant.objects.filter(conversation_id=route.conversation_id)
        .exclude(pk=route.pk)
        .select_related("proxy_number")
        .first()
    )
    if other is None:
        logger.error("Conversation %s has no second participant.", route.conversation_id)
        return InboundResult(Outcome.ROUTED, message)
    if not message.text:
        logger.info("Inbound SMS #%s has no text to forward.", message.pk)
        return InboundResult(Outcome.ROUTED, message)
    text = message.text
    if settings.PROXY_REDACT_NUMBERS:
        text = text_redact_numbers(text=text, region=_region_of(message.sender))
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
    """Rule 6: answer a sender with no live route, at most once an hour per sender and number."""
    reply_text = settings.PROXY_OUT_OF_SESSION_REPLY.strip()
    if not reply_text or not message.sender.startswith("+"):
        return None
    our_numbers = set(
        VirtualNumber.objects.filter(
            msisdn__in=[message.recipient, message.sender], status=VirtualNumber.Status.ACTIVE
        ).values_list("msisdn", flat=True)
    )
    if message.recipient not in our_numbers:
        logger.warning(
            "Inbound SMS #%s to %s, not an active number of ours.", message.pk, message.recipient
        )
        return None
    if message.sender in our_numbers:
        # Two of our own numbers must never answer each other in a loop.
        return None
    # Two texts from one sender at once must not both be answered.
    _transaction_lock(f"out-of-session:{message.sender}:{message.recipient}")
    recently_answered = Message.objects.filter(
        purpose=Message.Purpose.OUT_OF_SESSION,
        recipient=message.sender,
        sender=message.recipient,
        created_at__gte=timezone.now() - OUT_OF_SESSION_REPLY_INTERVAL,
    ).exists()
    if recently_answered:
        return None
    return message_queue_outbound(
        sender=message.recipient,
        recipient=message.sender,
        text=reply_text,
        purpose=Message.Purpose.OUT_OF_SESSION,
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


def _region_of(number: str) -> str:
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        region = None
    return region or settings.PROXY_DEFAULT_COUNTRY


def text_redact_numbers(*, text: str, region: str) -> str:
    """Rule 9: replace every phone number in `text` with REDACTED_NUMBER.

    `phonenumbers` finds numbers in any common notation (international or national for
    `region`, with spaces, dashes, brackets); leniency POSSIBLE on purpose — a fictitious or
    unassigned number is still someone's way off the platform. A run of seven or more digits
    it did not recognise goes too (so does a 7+ digit order number: a local phone number looks
    just like one, and privacy wins). Kept: numbers of fewer than seven digits (house numbers,
    codes, "5 minutes", a 6-digit order number), time ranges ("10.30-11.45"), dates
    ("24.11.2026", "2026-11-24") and amounts after a currency sign ("£1 250 000").
    """
    spans = []
    for match in phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.POSSIBLE
    ):
        digits = sum(char.isdigit() for char in match.raw_string)
        if digits < 7 or _not_a_phone_number(text, match.start, match.raw_string):
            continue
        spans.append((match.start, match.end))
    for start, end in reversed(spans):
        text = text[:start] + REDACTED_NUMBER + text[end:]

    def redact_run(run: re.Match[str]) -> str:
        if _not_a_phone_number(run.string, run.start(), run.group()):
            return run.group()
        return REDACTED_NUMBER

    return _DIGIT_RUN_RE.sub(redact_run, text)


def _not_a_phone_number(text: str, start: int, candidate: str) -> bool:
    """A time range, a date, or an amount after a currency sign: kept as written."""
    candidate = candidate.strip()
    if _TIME_RANGE_RE.fullmatch(candidate) or _DATE_RE.fullmatch(candidate):
        return True
    before = text[:start].rstrip()
    return bool(before) and before[-1] in _CURRENCY_SIGNS and bool(_AMOUNT_RE.fullmatch(candidate))
