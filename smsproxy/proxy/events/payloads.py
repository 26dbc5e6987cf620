"""The `data` of each event type (DESIGN.md §11): conversations and messages exactly as the API
shows them (`ConversationOutputSerializer`, `MessageOutputSerializer`; a test holds the two to
the same shape), built here from objects the caller already has, so that writing an event
costs its INSERT and no SELECT where the change had the rows at hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework.fields import DateTimeField

from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.selectors import conversation_close_reason, conversation_is_live

_datetime_field = DateTimeField()


def datetime_data(value: datetime | None) -> str | None:
    """A time as the API writes it."""
    return _datetime_field.to_representation(value) if value is not None else None


def conversation_ref(conversation: Conversation | None) -> dict[str, str] | None:
    if conversation is None:
        return None
    return {"id": str(conversation.public_id), "reference": conversation.reference}


def conversation_data(
    *,
    conversation: Conversation,
    participants: Iterable[Participant],
    now: datetime | None = None,
) -> dict[str, Any]:
    """`GET /api/conversations/{id}/`, with `close_reason`; `participants` with their
    proxy numbers loaded."""
    now = now or timezone.now()
    live = conversation_is_live(conversation=conversation, now=now)
    closed_at = conversation.closed_at
    if closed_at is None and not live:
        closed_at = conversation.expires_at
    return {
        "id": str(conversation.public_id),
        "reference": conversation.reference,
        "status": Conversation.Status.ACTIVE if live else Conversation.Status.CLOSED,
        "created_at": datetime_data(conversation.created_at),
        "expires_at": datetime_data(conversation.expires_at),
        "closed_at": datetime_data(closed_at),
        "close_reason": conversation_close_reason(conversation=conversation, now=now),
        "participants": [
            {
                "name": participant.name,
                "number": participant.real_number,
                "country": participant.country,
                "proxy_number": participant.proxy_number.msisdn,
                "proxy_country": participant.proxy_number.country,
            }
            for participant in sorted(participants, key=lambda participant: participant.pk)
        ],
    }


def message_parties(
    *, message: Message, participants: Iterable[Participant]
) -> tuple[str | None, str | None]:
    """The names of who a message is from and to, as the thread reads ("Alice → Bob").

    A participant is recognised by their real number (as sender or recipient). In a
    participant's own text (purpose `conversation`: the inbound SMS, its forward, a call) the
    other side is the conversation's other participant: the forward Bob receives from his proxy
    number is Alice's text. Intro, system and out-of-session messages come from the service:
    their sender has no name (None).
    """
    people = list(participants)
    by_number = {participant.real_number: participant for participant in people}
    sender = by_number.get(message.sender)
    recipient = by_number.get(message.recipient)
    if message.purpose == Message.Purpose.CONVERSATION:
        if sender is not None and recipient is None:
            recipient = _other(people, sender)
        elif recipient is not None and sender is None:
            sender = _other(people, recipient)
    return (
        sender.name if sender is not None else None,
        recipient.name if recipient is not None else None,
    )


def _other(people: list[Participant], one: Participant) -> Participant | None:
    return next((p for p in people if p.real_number != one.real_number), None)


def message_data(
    *, message: Message, conversation: Conversation | None, participants: Iterable[Participant]
) -> dict[str, Any]:
    """A message as the messages list shows it, plus its conversation's `id` and `reference`."""
    sender_name, recipient_name = message_parties(message=message, participants=participants)
    return {
        "id": message.pk,
        "direction": message.direction,
        "purpose": message.purpose,
        "sender": message.sender,
        "recipient": message.recipient,
        "sender_name": sender_name,
        "recipient_name": recipient_name,
        "forwarded_from": message.forwarded_from_id,
        "text": message.text,
        "status": message.status,
        "error_code": message.error_code,
        "created_at": datetime_data(message.created_at),
        "updated_at": datetime_data(message.updated_at),
        "conversation": conversation_ref(conversation),
    }


def unrouted_data(*, message: Message, last_conversation: Conversation | None) -> dict[str, Any]:
    return {
        "id": message.pk,
        "from": message.sender,
        "to": message.recipient,
        "text": message.text,
        "created_at": datetime_data(message.created_at),
        "last_conversation": conversation_ref(last_conversation),
    }
