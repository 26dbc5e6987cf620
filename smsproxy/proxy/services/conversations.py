"""Opening, closing and expiring conversations (DESIGN.md §5, §7).

Who the participants are is `participants`; which proxy number each gets, and the numbers'
load, is `assignment`; staff moving a participant to another number, `reassign`.

Lock order: a conversation's row before any number's row. `conversation_close`,
`conversations_expire` and `participant_reassign` lock the conversation first, then touch its
numbers (their load, in id order; the KEY SHARE lock against a release). Keeping one order
means two of them touching the same rows queue instead of deadlocking. A write PostgreSQL still
aborts for a lock conflict (a release locks its number first, then closes the conversations on
it) runs again, WRITE_ATTEMPTS times in all: opening and closing a conversation.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from http import HTTPStatus

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from smsproxy.common.audit import audit_change
from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.events.record import EventType, event_conversation
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.outbox.queue import message_queue_outbound_many
from smsproxy.proxy.selectors import (
    proxy_number_last_used_with,
)
from smsproxy.proxy.services.assignment import (
    NumberSelection,
    assignment_conflict_error,
    conversations_close_expired,
    participant_assign,
    participants_deactivate,
)
from smsproxy.proxy.services.opening_statements import usage_and_intros_write
from smsproxy.proxy.services.participants import ParticipantSpec, participants_confirm
from smsproxy.proxy.services.writes import pool_served, write_retried

logger = logging.getLogger(__name__)

REFERENCE_MAX_LENGTH = Conversation._meta.get_field("reference").max_length or 200
# Ten years: beyond any marketplace booking, and far from datetime's overflow.
TTL_MAX_SECONDS = 10 * 366 * 24 * 3600
EXPIRE_BATCH_SIZE = 500

# --- Opening a conversation ----------------------------------------------------------------------


def conversation_create(
    *,
    participants: Sequence[ParticipantSpec],
    reference: str = "",
    ttl: int | None = None,
    intro: bool = True,
    number_selection: str = NumberSelection.AVOID_STICKY,
) -> Conversation:
    """Open a conversation between two real numbers, each given a proxy number, and introduce them.

    `participants` are the two specs the edge parsed and checked. Their numbers are confirmed
    with Number Insight here, outside the write transaction: no row lock waits on Vonage.
    Proxy numbers are assigned by rule 3 (or `number_selection` prefer-sticky); the intro SMS
    (unless `intro` is false) are queued in the same transaction. `ttl` (seconds, at most
    TTL_MAX_SECONDS) or PROXY_CONVERSATION_TTL sets the expiry.
    """
    if len(participants) != 2:
        raise ValueError(f"A conversation has two participants, not {len(participants)}")
    selection = NumberSelection(number_selection)
    confirmed = participants_confirm(specs=participants)
    ttl_seconds = ttl if ttl is not None else max(int(settings.PROXY_CONVERSATION_TTL), 0)
    return pool_served(
        lambda: write_retried(
            lambda: _conversation_write(
                specs=confirmed,
                reference=reference,
                ttl=ttl_seconds,
                intro=intro,
                selection=selection,
            ),
            what="Opening a conversation",
            conflict_error=assignment_conflict_error,
        )
    )


def _conversation_write(
    *,
    specs: Sequence[ParticipantSpec],
    reference: str,
    ttl: int,
    intro: bool,
    selection: NumberSelection,
) -> Conversation:
    with transaction.atomic():
        now = timezone.now()
        # Inserted with the first participant (one statement on PostgreSQL).
        conversation = Conversation(
            reference=reference,
            ttl=ttl,
            expires_at=now + timedelta(seconds=ttl) if ttl else None,
        )
        # The stored loads are written once, at the end; until then the numbers already given
        # in this conversation count here, so the second participant sees the first one's load.
        assigned: Counter[int] = Counter()
        created = []
        for spec, other_spec in ((specs[0], specs[1]), (specs[1], specs[0])):
            sticky = None
            if selection == NumberSelection.PREFER_STICKY:
                sticky = proxy_number_last_used_with(
                    real_number=spec.number.e164, other_real_number=other_spec.number.e164
                )
            participant = participant_assign(
                conversation=conversation,
                spec=spec,
                now=now,
                pending_load=assigned,
                prefer_number_id=sticky,
            )
            assigned[participant.proxy_number_id] += 1
            created.append(participant)
        event_conversation(
            type=EventType.CONVERSATION_CREATED, conversation=conversation, participants=created
        )
        # The use history, the numbers' load and the intro SMS: one statement on PostgreSQL.
        usage_and_intros_write(
            uses=[(p.real_number, p.proxy_number_id, now) for p in created],
            changes=assigned,
            messages=[
                intro_message(participant=participant, other=other)
                for participant, other in ((created[0], created[1]), (created[1], created[0]))
            ]
            if intro
            else [],
        )
    _participants_prefetched(conversation=conversation, participants=created)
    logger.info(
        "Opened conversation %s (reference %r) on %s and %s",
        conversation.public_id,
        reference,
        created[0].proxy_number.msisdn,
        created[1].proxy_number.msisdn,
    )
    return conversation


def _participants_prefetched(
    *, conversation: Conversation, participants: Sequence[Participant]
) -> None:
    """Give `conversation.participants.all()` the rows just written, in id order, as
    `prefetch_related` would: the API answers with them without reading them back."""
    queryset = conversation.participants.get_queryset()
    queryset._result_cache = sorted(participants, key=lambda participant: participant.pk)
    queryset._prefetch_done = True  # type: ignore[attr-defined]
    conversation._prefetched_objects_cache = {"participants": queryset}  # type: ignore[attr-defined]


def intro_queue(*, participant: Participant, other: Participant | None) -> Message:
    """Queue rule 5's intro SMS to `participant`, from their proxy number."""
    return message_queue_outbound_many(
        messages=[intro_message(participant=participant, other=other)]
    )[0]


def intro_message(*, participant: Participant, other: Participant | None) -> Message:
    """Rule 5's intro SMS to `participant`, from their proxy number (not saved yet)."""
    return Message(
        purpose=Message.Purpose.INTRO,
        sender=participant.proxy_number.msisdn,
        recipient=participant.real_number,
        text=intro_text(other_name=other.name if other else ""),
        conversation=participant.conversation,
    )


def intro_text(*, other_name: str) -> str:
    """Rule 5: tells a participant that this number reaches the other one."""
    return (
        f"You can now text {other_name or 'your contact'} at this number. "
        "Your own number stays private."
    )


# --- Closing and expiry --------------------------------------------------------------------------


def conversation_close(
    *,
    conversation: Conversation,
    reason: str,
    now: datetime | None = None,
    actor: AbstractBaseUser | None = None,
) -> Conversation:
    """Close a conversation and free its participants' numbers at once (idempotent).

    A conversation already past `expires_at` is recorded as expired at its expiry time,
    whoever closes it: that is when it stopped routing. Closed by staff (`actor`): written to
    the conversation's admin history in the same transaction (nothing when already closed).
    """
    if reason not in Conversation.CloseReason.values:
        raise ValueError(f"Unknown close reason {reason!r}")
    return write_retried(
        lambda: _conversation_close_write(
            conversation=conversation, reason=reason, now=now, actor=actor
        ),
        what="Closing a conversation",
        conflict_error=_close_conflict_error,
    )


def _conversation_close_write(
    *,
    conversation: Conversation,
    reason: str,
    now: datetime | None,
    actor: AbstractBaseUser | None,
) -> Conversation:
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status == Conversation.Status.CLOSED:
            return locked
        now = now or timezone.now()
        if locked.expires_at is not None and locked.expires_at <= now:
            reason, closed_at, was = Conversation.CloseReason.EXPIRED, locked.expires_at, "expired"
        else:
            closed_at, was = now, "active"
        locked.status = Conversation.Status.CLOSED
        locked.closed_at = closed_at
        locked.close_reason = reason
        locked.save(update_fields=["status", "closed_at", "close_reason"])
        participants_deactivate(participants=Participant.objects.filter(conversation=locked))
        participants = Participant.objects.filter(conversation=locked)
        event_conversation(
            type=EventType.CONVERSATION_CLOSED,
            conversation=locked,
            participants=participants.select_related("proxy_number"),
        )
        if actor is not None:
            freed = ", ".join(
                participants.order_by("id").values_list("proxy_number__msisdn", flat=True)
            )
            audit_change(
                actor=actor,
                obj=locked,
                change=f"Closed: status {was} → closed, reason {reason}; proxy numbers freed: "
                f"{freed}.",
            )
    logger.info("Closed conversation %s (%s)", locked.public_id, reason)
    return locked


def _close_conflict_error() -> ApplicationError:
    return ApplicationError(
        "This conversation is being changed by concurrent requests; try again.",
        code="close_conflict",
        status=HTTPStatus.CONFLICT,
    )


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
            closed = conversations_close_expired(conversation_ids=ids)
        total += closed
        if on_batch is not None:
            on_batch(closed)
