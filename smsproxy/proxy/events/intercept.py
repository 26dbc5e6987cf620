"""The intercept hook (DESIGN.md §11): the marketplace's verdict on a text before it is forwarded.

Asked by the delivery worker, never in the webhook request. Signed like events. 2xx forwards
(with `{"text": "..."}` that text instead), 403 blocks; a timeout, a connection error or any
other answer is `UNAVAILABLE`, which PROXY_INTERCEPT_FAILURE turns into a forward or a hold.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus

import requests
from django.conf import settings

from smsproxy.proxy.events.webhook import webhook_post
from smsproxy.proxy.models import Conversation


class Verdict(StrEnum):
    FORWARD = "forward"
    REPLACE = "replace"
    BLOCK = "block"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class InterceptAnswer:
    verdict: Verdict
    text: str = ""  # REPLACE: the text to forward instead
    detail: str = ""  # UNAVAILABLE: what went wrong


def intercept_ask(*, conversation: Conversation, sender_name: str, text: str) -> InterceptAnswer:
    body = json.dumps(
        {
            "conversation": {
                "id": str(conversation.public_id),
                "reference": conversation.reference,
            },
            "from": sender_name,
            "text": text,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    try:
        response = webhook_post(
            url=settings.PROXY_INTERCEPT_URL,
            message_id=f"icp_{uuid.uuid4().hex}",
            body=body,
            timeout=settings.PROXY_INTERCEPT_TIMEOUT,
        )
    except requests.RequestException as error:
        return InterceptAnswer(Verdict.UNAVAILABLE, detail=type(error).__name__)
    if response.status_code == HTTPStatus.FORBIDDEN:
        return InterceptAnswer(Verdict.BLOCK)
    if not 200 <= response.status_code < 300:
        return InterceptAnswer(Verdict.UNAVAILABLE, detail=f"HTTP {response.status_code}")
    try:
        answer = response.json()
    except ValueError:
        answer = None
    replacement = answer.get("text") if isinstance(answer, dict) else None
    if isinstance(replacement, str) and replacement.strip():
        return InterceptAnswer(Verdict.REPLACE, text=replacement[: settings.PROXY_MAX_TEXT_LENGTH])
    return InterceptAnswer(Verdict.FORWARD)
