"""The deploy checks of `manage.py check --deploy` that smsproxy adds to Django's own."""

from __future__ import annotations

from typing import Any

import pytest

from smsproxy.common.checks import check_webhook_signing


@pytest.mark.parametrize(
    ("provider", "signature_secret", "base_url", "expected"),
    [
        ("vonage", "sigsecret", "https://proxy.example.com", []),
        ("vonage", "", "https://proxy.example.com", ["smsproxy.W001"]),
        # A production deployment on the sandbox is just as open to injected webhooks.
        ("sandbox", "", "https://proxy.example.com", ["smsproxy.W001"]),
        ("sandbox", "sigsecret", "https://proxy.example.com", []),
        ("vonage", "sigsecret", "http://proxy.example.com", ["smsproxy.W002"]),
        ("vonage", "", "http://proxy.example.com", ["smsproxy.W001", "smsproxy.W002"]),
    ],
)
def test_check_webhook_signing(
    settings: Any, provider: str, signature_secret: str, base_url: str, expected: list[str]
) -> None:
    settings.SMS_PROVIDER = provider
    settings.VONAGE_SIGNATURE_SECRET = signature_secret
    settings.PUBLIC_BASE_URL = base_url

    assert [warning.id for warning in check_webhook_signing(None)] == expected
