"""Helpers of the voice tests: saved Vonage voice payloads, and sending them as Vonage does."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.test import Client

from smsproxy.gateway.voice_signatures import voice_signature_header
from tests.proxy.fixtures import FIXTURES_DIR

ANSWER_URL = "/webhooks/vonage/voice/answer/"
EVENT_URL = "/webhooks/vonage/voice/event/"
SECRET = "voice-signature-secret-0123456789abcdef"
CONVERSATION_UUID = "CON-aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
CALLER_LEG = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
CALLEE_LEG = "bbbbbbbb-cccc-4ddd-8eee-0123456789ab"
# The event payloads of one connected call, in the order Vonage sends them.
CONNECTED_CALL = (
    "voice_event_started",
    "voice_event_callee_ringing",
    "voice_event_callee_answered",
    "voice_event_callee_completed",
    "voice_event_completed",
)


def voice_payload(name: str, **overrides: Any) -> dict[str, Any]:
    """A saved voice payload (JSON values as Vonage sends them: strings and nulls)."""
    data: dict[str, Any] = json.loads((FIXTURES_DIR / f"{name}.json").read_text())
    data.update(overrides)
    return data


def send_voice(
    client: Client,
    url: str,
    data: dict[str, Any],
    encoding: str,
    *,
    secret: str = "",
    authorization: str | None = None,
) -> Any:
    """`data` as a GET query (null → empty) or a POST JSON body, signed with `secret`'s JWT
    unless `authorization` is given."""
    if encoding == "get":
        query = urlencode({key: "" if value is None else value for key, value in data.items()})
        body = b""
        path = f"{url}?{query}"
    else:
        body = json.dumps(data).encode()
        path = url
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif secret:
        headers["Authorization"] = voice_signature_header(body=body, secret=secret, api_key="k")
    if encoding == "get":
        return client.get(path, headers=headers)
    return client.post(path, body, content_type="application/json", headers=headers)
