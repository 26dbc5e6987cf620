from __future__ import annotations

from typing import Any

import pytest

from smsproxy.gateway import get_provider
from smsproxy.gateway.base import SmsProvider
from smsproxy.sandbox.provider import SandboxProvider


@pytest.fixture
def sandbox(settings: Any) -> SandboxProvider:
    settings.SMS_PROVIDER = "sandbox"
    provider = get_provider()
    assert isinstance(provider, SandboxProvider)
    assert isinstance(provider, SmsProvider)
    return provider
