"""Fixtures and helpers of the sandbox tests."""

from __future__ import annotations

from typing import Any

import pytest

from smsproxy.gateway import get_provider
from smsproxy.gateway.base import SendResult, SmsProvider
from smsproxy.sandbox.provider import SandboxProvider

CALLBACK = "https://proxy.example.com/webhooks/vonage/delivery-receipt/"


def send(sandbox: SandboxProvider, text: str, **kwargs: Any) -> SendResult:
    arguments = {
        "sender": "+447700900001",
        "recipient": "+447700901234",
        "text": text,
        "client_ref": "17",
        "callback_url": CALLBACK,
        **kwargs,
    }
    return sandbox.send_sms(**arguments)


@pytest.fixture
def sandbox(settings: Any) -> SandboxProvider:
    settings.SMS_PROVIDER = "sandbox"
    provider = get_provider()
    assert isinstance(provider, SandboxProvider)
    assert isinstance(provider, SmsProvider)
    return provider
