"""Writing outbound SMS: every one is first a `queued` Message row (DESIGN.md §6)."""

from __future__ import annotations

from django.db import transaction

from smsproxy.proxy.models import Conversation, Message


def message_queue_outbound(
    *,
    sender: str,
    recipient: str,
    text: str,
    purpose: str = Message.Purpose.CONVERSATION,
    conversation: Conversation | None = None,
    forwarded_from: Message | None = None,
) -> Message:
    """Queue an outbound SMS inside the caller's transaction.

    The row is written with whatever caused it; it is handed to a dispatcher only once that
    transaction commits, so a rolled-back cause never sends anything and a committed one is
    never lost (the outbox sweep picks up rows whose hand-off did not happen).
    """
    message = Message.objects.create(
        direction=Message.Direction.OUTBOUND,
        purpose=purpose,
        status=Message.Status.QUEUED,
        conversation=conversation,
        sender=sender,
        recipient=recipient,
        text=text,
        forwarded_from=forwarded_from,
    )
    transaction.on_commit(lambda: _dispatch(message.pk))
    return message


def _dispatch(message_id: int) -> None:
    from smsproxy.proxy.dispatch import message_dispatch

    message_dispatch(message_id=message_id)
