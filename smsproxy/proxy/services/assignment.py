"""Giving a participant a proxy number (DESIGN.md §5 rules 3 and 4), and the numbers' load.

The pool is ranked by `proxy_number_candidate` (its statements are in `assignment_statements`);
the unique constraint on (real number, proxy number) among active participants decides races,
and the loser moves to the next number.
A number's stored `assigned_participants` is kept exact by every change of participants, so
"least loaded" is one column read instead of a count per candidate.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from http import HTTPStatus

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, QuerySet

from smsproxy.common.errors import ApplicationError
from smsproxy.common.privacy import mask_number
from smsproxy.gateway.base import ProviderError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.events.record import events_conversations_closed, events_enabled
from smsproxy.proxy.models import Conversation, Participant
from smsproxy.proxy.selectors import participant_expired_route_list
from smsproxy.proxy.services.assignment_statements import (
    participant_insert,
    proxy_number_candidate,
    proxy_number_take,
)
from smsproxy.proxy.services.participants import ParticipantSpec
from smsproxy.proxy.services.usage_statements import (
    number_loads_add,
    number_usage_write,
    number_uses_write,
)

logger = logging.getLogger(__name__)

# How many numbers one participant's assignment tries when concurrent requests keep taking the
# chosen one first (the unique constraint decides who wins; the loser moves to the next number).
ASSIGN_ATTEMPTS = 5


class NumberSelection(StrEnum):
    """How a new conversation's proxy numbers are chosen (DESIGN.md §7 `number_selection`)."""

    # Rule 3: avoid the numbers this real number used recently.
    AVOID_STICKY = "avoid-sticky"
    # The number this real number last used with the same other real number, when free for it.
    PREFER_STICKY = "prefer-sticky"


class PoolExhausted(Exception):
    """No eligible number for a participant; carries what an auto-provisioned number should be
    and whose (for the log)."""

    def __init__(self, *, country: str, real_number: str = "") -> None:
        super().__init__(country)
        self.country = country
        self.real_number = real_number


def assignment_conflict_error() -> ApplicationError:
    return ApplicationError(
        "Too many concurrent requests for the same participant; try again.",
        code="assignment_conflict",
        status=HTTPStatus.CONFLICT,
    )


def participant_assign(
    *,
    conversation: Conversation,
    spec: ParticipantSpec,
    now: datetime,
    pending_load: Mapping[int, int],
    prefer_number_id: int | None = None,
    participant: Participant | None = None,
) -> Participant:
    """Put the participant on the best free number; the unique constraint settles races.

    `prefer_number_id` goes first when it is eligible (prefer-sticky, a reopen's old number).
    With `participant` (an inactive row of a conversation being reopened) that row is put
    back on the chosen number instead of a new row being inserted.
    Raises PoolExhausted when no number is eligible. Call it inside a transaction; the
    participant's load and history are the caller's to write (`number_loads_adjust`,
    `number_uses_record`).

    One statement in the usual case on PostgreSQL, two on SQLite (`proxy_number_take`): the
    candidate (chosen and locked against a release at once, see `proxy_number_candidate`) and
    the insert, which writes nothing when a concurrent request gave this real number that
    number first; the next candidate is then tried.
    """
    tried: list[int] = []
    for _attempt in range(ASSIGN_ATTEMPTS):
        created: Participant | None = None
        if participant is None:
            # The candidate and the insert on it: one statement on PostgreSQL.
            candidate, created = proxy_number_take(
                conversation=conversation,
                name=spec.name,
                real_number=spec.number.e164,
                country=spec.number.country,
                now=now,
                exclude_ids=tried,
                pending_load=pending_load,
                prefer_id=prefer_number_id,
            )
        else:
            candidate = proxy_number_candidate(
                real_number=spec.number.e164,
                country=spec.number.country,
                now=now,
                exclude_ids=tried,
                pending_load=pending_load,
                prefer_id=prefer_number_id,
            )
        if candidate is None:
            raise PoolExhausted(country=spec.number.country, real_number=spec.number.e164)
        proxy_number = candidate.number
        tried.append(proxy_number.pk)
        if created is not None:
            _foreign_number_log(participant=created)
            return created
        if candidate.held_by_conversation_id is not None:
            # Expired, not swept yet: it still holds the route's unique slot (rule 7: it is
            # dead already), so it is closed here as the sweep would close it.
            conversations_close_expired(conversation_ids=[candidate.held_by_conversation_id])
            if participant is None:
                created = participant_insert(
                    conversation=conversation,
                    name=spec.name,
                    real_number=spec.number.e164,
                    country=spec.number.country,
                    number=proxy_number,
                )
                if created is not None:
                    _foreign_number_log(participant=created)
                    return created
        if participant is not None and _participant_move(
            participant=participant, proxy_number=proxy_number
        ):
            _foreign_number_log(participant=participant)
            return participant
        # A concurrent request gave this real number the same proxy number first.
        logger.info(
            "Proxy number %s was taken for %s concurrently; trying the next one",
            proxy_number.msisdn,
            mask_number(spec.number.e164),
        )
    raise assignment_conflict_error()


def _participant_move(*, participant: Participant, proxy_number: VirtualNumber) -> bool:
    """Put an inactive participant back on `proxy_number`; False when the route is taken."""
    participant.proxy_number = proxy_number
    participant.active = True
    try:
        with transaction.atomic():
            participant.save(update_fields=["proxy_number", "active"])
    except IntegrityError:
        participant.active = False
        return False
    return True


def _foreign_number_log(*, participant: Participant) -> None:
    """Say when a participant was given a number of another country (the API's `proxy_country`).

    Rule 3 prefers the participant's own country; a foreign number means that country's pool
    ran short, and the participant texts an international number: operators should rent more.
    """
    number = participant.proxy_number
    if participant.country and number.country != participant.country:
        logger.warning(
            "Participant %s of conversation %s (%s, %s) was given %s from %s: no free %s number "
            "in the pool",
            participant.pk,
            participant.conversation_id,
            mask_number(participant.real_number),
            participant.country,
            number.msisdn,
            number.country,
            participant.country,
        )


def number_status_locked(*, number_id: int) -> str | None:
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


def proxy_number_rent(*, country: str) -> VirtualNumber:
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


# --- Freeing routes ------------------------------------------------------------------------------


def expired_routes_close(*, real_number: str, proxy_number: VirtualNumber, now: datetime) -> None:
    """Close expired (not yet swept) conversations holding this route's unique slot.

    The unique constraint only sees the `active` flag, so an expired conversation keeps the
    slot until it is closed; it is dead already (rule 7), so it is closed here, as the sweep
    would close it.
    """
    conversation_ids = [
        participant.conversation_id
        for participant in participant_expired_route_list(
            real_number=real_number, proxy_number=proxy_number, now=now
        )
    ]
    if conversation_ids:
        conversations_close_expired(conversation_ids=conversation_ids)


def conversations_close_expired(*, conversation_ids: list[int]) -> int:
    """Close these expired conversations at their expiry time and free their routes.

    Call it in a transaction. The update re-checks the status, so a conversation closed
    concurrently is neither closed again nor counted; returns how many were closed.
    """
    closing = conversation_ids
    reported = events_enabled()
    if reported:
        # Which of them this closes, for their `conversation.closed` events.
        closing = list(
            Conversation.objects.filter(
                pk__in=conversation_ids, status=Conversation.Status.ACTIVE
            ).values_list("pk", flat=True)
        )
    closed = Conversation.objects.filter(pk__in=closing, status=Conversation.Status.ACTIVE).update(
        status=Conversation.Status.CLOSED,
        closed_at=F("expires_at"),
        close_reason=Conversation.CloseReason.EXPIRED,
    )
    participants_deactivate(
        participants=Participant.objects.filter(conversation_id__in=conversation_ids)
    )
    if reported:
        events_conversations_closed(conversation_ids=closing)
    return closed


def participants_deactivate(*, participants: QuerySet[Participant]) -> None:
    """Clear the `active` flag (freeing the routes) and take them off their numbers' load.

    Call it after the conversations were closed: each use is remembered as ending at its
    conversation's `closed_at` (its expiry, for an expired one).
    """
    active = participants.filter(active=True)
    freed = list(active.values_list("real_number", "proxy_number_id", "conversation__closed_at"))
    active.update(active=False)
    load = Counter(number_id for _, number_id, _ in freed)
    number_usage_record(
        uses=[
            (real_number, number_id, closed_at)
            for real_number, number_id, closed_at in freed
            if closed_at is not None
        ],
        changes=Counter({number_id: -count for number_id, count in load.items()}),
    )


# --- Which numbers each person used (rule 3's "not used recently") -------------------------------


def number_uses_record(*, uses: Iterable[tuple[str, int, datetime]]) -> None:
    """Remember that each real number used each proxy number at that time (one statement).

    An existing pair keeps the later of its two times. Call it in the transaction that gives,
    takes or frees the numbers; pairs are written in key order, so two transactions recording
    the same pairs queue instead of deadlocking.
    """
    number_uses_write(uses=uses)


# --- The numbers' stored load ---------------------------------------------------------------------


def number_loads_adjust(*, changes: Counter[int]) -> None:
    """Add `changes` (number id → participants gained or lost) to the numbers' stored load.

    Call it in the transaction that changes the participants. One statement; the rows are
    locked in id order, so two transactions touching the same numbers queue behind each other
    instead of deadlocking.
    """
    number_loads_add(changes=changes)


def number_usage_record(
    *, uses: Iterable[tuple[str, int, datetime]], changes: Counter[int]
) -> None:
    """`number_uses_record` and `number_loads_adjust` at once (one statement on PostgreSQL): the
    end of a transaction that gave numbers to participants."""
    number_usage_write(uses=uses, changes=changes)


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
