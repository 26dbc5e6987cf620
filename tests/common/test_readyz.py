"""`/readyz`: the database always, the broker when CELERY_BROKER_URL is set."""

from __future__ import annotations

import socket
import time
from http import HTTPStatus
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError

pytestmark = pytest.mark.django_db


def closed_port_url() -> str:
    """A Redis URL on a local port nobody listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://:secret-password@127.0.0.1:{port}/0"


def test_ready_without_a_broker(client, settings):
    settings.CELERY_BROKER_URL = ""
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok", "database": "ok", "broker": "not configured"}


def test_not_ready_when_the_broker_is_down(client, settings):
    settings.CELERY_BROKER_URL = closed_port_url()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["broker"] == "error"
    assert body["reason"].startswith("broker: ")
    assert "secret-password" not in response.content.decode()


def test_ready_when_the_broker_answers(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    with mock.patch("redis.Redis.ping", return_value=True) as ping:
        response = client.get("/readyz")
    ping.assert_called_once()
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.celery
@pytest.mark.skipif(
    not getattr(django_settings, "TEST_CELERY_BROKER_URL", ""),
    reason="needs CELERY_BROKER_URL pointing at Redis",
)
def test_ready_with_a_real_broker(client, settings):
    settings.CELERY_BROKER_URL = django_settings.TEST_CELERY_BROKER_URL
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["broker"] == "ok"


def test_not_ready_when_the_database_is_down(client, settings):
    settings.CELERY_BROKER_URL = ""
    with mock.patch(
        "smsproxy.common.readiness.connection.cursor", side_effect=OperationalError("gone")
    ):
        response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["database"] == "error"
    assert response.json()["reason"] == "database: OperationalError: gone"


def test_healthz_does_not_ask_the_broker(client, settings):
    settings.CELERY_BROKER_URL = closed_port_url()
    assert client.get("/healthz").status_code == HTTPStatus.OK
