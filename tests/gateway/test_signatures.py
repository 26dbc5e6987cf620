"""Webhook signatures: vectors computed here with hashlib/hmac, independently of the module."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from django.test import RequestFactory

from smsproxy.gateway.signatures import (
    MAX_FUTURE_SKEW_SECONDS,
    MalformedWebhookError,
    SignatureError,
    SignatureFailure,
    sign_params,
    verify_signature,
    webhook_params,
)

SECRET = "s3cr3t-signature-secret"
NOW = 1_582_650_446.0
MAX_AGE = 259_200

# A delivery receipt as Vonage sends it with signing on (sms.yml's example values).
RECEIPT = {
    "msisdn": "447700900000",
    "to": "AcmeInc",
    "network-code": "12345",
    "messageId": "0A0000001234567B",
    "price": "0.03330000",
    "status": "delivered",
    "scts": "2001011400",
    "err-code": "0",
    "api-key": "abcd1234",
    "client-ref": "my-personal-reference",
    "message-timestamp": "2020-01-01 12:00:00",
    "timestamp": "1582650446",
    "nonce": "ec11dd3e-1e7f-4db5-9467-82b02cd223b9",
}


def expected_signature(params: dict[str, str], method: str, secret: str = SECRET) -> str:
    """Vonage's documented algorithm, written out longhand."""
    message = ""
    for key in sorted(params):
        if key == "sig":
            continue
        message += "&" + key + "=" + params[key].replace("&", "_").replace("=", "_")
    if method == "md5hash":
        return hashlib.md5((message + secret).encode()).hexdigest()
    digest = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}.get(
        method, hashlib.sha512
    )
    return hmac.new(secret.encode(), message.encode(), digest).hexdigest()


def verify(params: dict[str, Any], method: str = "sha256", **kwargs: Any) -> None:
    kwargs.setdefault("now", NOW)
    verify_signature(params, secret=SECRET, method=method, max_age=MAX_AGE, **kwargs)


def reason(params: dict[str, Any], method: str = "sha256", **kwargs: Any) -> SignatureFailure:
    with pytest.raises(SignatureError) as caught:
        verify(params, method, **kwargs)
    return caught.value.reason


METHODS = ["md5hash", "md5", "sha1", "sha256", "sha512"]


def test_a_known_vector() -> None:
    # Fixed by hand once, so the helper above cannot drift together with the module.
    params = {"a": "1", "b": "x&y=z", "timestamp": "1582650446"}
    assert (
        expected_signature(params, "md5hash")
        == hashlib.md5(b"&a=1&b=x_y_z&timestamp=1582650446" + SECRET.encode()).hexdigest()
    )
    verify({**params, "sig": expected_signature(params, "md5hash")}, "md5hash")


@pytest.mark.parametrize("method", METHODS)
def test_each_method_accepts_a_correct_signature(method: str) -> None:
    verify({**RECEIPT, "sig": expected_signature(RECEIPT, method)}, method)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_rejects_a_tampered_parameter(method: str) -> None:
    signed = {**RECEIPT, "sig": expected_signature(RECEIPT, method)}
    signed["status"] = "failed"
    assert reason(signed, method) is SignatureFailure.MISMATCH


@pytest.mark.parametrize("method", METHODS)
def test_a_signature_of_another_method_is_rejected(method: str) -> None:
    other = "sha1" if method != "sha1" else "sha512"
    signed = {**RECEIPT, "sig": expected_signature(RECEIPT, other)}
    assert reason(signed, method) is SignatureFailure.MISMATCH


def test_a_wrong_secret_is_rejected() -> None:
    signed = {**RECEIPT, "sig": expected_signature(RECEIPT, "sha256", secret="other")}
    assert reason(signed) is SignatureFailure.MISMATCH


@pytest.mark.parametrize("method", METHODS)
def test_sig_is_compared_case_insensitively(method: str) -> None:
    verify({**RECEIPT, "sig": expected_signature(RECEIPT, method).upper()}, method)


@pytest.mark.parametrize("method", METHODS)
def test_values_with_ampersand_and_equals(method: str) -> None:
    params = {
        **RECEIPT,
        "text": "a=b&c=d & more==",
        "keyword": "A&B",
    }
    verify({**params, "sig": expected_signature(params, method)}, method)
    # `&`/`=` become `_`, so the same text with underscores signs identically (Vonage's rule).
    underscored = {**params, "text": "a_b_c_d _ more__"}
    verify({**underscored, "sig": expected_signature(params, method)}, method)


def test_an_added_parameter_breaks_the_signature() -> None:
    signed = {**RECEIPT, "sig": expected_signature(RECEIPT, "sha256"), "extra": "1"}
    assert reason(signed) is SignatureFailure.MISMATCH


def test_missing_sig() -> None:
    assert reason(dict(RECEIPT)) is SignatureFailure.MISSING_SIGNATURE
    assert reason({**RECEIPT, "sig": ""}) is SignatureFailure.MISSING_SIGNATURE


def test_missing_timestamp() -> None:
    params = {key: value for key, value in RECEIPT.items() if key != "timestamp"}
    assert reason({**params, "sig": expected_signature(params, "sha256")}) is (
        SignatureFailure.MISSING_TIMESTAMP
    )


def test_a_timestamp_that_is_no_number() -> None:
    params = {**RECEIPT, "timestamp": "yesterday"}
    assert reason({**params, "sig": expected_signature(params, "sha256")}) is (
        SignatureFailure.INVALID_TIMESTAMP
    )


def test_stale_timestamp() -> None:
    signed = {**RECEIPT, "sig": expected_signature(RECEIPT, "sha256")}
    verify(signed, now=NOW + MAX_AGE)  # just inside the window
    assert reason(signed, now=NOW + MAX_AGE + 1) is SignatureFailure.STALE_TIMESTAMP


def test_future_timestamp() -> None:
    signed = {**RECEIPT, "sig": expected_signature(RECEIPT, "sha256")}
    verify(signed, now=NOW - MAX_FUTURE_SKEW_SECONDS)  # a clock a little ahead is tolerated
    assert reason(signed, now=NOW - MAX_FUTURE_SKEW_SECONDS - 1) is (
        SignatureFailure.FUTURE_TIMESTAMP
    )


def test_json_values_that_are_not_strings() -> None:
    # Signed as the text the field has in the form encoding.
    as_form = {**RECEIPT, "concat": "true", "concat-part": "2", "optional": ""}
    as_json: dict[str, Any] = {**RECEIPT, "concat": True, "concat-part": 2, "optional": None}
    verify({**as_json, "sig": expected_signature(as_form, "md5hash")}, "md5hash")


def test_unknown_method_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="Unknown signature method"):
        verify({**RECEIPT, "sig": "abc"}, "crc32")


@pytest.mark.parametrize("method", METHODS)
def test_sign_params(method: str) -> None:
    params = {"msisdn": "447700900001", "to": "447700900000", "text": "Hi & bye"}

    signed = sign_params(params, secret=SECRET, method=method, timestamp=1582650446)

    assert signed == {
        **params,
        "timestamp": "1582650446",
        "sig": expected_signature({**params, "timestamp": "1582650446"}, method),
    }
    verify(signed, method)


def test_sign_params_stamps_now_and_replaces_an_old_sig() -> None:
    signed = sign_params({"a": "1", "sig": "stale"}, secret=SECRET, method="sha1")

    verify_signature(signed, secret=SECRET, method="sha1", max_age=60)  # fresh: real clock
    assert signed["sig"] != "stale"


# --- extracting the params of a request -----------------------------------------------------

PARAMS = {"msisdn": "447700900001", "to": "447700900000", "text": "a=b&c", "concat": "true"}


def test_webhook_params_from_a_get_query() -> None:
    request = RequestFactory().get("/webhooks/vonage/inbound-sms/", data=PARAMS)
    assert webhook_params(request) == PARAMS


def test_webhook_params_from_a_form_post() -> None:
    request = RequestFactory().post("/webhooks/vonage/inbound-sms/", data=PARAMS)
    # RequestFactory posts multipart; Vonage posts urlencoded: both are forms.
    assert webhook_params(request) == PARAMS
    urlencoded = RequestFactory().post(
        "/webhooks/vonage/inbound-sms/",
        data="msisdn=447700900001&to=447700900000&text=a%3Db%26c&concat=true",
        content_type="application/x-www-form-urlencoded",
    )
    assert webhook_params(urlencoded) == PARAMS


def test_webhook_params_from_a_json_post() -> None:
    body = {**PARAMS, "concat": True, "concat-part": 2, "missing": None}
    request = RequestFactory().post(
        "/webhooks/vonage/inbound-sms/",
        data=json.dumps(body),
        content_type="application/json; charset=utf-8",
    )
    assert webhook_params(request) == {**PARAMS, "concat-part": "2", "missing": ""}


def test_a_signed_json_webhook_verifies_after_extraction() -> None:
    signed = sign_params(PARAMS, secret=SECRET, method="sha512", timestamp=int(NOW))
    request = RequestFactory().post(
        "/webhooks/vonage/inbound-sms/", data=json.dumps(signed), content_type="application/json"
    )
    verify(webhook_params(request), "sha512")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe{}"],
    ids=["broken", "array", "string", "not-utf8"],
)
def test_a_malformed_json_body(body: bytes) -> None:
    request = RequestFactory().post(
        "/webhooks/vonage/inbound-sms/", data=body, content_type="application/json"
    )
    with pytest.raises(MalformedWebhookError):
        webhook_params(request)
    assert issubclass(MalformedWebhookError, ValueError)


def test_a_bare_get_has_no_params() -> None:
    # What Vonage sends when the URL is configured on a number.
    assert webhook_params(RequestFactory().get("/webhooks/vonage/inbound-sms/")) == {}


def test_an_empty_json_body_has_no_params() -> None:
    request = RequestFactory().post(
        "/webhooks/vonage/inbound-sms/", data=b"", content_type="application/json"
    )
    assert webhook_params(request) == {}
