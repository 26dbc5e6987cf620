"""The body of `POST /api/conversations/` read without DRF's field machinery, when it is valid.

`ConversationCreateInputSerializer` copies its fields for every request and runs each value
through several layers; on the API's busiest write that cost more CPU than the checks
themselves (bench/RESULTS.md). `create_arguments` runs the same checks directly on a body whose
every value has the plain type a client sends (strings, an integer, a boolean) and answers
`conversation_create`'s arguments exactly as the serializer's `validated_data` would. Anything
else — a wrong or unusual type, a value out of bounds, a number that does not parse, a phone
number in a name — answers None: the serializer then reads the body and, since it is not valid,
answers the error (the same status, `code` and message as ever: only the serializer writes
errors).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from smsproxy.common.phone import phone_parse
from smsproxy.common.redaction import text_redact_numbers
from smsproxy.proxy.services.assignment import NumberSelection
from smsproxy.proxy.services.conversations import REFERENCE_MAX_LENGTH, TTL_MAX_SECONDS
from smsproxy.proxy.services.participants import NAME_MAX_LENGTH, ParticipantSpec

NUMBER_MAX_LENGTH = 32  # ParticipantInputSerializer.number's max_length
_SELECTIONS = frozenset(choice.value for choice in NumberSelection)


def create_arguments(data: Any) -> dict[str, Any] | None:
    """`conversation_create`'s arguments from a valid body, or None (see the module)."""
    if type(data) is not dict:
        return None
    items = data.get("participants")
    if type(items) is not list or len(items) != 2:
        return None
    participants = []
    for position, item in enumerate(items):
        spec = _participant(position, item)
        if spec is None:
            return None
        participants.append(spec)
    reference = _text(data.get("reference", ""), REFERENCE_MAX_LENGTH)
    ttl = data.get("ttl")
    intro = data.get("intro", True)
    selection = data.get("number_selection", NumberSelection.AVOID_STICKY.value)
    if (
        reference is None
        or not (ttl is None or (type(ttl) is int and 1 <= ttl <= TTL_MAX_SECONDS))
        or type(intro) is not bool
        or type(selection) is not str
        or selection not in _SELECTIONS
    ):
        return None
    return {
        "participants": participants,
        "reference": reference,
        "ttl": ttl,
        "intro": intro,
        "number_selection": selection,
    }


def _participant(position: int, item: Any) -> ParticipantSpec | None:
    """ParticipantInputSerializer's checks, for an item that passes them."""
    if type(item) is not dict:
        return None
    text = _text(item.get("number"), NUMBER_MAX_LENGTH)
    name = _text(item.get("name", ""), NAME_MAX_LENGTH)
    if not text or name is None:
        return None
    number = phone_parse(number=text)
    if number is None:
        return None
    name = " ".join(name.split())
    region = number.country or settings.PROXY_DEFAULT_COUNTRY
    if text_redact_numbers(text=name, region=region) != name:
        return None
    return ParticipantSpec(position=position, name=name, number=number)


def _text(value: Any, max_length: int) -> str | None:
    """A CharField's value (whitespace trimmed) when it is a string that passes its checks
    (length, no NUL, no lone surrogate), else None."""
    if type(value) is not str:
        return None
    value = value.strip()
    if len(value) > max_length or "\x00" in value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate, refused by DRF's CharField
        return None
    return value
