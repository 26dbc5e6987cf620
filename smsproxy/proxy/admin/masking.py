"""Masked displays of the real numbers on conversation, participant and message pages."""

from __future__ import annotations

from typing import ClassVar

from django.contrib import admin

from smsproxy.common.admin_privacy import RealNumberMaskingMixin
from smsproxy.common.privacy import mask_number, text_mask_numbers
from smsproxy.proxy.models import Message, Participant


def participant_name(participant: Participant) -> str:
    """The participant's name, or "participant #12" (never a number: support staff read it)."""
    return participant.name or f"participant #{participant.pk}"


def participant_label(participant: Participant, *, masked: bool) -> str:
    """ "Alice (+447700900123) via +447700900100", the real number masked if `masked`."""
    real_number = mask_number(participant.real_number) if masked else participant.real_number
    who = f"{participant.name} ({real_number})" if participant.name else real_number
    return f"{who} via {participant.proxy_number.msisdn}"


class MessageNumbersMasking(RealNumberMaskingMixin):
    """Masks a message's real-number side: an outbound text goes from a proxy number to a
    person; an inbound text or a call comes from a person to a proxy number."""

    masked_fields: ClassVar = {
        "sender": "sender_masked",
        "recipient": "recipient_masked",
        # A provider's error text may quote the number it refused.
        "error_text": "error_text_masked",
    }

    @admin.display(description="sender")
    def sender_masked(self, message: Message) -> str:
        if message.direction == Message.Direction.OUTBOUND:
            return message.sender
        return mask_number(message.sender)

    @admin.display(description="recipient")
    def recipient_masked(self, message: Message) -> str:
        if message.direction == Message.Direction.OUTBOUND:
            return mask_number(message.recipient)
        return message.recipient

    @admin.display(description="error text")
    def error_text_masked(self, message: Message) -> str:
        return text_mask_numbers(message.error_text)
