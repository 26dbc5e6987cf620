"""`/readyz`: may this process take traffic? The database, the broker when one is set, and the
delivery worker's last heartbeat.

`/healthz` stays the cheap liveness probe (one SELECT); readiness also asks Redis, with a short
timeout, and reads the worker's heartbeat, because a web process that cannot hand forwards to
a live worker should be taken out of the load balancer (and paged on) rather than fill the
outbox unseen.
"""

from __future__ import annotations

from http import HTTPStatus

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from smsproxy.common.heartbeat import OUTBOX_WORKER, heartbeat_age


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


def _worker_error(*, max_age: int) -> str | None:
    try:
        age = heartbeat_age(name=OUTBOX_WORKER, now=timezone.now())
    except DatabaseError as error:  # the table is missing: migrations not run
        return f"heartbeat unreadable: {type(error).__name__}: {error}"
    if age is None:
        return "no heartbeat yet: is run_outbox (or a Celery worker with beat) running?"
    if age > max_age:
        return f"last heartbeat {age:.0f} s ago (READYZ_WORKER_MAX_AGE is {max_age} s)"
    return None


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker (if any) and the worker are there; 503 naming what is
    not (`not_ready` and a `reason`) otherwise."""
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
    max_age = settings.READYZ_WORKER_MAX_AGE
    if not max_age:
        checks["worker"] = "not checked"
    elif database_error:
        checks["worker"] = "unknown"  # its heartbeat is in the database
    else:
        worker_error = _worker_error(max_age=max_age)
        checks["worker"] = "error" if worker_error else "ok"
        if worker_error:
            reasons.append(f"worker: {worker_error}")
    if reasons:
        not_ready = [name for name, state in checks.items() if state in {"error", "unknown"}]
        return JsonResponse(
            {
                "status": "unavailable",
                **checks,
                "not_ready": not_ready,
                "reason": "; ".join(reasons),
            },
            status=HTTPStatus.SERVICE_UNAVAILABLE,
        )
    return JsonResponse({"status": "ok", **checks})
