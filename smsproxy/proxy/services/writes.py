"""Running a conversation's write again when the database or the pool says "not now".

A write PostgreSQL aborts for a lock conflict (a deadlock between two requests inserting the
same two people in opposite order; a release locking its number before the conversations on it)
runs again on the new state, WRITE_ATTEMPTS times in all. A write that finds the pool exhausted
rents a number and runs again when PROXY_AUTO_PROVISION is on (rule 4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import TypeVar

from django.conf import settings
from django.db import OperationalError

from smsproxy.common.errors import ApplicationError
from smsproxy.common.privacy import mask_number
from smsproxy.proxy.models import Participant
from smsproxy.proxy.services.assignment import PoolExhausted, proxy_number_rent

logger = logging.getLogger(__name__)

# How many times a whole write runs when PostgreSQL aborts it for a lock conflict: two
# requests inserting the same two people in opposite order wait on each other's unique-index
# entries (a deadlock); the database aborts one, which then runs again on the new state.
WRITE_ATTEMPTS = 3
# SQLSTATEs of a transaction aborted by a lock conflict: deadlock_detected, serialization_failure.
_LOCK_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
# One rented number can serve both participants; a second rental covers a concurrent request
# taking the first one for the same real number.
AUTO_PROVISION_MAX_RENTALS = 2

_T = TypeVar("_T")


def write_retried(
    write: Callable[[], _T], *, what: str, conflict_error: Callable[[], ApplicationError]
) -> _T:
    """Run `write` (one atomic block) again when PostgreSQL aborts it for a lock conflict.

    Inside a caller's transaction the block is a savepoint: rolling back to it undoes the
    aborted statement and releases the locks taken since, so running it again is sound there
    too.
    """
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            return write()
        except OperationalError as exc:
            if not _is_lock_conflict(exc):
                raise
            if attempt == WRITE_ATTEMPTS:
                raise conflict_error() from exc
            logger.info("%s hit a lock conflict (%s); running it again", what, exc)
    raise AssertionError("unreachable")  # the loop returns or raises


def _is_lock_conflict(exc: OperationalError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return sqlstate in _LOCK_CONFLICT_SQLSTATES


def pool_served(write: Callable[[], _T]) -> _T:
    """Run `write`; when the pool is exhausted, rent a number and run it again (rule 4).

    Without PROXY_AUTO_PROVISION, or after AUTO_PROVISION_MAX_RENTALS rentals, the answer is
    503 `pool_exhausted`, logged once (`pool_exhausted_log`).
    """
    rentals = 0
    while True:
        try:
            return write()
        except PoolExhausted as exhausted:
            if not settings.PROXY_AUTO_PROVISION:
                raise pool_exhausted_log(
                    exhausted,
                    ApplicationError(
                        "No proxy number is free for this conversation: every number in the "
                        "pool is already used by one of these participants. Add numbers to the "
                        "pool.",
                        code="pool_exhausted",
                        status=HTTPStatus.SERVICE_UNAVAILABLE,
                    ),
                ) from None
            if rentals >= AUTO_PROVISION_MAX_RENTALS:
                raise pool_exhausted_log(
                    exhausted,
                    ApplicationError(
                        "No proxy number is free for this conversation, even after renting "
                        f"{rentals} more. Try again.",
                        code="pool_exhausted",
                        status=HTTPStatus.SERVICE_UNAVAILABLE,
                    ),
                ) from None
            # Renting calls the provider: done between transactions, so a rented number is
            # committed to the pool even if this conversation then fails.
            try:
                proxy_number_rent(country=exhausted.country)
            except ApplicationError as error:
                if error.code == "pool_exhausted":  # none could be rented
                    pool_exhausted_log(exhausted, error)
                raise
            rentals += 1


def pool_exhausted_log(exhausted: PoolExhausted, error: ApplicationError) -> ApplicationError:
    """Log the refusal with what an operator needs (the country, how many live conversations
    the person is in: rule 3 needs that many numbers plus one) and return `error`, marked
    logged. Only on this failure path: one COUNT, none on the way of a served request."""
    live = (
        Participant.objects.filter(real_number=exhausted.real_number, active=True).count()
        if exhausted.real_number
        else None
    )
    logger.warning(
        "pool_exhausted: no proxy number free for %s (country %s, in %s live conversation(s)): %s",
        mask_number(exhausted.real_number) if exhausted.real_number else "a participant",
        exhausted.country or "unknown",
        "an unknown number of" if live is None else live,
        error.detail,
        extra={
            "event": "pool_exhausted",
            "country": exhausted.country,
            "live_conversations": live,
            "real_number": mask_number(exhausted.real_number) if exhausted.real_number else "",
            "auto_provision": settings.PROXY_AUTO_PROVISION,
        },
    )
    error.logged = True
    return error
