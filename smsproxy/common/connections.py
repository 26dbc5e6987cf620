"""Running a request's first statements again when the kept database connection was dead.

Connections are kept between requests without a health check (settings: CONN_HEALTH_CHECKS; a
`SELECT 1` per request would be a fifth of the webhook's round trips), so after a database
restart, a failover or a terminated backend, the first statement on each kept connection fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")


def on_a_live_connection(run: Callable[[], T], *, what: str) -> T:
    """Run `run`, once more on a new connection if the kept one turned out to be dead.

    Only for work that is safe to run twice when its first try failed at the database (it
    wrote nothing that committed: one transaction, or reads). Inside a transaction the error
    is the caller's. If the database is really down, the second try fails too and its error
    propagates.
    """
    try:
        return run()
    except (OperationalError, InterfaceError) as error:
        if connection.in_atomic_block:
            raise
        # Whatever the database said (a dropped connection, a restart, a lock timeout), a
        # second try on a new connection is safe; `is_usable()` cannot tell, as a connection
        # the server terminated may only fail on its next statement.
        logger.warning("Database error (%s); running %s again on a new connection.", error, what)
        connection.close()
        return run()
