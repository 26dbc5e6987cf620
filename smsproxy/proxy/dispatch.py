"""Hands queued outbound messages to a dispatcher (embedded worker or Celery)."""

from __future__ import annotations


def message_dispatch(*, message_id: int) -> None:
    """Called after the commit that queued `message_id`.

    With the embedded worker there is nothing to do: `run_outbox` polls for due rows.
    """
