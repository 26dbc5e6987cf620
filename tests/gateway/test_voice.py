"""The gateway's voice pieces: payloads read, NCCOs built and read back, the signed-webhook JWT."""

from __future__ import annotations

import hashlib
import time

import jwt
import pytest

from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.signatures import SignatureError, SignatureFailure
from smsproxy.gateway.voice import (
    CallLeg,
    CallStatus,
    call_answer_params,
    call_answer_parse,
    call_event_parse,
    call_event_payload,
    ncco_connect,
    ncco_outcome,
    ncco_talk,
)
from smsproxy.gateway.voice_signatures import (
    VOICE_TOKEN_MAX_AGE_SECONDS,
    voice_signature_header,
    voice_signature_verify,
)
from smsproxy.gateway.webhooks import WebhookIgnored

SECRET = "gateway-voice-secret-0123456789abcdef"
NOW = 1_780_000_000.0


def event(**overrides: str) -> dict[str, str]:
    params = {
        "from": "447700901001",
        "to": "447700900100",
        "uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
        "conversation_uuid": "CON-aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
        "status": "completed",
        "direction": "outbound",
        "duration": "42",
    }
    params.update(overrides)
    return params


def test_an_answer_is_read_as_e164() -> None:
    answer = call_answer_parse(event(**{"from": "+447700901001"}))

    assert (answer.caller, answer.called) == ("+447700901001", "+447700900100")
    assert answer.conversation_uuid.startswith("CON-")


@pytest.mark.parametrize("caller", ["", "Unknown", "anonymous", "4477009"[:3]])
def test_a_caller_id_that_is_not_a_number_routes_nowhere(caller: str) -> None:
    assert call_answer_parse(event(**{"from": caller})).caller is None


def test_an_event_is_read() -> None:
    parsed = call_event_parse(event())

    assert (parsed.status, parsed.leg, parsed.duration) == (
        CallStatus.COMPLETED,
        CallLeg.CALLEE,
        42,
    )
    assert (parsed.sender, parsed.recipient) == ("+447700901001", "+447700900100")


@pytest.mark.parametrize(
    ("duration", "expected"),
    [("0", 0), ("604800", 604800), ("604801", None), ("-1", None), ("1e9", None), ("", None)],
)
def test_a_duration_is_kept_only_when_plausible(duration: str, expected: int | None) -> None:
    assert call_event_parse(event(duration=duration)).duration == expected


def test_only_a_completed_event_carries_a_duration() -> None:
    assert call_event_parse(event(status="answered")).duration is None


@pytest.mark.parametrize("overrides", [{"status": ""}, {"status": "human"}])
def test_events_that_are_not_a_known_leg_status_are_ignored(overrides: dict[str, str]) -> None:
    with pytest.raises(WebhookIgnored):
        call_event_parse(event(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {"direction": ""},
        {"uuid": ""},
        {"uuid": "a b"},
        {"conversation_uuid": "C" * 65},
    ],
)
def test_unusable_events_are_malformed(overrides: dict[str, str]) -> None:
    with pytest.raises(ApplicationError) as error:
        call_event_parse(event(**overrides))
    assert error.value.code == "malformed"


def test_ncco_connect_shows_our_number_and_dials_the_callee() -> None:
    assert ncco_connect(caller_id="+447700900200", callee="+447700901002") == [
        {
            "action": "connect",
            "from": "447700900200",
            "endpoint": [{"type": "phone", "number": "447700901002"}],
        }
    ]


def test_nccos_read_back() -> None:
    connect = ncco_outcome(ncco_connect(caller_id="+447700900200", callee="+447700901002"))
    talk = ncco_outcome(ncco_talk("Bye."))

    assert (connect.connect_to, connect.caller_id, connect.talk) == (
        "+447700901002",
        "+447700900200",
        "",
    )
    assert (talk.talk, talk.connect_to) == ("Bye.", "")


@pytest.mark.parametrize("ncco", [{}, [], [{"action": "stream"}], ["talk"], None])
def test_an_ncco_doing_neither_is_refused(ncco: object) -> None:
    with pytest.raises(ValueError):
        ncco_outcome(ncco)


def test_built_payloads_parse_back() -> None:
    answer = call_answer_parse(
        call_answer_params(
            caller="+447700901001", called="+447700900100", uuid="u-1", conversation_uuid="CON-1"
        )
    )
    built = call_event_parse(
        call_event_payload(
            uuid="u-2",
            conversation_uuid="CON-1",
            status=CallStatus.COMPLETED,
            leg=CallLeg.CALLER,
            sender="+447700901001",
            recipient="+447700900100",
            timestamp="2026-03-02T10:15:00.000Z",
            duration=7,
        )
    )

    assert (answer.caller, answer.called, answer.uuid) == ("+447700901001", "+447700900100", "u-1")
    assert (built.leg, built.duration, built.conversation_uuid) == (CallLeg.CALLER, 7, "CON-1")


# --- the signed-webhook JWT ----------------------------------------------------------------------


def token(claims: dict[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return f"Bearer {jwt.encode(claims, secret, algorithm=algorithm)}"


def verify(authorization: str, body: bytes = b"", now: float = NOW) -> None:
    voice_signature_verify(authorization=authorization, body=body, secret=SECRET, now=now)


def test_a_vonage_jwt_verifies() -> None:
    body = b'{"status": "started"}'
    verify(voice_signature_header(body=body, secret=SECRET, api_key="k", issued_at=NOW), body)


def test_payload_hash_is_optional_but_binding_when_present() -> None:
    verify(token({"iat": int(NOW)}), b"anything")
    hashed = token({"iat": int(NOW), "payload_hash": hashlib.sha256(b"a").hexdigest()})
    verify(hashed, b"a")
    with pytest.raises(SignatureError) as error:
        verify(hashed, b"b")
    assert error.value.reason == SignatureFailure.MISMATCH


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("", SignatureFailure.MISSING_SIGNATURE),
        ("Token abc", SignatureFailure.MISSING_SIGNATURE),
        ("Bearer abc", SignatureFailure.MISMATCH),
        (token({"iat": int(NOW)}, secret="x" * 32), SignatureFailure.MISMATCH),
        (token({"iat": int(NOW)}, algorithm="HS512"), SignatureFailure.MISMATCH),
        (token({"jti": "no-iat"}), SignatureFailure.MISSING_TIMESTAMP),
        (token({"iat": "yesterday"}), SignatureFailure.INVALID_TIMESTAMP),
        (
            token({"iat": int(NOW) - VOICE_TOKEN_MAX_AGE_SECONDS - 1}),
            SignatureFailure.STALE_TIMESTAMP,
        ),
        (token({"iat": int(NOW) + 3600}), SignatureFailure.FUTURE_TIMESTAMP),
    ],
)
def test_a_bad_jwt_is_refused_with_its_reason(authorization: str, reason: SignatureFailure) -> None:
    with pytest.raises(SignatureError) as error:
        verify(authorization)
    assert error.value.reason == reason


def test_an_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode({"iat": int(NOW)}, "", algorithm="none")
    with pytest.raises(SignatureError):
        verify(f"Bearer {unsigned}")


def test_a_token_a_little_old_is_still_fresh() -> None:
    verify(token({"iat": int(time.time()) - 60}), now=time.time())
