"""A urlencoded webhook body is read into a dict directly, exactly as `request.POST` reads it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.core.exceptions import BadRequest, TooManyFieldsSent
from django.test import RequestFactory

from smsproxy.gateway.signatures import webhook_params

FORM = "application/x-www-form-urlencoded"


def _post(body: bytes, content_type: str = FORM) -> Any:
    return RequestFactory().post(
        "/webhooks/vonage/inbound-sms/", data=body, content_type=content_type
    )


@pytest.mark.parametrize(
    "body",
    [
        b"msisdn=447700900001&to=447700900000&text=On+my+way%2C+10+minutes",
        b"text=a%3Db%26c&text=last&empty=&flag",  # a repeated key, a blank value, no `=`
        b"text=%E2%82%AC+%F0%9F%98%80&to=1",  # UTF-8 text
        b"text=caf\xe9&to=1",  # not UTF-8: read as Latin-1, as Django does
        b"text=%ff%fe&to=1",  # escaped bytes that are not UTF-8
        b"&&a=1&&b=2&",
        b"a=1;b=2",
    ],
)
def test_a_form_body_reads_as_request_post_reads_it(body: bytes) -> None:
    expected = {key: value for key, value in _post(body).POST.items()}
    assert webhook_params(_post(body)) == expected
    assert list(webhook_params(_post(body))) == list(expected)


def test_any_form_body_reads_as_request_post_reads_it() -> None:
    # Bodies made of the characters that matter to the decoding (separators, `+`, escapes good
    # and broken, non-ASCII), seeded: the same bodies on every run.
    rng = random.Random(11)
    alphabet = ["a", "b", "=", "&", "+", "%", "%2", "%41", "%2B", "%26", "%3D", "%e2%82%ac", "%ff"]
    for _ in range(500):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12))).encode()
        expected = {key: value for key, value in _post(body).POST.items()}
        assert webhook_params(_post(body)) == expected, body
        assert list(webhook_params(_post(body))) == list(expected), body


def test_an_empty_form_body_falls_back_to_the_query_string() -> None:
    request = RequestFactory().post(
        "/webhooks/vonage/inbound-sms/?msisdn=1&to=2", data=b"", content_type=FORM
    )
    assert webhook_params(request) == {"msisdn": "1", "to": "2"}


def test_too_many_fields_are_refused_as_django_refuses_them(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    with pytest.raises(TooManyFieldsSent):
        webhook_params(_post(b"a=1&b=2&c=3&d=4"))
    assert webhook_params(_post(b"a=1&b=2&c=3")) == {"a": "1", "b": "2", "c": "3"}


def test_a_charset_other_than_utf8_is_refused_as_django_refuses_it() -> None:
    with pytest.raises(BadRequest):
        webhook_params(_post(b"a=1", content_type=f"{FORM}; charset=latin-1"))
    assert webhook_params(_post(b"a=1", content_type=f"{FORM}; charset=UTF-8")) == {"a": "1"}


@pytest.mark.django_db
def test_the_webhook_answers_400_to_too_many_fields(client: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    response = client.post("/webhooks/vonage/inbound-sms/", b"a=1&b=2&c=3&d=4", content_type=FORM)
    assert response.status_code == 400
