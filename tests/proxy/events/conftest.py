"""Fixtures of the events tests: a marketplace endpoint faked at the HTTP boundary."""

from __future__ import annotations

import base64

import pytest
import responses

EVENTS_URL = "https://market.example.com/smsproxy/events"
INTERCEPT_URL = "https://market.example.com/smsproxy/intercept"
SECRET = "whsec_" + base64.b64encode(b"marketplace-test-secret-32-bytes").decode()


@pytest.fixture
def events_on(settings) -> None:
    settings.PROXY_EVENTS_URL = EVENTS_URL
    settings.PROXY_EVENTS_SECRET = SECRET


@pytest.fixture
def marketplace(events_on, mocked_responses: responses.RequestsMock) -> responses.RequestsMock:
    return mocked_responses
