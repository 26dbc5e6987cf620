"""Vonage's webhooks skip the middleware they never use, and answer exactly as before."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.test import Client, override_settings

from smsproxy.common.fastpath import WEBHOOK_URL_NAMES
from smsproxy.proxy import webhooks

FAST_PATH = "smsproxy.common.fastpath.WebhookFastPathMiddleware"
WITHOUT_FAST_PATH = [path for path in django_settings.MIDDLEWARE if path != FAST_PATH]
SKIPPED = (SessionMiddleware, CsrfViewMiddleware, AuthenticationMiddleware, MessageMiddleware)
INBOUND = "/webhooks/vonage/inbound-sms/"


def _answer(method: str, path: str, **extra: Any) -> tuple[int, bytes, dict[str, str]]:
    response = getattr(Client(raise_request_exception=False), method)(path, **extra)
    return response.status_code, response.content, dict(response.headers)


def test_the_fast_path_is_installed_after_the_security_middleware() -> None:
    assert django_settings.MIDDLEWARE.index(FAST_PATH) == 1
    assert django_settings.MIDDLEWARE[0] == "django.middleware.security.SecurityMiddleware"


@pytest.mark.parametrize("name", WEBHOOK_URL_NAMES)
def test_a_webhook_goes_past_sessions_csrf_users_and_messages(name: str) -> None:
    from django.urls import reverse

    calls: list[str] = []

    def spy(cls: type[Any]) -> Any:
        original = cls.process_request

        def process_request(self: Any, request: Any) -> Any:
            calls.append(cls.__name__)
            return original(self, request)

        return mock.patch.object(cls, "process_request", process_request)

    patches = [spy(cls) for cls in SKIPPED]
    for patch in patches:
        patch.start()
    try:
        Client(raise_request_exception=False).get(reverse(name))
        assert calls == []
        Client().get("/admin/login/")  # anything else still takes the whole chain
        assert set(calls) == {cls.__name__ for cls in SKIPPED}
    finally:
        for patch in patches:
            patch.stop()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("get", INBOUND, {}),  # Vonage's bare GET: 200
        ("put", INBOUND, {}),  # 405 with Allow
        ("post", INBOUND, {"data": b"{broken", "content_type": "application/json"}),  # 400
        ("get", INBOUND, {"data": {"msisdn": "447700900001", "to": "447700900000"}}),  # 401
        ("get", "/webhooks/vonage/delivery-receipt/", {}),
        (
            "post",
            "/webhooks/vonage/voice/event/",
            {"data": b"{}", "content_type": "application/json"},
        ),
        ("post", INBOUND.rstrip("/"), {}),  # no final slash: the whole chain (APPEND_SLASH)
        ("get", "/webhooks/vonage/nowhere/", {}),  # 404
    ],
)
def test_a_webhook_answers_as_through_the_whole_chain(
    method: str, path: str, extra: dict[str, Any], settings: Any
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = "fast-path-secret"
    fast = _answer(method, path, **extra)
    with override_settings(MIDDLEWARE=WITHOUT_FAST_PATH):
        slow = _answer(method, path, **extra)
    assert fast == slow
    if path == INBOUND and method == "get" and not extra:
        assert fast[2]["X-Frame-Options"] == "DENY"
        assert fast[2]["Content-Length"] == str(len(fast[1]))


@pytest.mark.django_db
def test_an_exception_in_a_webhook_is_answered_as_django_answers_it() -> None:
    body = b'{"msisdn": "447700900001", "to": "447700900000", "messageId": "X1", "text": "hi"}'
    with mock.patch.object(webhooks, "handle_on_a_live_connection", side_effect=RuntimeError):
        fast = _answer("post", INBOUND, data=body, content_type="application/json")
        with override_settings(MIDDLEWARE=WITHOUT_FAST_PATH):
            slow = _answer("post", INBOUND, data=body, content_type="application/json")
    assert fast[0] == 500
    assert fast == slow
