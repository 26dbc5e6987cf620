"""How long a conversation lives (DESIGN.md §3 `PROXY_TTL_FROM`).

With `created` (the default) a conversation expires its TTL after it was opened (or reopened).
With `last_message` every routed inbound message and every system message pushes `expires_at`
to now + TTL, so a conversation in use never expires under its participants; intro SMS do not
count (they are ours, not the participants').
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from smsproxy.proxy.models import Conversation

TTL_FROM_CREATED = "created"
TTL_FROM_LAST_MESSAGE = "last_message"


def conversation_expiry_push(*, conversation: Conversation, now: datetime | None = None) -> None:
    """With PROXY_TTL_FROM=last_message, move the expiry to now + the conversation's TTL.

    One conditional UPDATE and no read: the caller has the conversation loaded already (the
    webhook's route lookup selects it). The condition keeps a conversation without expiry
    without one, leaves a conversation closed concurrently alone, and never moves an expiry
    back. Call it in the transaction that stores the message.
    """
    if settings.PROXY_TTL_FROM != TTL_FROM_LAST_MESSAGE or not conversation.ttl:
        return
    expires_at = (now or timezone.now()) + timedelta(seconds=conversation.ttl)
    updated = Conversation.objects.filter(
        pk=conversation.pk,
        status=Conversation.Status.ACTIVE,
        expires_at__isnull=False,
        expires_at__lt=expires_at,
    ).update(expires_at=expires_at)
    if updated:
        conversation.expires_at = expires_at
