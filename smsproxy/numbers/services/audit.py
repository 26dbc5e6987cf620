"""The admin history (LogEntry) of staff actions on the pool, written by the services.

Written inside the transaction that makes the change: the history cannot say a number was
released when the release rolled back, nor miss a release that committed.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models

__all__ = ["ADDITION", "CHANGE", "admin_log"]


def admin_log(*, actor: Any, obj: models.Model, message: str, flag: int = CHANGE) -> None:
    """Record `message` in `obj`'s admin history as done by `actor`; nothing without a user.

    A command run from a shell has no user: its output is its record.
    """
    if actor is None or getattr(actor, "pk", None) is None:
        return
    LogEntry.objects.create(
        user_id=actor.pk,
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action_flag=flag,
        change_message=message,
    )
