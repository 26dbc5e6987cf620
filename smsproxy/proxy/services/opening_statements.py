"""The end of opening a conversation: the use history, the numbers' load and the intro SMS.

`usage_and_intros_write` writes what `number_usage_write` and the outbox's
`message_queue_outbound_many` write, one after the other: on PostgreSQL in one statement (the
intro rows inserted by a WITH item beside the history's upsert and the load update, one round
trip fewer per new conversation; the values all rows share, as a conversation's intros do,
are sent once); elsewhere (SQLite: no data-modifying WITH), or for rows that differ in more
than their sender, recipient, text and timestamps, by those two.

Each intro row is handed to the dispatcher once the caller's transaction commits, as
`message_queue_outbound_many` hands it. The lock order is `number_usage_write`'s: the use rows,
then the numbers in id order; the intro rows lock nothing (their foreign keys are checked at
commit, as for the outbox's own insert).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Field

from smsproxy.common.inserts import insert_values, row_saved
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.queue import message_dispatch_on_commit, message_queue_outbound_many
from smsproxy.proxy.services.usage_statements import (
    Use,
    number_usage_ctes,
    number_usage_write,
)


def usage_and_intros_write(
    *, uses: Iterable[Use], changes: Mapping[int, int], messages: Sequence[Message]
) -> list[Message]:
    """`number_usage_write(uses, changes)`, then `messages` (unsaved; sender, recipient, text,
    purpose and conversation set) queued as `message_queue_outbound_many` queues them; returns
    them, saved. One statement on PostgreSQL when there are uses, load changes and messages."""
    uses = list(uses)
    if connection.vendor != "postgresql" or not messages or not uses or not any(changes.values()):
        number_usage_write(uses=uses, changes=changes)
        return message_queue_outbound_many(messages=messages) if messages else []
    for message in messages:
        message.direction = Message.Direction.OUTBOUND
        message.status = Message.Status.QUEUED
    shared, own = _fields()
    values = [insert_values(message, shared) for message in messages]
    if any(row != values[0] for row in values[1:]):
        # Rows that differ in more than their own fields: the outbox's plain insert.
        number_usage_write(uses=uses, changes=changes)
        return message_queue_outbound_many(messages=messages)
    ctes, params = number_usage_ctes(uses=uses, changes=changes)
    params += values[0]
    for message in messages:
        params += insert_values(message, own)
    with connection.cursor() as cursor:
        cursor.execute(_statement(ctes, len(messages)), params)
        keys = [row[0] for row in cursor.fetchall()]
    # RETURNING gives the rows in the order of VALUES (as the outbox's rows_insert relies on).
    for message, pk in zip(messages, keys, strict=True):
        row_saved(message, pk)
        message_dispatch_on_commit(message=message)
    return list(messages)


# Each intro row's own values; the others are the same for every row of one conversation and
# are sent once: psycopg converts (and caches) a statement's placeholders once per process only
# when it has at most 50 of them, and two rows of 24 values each and the history's would not.
_OWN_FIELDS = ("sender", "recipient", "text", "created_at", "updated_at")


@cache
def _fields() -> tuple[list[Field[Any, Any]], list[Field[Any, Any]]]:
    """(the message fields whose values all rows share, each row's own fields)."""
    meta = Message._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    return (
        [field for field in fields if field.name not in _OWN_FIELDS],
        [field for field in fields if field.name in _OWN_FIELDS],
    )


def _placeholder(field: Field[Any, Any]) -> str:
    """A value of `field`, cast to its column's type: PostgreSQL types a parameter from its
    target column only in INSERT ... VALUES (text values are left as text, cast on
    assignment, so that a too long one fails as in a plain insert)."""
    if field.get_internal_type() in ("CharField", "TextField"):
        return "%s"
    return f"CAST(%s AS {field.cast_db_type(connection)})"


@cache
def _statement(ctes: str, rows: int) -> str:
    """The statement for these WITH items (`number_usage_ctes`) and `rows` intro rows: the
    items' values, the shared message values, then each row's own."""
    quote = connection.ops.quote_name
    meta = Message._meta
    shared, own = _fields()
    names = [f"v{index}" for index in range(len(own))]
    row = "({})".format(", ".join(_placeholder(field) for field in own))
    columns = ", ".join(quote(str(field.column)) for field in [*shared, *own])
    # Only the model's own table and column names are interpolated; the values are parameters.
    return (
        f"WITH {ctes}, queued AS (INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"SELECT {', '.join(_placeholder(field) for field in shared)}, "
        f"{', '.join(f'own.{name}' for name in names)} "
        f"FROM (VALUES {', '.join([row] * rows)}) AS own ({', '.join(names)}) "
        f"RETURNING {quote(str(meta.pk.column))}) "
        "SELECT * FROM queued"
    )
