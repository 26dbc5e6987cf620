"""Opening, closing and expiring conversations, and assigning proxy numbers (DESIGN.md §5)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import RealNumber, country_clean, is_e164, phone_parse
from smsproxy.common.privacy import mask_number
from smsproxy.gateway.base import InvalidNumberError, ProviderError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.outbox.queue import message_queue_outbound
from smsproxy.proxy.selectors import (
    conversation_is_live,
    participant_expired_route_list,
    participant_live_list,
    proxy_number_candidate_list,
    sms_capable_q,
)
from smsproxy.proxy.services.redaction import text_redact_numbers

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = Participant._meta.get_field("name").max_length or 100
REFERENCE_MAX_LENGTH = Conversation._meta.get_field("reference").max_length or 200
# Ten years: beyond any marketplace booking, and far from datetime's overflow.
TTL_MAX_SECONDS = 10 * 366 * 24 * 3600
# How many numbers one participant's assignment tries when concurrent requests keep taking the
# chosen one first (the unique constraint decides who wins; the loser moves to the next number).
ASSIGN_ATTEMPTS = 5
# How many times the whole write runs when PostgreSQL aborts it for a lock conflict: two
# requests inserting the same two people in opposite order wait on each other's unique-index
# entries (a deadlock); the database aborts one, which then runs again on the new state.
WRITE_ATTEMPTS = 3
# SQLSTATEs of a transaction aborted by a lock conflict: deadlock_detected, serialization_failure.
_LOCK_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
# One rented number can serve both participants; a second rental covers a concurrent request
# taking the first one for the same real number.
AUTO_PROVISION_MAX_RENTALS = 2
EXPIRE_BATCH_SIZE = 500


@dataclass(frozen=True)
class _ParticipantSpec:
    position: int  # 0-based, as in the request
    name: str
    number: RealNumber


class _PoolExhausted(Exception):
    """No eligible number for a participant; carries what an auto-provisioned number should be."""

    def __init__(self, *, country: str) -> None:
        super().__init__(country)
        self.country = country


# --- Real numbers ------------------------------------------------------------------------------


def real_number_confirm(*, number: RealNumber) -> RealNumber:
    """Number Insight basic: validity, canonical format and country (rule 10).

    Raises InvalidNumberError when the provider says the number is not valid. When insight is
    unavailable the local parse stands: opening a conversation should not depend on it.
    """
    try:
        # Asked in international format, so without `country`: Vonage refuses a country that
        # contradicts the prefix, and +44 also covers GG, JE and IM.
        insight = gateway.get_provider().insight_basic(number=number.e164)
    except InvalidNumberError:
        raise
    except ProviderError as exc:
        # A transient failure is expected now and then; a permanent one needs looking at.
        logger.log(
            logging.WARNING if exc.transient else logging.ERROR,
            "Number Insight failed for %s (%s); using the local parse",
            mask_number(number.e164),
            exc,
        )
        return number
    if not is_e164(insight.e164):
        logger.error(
            "Number Insight answered %r for %s; using the local parse",
            insight.e164,
            mask_number(number.e164),
        )
        return number
    return RealNumber(e164=insight.e164, country=country_clean(insight.country) or number.country)


# --- Opening a conversation ----------------------------------------------------------------------


def conversation_create(
    *,
    participants: Sequence[Mapping[str, Any]],
    reference: str = "",
    ttl: int | None = None,
) -> Conversation:
    """Open a conversation between two real numbers, each given a proxy number, and introduce them.

    `participants` is two mappings with "number" and an optional "name". Numbers are checked
    locally, then with Number Insight (outside the write transaction: no row lock waits on
    Vonage). Proxy numbers are assigned by rule 3; the intro SMS are queued in the same
    transaction. `ttl` (seconds) or PROXY_CONVERSATION_TTL sets the expiry.
    """
    specs = _participants_validate(participants)
    reference = _reference_validate(reference)
    ttl_seconds = _ttl_validate(ttl)

    confirmed = [_participant_confirm(spec) for spec in specs]
    if confirmed[0].number.e164 == confirmed[1].number.e164:
        raise _same_number_error()
    # Insight may have rewritten a number into one of ours.
    _pool_numbers_refuse(confirmed)

    rentals = 0
    lock_conflicts = 0
    while True:
        try:
            return _conversation_write(specs=confirmed, reference=reference, ttl=ttl_seconds)
        except OperationalError as exc:
            if not _is_lock_conflict(exc):
                raise
            lock_conflicts += 1
            if lock_conflicts >= WRITE_ATTEMPTS:
                raise _assignment_conflict_error() from exc
            logger.info("Opening a conversation hit a lock conflict (%s); running it again", exc)
        except _PoolExhausted as exhausted:
            if not settings.PROXY_AUTO_PROVISION:
                raise ApplicationError(
                    "No proxy number is free for this conversation: every number in the pool "
                    "is already used by one of these participants. Add numbers to the pool.",
                    code="pool_exhausted",
                    status=HTTPStatus.SERVICE_UNAVAILABLE,
                ) from None
            if rentals >= AUTO_PROVISION_MAX_RENTALS:
                raise ApplicationError(
                    "No proxy number is free for this conversation, even after renting "
                    f"{rentals} more. Try again.",
                    code="pool_exhausted",
                    status=HTTPStatus.SERVICE_UNAVAILABLE,
                ) from None
            # Renting calls the provider: done between transactions, so a rented number is
            # committed to the pool even if this conversation then fails.
            _proxy_number_rent(country=exhausted.country)
            rentals += 1


def _participants_validate(participants: Sequence[Mapping[str, Any]]) -> list[_ParticipantSpec]:
    if not isinstance(participants, Sequence) or len(participants) != 2:
        count = len(participants) if isinstance(participants, Sequence) else 0
        raise ApplicationError(
            f"A conversation has exactly two participants; {count} given.",
            code="invalid_participants",
            fields={"participants": ["Give exactly two participants."]},
        )
    specs = []
    for position, entry in enumerate(participants):
        raw_number = entry.get("number") if isinstance(entry, Mapping) else None
        raw_name = entry.get("name", "") if isinstance(entry, Mapping) else ""
        name = " ".join(str(raw_name or "").split())
        label = participant_label(position=position, name=name)
        if len(name) > NAME_MAX_LENGTH:
            raise ApplicationError(
                f"The name of {label} is longer than {NAME_MAX_LENGTH} characters.",
                code="invalid_participants",
                fields=_participant_fields(
                    position, "name", f"At most {NAME_MAX_LENGTH} characters."
                ),
            )
        parsed = phone_parse(number=raw_number) if isinstance(raw_number, str) else None
        if parsed is None:
            raise _invalid_number_error(position, name, raw_number)
        # The name goes into the other participant's intro SMS: a phone number in it would
        # hand out a real number (rule 9).
        region = parsed.country or settings.PROXY_DEFAULT_COUNTRY
        if text_redact_numbers(text=name, region=region) != name:
            raise ApplicationError(
                f"The name of participant {position + 1} contains a phone number; it is shown "
                "to the other participant, whose real number must stay private.",
                code="invalid_participants",
                fields=_participant_fields(position, "name", "Must not contain a phone number."),
            )
        specs.append(_ParticipantSpec(position=position, name=name, number=parsed))
    if specs[0].number.e164 == specs[1].number.e164:
        raise _same_number_error()
    _pool_numbers_refuse(specs)
    return specs


def _pool_numbers_refuse(specs: Sequence[_ParticipantSpec]) -> None:
    """A participant's real number may not be one of our proxy numbers.

    Released numbers count too: until the provider gives them to someone else they may still
    route to our webhook, and a conversation with ourselves would forward SMS in a loop.
    """
    pool = set(
        VirtualNumber.objects.filter(msisdn__in=[spec.number.e164 for spec in specs]).values_list(
            "msisdn", flat=True
        )
    )
    for spec in specs:
        if spec.number.e164 in pool:
            raise ApplicationError(
                f"The number of {participant_label(position=spec.position, name=spec.name)}, "
                f"{spec.number.e164}, is one of this service's proxy numbers, not a person's.",
                code="invalid_number",
                fields=_participant_fields(
                    spec.position, "number", "A proxy number of this service, not a real one."
                ),
            )


def _participant_confirm(spec: _ParticipantSpec) -> _ParticipantSpec:
    try:
        number = real_number_confirm(number=spec.number)
    except InvalidNumberError as exc:
        raise _invalid_number_error(spec.position, spec.name, spec.number.e164) from exc
    return _ParticipantSpec(position=spec.position, name=spec.name, number=number)


def participant_label(*, position: int, name: str) -> str:
    """How errors name a participant: "participant 1 (Ann)", counted from 1."""
    return f"participant {position + 1}" + (f" ({name})" if name else "")


def _participant_fields(position: int, field: str, message: str) -> dict[str, Any]:
    # Keyed by the participant's index, as DRF reports errors of list items.
    return {"participants": {str(position): {field: [message]}}}


def _invalid_number_error(position: int, name: str, raw_number: object) -> ApplicationError:
    shown = raw_number if isinstance(raw_number, str) and raw_number.strip() else "(empty)"
    label = participant_label(position=position, name=name)
    return ApplicationError(
        f"The number of {label}, {shown!s}, is not a valid phone number.",
        code="invalid_number",
        fields=_participant_fields(position, "number", "Not a valid phone number."),
    )


def _same_number_error() -> ApplicationError:
    return ApplicationError(
        "The two participants have the same number; a conversation needs two different people.",
        code="invalid_participants",
        fields={"participants": ["The two numbers must differ."]},
    )


def _reference_validate(reference: str | None) -> str:
    reference = (reference or "").strip()
    if len(reference) > REFERENCE_MAX_LENGTH:
        raise ApplicationError(
            f"The reference is longer than {REFERENCE_MAX_LENGTH} characters.",
            code="validation_error",
            fields={"reference": [f"At most {REFERENCE_MAX_LENGTH} characters."]},
        )
    return reference


def _ttl_validate(ttl: int | None) -> int:
    """Seconds until expiry; 0 means none."""
    if ttl is None:
        return max(int(settings.PROXY_CONVERSATION_TTL), 0)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= TTL_MAX_SECONDS:
        raise ApplicationError(
            f"ttl must be a whole number of seconds between 1 and {TTL_MAX_SECONDS}.",
            code="validation_error",
            fields={"ttl": [f"A whole number of seconds between 1 and {TTL_MAX_SECONDS}."]},
        )
    return ttl


def _conversation_write(*, specs: list[_ParticipantSpec], reference: str, ttl: int) -> Conversation:
    with transaction.atomic():
        now = timezone.now()
        conversation = Conversation.objects.create(
            reference=reference,
            expires_at=now + timedelta(seconds=ttl) if ttl else None,
        )
        # The stored loads are written once, at the end; until then the numbers already given
        # in this conversation count here, so the second participant sees the first one's load.
        assigned: Counter[int] = Counter()
        created = []
        for spec in specs:
            participant = _participant_assign(
                conversation=conversation, spec=spec, now=now, pending_load=assigned
            )
            assigned[participant.proxy_number_id] += 1
            created.append(participant)
        number_loads_adjust(assigned)
        for participant, other in ((created[0], created[1]), (created[1], created[0])):
            message_queue_outbound(
                sender=participant.proxy_number.msisdn,
                recipient=participant.real_number,
                text=intro_text(other_name=other.name),
                purpose=Message.Purpose.INTRO,
                conversation=conversation,
            )
    logger.info(
        "Opened conversation %s (reference %r) on %s and %s",
        conversation.public_id,
        reference,
        created[0].proxy_number.msisdn,
        created[1].proxy_number.msisdn,
    )
    return conversation


def _participant_assign(
    *,
    conversation: Conversation,
    spec: _ParticipantSpec,
    now: datetime,
    pending_load: Mapping[int, int],
) -> Participant:
    """Insert the participant on the best free number; the unique constraint settles races."""
    tried: set[int] = set()
    for _attempt in range(ASSIGN_ATTEMPTS):
        proxy_number = proxy_number_candidate_list(
            real_number=spec.number.e164,
            country=spec.number.country,
            exclude_ids=tried,
            pending_load=pending_load,
            now=now,
        ).first()
        if proxy_number is None:
            raise _PoolExhausted(country=spec.number.country)
        tried.add(proxy_number.pk)
        _expired_routes_close(real_number=spec.number.e164, proxy_number=proxy_number, now=now)
        try:
            with transaction.atomic():
                if _number_status_locked(number_id=proxy_number.pk) != VirtualNumber.Status.ACTIVE:
                    raise _NumberReleasedMeanwhile
                return Participant.objects.create(
                    conversation=conversation,
                    name=spec.name,
                    real_number=spec.number.e164,
                    country=spec.number.country,
                    proxy_number=proxy_number,
                )
        except _NumberReleasedMeanwhile:
            logger.info("Proxy number %s was released meanwhile; trying the next one", proxy_number)
        except IntegrityError:
            # A concurrent request gave this real number the same proxy number first.
            logger.info(
                "Proxy number %s was taken for %s concurrently; trying the next one",
                proxy_number.msisdn,
                mask_number(spec.number.e164),
            )
    raise _assignment_conflict_error()


def _number_status_locked(*, number_id: int) -> str | None:
    """The number's current status, locked against a concurrent release until commit.

    `number_release` locks the row FOR UPDATE before it closes the number's conversations.
    A KEY SHARE lock here conflicts with that lock only (assignments do not block each other):
    either the release waits for this transaction and then sees (and closes) the participant,
    or it committed first and this read sees the number released. Django's foreign keys are
    deferred on PostgreSQL, so the insert alone would not take that lock until commit.
    On SQLite every write transaction is exclusive (IMMEDIATE), so a plain read is enough.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT status FROM {VirtualNumber._meta.db_table} WHERE id = %s FOR KEY SHARE",  # noqa: S608
                [number_id],
            )
            row = cursor.fetchone()
        return row[0] if row else None
    return VirtualNumber.objects.filter(pk=number_id).values_list("status", flat=True).first()


class _NumberReleasedMeanwhile(Exception):
    """The chosen number was released by a concurrent transaction (rolls back the savepoint)."""


def _assignment_conflict_error() -> ApplicationError:
    return ApplicationError(
        "Too many concurrent requests for the same participant; try again.",
        code="assignment_conflict",
        status=HTTPStatus.CONFLICT,
    )


def _is_lock_conflict(exc: OperationalError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return sqlstate in _LOCK_CONFLICT_SQLSTATES


def _expired_routes_close(*, real_number: str, proxy_number: VirtualNumber, now: datetime) -> None:
    """Close expired (not yet swept) conversations holding this route's unique slot.

    The unique constraint only sees the `active` flag, so an expired conversation keeps the
    slot until it is closed; it is dead already (rule 7), so it is closed here.
    """
    for participant in participant_expired_route_list(
        real_number=real_number, proxy_number=proxy_number, now=now
    ):
        conversation_close(
            conversation=participant.conversation,
            reason=Conversation.CloseReason.EXPIRED,
            now=now,
        )


def intro_text(*, other_name: str) -> str:
    """Rule 5: tells a participant that this number reaches the other one."""
    return (
        f"You can now text {other_name or 'your contact'} at this number. "
        "Your own number stays private."
    )


def _proxy_number_rent(*, country: str) -> VirtualNumber:
    """Rent one number for the pool (rule 4): in the participant's country, else the default."""
    from smsproxy.numbers.services.rental import number_rent_one

    countries = list(dict.fromkeys(c for c in (country, settings.PROXY_DEFAULT_COUNTRY) if c))
    failure: Exception | None = None
    for rent_country in countries:
        try:
            number = number_rent_one(country=rent_country)
        except (ApplicationError, ProviderError) as exc:
            logger.warning("Could not rent a %s number for the pool: %s", rent_country, exc)
            failure = exc
            continue
        logger.info("Rented %s for the pool (PROXY_AUTO_PROVISION)", number.msisdn)
        return number
    raise ApplicationError(
        "No proxy number is free for this conversation and none could be rented"
        + (f": {failure}" if failure else "."),
        code="pool_exhausted",
        status=HTTPStatus.SERVICE_UNAVAILABLE,
    ) from failure


# --- Closing and expiry ------------------------------------------------------------------------


def number_loads_adjust(changes: Counter[int]) -> None:
    """Add `changes` (number id → participants gained or lost) to the numbers' stored load.

    Call it in the transaction that changes the participants. Rows are updated in id order, so
    two transactions touching the same numbers queue behind each other instead of deadlocking.
    """
    for number_id in sorted(changes):
        if changes[number_id]:
            VirtualNumber.objects.filter(pk=number_id).update(
                assigned_participants=F("assigned_participants") + changes[number_id]
            )


def _participants_deactivate(participants: QuerySet[Participant]) -> None:
    """Clear the `active` flag (freeing the routes) and take them off their numbers' load."""
    active = participants.filter(active=True)
    freed = Counter(active.values_list("proxy_number_id", flat=True))
    active.update(active=False)
    number_loads_adjust(Counter({number_id: -count for number_id, count in freed.items()}))


def number_loads_recount() -> int:
    """Recompute every number's stored load from the participants; returns how many changed.

    The services keep the load exact; this repairs it after changes made outside them (a
    shell session, a restored backup). `expire_conversations --recount-loads` runs it.
    """
    changed = 0
    with transaction.atomic():
        # Every number locked first: assignments and closes in flight finish before the count.
        numbers = list(
            VirtualNumber.objects.select_for_update().only("pk", "assigned_participants")
        )
        counts = dict(
            Participant.objects.filter(active=True)
            .values("proxy_number")
            .annotate(total=Count("pk"))
            .values_list("proxy_number", "total")
        )
        for number in numbers:
            expected = counts.get(number.pk, 0)
            if number.assigned_participants != expected:
                VirtualNumber.objects.filter(pk=number.pk).update(assigned_participants=expected)
                changed += 1
    return changed


def conversation_close(
    *, conversation: Conversation, reason: str, now: datetime | None = None
) -> Conversation:
    """Close a conversation and free its participants' numbers at once (idempotent).

    A conversation already past `expires_at` is recorded as expired at its expiry time,
    whoever closes it: that is when it stopped routing.
    """
    if reason not in Conversation.CloseReason.values:
        raise ValueError(f"Unknown close reason {reason!r}")
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status == Conversation.Status.CLOSED:
            return locked
        now = now or timezone.now()
        if locked.expires_at is not None and locked.expires_at <= now:
            reason, closed_at = Conversation.CloseReason.EXPIRED, locked.expires_at
        else:
            closed_at = now
        locked.status = Conversation.Status.CLOSED
        locked.closed_at = closed_at
        locked.close_reason = reason
        locked.save(update_fields=["status", "closed_at", "close_reason"])
        _participants_deactivate(Participant.objects.filter(conversation=locked))
    logger.info("Closed conversation %s (%s)", locked.public_id, reason)
    return locked


def conversations_expire(
    *,
    now: datetime | None = None,
    batch_size: int = EXPIRE_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Close every conversation past `expires_at` (reason expired); returns how many.

    Safe to run from several cron hosts at once: each batch locks its rows with SKIP LOCKED
    (PostgreSQL; SQLite serialises writers) and the update re-checks the status, so a
    conversation is closed once and counted once.
    """
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                Conversation.objects.select_for_update(skip_locked=True)
                .filter(status=Conversation.Status.ACTIVE, expires_at__lte=now)
                .order_by("expires_at", "pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return total
            closed = Conversation.objects.filter(
                pk__in=ids, status=Conversation.Status.ACTIVE
            ).update(
                status=Conversation.Status.CLOSED,
                closed_at=F("expires_at"),
                close_reason=Conversation.CloseReason.EXPIRED,
            )
            _participants_deactivate(Participant.objects.filter(conversation_id__in=ids))
        total += closed
        if on_batch is not None:
            on_batch(closed)


# --- Staff: reassigning a participant's proxy number ----------------------------------------------


def participant_reassign_validate(
    *, participant: Participant, proxy_number: VirtualNumber, now: datetime | None = None
) -> None:
    """Raise ApplicationError when `proxy_number` may not be given to this participant."""
    now = now or timezone.now()
    if not conversation_is_live(conversation=participant.conversation, now=now):
        raise ApplicationError(
            "This conversation is closed or expired; its numbers cannot be changed.",
            code="conversation_closed",
        )
    if proxy_number.status != VirtualNumber.Status.ACTIVE:
        raise ApplicationError(
            f"{proxy_number.msisdn} has been released and cannot be assigned.",
            code="number_not_active",
        )
    if not VirtualNumber.objects.filter(pk=proxy_number.pk).filter(sms_capable_q()).exists():
        raise ApplicationError(
            f"{proxy_number.msisdn} cannot send or receive SMS.", code="number_not_sms_capable"
        )
    conflict = (
        participant_live_list(now=now)
        .filter(real_number=participant.real_number, proxy_number=proxy_number)
        .exclude(pk=participant.pk)
        .select_related("conversation")
        .first()
    )
    if conflict is not None:
        raise ApplicationError(
            f"{participant.real_number} already uses {proxy_number.msisdn} in live conversation "
            f"{conflict.conversation}: one real number can use a proxy number in only one live "
            "conversation, or its messages could not be routed.",
            code="proxy_number_in_use",
        )


def participant_reassign(
    *, participant: Participant, proxy_number: VirtualNumber, now: datetime | None = None
) -> Participant:
    """Move a participant to another proxy number under the same uniqueness rule as assignment.

    The participant is told by SMS from the new number, which is now the one they text.
    """
    if participant.proxy_number_id == proxy_number.pk:
        return participant
    now = now or timezone.now()
    with transaction.atomic():
        # The conversation first, as conversation_close locks it: a close running at the same
        # time either finishes before (and the reassignment is refused) or waits for this one.
        conversation = Conversation.objects.select_for_update().get(pk=participant.conversation_id)
        participant = (
            Participant.objects.select_for_update()
            .select_related("proxy_number")
            .get(pk=participant.pk)
        )
        participant.conversation = conversation
        participant_reassign_validate(participant=participant, proxy_number=proxy_number, now=now)
        # `proxy_number` was read before this transaction (the admin form): a release may have
        # committed since. The lock makes a release running now wait until this commits.
        if _number_status_locked(number_id=proxy_number.pk) != VirtualNumber.Status.ACTIVE:
            raise ApplicationError(
                f"{proxy_number.msisdn} has just been released and cannot be assigned.",
                code="number_not_active",
            )
        _expired_routes_close(
            real_number=participant.real_number, proxy_number=proxy_number, now=now
        )
        previous = participant.proxy_number
        participant.proxy_number = proxy_number
        try:
            with transaction.atomic():
                participant.save(update_fields=["proxy_number"])
        except IntegrityError as exc:
            raise ApplicationError(
                f"{participant.real_number} was given {proxy_number.msisdn} in another live "
                "conversation just now; choose another number.",
                code="proxy_number_in_use",
            ) from exc
        if participant.active:
            number_loads_adjust(Counter({previous.pk: -1, proxy_number.pk: 1}))
        other = (
            Participant.objects.filter(conversation=participant.conversation)
            .exclude(pk=participant.pk)
            .first()
        )
        message_queue_outbound(
            sender=proxy_number.msisdn,
            recipient=participant.real_number,
            text=intro_text(other_name=other.name if other else ""),
            purpose=Message.Purpose.INTRO,
            conversation=participant.conversation,
        )
    logger.info(
        "Moved a participant of conversation %s from %s to %s",
        participant.conversation.public_id,
        previous.msisdn,
        proxy_number.msisdn,
    )
    return participant
