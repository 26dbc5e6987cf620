"""Non-trivial reads of conversations and participants."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from smsproxy.proxy.models import Participant


def live_conversation_q(*, prefix: str = "", now: datetime | None = None) -> Q:
    """Conversations that route messages: active and not past `expires_at`.

    An expired conversation is dead from `expires_at` on, before the sweep closes it.
    `prefix` points at the conversation from another model ("conversation__").
    """
    now = now or timezone.now()
    return Q(**{f"{prefix}status": "active"}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def participant_live_list(*, now: datetime | None = None) -> QuerySet[Participant]:
    """Participants whose conversation is live right now."""
    return Participant.objects.filter(active=True).filter(
        live_conversation_q(prefix="conversation__", now=now)
    )
