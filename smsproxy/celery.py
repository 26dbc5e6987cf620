"""The Celery app: delivery runs on Celery workers when `CELERY_BROKER_URL` is set.

Configured from Django settings under the `CELERY_` namespace (settings.py). Run a worker with
`celery -A smsproxy worker` and the periodic sweep with `celery -A smsproxy beat`. Without a
broker URL nothing here connects anywhere: `dispatch.message_dispatch` does not publish, and
the embedded worker (`manage.py run_outbox`) delivers instead.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsproxy.settings")


def celery_settings() -> dict[str, Any]:
    """Django's `CELERY_*` settings as Celery's own keys (`CELERY_BROKER_URL` → `broker_url`).

    A plain dict rather than `config_from_object("django.conf:settings", namespace="CELERY")`:
    with Django's lazy settings object as its source, each of the few dozen configuration
    reads of one `send_task` walks Celery's key aliases through Django's settings (missing
    names raise and are caught), about a fifth of the publish that every routed webhook makes
    after its commit. The settings do not change in a running process.
    """
    from django.conf import settings

    prefix = "CELERY_"
    config = {
        name.removeprefix(prefix).lower(): getattr(settings, name)
        for name in dir(settings)
        if name.startswith(prefix)
    }
    # Celery's Django fix-up reads this one under its full Django name, not a Celery key.
    if hasattr(settings, "CELERY_DB_REUSE_MAX"):
        config["CELERY_DB_REUSE_MAX"] = settings.CELERY_DB_REUSE_MAX
    return config


app = Celery("smsproxy")
app.config_from_object(celery_settings())
app.autodiscover_tasks()


@task_prerun.connect
def database_connections_checked(**kwargs: Any) -> None:
    """Before each task, replace a database connection that is broken or older than
    CONN_MAX_AGE, and keep the others.

    Celery's Django fix-up would close every connection before and after each task (unless
    CELERY_DB_REUSE_MAX, which settings.py sets so high that it never does): a new PostgreSQL
    connection, and its prepared statements, for every SMS sent. bench/throttling.py measured
    the two workers at half the allowed rate with it. A connection the server dropped (a
    restart) is found here, by one round trip, instead of failing the task that uses it.
    """
    from django.db import connections

    task = kwargs.get("task")
    if task is not None and getattr(task.request, "is_eager", False):
        return  # run in the caller's process (tests), maybe inside its transaction
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        connection.close_if_unusable_or_obsolete()
        if connection.connection is not None and not connection.is_usable():
            connection.close()
