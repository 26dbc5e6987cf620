"""Writing events (DESIGN.md §11) inside the transaction of the change they report.

An event is one INSERT in the caller's transaction, so a change that rolls back reports
nothing and a committed one is never lost; it is handed to the dispatcher after the commit.
With PROXY_EVENTS_URL empty nothing is written at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch

from smsproxy.common.inserts import row_insert
from smsproxy.proxy.events import dispatch
from smsproxy.proxy.events.payloads import (
    conversation_data,
    message_data,
    unrouted_data,
)
from smsproxy.proxy.models import Conversation, Event, Message, Participant


class EventType(StrEnum):
    CONVERSATION_CREATED = "conversation.created"
    CONVERSATION_CLOSED = "conversation.closed"
    CONVERSATION_REOPENED = "conversation.reopened"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_STATUS = "message.status"
    MESSAGE_UNROUTED = "message.unrouted"
    MESSAGE_BLOCKED = "message.blocked"
    CALL_COMPLETED = "call.completed"  # a masked call ended (completed, busy, failed, ...)


# The outbound statuses a `message.status` event reports.
REPORTED_STATUSES = frozenset(
    {
        Message.Status.SENT,
        Message.Status.DELIVERED,
        Message.Status.FAILED,
        Message.Status.REJECTED,
        Message.Status.EXPIRED,
    }
)


def events_enabled() -> bool:
    return bool(settings.PROXY_EVENTS_URL)


def event_record(
    *, type: EventType, data: dict[str, Any], conversation: Conversation | None
) -> Event | None:
    """Write one event in the caller's transaction; None when events are off."""
    if not events_enabled():
        return None
    event = row_insert(Event(type=type, conversation=conversation, data=data))
    transaction.on_commit(dispatch.events_dispatch, robust=True)
    return event


def event_conversation(
    *, type: EventType, conversation: Conversation, participants: Iterable[Participant]
) -> Event | None:
    if not events_enabled():
        return None
    return event_record(
        type=type,
        conversation=conversation,
        data=conversation_data(conversation=conversation, participants=participants),
    )


def events_conversations_closed(*, conversation_ids: list[int]) -> None:
    """`conversation.closed` for each of these (just closed) conversations; one query."""
    if not events_enabled() or not conversation_ids:
        return
    conversations = Conversation.objects.filter(pk__in=conversation_ids).prefetch_related(
        Prefetch("participants", queryset=Participant.objects.select_related("proxy_number"))
    )
    for conversation in conversations.order_by("pk"):
        event_conversation(
            type=EventType.CONVERSATION_CLOSED,
            conversation=conversation,
            participants=conversation.participants.all(),
        )


def event_message(
    *,
    type: EventType,
    message: Message,
    conversation: Conversation | None,
    participants: Iterable[Participant] | None = None,
) -> Event | None:
    """A `message.*` event; `conversation` is the message's, already loaded by the caller, and
    `participants` its participants when the caller has them (else read once, for the names)."""
    if not events_enabled():
        return None
    if participants is None:
        participants = list(conversation.participants.all()) if conversation is not None else []
    return event_record(
        type=type,
        conversation=conversation,
        data=message_data(message=message, conversation=conversation, participants=participants),
    )


def event_message_status(*, message_id: int) -> Event | None:
    """`message.status` for an outbound message whose new status was just written (in this
    transaction): read back once, with its conversation, whatever the caller had loaded."""
    if not events_enabled():
        return None
    message = Message.objects.select_related("conversation").get(pk=message_id)
    if message.direction != Message.Direction.OUTBOUND or message.status not in REPORTED_STATUSES:
        return None
    return event_message(
        type=EventType.MESSAGE_STATUS, message=message, conversation=message.conversation
    )


def event_message_unrouted(*, message: Message) -> Event | None:
    """`message.unrouted`, with the last conversation of that sender on that number. Kept in
    that conversation's order: the marketplace hears of its close before of the late text."""
    if not events_enabled():
        return None
    last = (
        Participant.objects.filter(
            real_number=message.sender, proxy_number__msisdn=message.recipient
        )
        .select_related("conversation")
        .order_by("-created_at", "-id")
        .first()
    )
    conversation = last.conversation if last is not None else None
    return event_record(
        type=EventType.MESSAGE_UNROUTED,
        conversation=conversation,
        data=unrouted_data(message=message, last_conversation=conversation),
    )
