"""The claim: one atomic step from `queued` and due to `sending`, so exactly one worker sends.

However many workers, tasks or duplicate enqueues reach one message, the claim lets one of them
through: it is a single UPDATE with the state in its WHERE clause, and the database serialises
two claims of one row (a row lock on PostgreSQL, the write lock on SQLite), so the second finds
no `queued` row left to update. The claim commits before the HTTP call (it runs in autocommit),
so no transaction is held open while Vonage is being called.

It is one round trip (delivery's rate bounds a worker's, see `deliver`): UPDATE … RETURNING the
fields the send needs, whether the sender is one of our active numbers and whether a receipt
already named a current part of the message. Raw SQL because `QuerySet.update()` cannot return
rows; `Manager.raw()` turns the returned row into a Message (the fields not returned are
deferred, read on first access as with `.only()`). UPDATE … RETURNING exists on PostgreSQL and
on SQLite from 3.35; `claim_database_check` refuses any other database at startup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.core.checks import CheckMessage, Error
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Message, MessagePart

# The columns the claim returns: those it wrote, and what the send needs of the row.
_RETURNED = (
    "id",
    "direction",
    "status",
    "claimed_at",
    "attempts",
    "updated_at",
    "sender",
    "recipient",
    "text",
    "max_attempts",
    # For the intercept hook (`intercept`): a forward, and whether it was asked already.
    "forwarded_from",
    "intercept",
)


@dataclass(frozen=True)
class Claim:
    # The claimed row, with the fields of _RETURNED loaded and the others deferred.
    message: Message
    sender_is_ours: bool
    # A receipt already named a part of this message: an earlier attempt that ended in a
    # timeout or a dropped connection did reach Vonage.
    accepted_before: bool


def message_claim(*, message_id: int, now: datetime) -> Claim | None:
    """Move a due queued outbound message to `sending`; None when it is not there to claim.

    Not there: not queued, not due at `now`, inbound, gone, or another worker claimed it first.
    """
    alias = router.db_for_write(Message)
    sql = _claim_sql(connections[alias].vendor)
    params = (
        Message.Status.SENDING.value,
        now,
        now,
        message_id,
        Message.Direction.OUTBOUND.value,
        Message.Status.QUEUED.value,
        now,
        VirtualNumber.Status.ACTIVE.value,
        False,
    )
    # list() fetches to the end: SQLite finishes (and autocommits) the statement only then.
    claimed = list(Message.objects.raw(sql, params, using=alias))
    if not claimed:
        return None
    [message] = claimed
    # raw() sets the two columns that are not fields as attributes: move them to the Claim.
    extra = vars(message)
    return Claim(
        message=message,
        sender_is_ours=bool(extra.pop("sender_is_ours")),
        accepted_before=bool(extra.pop("accepted_before")),
    )


@cache
def _claim_sql(vendor: str) -> str:
    """The claim's statement, built once per database backend."""
    connection = connections[router.db_for_write(Message)]
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    numbers = quote(VirtualNumber._meta.db_table)
    number_columns = _columns(VirtualNumber)
    msisdn, number_status = quote(number_columns["msisdn"]), quote(number_columns["status"])
    parts = quote(MessagePart._meta.db_table)
    part_columns = _columns(MessagePart)
    part_message, superseded = quote(part_columns["message"]), quote(part_columns["superseded"])
    columns = _columns(Message)

    def column(name: str) -> str:
        return quote(columns[name])

    status, attempts, due = column("status"), column("attempts"), column("next_attempt_at")
    # Only names from the models' _meta are interpolated; every value is a bound parameter.
    sql = (
        f"UPDATE {table} SET {status} = %s, {column('claimed_at')} = %s,"  # noqa: S608
        f" {attempts} = {attempts} + 1, {column('updated_at')} = %s"
        f" WHERE {column('id')} = %s AND {column('direction')} = %s AND {status} = %s"
        f" AND ({due} IS NULL OR {due} <= %s)"
        f" RETURNING {', '.join(map(column, _RETURNED))},"
        f" EXISTS (SELECT 1 FROM {numbers} WHERE {numbers}.{msisdn} = {table}.{column('sender')}"
        f" AND {numbers}.{number_status} = %s) AS sender_is_ours,"
        f" EXISTS (SELECT 1 FROM {parts} WHERE {parts}.{part_message} = {table}.{column('id')}"
        f" AND {parts}.{superseded} = %s) AS accepted_before"
    )
    return sql


def _columns(model: type[Model]) -> dict[str, str]:
    """Each concrete field's name → its column."""
    return {field.name: field.column for field in model._meta.concrete_fields if field.column}


def _update_returning_supported(connection: BaseDatabaseWrapper) -> bool:
    # Django's flag is about INSERT; UPDATE … RETURNING came with it on PostgreSQL and SQLite
    # (3.35), not on MariaDB, which has the flag too.
    return (
        connection.vendor in {"postgresql", "sqlite"}
        and connection.features.can_return_columns_from_insert
    )


def claim_database_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """System check: the database the outbox writes to can run the claim."""
    connection = connections[router.db_for_write(Message)]
    if _update_returning_supported(connection):
        return []
    return [
        Error(
            f"The outbox's claim needs UPDATE … RETURNING, which this {connection.vendor} "
            "database does not have: no outbound SMS could be sent.",
            hint="Use PostgreSQL, or SQLite 3.35 or newer (Python's sqlite3 module reports "
            "the version as sqlite3.sqlite_version).",
            id="smsproxy.E001",
        )
    ]
