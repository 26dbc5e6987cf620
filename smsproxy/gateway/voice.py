"""Vonage's Voice API webhooks and NCCOs: read into typed objects, and built (docs/VOICE.md).

Vonage's voice field names (`uuid`, `conversation_uuid`, `from`, `to`, `direction`, `status`,
`duration`) and the NCCO's shape are spelled here and nowhere else: the proxy app receives a
`CallAnswer` or a `CallEvent` and answers with `ncco_connect(...)` or `ncco_talk(...)`. Both
webhooks arrive flattened to a dict of strings by `signatures.webhook_params` (the answer
webhook as a GET query by default, events as POST JSON).

The builders below the parsers are for whatever plays Vonage's part: `simulate_call`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from .webhooks import WebhookIgnored, e164_from_vonage, malformed, params_clean

# Vonage's uuids are 32 hex digits with dashes ("63f61863-4a51-4f6b-86e1-46edebcf9356"),
# conversation uuids the same with a "CON-" prefix; anything far longer is not Vonage's.
UUID_MAX_LENGTH = 64
_UUID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
# A phone call lasting longer than a week is not a duration Vonage reports.
MAX_DURATION_SECONDS = 7 * 24 * 3600
# What a number field (sender, recipient) of a stored call may hold when it is not E.164.
_RAW_NUMBER_MAX_LENGTH = 16


class CallStatus(enum.StrEnum):
    """The `status` of a call leg in Vonage's event webhook."""

    STARTED = "started"
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"
    BUSY = "busy"
    CANCELLED = "cancelled"
    FAILED = "failed"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    UNANSWERED = "unanswered"


TERMINAL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.CANCELLED,
        CallStatus.FAILED,
        CallStatus.REJECTED,
        CallStatus.TIMEOUT,
        CallStatus.UNANSWERED,
    }
)


class CallLeg(enum.StrEnum):
    """Which leg of a masked call an event is about (Vonage's `direction`)."""

    CALLER = "caller"  # `inbound`: the participant's call into our number
    CALLEE = "callee"  # `outbound`: the leg the NCCO's `connect` places to the other participant


_LEGS = {"inbound": CallLeg.CALLER, "outbound": CallLeg.CALLEE}


@dataclass(frozen=True)
class CallAnswer:
    """Vonage asks what to do with a call to one of our numbers."""

    uuid: str  # this (the caller's) leg
    conversation_uuid: str
    caller: str | None  # E.164; None for a withheld or non-phone caller id
    called: str  # E.164: our number


@dataclass(frozen=True)
class CallEvent:
    """A state change of one leg of a call."""

    uuid: str  # the leg's
    conversation_uuid: str  # the call's: both legs share it
    status: CallStatus
    leg: CallLeg
    sender: str  # `from`: E.164, or the raw value (at most 16 characters) when not a number
    recipient: str  # `to`, likewise
    duration: int | None = None  # seconds, on `completed`


def _uuid(params: dict[str, str], field: str) -> str:
    value = params.get(field, "").strip()
    if not value:
        raise malformed(f"Voice webhook without {field}.", field, "This field is required.")
    if not _UUID_RE.fullmatch(value):
        raise malformed(
            f"{field} is not a Vonage uuid (at most {UUID_MAX_LENGTH} letters, digits, dashes).",
            field,
            "Invalid.",
        )
    return value


def _number(value: str) -> str:
    return e164_from_vonage(value) or value.strip()[:_RAW_NUMBER_MAX_LENGTH]


def call_answer_parse(params: dict[str, str]) -> CallAnswer:
    """Read the answer webhook's parameters; ApplicationError(code="malformed") when unusable."""
    params = params_clean(params)
    called = e164_from_vonage(params.get("to", ""))
    if called is None:
        raise malformed("The answer webhook's `to` is not a phone number.", "to", "Not a number.")
    return CallAnswer(
        uuid=_uuid(params, "uuid"),
        conversation_uuid=_uuid(params, "conversation_uuid"),
        caller=e164_from_vonage(params.get("from", "")),
        called=called,
    )


def call_event_parse(params: dict[str, str]) -> CallEvent:
    """Read an event webhook's parameters.

    ApplicationError(code="malformed") when unusable; WebhookIgnored for an event that is not a
    leg's status (Vonage also sends `transfer`, `input`, `record` events to the same URL) or a
    status Vonage may add later.
    """
    params = params_clean(params)
    raw_status = params.get("status", "").strip().lower()
    if not raw_status:
        raise WebhookIgnored(f"Voice event of type {params.get('type', '')[:32]!r}: ignored.")
    try:
        status = CallStatus(raw_status)
    except ValueError:
        raise WebhookIgnored(f"Voice event with status {raw_status[:32]!r}: ignored.") from None
    leg = _LEGS.get(params.get("direction", "").strip().lower())
    if leg is None:
        raise malformed(
            "A call event's direction must be inbound or outbound.", "direction", "Invalid."
        )
    return CallEvent(
        uuid=_uuid(params, "uuid"),
        conversation_uuid=_uuid(params, "conversation_uuid"),
        status=status,
        leg=leg,
        sender=_number(params.get("from", "")),
        recipient=_number(params.get("to", "")),
        duration=_duration(params.get("duration", "")) if status is CallStatus.COMPLETED else None,
    )


def _duration(value: str) -> int | None:
    """Seconds, or None for a value that is not a plausible duration (refusing the event
    would lose its status for the sake of a number)."""
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        return None
    seconds = int(value)
    return seconds if seconds <= MAX_DURATION_SECONDS else None


# --- NCCOs -----------------------------------------------------------------------------------


def _wire_number(number: str) -> str:
    """E.164 with '+' → Vonage's digits."""
    return number.strip().removeprefix("+")


def ncco_connect(*, caller_id: str, callee: str) -> list[dict[str, Any]]:
    """Connect the call to `callee`'s phone, showing `caller_id` (one of our numbers: Vonage
    refuses a `from` the account does not own, and it is what keeps the caller's number
    private). Both E.164 with '+'."""
    return [
        {
            "action": "connect",
            "from": _wire_number(caller_id),
            "endpoint": [{"type": "phone", "number": _wire_number(callee)}],
        }
    ]


def ncco_talk(text: str) -> list[dict[str, Any]]:
    """Say `text` to the caller; with no action after it, Vonage ends the call."""
    return [{"action": "talk", "text": text}]


@dataclass(frozen=True)
class NccoOutcome:
    """What an NCCO does to a call, read back (for `simulate_call`)."""

    connect_to: str = ""  # E.164 of the phone connected
    caller_id: str = ""  # E.164 shown to it
    talk: str = ""


def ncco_outcome(ncco: Any) -> NccoOutcome:
    """Read an NCCO's first `connect` (to a phone) or `talk`; ValueError if it has neither."""
    if not isinstance(ncco, list):
        raise ValueError("An NCCO is a JSON array of actions.")
    for action in ncco:
        if not isinstance(action, dict):
            continue
        if action.get("action") == "talk":
            return NccoOutcome(talk=str(action.get("text", "")))
        if action.get("action") == "connect":
            phones = [e for e in action.get("endpoint") or [] if isinstance(e, dict)]
            phone = next((e for e in phones if e.get("type") == "phone"), None)
            if phone is not None:
                return NccoOutcome(
                    connect_to=f"+{phone.get('number', '')}",
                    caller_id=f"+{action.get('from', '')}" if action.get("from") else "",
                )
    raise ValueError("The NCCO neither connects to a phone nor talks.")


# --- Building webhooks, as Vonage sends them -------------------------------------------------


def call_answer_params(
    *, caller: str, called: str, uuid: str, conversation_uuid: str
) -> dict[str, str]:
    """The query of Vonage's answer webhook for a call from `caller` to `called` (E.164)."""
    return {
        "from": _wire_number(caller),
        "to": _wire_number(called),
        "uuid": uuid,
        "conversation_uuid": conversation_uuid,
    }


def call_event_payload(
    *,
    uuid: str,
    conversation_uuid: str,
    status: CallStatus,
    leg: CallLeg,
    sender: str,
    recipient: str,
    timestamp: str,
    duration: int | None = None,
) -> dict[str, str]:
    """The JSON body of Vonage's event webhook for one leg's `status` (numbers E.164)."""
    body = {
        "from": _wire_number(sender),
        "to": _wire_number(recipient),
        "uuid": uuid,
        "conversation_uuid": conversation_uuid,
        "status": status.value,
        "direction": "inbound" if leg is CallLeg.CALLER else "outbound",
        "timestamp": timestamp,
    }
    if duration is not None:
        body["duration"] = str(duration)
    return body
