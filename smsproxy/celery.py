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
    return {
        name.removeprefix(prefix).lower(): getattr(settings, name)
        for name in dir(settings)
        if name.startswith(prefix)
    }


app = Celery("smsproxy")
app.config_from_object(celery_settings())
app.autodiscover_tasks()
