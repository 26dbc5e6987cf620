"""The API keeps answering when the throttle's Redis is down (fails open, logged once)."""

from __future__ import annotations

import logging
import socket
from http import HTTPStatus
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from smsproxy.common.throttling import cache_health

pytestmark = pytest.mark.django_db

LIST_URL = "/api/conversations/"


def _closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _redis_down_caches() -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


def test_the_api_answers_while_the_throttle_cache_is_down(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="smsproxy.common.throttling")
    with override_settings(CACHES=_redis_down_caches()):
        responses = [api_client.get(LIST_URL) for _ in range(3)]
    # Back on the working cache: throttling resumes, and says so once.
    back = api_client.get(LIST_URL)

    assert [response.status_code for response in responses] == [HTTPStatus.OK] * 3
    assert back.status_code == HTTPStatus.OK
    messages = [record.getMessage() for record in caplog.records]
    assert sum("unreachable" in message for message in messages) == 1
    assert sum("reachable again" in message for message in messages) == 1


def test_a_create_goes_through_while_the_throttle_cache_is_down(api_client: APIClient) -> None:
    with override_settings(CACHES=_redis_down_caches()):
        response = api_client.post(LIST_URL, {"participants": []}, format="json")
    cache_health.mark(down=False)

    # Validation answers, not a 500: the request reached the view.
    assert response.status_code == HTTPStatus.BAD_REQUEST
