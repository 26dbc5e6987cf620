"""Worker heartbeats: the delivery worker records one as it runs, `/readyz` checks its age.

The embedded worker (`run_outbox`) beats from its loop at most every HEARTBEAT_EVERY; with
Celery, the beat's outbox sweep (every 30 s) beats from the worker that runs it, so one beat
shows that beat, the broker and a worker are all alive.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from django.utils import timezone

from smsproxy.common.models import WorkerHeartbeat

# The worker that sends the outbox (run_outbox, or Celery's default queue).
OUTBOX_WORKER = "outbox"
# run_outbox writes its heartbeat at most this often (one UPDATE).
HEARTBEAT_EVERY = timedelta(seconds=10)


def heartbeat_record(*, name: str, now: datetime | None = None) -> None:
    seen_at = now or timezone.now()
    worker = f"{socket.gethostname()}:{os.getpid()}"[:200]
    if not WorkerHeartbeat.objects.filter(name=name).update(seen_at=seen_at, worker=worker):
        WorkerHeartbeat.objects.update_or_create(
            name=name, defaults={"seen_at": seen_at, "worker": worker}
        )


def heartbeat_age(*, name: str, now: datetime) -> float | None:
    """Seconds since `name` last beat, or None when it never did."""
    seen_at = WorkerHeartbeat.objects.filter(name=name).values_list("seen_at", flat=True).first()
    if seen_at is None:
        return None
    return max(0.0, (now - seen_at).total_seconds())
