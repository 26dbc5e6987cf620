"""The two Vonage webhooks fuzzed with Hypothesis: any fields, encodings, lengths and bytes.

DESIGN §8: no input gives a 5xx; an input is stored (cleaned), ignored with 200, or refused with
400 — and a refused one changes nothing. Example counts are bounded for CI;
`WEBHOOK_EXAMPLES` raises them for a longer local run.
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsproxy.proxy.models import InboundPart, Message, MessagePart
from tests.proxy.fixtures import ALICE, ALICE_PROXY, INBOUND_URL, RECEIPT_URL, conversation_make

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("WEBHOOK_EXAMPLES", "150"))

INBOUND_FIELDS = [
    "msisdn", "to", "messageId", "text", "type", "keyword", "concat", "concat-ref",
    "concat-total", "concat-part", "message-timestamp", "timestamp", "nonce", "sig", "data",
    "udh", "api-key",
]  # fmt: skip
RECEIPT_FIELDS = [
    "msisdn", "to", "network-code", "messageId", "price", "status", "scts", "err-code",
    "api-key", "client-ref", "message-timestamp",
]  # fmt: skip

# Text a hostile or broken sender might put anywhere: control characters, NUL, surrogates are
# not allowed in JSON/UTF-8 so they are left out, but every other code point is in.
hostile_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), max_size=300
) | st.sampled_from(
    ["", "\x00", "0", "-1", "1e999999999", "NaN", "99999999999999999999", "x" * 5000]
)
message_ids = st.text(alphabet="0123456789ABCDEF", min_size=8, max_size=16)
plausible = {
    "msisdn": st.sampled_from([ALICE.lstrip("+"), ALICE, "447700901002", "Vonage", "+"]),
    "to": st.sampled_from([ALICE_PROXY.lstrip("+"), ALICE_PROXY, "447700900200", "abc"]),
    "messageId": message_ids,
    "type": st.sampled_from(["text", "unicode", "binary", "TEXT", ""]),
    "concat": st.sampled_from(["true", "false", "TRUE", ""]),
    "concat-ref": st.sampled_from(["A1", "B2"]),
    "concat-total": st.sampled_from(["1", "2", "3", "0", "256", "-2", "x"]),
    "concat-part": st.sampled_from(["1", "2", "3", "0", "4", "x"]),
    "status": st.sampled_from(["delivered", "failed", "accepted", "expired", "teleported", ""]),
    "client-ref": st.sampled_from(["1", "2", "999999999999", "abc", ""]),
}
# Fields a webhook needs to get anywhere: present in most examples, usually plausible, so that
# the hostile values elsewhere reach the database instead of an early 400.
REQUIRED = {
    "inbound": ("msisdn", "to", "messageId"),
    "receipt": ("messageId", "status"),
}


def _value(name: str) -> st.SearchStrategy[str]:
    hostile = hostile_text | message_ids.map(lambda value: value + "\x00")
    if name not in plausible:
        return hostile
    return st.one_of(plausible[name], plausible[name], plausible[name], hostile)


def _params(kind: str, fields: list[str]) -> st.SearchStrategy[dict[str, str]]:
    required = {name: _value(name) for name in REQUIRED[kind]}
    optional = {name: _value(name) for name in fields if name not in required}
    known = st.fixed_dictionaries(required, optional=optional)
    extra = st.dictionaries(st.text(max_size=12), hostile_text, max_size=3)
    return st.tuples(known, extra, st.sets(st.sampled_from(REQUIRED[kind]), max_size=1)).map(
        lambda drawn: {
            **drawn[1],
            **{key: value for key, value in drawn[0].items() if key not in drawn[2]},
        }
    )


def _send(client: Client, url: str, params: dict[str, str], encoding: str) -> Any:
    if encoding == "get":
        return client.get(url, params)
    if encoding == "form":
        return client.post(url, urlencode(params), content_type="application/x-www-form-urlencoded")
    return client.post(url, json.dumps(params), content_type="application/json")


def _rows() -> tuple[int, int, int]:
    return Message.objects.count(), InboundPart.objects.count(), MessagePart.objects.count()


def _fuzz(url: str, kind: str, fields: list[str]) -> None:
    client = Client()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(params=_params(kind, fields), encoding=st.sampled_from(["get", "form", "json"]))
    def run(params: dict[str, str], encoding: str) -> None:
        before = _rows()
        response = _send(client, url, params, encoding)
        assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, (params, response.content)
        assert response.status_code in (HTTPStatus.OK, HTTPStatus.BAD_REQUEST), response.content
        if response.status_code == HTTPStatus.BAD_REQUEST:
            assert response.json()["code"]
            assert _rows() == before, "a refused webhook changed something"
        for message in Message.objects.filter(direction=Message.Direction.INBOUND):
            assert "\x00" not in message.text + message.sender

    run()


def test_the_inbound_webhook_never_answers_5xx() -> None:
    conversation_make()
    _fuzz(INBOUND_URL, "inbound", INBOUND_FIELDS)


def test_the_receipt_webhook_never_answers_5xx() -> None:
    conversation_make()
    _fuzz(RECEIPT_URL, "receipt", RECEIPT_FIELDS)
