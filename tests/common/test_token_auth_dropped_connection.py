"""An API request on a kept database connection that the server dropped (PostgreSQL).

Connections are kept between requests without a health check (settings: CONN_HEALTH_CHECKS),
so after a database restart, a failover or a terminated backend, the first statement of the
next request on each kept connection is the one that finds it dead. For a token-authenticated
API request that statement is the token lookup: nothing has been read or written yet, and the
request goes on on a new connection instead of answering 500.
"""

from __future__ import annotations

import time
from http import HTTPStatus

import pytest
from django.db import OperationalError, connection, connections
from rest_framework.test import APIClient

from smsproxy.common import authentication
from smsproxy.proxy.models import Conversation
from tests.factories import VirtualNumberFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]

CREATE = {"participants": [{"number": "+447700900500"}, {"number": "+447700900501"}]}


def _server_drops_this_connection() -> None:
    """Terminate the server side of this thread's kept connection (as a restart does) and wait
    until it is gone; the connection object does not know until its next statement."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            for _ in range(200):  # the backend ends on its own, a moment later
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f"backend {pid} did not end")
    finally:
        other.close()


def test_the_first_request_after_the_database_dropped_the_connection_is_answered(
    api_client: APIClient,
) -> None:
    VirtualNumberFactory.create()
    api_client.raise_request_exception = False
    _server_drops_this_connection()

    response = api_client.post("/api/conversations/", CREATE, format="json")

    assert response.status_code == HTTPStatus.CREATED, response.content
    assert Conversation.objects.count() == 1


def test_a_database_that_stays_unreachable_is_still_a_500(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tried twice, on the kept connection and on a new one; then the outage shows."""
    lookups: list[str] = []

    def unreachable(sql: str, key: str) -> None:
        lookups.append(key)
        raise OperationalError("connection refused")

    monkeypatch.setattr(authentication, "_row", unreachable)
    api_client.raise_request_exception = False

    response = api_client.post("/api/conversations/", CREATE, format="json")

    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert len(lookups) == 2
