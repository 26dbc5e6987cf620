"""`/readyz`: may this process take traffic? The database, and the broker when one is set.

`/healthz` stays the cheap liveness probe (one SELECT); readiness also asks Redis, with a short
timeout, because a web process that cannot hand forwards to the workers should be taken out of
the load balancer rather than fill the outbox unseen.
"""

from __future__ import annotations

from http import HTTPStatus

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def _database_error() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        return f"{type(error).__name__}: {error}"
    return None


def _broker_error(url: str, *, timeout: float) -> str | None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False
    )
    try:
        client.ping()
    except redis.RedisError as error:
        return f"{type(error).__name__}: {error}"
    finally:
        client.close()
    return None


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker (if any) answer; 503 with the reason otherwise."""
    checks: dict[str, str] = {}
    reasons: list[str] = []
    database_error = _database_error()
    checks["database"] = "error" if database_error else "ok"
    if database_error:
        reasons.append(f"database: {database_error}")
    broker_url = settings.CELERY_BROKER_URL
    if broker_url:
        broker_error = _broker_error(broker_url, timeout=settings.READYZ_BROKER_TIMEOUT)
        checks["broker"] = "error" if broker_error else "ok"
        if broker_error:
            # Not the URL itself: it may carry the broker's password.
            reasons.append(f"broker: {broker_error}")
    else:
        checks["broker"] = "not configured"
    if reasons:
        return JsonResponse(
            {"status": "unavailable", **checks, "reason": "; ".join(reasons)},
            status=HTTPStatus.SERVICE_UNAVAILABLE,
        )
    return JsonResponse({"status": "ok", **checks})
