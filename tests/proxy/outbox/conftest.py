"""Fixtures of the outbox tests."""

from __future__ import annotations

import pytest
import responses


@pytest.fixture
def vonage(settings, mocked_responses: responses.RequestsMock) -> responses.RequestsMock:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "api-secret-for-tests"
    settings.VONAGE_REST_HOST = "rest.nexmo.com"
    settings.SMS_RATE_LIMIT = 0
    return mocked_responses
