"""Staff actions in the admin history (LogEntry), written by the services that perform them.

A service given the `actor` (the staff user acting in the admin) writes the entry inside the
transaction that makes the change: an action that fails or is rolled back leaves no entry, and
one that committed always has its entry, whichever admin page or action called the service.
The entry says what changed from what to what ("status failed → queued"). Changes nobody
asked for in the admin (the API, the expiry sweep) are not staff actions and write none.
"""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.http import HttpRequest


def audit_change(
    *, actor: AbstractBaseUser | None, obj: models.Model, change: str, flag: int = CHANGE
) -> LogEntry | None:
    """Record in `obj`'s admin history that `actor` made `change` (old → new values, in words);
    `flag` ADDITION for an object the action created. Without an actor (a command run from a
    shell, the API, the sweep) nothing is written: that output is its own record.

    Must run inside the transaction that makes the change, so that both commit or neither.
    """
    if actor is None or actor.pk is None:
        return None
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_change runs inside the transaction of the change it records.")
    entry: LogEntry = LogEntry.objects.log_actions(
        actor.pk, [obj], flag, change_message=change, single_object=True
    )
    return entry


def request_actor(request: HttpRequest) -> AbstractBaseUser:
    """The staff user acting in an admin request (admin views only serve logged-in staff)."""
    user = request.user
    if isinstance(user, AnonymousUser) or not user.is_authenticated:
        raise PermissionDenied
    return user
