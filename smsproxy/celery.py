"""The Celery app: delivery runs on Celery workers when `CELERY_BROKER_URL` is set.

Configured from Django settings under the `CELERY_` namespace (settings.py). Run a worker with
`celery -A smsproxy worker` and the periodic sweep with `celery -A smsproxy beat`. Without a
broker URL nothing here connects anywhere: `dispatch.message_dispatch` does not publish, and
the embedded worker (`manage.py run_outbox`) delivers instead.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsproxy.settings")

app = Celery("smsproxy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
