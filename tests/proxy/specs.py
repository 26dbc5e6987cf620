"""Participant specs for service-level tests, built as the API serializer builds them."""

from __future__ import annotations

from typing import Any

from smsproxy.common.phone import phone_parse
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.services.conversations import conversation_create
from smsproxy.proxy.services.participants import ParticipantSpec


def participant_spec(*, position: int, number: str, name: str = "") -> ParticipantSpec:
    parsed = phone_parse(number=number)
    assert parsed is not None, f"not a number: {number!r}"
    return ParticipantSpec(position=position, name=name, number=parsed)


def participant_specs(*people: str | tuple[str, str]) -> list[ParticipantSpec]:
    """Specs of "number" or ("number", "name") entries, in order."""
    specs = []
    for position, person in enumerate(people):
        number, name = (person, "") if isinstance(person, str) else person
        specs.append(participant_spec(position=position, number=number, name=name))
    return specs


def open_between(a: str, b: str, **kwargs: Any) -> Conversation:
    """Alice (`a`) and Bob (`b`) in a new conversation."""
    return conversation_create(participants=participant_specs((a, "Alice"), (b, "Bob")), **kwargs)


def person(index: int) -> str:
    """A real number in the GB range reserved for drama (the sandbox answers it as valid)."""
    return f"+447700900{500 + index:03d}"


def proxy_of(conversation: Conversation, real_number: str) -> VirtualNumber:
    return conversation.participants.get(real_number=real_number).proxy_number


def snapshot() -> tuple[int, int, int]:
    return (Conversation.objects.count(), Participant.objects.count(), Message.objects.count())


def assert_closed_as_expired(conversation: Conversation) -> None:
    """Closed with reason expired at its expiry time, its participants' routes freed."""
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.close_reason == Conversation.CloseReason.EXPIRED
    assert conversation.closed_at == conversation.expires_at
    assert not conversation.participants.filter(active=True).exists()
