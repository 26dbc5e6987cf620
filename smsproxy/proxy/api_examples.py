"""OpenAPI examples of the conversations API: real bodies a marketplace backend sends and gets.

Two participants with numbers from the ranges reserved for drama (so the sandbox serves them),
each given a proxy number of the pool, and a TTL of a day — a delivery or a ride is over well
before that, and a late "I left it at the door" still reaches the other person.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

CONVERSATION_ID = "8f14e45f-ceea-4167-a2e5-3b4c5d6e7f80"
CREATED_AT = "2026-05-04T18:30:00.000000Z"
EXPIRES_AT = "2026-05-05T18:30:00.000000Z"

_PARTICIPANTS = [
    {
        "name": "Alice",
        "number": "+447700900123",
        "country": "GB",
        "proxy_number": "+447700900001",
        "proxy_country": "GB",
    },
    {
        "name": "Bob",
        "number": "+447700900456",
        "country": "GB",
        "proxy_number": "+447700900002",
        "proxy_country": "GB",
    },
]

CONVERSATION = {
    "id": CONVERSATION_ID,
    "reference": "booking-42",
    "status": "active",
    "created_at": CREATED_AT,
    "expires_at": EXPIRES_AT,
    "closed_at": None,
    "close_reason": None,
    "participants": _PARTICIPANTS,
}

CREATE_REQUEST = OpenApiExample(
    "A rider and a driver for one booking",
    value={
        "participants": [
            {"number": "+447700900123", "name": "Alice"},
            {"number": "07700 900456", "name": "Bob"},
        ],
        "reference": "booking-42",
        "ttl": 86400,
        "intro": True,
        "number_selection": "avoid-sticky",
    },
    description=(
        "Numbers in E.164 or national format (read with PROXY_DEFAULT_COUNTRY); the "
        "conversation ends after a day."
    ),
    request_only=True,
)

CONVERSATION_RESPONSE = OpenApiExample(
    "A live conversation",
    value=CONVERSATION,
    response_only=True,
)

CLOSED_RESPONSE = OpenApiExample(
    "A conversation closed by the API",
    value={
        **CONVERSATION,
        "status": "closed",
        "closed_at": "2026-05-04T19:05:12.000000Z",
        "close_reason": "api",
    },
    response_only=True,
)

INBOUND_MESSAGE = OpenApiExample(
    "Alice's text to Bob, as received",
    value={
        "id": 1201,
        "direction": "inbound",
        "purpose": "conversation",
        "sender": "+447700900123",
        "recipient": "+447700900001",
        "sender_name": "Alice",
        "recipient_name": "Bob",
        "forwarded_from": None,
        "text": "Running 5 minutes late, sorry!",
        "status": "received",
        "error_code": "",
        "created_at": "2026-05-04T18:41:07.000000Z",
        "updated_at": "2026-05-04T18:41:07.000000Z",
    },
    response_only=True,
)

FORWARD_MESSAGE = OpenApiExample(
    "Its forward, delivered to Bob from his proxy number",
    value={
        "id": 1202,
        "direction": "outbound",
        "purpose": "conversation",
        "sender": "+447700900002",
        "recipient": "+447700900456",
        "sender_name": "Alice",
        "recipient_name": "Bob",
        "forwarded_from": 1201,
        "text": "Running 5 minutes late, sorry!",
        "status": "delivered",
        "error_code": "",
        "created_at": "2026-05-04T18:41:07.000000Z",
        "updated_at": "2026-05-04T18:41:09.000000Z",
    },
    response_only=True,
)

SYSTEM_MESSAGE_REQUEST = OpenApiExample(
    "A pickup notice to the rider",
    value={"to": "+447700900123", "text": "Your driver Bob has arrived at the pickup point."},
    request_only=True,
)

SYSTEM_MESSAGE_RESPONSE = OpenApiExample(
    "The system message, queued",
    value={
        "id": 1203,
        "direction": "outbound",
        "purpose": "system",
        "sender": "+447700900001",
        "recipient": "+447700900123",
        "sender_name": None,
        "recipient_name": "Alice",
        "forwarded_from": None,
        "text": "Your driver Bob has arrived at the pickup point.",
        "status": "queued",
        "error_code": "",
        "created_at": "2026-05-04T18:45:00.000000Z",
        "updated_at": "2026-05-04T18:45:00.000000Z",
    },
    response_only=True,
)
