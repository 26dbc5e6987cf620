from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """When a kind of worker last showed it was alive; `/readyz` reads it.

    A database row, not a cache key: without a broker the cache is each process's own memory,
    and the web processes must see the embedded worker's beat.
    """

    name = models.CharField(max_length=32, primary_key=True)
    seen_at = models.DateTimeField()
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the last beat")

    def __str__(self) -> str:
        return f"{self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
