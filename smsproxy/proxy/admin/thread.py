"""The conversation page's thread: who wrote to whom, in order, each text beside its forward."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from smsproxy.common.admin_display import status_badge
from smsproxy.common.privacy import mask_number, text_mask_numbers
from smsproxy.proxy.admin.errors import message_error_description
from smsproxy.proxy.admin.masking import participant_label
from smsproxy.proxy.models import Conversation, Message, Participant

# Texts the marketplace or the service sent, not one participant to the other.
_SYSTEM = "smsproxy"


@dataclass
class ThreadLine:
    message: Message
    sender: str
    recipient: str
    badge: SafeString
    error: str
    error_description: str  # what Vonage says the error code means
    forwards: list[ThreadLine] = field(default_factory=list)


def _name(participant: Participant, *, masked: bool) -> str:
    if participant.name:
        return participant.name
    return mask_number(participant.real_number) if masked else participant.real_number


def _line(message: Message, by_number: dict[str, Participant], *, masked: bool) -> ThreadLine:
    def partner_of(participant: Participant | None) -> str:
        others = [p for p in by_number.values() if p is not participant]
        return _name(others[0], masked=masked) if participant and others else _SYSTEM

    def name_of(number: str) -> str:
        participant = by_number.get(number)
        if participant is not None:
            return _name(participant, masked=masked)
        return mask_number(number) if masked else number

    if message.direction == Message.Direction.OUTBOUND:
        # A forward comes from the partner of whom it reaches; anything else from the service.
        recipient = by_number.get(message.recipient)
        sender = partner_of(recipient) if message.forwarded_from_id else _SYSTEM
        receiver = name_of(message.recipient)
    else:
        # An inbound text or a call, from a person to a proxy number: meant for the partner.
        author = by_number.get(message.sender)
        sender, receiver = name_of(message.sender), partner_of(author)
    error = f"{message.error_code}: {message.error_text}".strip(": ")
    return ThreadLine(
        message=message,
        sender=sender,
        recipient=receiver,
        badge=status_badge(message.status, message.get_status_display()),
        error=text_mask_numbers(error) if masked else error,
        error_description=message_error_description(message),
    )


def conversation_thread(
    *, conversation: Conversation, limit: int, masked: bool
) -> list[ThreadLine]:
    """The latest `limit` messages, oldest first, each forward under the text it carries."""
    participants = list(conversation.participants.all())
    by_number = {participant.real_number: participant for participant in participants}
    messages = list(
        Message.objects.filter(conversation=conversation)
        .prefetch_related("parts")
        .order_by("-created_at", "-id")[:limit]
    )
    messages.reverse()
    lines = {message.pk: _line(message, by_number, masked=masked) for message in messages}
    thread = []
    for message in messages:
        carried = lines.get(message.forwarded_from_id or 0)
        if carried is not None:
            carried.forwards.append(lines[message.pk])
        else:
            thread.append(lines[message.pk])
    return thread


def thread_html(*, conversation: Conversation, limit: int, masked: bool) -> SafeString:
    participants = conversation.participants.all()
    return render_to_string(
        "admin/proxy/conversation/thread.html",
        {
            "participants": [participant_label(p, masked=masked) for p in participants],
            "thread": conversation_thread(conversation=conversation, limit=limit, masked=masked),
        },
    )
