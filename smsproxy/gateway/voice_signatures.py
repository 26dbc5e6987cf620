"""Vonage's signed voice webhooks: a JWT in `Authorization: Bearer <token>` (docs/VOICE.md).

Unlike the SMS API's `sig` parameter (`signatures.py`), the Voice API signs its answer and event
requests with an HS256 JWT keyed by the account's signature secret. Its claims carry `iat` and,
for a request with a body, `payload_hash`: the SHA-256 hex of the body, which binds the token to
this request (without it a token could be replayed with another body).

PyJWT (installed with `vonage-jwt`, which the SDK requires) checks the signature; freshness and
the payload hash are checked here.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
import warnings

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from .signatures import MAX_FUTURE_SKEW_SECONDS, SignatureError, SignatureFailure

# The secret is the Vonage account's, not ours to lengthen: PyJWT's warning about short HMAC
# keys could only fill the logs.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

# How long after `iat` a voice webhook is accepted. Vonage signs each request when it sends it
# and call events matter only for minutes; a token older than this is a replay.
VOICE_TOKEN_MAX_AGE_SECONDS = 600
_ALGORITHM = "HS256"
_BEARER = "bearer "


def payload_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def voice_signature_verify(
    *, authorization: str, body: bytes, secret: str, now: float | None = None
) -> None:
    """Raise SignatureError unless `authorization` is `Bearer <jwt>` signed with `secret`
    (HS256), issued within VOICE_TOKEN_MAX_AGE_SECONDS, and its `payload_hash`, when present,
    is the SHA-256 of `body`."""
    if authorization[: len(_BEARER)].lower() != _BEARER:
        raise SignatureError(
            SignatureFailure.MISSING_SIGNATURE,
            "A signed voice webhook carries `Authorization: Bearer <JWT>`.",
        )
    token = authorization[len(_BEARER) :].strip()
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            # iat is checked below (PyJWT only refuses one in the future).
            options={"require": ["iat"], "verify_iat": False},
        )
    except jwt.MissingRequiredClaimError:
        raise SignatureError(
            SignatureFailure.MISSING_TIMESTAMP, "The voice webhook's JWT has no `iat`."
        ) from None
    except jwt.PyJWTError as error:
        raise SignatureError(
            SignatureFailure.MISMATCH, f"The voice webhook's JWT is not valid: {error}."
        ) from None
    issued_at = claims.get("iat")
    if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
        raise SignatureError(
            SignatureFailure.INVALID_TIMESTAMP, "The voice webhook's JWT `iat` is not a time."
        )
    age = (time.time() if now is None else now) - issued_at
    if age > VOICE_TOKEN_MAX_AGE_SECONDS:
        raise SignatureError(
            SignatureFailure.STALE_TIMESTAMP,
            f"The voice webhook's JWT was issued {int(age)} s ago; "
            f"at most {VOICE_TOKEN_MAX_AGE_SECONDS} s are accepted.",
        )
    if -age > MAX_FUTURE_SKEW_SECONDS:
        raise SignatureError(
            SignatureFailure.FUTURE_TIMESTAMP,
            f"The voice webhook's JWT was issued {int(-age)} s in the future.",
        )
    claimed_hash = claims.get("payload_hash")
    if claimed_hash is not None and not hmac.compare_digest(
        str(claimed_hash).lower().encode(), payload_hash(body).encode()
    ):
        raise SignatureError(
            SignatureFailure.MISMATCH, "The voice webhook's body does not match its payload_hash."
        )


def voice_signature_header(
    *, body: bytes, secret: str, api_key: str, issued_at: float | None = None
) -> str:
    """The `Authorization` header Vonage would send with `body` (for `simulate_call`)."""
    claims = {
        "iat": int(time.time() if issued_at is None else issued_at),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "api_key": api_key,
        "payload_hash": payload_hash(body),
    }
    return f"Bearer {jwt.encode(claims, secret, algorithm=_ALGORITHM)}"
