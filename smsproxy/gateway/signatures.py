"""Vonage webhook signatures ("signed webhooks" of the SMS API): verify, sign, extract params.

Vonage's scheme: take every parameter but `sig`, sort by key, replace `&` and `=` inside values
with `_`, concatenate as `&key=value&key=value`, then

- `md5hash`: MD5 hex of that string followed directly by the signature secret;
- `md5`, `sha1`, `sha256`, `sha512`: HMAC of that string keyed by the secret, hex.

The SDK's own `Auth.check_signature` does HMAC only, wants a plain str->str dict and does not
check that `timestamp` is recent, so smsproxy verifies here.

JSON webhooks may carry non-string values. They are turned into the text the same field has in
the GET/form encoding: `true`/`false` for booleans, the JSON number text for numbers
(`1`, `1.5`), an empty string for `null`, compact JSON for objects and arrays. Vonage's own
JSON webhooks send every SMS field as a string, so this only matters for fields Vonage may add.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from django.http import HttpRequest

SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
# A sender's clock may run a little ahead of ours; more than this is not a clock, it is forged.
MAX_FUTURE_SKEW_SECONDS = 300
_TIMESTAMP_RE = re.compile(r"\d{1,12}")


class SignatureFailure(enum.StrEnum):
    MISSING_SIGNATURE = "missing_signature"
    MISSING_TIMESTAMP = "missing_timestamp"
    INVALID_TIMESTAMP = "invalid_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    MISMATCH = "signature_mismatch"


class SignatureError(Exception):
    """A webhook's signature is missing or wrong; `reason` says which check failed."""

    def __init__(self, reason: SignatureFailure, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class MalformedWebhookError(ValueError):
    """The webhook body cannot be read (broken JSON, not an object, not UTF-8)."""


def param_text(value: Any) -> str:
    """A webhook value as the text Vonage signs (see the module docstring for JSON values)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _signing_string(params: Mapping[str, Any]) -> str:
    pieces = []
    for key in sorted(params):
        if key == "sig":
            continue
        value = param_text(params[key]).replace("&", "_").replace("=", "_")
        pieces.append(f"&{key}={value}")
    return "".join(pieces)


def compute_signature(params: Mapping[str, Any], *, secret: str, method: str) -> str:
    """The lowercase hex signature of `params` (any `sig` among them is ignored)."""
    if method not in SIGNATURE_METHODS:
        raise ValueError(f"Unknown signature method {method!r}; use one of {SIGNATURE_METHODS}.")
    message = _signing_string(params)
    if method == "md5hash":
        return hashlib.md5((message + secret).encode(), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode(), message.encode(), getattr(hashlib, method)).hexdigest()


def verify_signature(
    params: Mapping[str, Any],
    *,
    secret: str,
    method: str,
    max_age: int,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless `params` carry a valid, fresh Vonage signature.

    `params` is the webhook's GET query, form or parsed JSON body. `max_age` is how many seconds
    `timestamp` may lag behind now (Vonage retries webhooks for days, with the original stamp).
    """
    supplied = params.get("sig")
    if supplied is None or not param_text(supplied).strip():
        raise SignatureError(SignatureFailure.MISSING_SIGNATURE, "The webhook has no `sig`.")
    raw_timestamp = params.get("timestamp")
    if raw_timestamp is None or not param_text(raw_timestamp).strip():
        raise SignatureError(
            SignatureFailure.MISSING_TIMESTAMP, "A signed webhook must carry a `timestamp`."
        )
    timestamp_text = param_text(raw_timestamp).strip()
    if not _TIMESTAMP_RE.fullmatch(timestamp_text):
        raise SignatureError(
            SignatureFailure.INVALID_TIMESTAMP,
            f"`timestamp` {timestamp_text!r} is not a Unix time in seconds.",
        )
    current = time.time() if now is None else now
    age = current - int(timestamp_text)
    if age > max_age:
        raise SignatureError(
            SignatureFailure.STALE_TIMESTAMP,
            f"The webhook was signed {int(age)} s ago; at most {max_age} s are accepted.",
        )
    if -age > MAX_FUTURE_SKEW_SECONDS:
        raise SignatureError(
            SignatureFailure.FUTURE_TIMESTAMP,
            f"The webhook's timestamp is {int(-age)} s in the future.",
        )
    expected = compute_signature(params, secret=secret, method=method)
    if not hmac.compare_digest(expected.encode(), param_text(supplied).strip().lower().encode()):
        raise SignatureError(
            SignatureFailure.MISMATCH, "The webhook's signature does not match its parameters."
        )


def sign_params(
    params: Mapping[str, Any],
    *,
    secret: str,
    method: str,
    timestamp: int | None = None,
) -> dict[str, str]:
    """`params` as Vonage would send them signed: stringified, plus `timestamp` and `sig`.

    `timestamp` defaults to the one already in `params`, else to now. (Vonage also adds a random
    `nonce`; a caller that wants one puts it in `params`.)
    """
    signed = {key: param_text(value) for key, value in params.items() if key != "sig"}
    if timestamp is not None:
        signed["timestamp"] = str(timestamp)
    elif not signed.get("timestamp"):
        signed["timestamp"] = str(int(time.time()))
    signed["sig"] = compute_signature(signed, secret=secret, method=method)
    return signed


def webhook_params(request: HttpRequest) -> dict[str, str]:
    """The parameters of a Vonage webhook, whichever encoding the account uses.

    GET: the query string. POST with a JSON content type: the body, which must be a JSON
    object (MalformedWebhookError otherwise). Other POSTs: the form body, or the query string
    when the body is empty. Values are strings (see `param_text`); a repeated key keeps its last
    value.
    """
    if request.method == "POST":
        content_type = request.content_type or ""
        if _is_json(content_type):
            return _json_params(request.body)
        if content_type == "application/x-www-form-urlencoded":
            # Vonage's own encoding: read as `request.POST` would, straight into a dict.
            params = _form_params(request)
            if params:
                return params
        elif request.POST:
            return {key: request.POST[key] for key in request.POST}
    return {key: request.GET[key] for key in request.GET}


def _form_params(request: HttpRequest) -> dict[str, str]:
    """A urlencoded body's parameters, each key's last value, as `request.POST` has them.

    The same reading as Django's QueryDict (UTF-8, Latin-1 when that fails, blank values
    kept, the settings' size and field limits, a declared charset other than UTF-8 refused),
    without building the QueryDict: a third of a webhook's parsing time.
    """
    from django.conf import settings
    from django.core.exceptions import BadRequest, TooManyFieldsSent

    if request.encoding is not None and request.encoding.lower() != "utf-8":
        raise BadRequest(
            "HTTP requests with the 'application/x-www-form-urlencoded' content type must be "
            "UTF-8 encoded."
        )
    body = request.body  # DATA_UPLOAD_MAX_MEMORY_SIZE applies here
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")
    max_fields = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    if max_fields is not None and text and max_fields < 1 + text.count("&"):
        raise TooManyFieldsSent(
            "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."
        )
    # `parse_qsl(text, keep_blank_values=True)` into a dict, without its per-field calls: a
    # name or value without `+` or `%` is its own decoding (most of Vonage's fields).
    params = {}
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name or "%" in name:
            name = unquote(name.replace("+", " "), encoding="utf-8", errors="replace")
        if "+" in value or "%" in value:
            value = unquote(value.replace("+", " "), encoding="utf-8", errors="replace")
        params[name] = value
    return params


def _is_json(content_type: str) -> bool:
    content_type = content_type.lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _json_params(body: bytes) -> dict[str, str]:
    if not body.strip():
        return {}
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedWebhookError("The webhook's JSON body is not UTF-8.") from exc
    except json.JSONDecodeError as exc:
        raise MalformedWebhookError(f"The webhook's JSON body is malformed: {exc}.") from exc
    if not isinstance(payload, dict):
        raise MalformedWebhookError("The webhook's JSON body must be an object.")
    return {str(key): param_text(value) for key, value in payload.items()}
