"""psycopg's dumpers registered by class name, resolved once per process under a lock.

psycopg registers the dumpers of `datetime`, `Decimal`, `UUID` and `ipaddress` values under the
class's dotted name, and swaps the name for the class the first time a value of that type is
sent (`AdaptersMap.get_dumper`). Every connection made from Django's adapters template shares
those maps, and the swap is check-then-set without a lock: a thread that has just missed the
class can also miss the name that another thread swapped meanwhile, and its statement fails
with `ProgrammingError: cannot adapt type 'UUID'` (psycopg issue 1230: 3.3.2 narrowed the
window, it did not close it). A gthread web worker starts its four threads together, and the
first conversation created is the first request that sends a UUID: four threads can send their
first one at the same moment, and one of them would answer 500.

So each new PostgreSQL connection resolves those names before its first statement, under one
lock: the first connection of the process swaps every name for its class, and from then on no
thread takes psycopg's unlocked path for these types.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import threading
import uuid
from typing import Any

# The classes psycopg registers by name (psycopg.types.datetime, numeric, uuid, net); numpy's
# are left out: the service never sends numpy values and importing numpy is not wanted.
NAMED_CLASSES: tuple[type, ...] = (
    datetime.date,
    datetime.datetime,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
    ipaddress.IPv4Address,
    ipaddress.IPv4Interface,
    ipaddress.IPv4Network,
    ipaddress.IPv6Address,
    ipaddress.IPv6Interface,
    ipaddress.IPv6Network,
)

_lock = threading.Lock()


def dumpers_resolve(adapters: Any) -> None:
    """Swap every class name in `adapters` (a psycopg AdaptersMap) for its class, under the lock."""
    from psycopg import ProgrammingError
    from psycopg.adapt import PyFormat

    with _lock:
        for cls in NAMED_CLASSES:
            for format in PyFormat:
                try:
                    adapters.get_dumper(cls, format)
                except ProgrammingError:
                    continue  # no dumper for it in this map: nothing to swap


def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    """`connection_created` receiver: a new PostgreSQL connection's dumpers resolved first."""
    if connection.vendor == "postgresql":
        dumpers_resolve(connection.connection.adapters)
