"""Reopening a closed or expired conversation (DESIGN.md §7 `POST …/reopen/`).

Each participant gets their old proxy number back when it is still eligible and free for their
real number, else a new one by rule 3 — through `participant_assign`, so the unique constraint
on live (real number, proxy number) decides under concurrency exactly as in create, and the
lock order is the module's: the conversation's row, then the numbers'. Only a participant whose
number changed is introduced again.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from smsproxy.common.audit import audit_change
from smsproxy.common.phone import RealNumber
from smsproxy.proxy.events.record import EventType, event_conversation
from smsproxy.proxy.models import Conversation, Participant
from smsproxy.proxy.selectors import conversation_is_live
from smsproxy.proxy.services.assignment import (
    assignment_conflict_error,
    conversations_close_expired,
    number_usage_record,
    participant_assign,
)
from smsproxy.proxy.services.conversations import intro_queue
from smsproxy.proxy.services.participants import ParticipantSpec
from smsproxy.proxy.services.writes import pool_served, write_retried

logger = logging.getLogger(__name__)


def conversation_reopen(
    *, conversation: Conversation, ttl: int | None = None, actor: AbstractBaseUser | None = None
) -> Conversation:
    """Make a closed or expired conversation live again; a live one is returned unchanged.

    The TTL restarts: `ttl` seconds (then kept as the conversation's TTL), else the one it was
    opened with (0: no expiry). 503 `pool_exhausted` when a participant whose number is taken
    finds no other (after renting, with PROXY_AUTO_PROVISION). Reopened by staff (`actor`):
    written to the conversation's admin history in the same transaction.
    """
    return pool_served(
        lambda: write_retried(
            lambda: _reopen_write(conversation_id=conversation.pk, ttl=ttl, actor=actor),
            what="Reopening a conversation",
            conflict_error=assignment_conflict_error,
        )
    )


def _reopen_write(
    *, conversation_id: int, ttl: int | None, actor: AbstractBaseUser | None
) -> Conversation:
    with transaction.atomic():
        now = timezone.now()
        locked = Conversation.objects.select_for_update().get(pk=conversation_id)
        if conversation_is_live(conversation=locked, now=now):
            return locked
        was = (
            f"closed (reason {locked.close_reason})"
            if locked.status == Conversation.Status.CLOSED
            else "expired"
        )
        if locked.status == Conversation.Status.ACTIVE:
            # Expired, not swept yet: its participants still hold their routes. Closed first,
            # as the sweep would, so that the loads and the history stay exact.
            conversations_close_expired(conversation_ids=[locked.pk])
        locked.ttl = ttl if ttl is not None else locked.ttl
        locked.status = Conversation.Status.ACTIVE
        locked.closed_at = None
        locked.close_reason = ""
        locked.expires_at = now + timedelta(seconds=locked.ttl) if locked.ttl else None
        locked.save(update_fields=["ttl", "status", "closed_at", "close_reason", "expires_at"])

        participants = list(
            Participant.objects.filter(conversation=locked).select_related("proxy_number")
        )
        assigned: Counter[int] = Counter()
        moved: list[tuple[Participant, str]] = []
        for position, participant in enumerate(participants):
            participant.conversation = locked
            previous, previous_msisdn = participant.proxy_number_id, participant.proxy_number.msisdn
            spec = ParticipantSpec(
                position=position,
                name=participant.name,
                number=RealNumber(e164=participant.real_number, country=participant.country),
            )
            participant_assign(
                conversation=locked,
                spec=spec,
                now=now,
                pending_load=assigned,
                prefer_number_id=previous,
                participant=participant,
            )
            assigned[participant.proxy_number_id] += 1
            if participant.proxy_number_id != previous:
                moved.append((participant, previous_msisdn))
        number_usage_record(
            uses=[(p.real_number, p.proxy_number_id, now) for p in participants], changes=assigned
        )
        event_conversation(
            type=EventType.CONVERSATION_REOPENED, conversation=locked, participants=participants
        )
        for participant, _ in moved:
            other = next((p for p in participants if p.pk != participant.pk), None)
            intro_queue(participant=participant, other=other)
        if actor is not None:
            audit_change(actor=actor, obj=locked, change=_reopen_change(locked, was, moved))
    logger.info(
        "Reopened conversation %s (%d participant(s) on a new number)",
        locked.public_id,
        len(moved),
    )
    return locked


def _reopen_change(
    conversation: Conversation, was: str, moved: list[tuple[Participant, str]]
) -> str:
    expires = (
        f"expires {conversation.expires_at:%Y-%m-%d %H:%M:%S %Z}"
        if conversation.expires_at
        else "no expiry"
    )
    numbers = "".join(
        f"; {p.name or f'participant #{p.pk}'}'s proxy number {was_msisdn} → "
        f"{p.proxy_number.msisdn}"
        for p, was_msisdn in moved
    )
    return f"Reopened: status {was} → active, {expires}{numbers}."
