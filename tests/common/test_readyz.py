"""`/readyz`: the database always, the broker when CELERY_BROKER_URL is set, and the delivery
worker's heartbeat (READYZ_WORKER_MAX_AGE)."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from http import HTTPStatus
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from smsproxy.common.heartbeat import OUTBOX_WORKER, heartbeat_record
from smsproxy.common.models import WorkerHeartbeat
from smsproxy.proxy import tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker_alive() -> None:
    heartbeat_record(name=OUTBOX_WORKER)


def closed_port_url() -> str:
    """A Redis URL on a local port nobody listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://:secret-password@127.0.0.1:{port}/0"


def test_ready_without_a_broker(client, settings, worker_alive):
    settings.CELERY_BROKER_URL = ""
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "not configured",
        "worker": "ok",
    }


def test_not_ready_when_the_broker_is_down(client, settings, worker_alive):
    settings.CELERY_BROKER_URL = closed_port_url()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["broker"] == "error"
    assert body["not_ready"] == ["broker"]
    assert body["reason"].startswith("broker: ")
    assert "secret-password" not in response.content.decode()


def test_ready_when_the_broker_answers(client, settings, worker_alive):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    with mock.patch("redis.Redis.ping", return_value=True) as ping:
        response = client.get("/readyz")
    ping.assert_called_once()
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "worker": "ok"}


@pytest.mark.celery
@pytest.mark.skipif(
    not getattr(django_settings, "TEST_CELERY_BROKER_URL", ""),
    reason="needs CELERY_BROKER_URL pointing at Redis",
)
def test_ready_with_a_real_broker(client, settings, worker_alive):
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
    assert response.json()["worker"] == "unknown"  # its heartbeat is in the database
    assert response.json()["not_ready"] == ["database", "worker"]
    assert response.json()["reason"] == "database: OperationalError: gone"


def test_not_ready_before_the_worker_ever_beat(client, settings):
    settings.CELERY_BROKER_URL = ""
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = response.json()
    assert body["worker"] == "error" and body["not_ready"] == ["worker"]
    assert body["reason"].startswith("worker: no heartbeat yet") and "run_outbox" in body["reason"]


def test_not_ready_when_the_worker_heartbeat_is_stale(client, settings):
    settings.CELERY_BROKER_URL = ""
    settings.READYZ_WORKER_MAX_AGE = 120
    heartbeat_record(name=OUTBOX_WORKER, now=timezone.now() - timedelta(seconds=200))
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["not_ready"] == ["worker"]
    assert "last heartbeat 200 s ago" in response.json()["reason"]

    heartbeat_record(name=OUTBOX_WORKER, now=timezone.now() - timedelta(seconds=100))
    assert client.get("/readyz").status_code == HTTPStatus.OK


def test_the_worker_check_can_be_switched_off(client, settings):
    settings.CELERY_BROKER_URL = ""
    settings.READYZ_WORKER_MAX_AGE = 0
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["worker"] == "not checked"


def test_the_embedded_worker_beats(client, settings):
    settings.CELERY_BROKER_URL = ""
    assert client.get("/readyz").status_code == HTTPStatus.SERVICE_UNAVAILABLE
    call_command("run_outbox", "--once")
    assert client.get("/readyz").status_code == HTTPStatus.OK
    assert WorkerHeartbeat.objects.get(name=OUTBOX_WORKER).worker  # host:pid of the beat


def test_the_celery_sweep_beats(client, settings):
    settings.CELERY_BROKER_URL = ""  # the task runs here, inline
    heartbeat_record(name=OUTBOX_WORKER, now=timezone.now() - timedelta(hours=1))
    assert client.get("/readyz").status_code == HTTPStatus.SERVICE_UNAVAILABLE
    tasks.outbox_sweep()
    assert client.get("/readyz").status_code == HTTPStatus.OK


def test_healthz_does_not_ask_the_broker_or_the_heartbeat(
    client, settings, django_assert_num_queries
):
    settings.CELERY_BROKER_URL = closed_port_url()  # down, and no worker ever beat
    with django_assert_num_queries(1):  # its SELECT 1
        assert client.get("/healthz").status_code == HTTPStatus.OK
