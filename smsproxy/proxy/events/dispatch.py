"""Hands due events to the Celery task, by its name (the task module sits above the package).

Without a broker there is nothing to do: the embedded worker's events thread polls. A broker
that does not answer is logged and forgotten: the rows are committed, and the beat schedule
runs the task every few seconds anyway.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings

logger = logging.getLogger(__name__)

DELIVER_EVENTS_TASK = "smsproxy.proxy.deliver_events"
EVENTS_QUEUE = "events"
_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}


def events_dispatch(*, eta: datetime | None = None) -> None:
    if not settings.CELERY_BROKER_URL:
        return
    # Imported here: a process without a broker never loads Celery (start-up time).
    from smsproxy.celery import app as celery_app

    try:
        celery_app.send_task(
            DELIVER_EVENTS_TASK,
            queue=EVENTS_QUEUE,
            eta=eta,
            retry=True,
            retry_policy=_PUBLISH_RETRY_POLICY,
        )
    except Exception:
        logger.exception("Could not enqueue event delivery; the beat schedule will run it.")
