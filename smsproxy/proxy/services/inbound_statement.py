"""An inbound SMS routed, stored and its forward queued in one statement (PostgreSQL).

The webhook's common cases — a text from a participant of a live conversation, and a text from
a number that may not be answered — are one `WITH … INSERT … INSERT` statement: rule 2's route
lookup (the statement of `participant_route_get`), the inbound row, and the queued forward
selected from both. One statement is one transaction on its own (the connection is in
autocommit outside `transaction.atomic`), so the webhook costs one round trip instead of five
(BEGIN, route, inbound, forward, COMMIT), and the forward can only exist with its inbound row.

A repeated `messageId` is `ON CONFLICT DO NOTHING`: no row, no forward, no error (a concurrent
repeat waits for the first one's commit, then inserts nothing).

The statement declines — writes nothing and says so — when rule 6 may have to answer: no live
route, an out-of-session reply configured, and the sender once a participant on this active
number of ours. The caller then takes the full path (`inbound.inbound_receive`), which applies
the reply's rules and limits under its lock. With events on or `PROXY_TTL_FROM=last_message`
the statement runs inside a transaction that also writes the event or moves the expiry.

SQLite has no INSERT inside WITH: it always takes the full path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from django.db import connection
from django.db.models import Field

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.selectors import route_sql_from


@dataclass(frozen=True)
class StatementResult:
    declined: bool  # nothing written: rule 6 may answer this sender, take the full path
    message: Message | None  # the inbound row; None (and not declined): a repeated messageId
    forward: Message | None  # the queued forward
    conversation: Conversation | None  # the route's (live) conversation
    recipient_is_ours: bool  # the recipient is an active number of ours
    # The route's two people as (id, real number, name) — id None: no such person.
    people: tuple[tuple[int | None, str, str | None], ...] = ()

    @cached_property
    def participants(self) -> tuple[Participant, ...]:
        """The route's two people (real number and name only), for the event's sender and
        recipient names: built when asked (events on), not on every webhook."""
        return tuple(
            Participant(pk=pk, real_number=real_number, name=name or "")
            for pk, real_number, name in self.people
            if pk is not None
        )

    @property
    def partner_found(self) -> bool:
        """The route's conversation has a second participant."""
        return sum(pk is not None for pk, _, _ in self.people) == 2


def inbound_statement_run(
    *,
    sender: str,
    recipient: str,
    text: str,
    forward_text: str,
    vonage_message_id: str,
    reply_possible: bool,
    now: Any,
) -> StatementResult:
    """Route and store one inbound text (not a part, not too long) and queue its forward.

    `forward_text` is the text as forwarded (redacted when PROXY_REDACT_NUMBERS); empty: no
    forward. `reply_possible`: an out-of-session reply is configured and the sender is a
    number, so the statement declines for a sender rule 6 may answer.
    """
    sql, defaults, converters = _statement_plan()
    params = {
        **defaults,
        "sender": sender,
        "recipient": recipient,
        "text": text,
        "forward_text": forward_text,
        "forward": bool(forward_text),
        "vonage_message_id": vonage_message_id,
        "reply_possible": reply_possible,
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None  # the final SELECT always answers one row
    (
        inbound_id,
        forward_id,
        declined,
        recipient_is_ours,
        partner_id,
        partner_real,
        partner_proxy,
        sender_id,
        sender_name,
        partner_name,
    ) = row[:10]
    conversation = None
    if row[10] is not None:
        values = [
            _convert(value, *column) for value, column in zip(row[10:], converters, strict=True)
        ]
        conversation = Conversation.from_db(
            connection.alias, [f.attname for f in Conversation._meta.concrete_fields], values
        )
    message = forward = None
    if inbound_id is not None:
        message = _message_loaded(
            id=inbound_id,
            direction=Message.Direction.INBOUND,
            status=Message.Status.RECEIVED if conversation else Message.Status.UNROUTED,
            conversation_id=conversation.pk if conversation else None,
            sender=sender,
            recipient=recipient,
            text=text,
            vonage_message_id=vonage_message_id,
            created_at=now,
            updated_at=now,
        )
        message.conversation = conversation
    if forward_id is not None and message is not None:
        forward = _message_loaded(
            id=forward_id,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.QUEUED,
            conversation_id=message.conversation_id,
            sender=partner_proxy,
            recipient=partner_real,
            text=forward_text,
            forwarded_from_id=inbound_id,
            created_at=now,
            updated_at=now,
        )
        forward.conversation = conversation
        forward.forwarded_from = message
    return StatementResult(
        declined=bool(declined),
        message=message,
        forward=forward,
        conversation=conversation,
        recipient_is_ours=bool(recipient_is_ours),
        people=((sender_id, sender, sender_name), (partner_id, partner_real, partner_name)),
    )


def _message_loaded(**values: Any) -> Message:
    """The Message as the statement wrote it (as if read back): the given values, the other
    fields' defaults."""
    names, defaults = _message_columns()
    return Message.from_db(
        connection.alias,
        names,
        [values.get(name, default) for name, default in zip(names, defaults, strict=True)],
    )


@cache
def _message_columns() -> tuple[list[str], list[Any]]:
    fields = Message._meta.concrete_fields
    return [field.attname for field in fields], [
        None if field.primary_key else _default(field) for field in fields
    ]


def _convert(value: object, column: Any, converters: list[Any]) -> object:
    for converter in converters:
        value = converter(value, column, connection)
    return value


# The Message columns each INSERT sets from the statement itself (the others are parameters:
# this SMS's values, or the field's default).
_INBOUND_SQL = {
    "conversation_id": "route.conversation_id",
    "status": (
        f"CASE WHEN route.conversation_id IS NULL THEN '{Message.Status.UNROUTED.value}' "
        f"ELSE '{Message.Status.RECEIVED.value}' END"
    ),
}
_FORWARD_SQL = {
    "conversation_id": "route.conversation_id",
    "sender": "route.partner_proxy_number",
    "recipient": "route.partner_real_number",
    "forwarded_from_id": "inbound.id",
}
_INBOUND_VALUES = {
    "direction": Message.Direction.INBOUND.value,
    "purpose": Message.Purpose.CONVERSATION.value,
    "sender": "%(sender)s",
    "recipient": "%(recipient)s",
    "text": "%(text)s",
    "vonage_message_id": "%(vonage_message_id)s",
    "created_at": "%(now)s",
    "updated_at": "%(now)s",
}
_FORWARD_VALUES = {
    "direction": Message.Direction.OUTBOUND.value,
    "purpose": Message.Purpose.CONVERSATION.value,
    "status": Message.Status.QUEUED.value,
    "text": "%(forward_text)s",
    "created_at": "%(now)s",
    "updated_at": "%(now)s",
}


@cache
def _statement_plan() -> tuple[str, dict[str, Any], list[tuple[Any, list[Any]]]]:
    """The statement (from the models' own tables and columns), the parameters that never
    change (the fields' defaults), and the converters of the conversation's columns."""
    quote = connection.ops.quote_name
    defaults: dict[str, Any] = {
        "conversation_active": Conversation.Status.ACTIVE.value,
        "number_active": VirtualNumber.Status.ACTIVE.value,
    }
    fields = [f for f in Message._meta.concrete_fields if f is not Message._meta.pk]

    def row_select(sql: dict[str, str], values: dict[str, str]) -> str:
        expressions = []
        for field in fields:
            column = str(field.column)
            value = values.get(field.attname)
            if column in sql:
                expression = sql[column]
            elif value is not None and value.startswith("%("):
                expression = value
            else:
                # A constant (this row's direction, a field's default) written in the SQL:
                # fewer parameters, and a statement short enough for psycopg to cache its
                # conversion.
                expression = _literal(value if value is not None else _default(field))
            expressions.append(f"{expression}::{field.cast_db_type(connection)}")
        return ", ".join(expressions)

    message = quote(Message._meta.db_table)
    participant = quote(Participant._meta.db_table)
    number = quote(VirtualNumber._meta.db_table)
    conversation_fields = list(Conversation._meta.concrete_fields)
    conversation_columns = ", ".join(f"c.{quote(str(f.column))}" for f in conversation_fields)
    route_columns = ", ".join(f"route.{quote(str(f.column))}" for f in conversation_fields)
    insert_columns = ", ".join(quote(str(f.column)) for f in fields)
    # Only the models' own table and column names are interpolated; the values are parameters.
    sql = (
        "WITH route AS ("  # noqa: S608
        "SELECT p.conversation_id, o.id AS partner_id, o.real_number AS partner_real_number, "
        "n2.msisdn AS partner_proxy_number, p.id AS sender_id, p.name AS sender_name, "
        f"o.name AS partner_name, {conversation_columns} "
        + route_sql_from(
            sender="%(sender)s",
            recipient="%(recipient)s",
            status="%(conversation_active)s",
            now="%(now)s",
        )
        + "), "  # noqa: S608 (the models' own names only, as above)
        f"ours AS (SELECT id FROM {number} "
        "WHERE msisdn = %(recipient)s AND status = %(number_active)s), "
        # Rule 6 may answer an earlier participant on this number: left to the full path.
        "reply AS (SELECT %(reply_possible)s::boolean AND NOT EXISTS (SELECT FROM route) "
        f"AND EXISTS (SELECT FROM {participant} q WHERE q.real_number = %(sender)s "
        "AND q.proxy_number_id IN (SELECT id FROM ours)) AS possible), "
        f"inbound AS (INSERT INTO {message} ({insert_columns}) "
        f"SELECT {row_select(_INBOUND_SQL, _INBOUND_VALUES)} "
        "FROM (SELECT 1) AS one LEFT JOIN route ON TRUE "
        "WHERE NOT (SELECT possible FROM reply) "
        f"ON CONFLICT ({quote('vonage_message_id')}) DO NOTHING RETURNING id), "
        f"forward AS (INSERT INTO {message} ({insert_columns}) "
        f"SELECT {row_select(_FORWARD_SQL, _FORWARD_VALUES)} "
        "FROM inbound CROSS JOIN route "
        "WHERE route.partner_id IS NOT NULL AND %(forward)s::boolean RETURNING id) "
        "SELECT (SELECT id FROM inbound), (SELECT id FROM forward), "
        "(SELECT possible FROM reply), EXISTS (SELECT FROM ours), route.partner_id, "
        "route.partner_real_number, route.partner_proxy_number, route.sender_id, "
        f"route.sender_name, route.partner_name, {route_columns} "
        "FROM (SELECT 1) AS one LEFT JOIN route ON TRUE"
    )
    converters = []
    for field in conversation_fields:
        column = field.get_col("route")
        backend = connection.ops.get_db_converters(column)
        converters.append((column, backend + column.get_db_converters(connection)))
    return sql, defaults, converters


def _default(field: Field[Any, Any]) -> Any:
    if field.has_default() and callable(field.default):
        raise TypeError(f"{field} has a callable default: the statement holds constants.")
    return field.get_default()


def _literal(value: object) -> str:
    """A constant of the models (a choice, a field's default) as an SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'{}'".format(value.replace("'", "''"))
    raise TypeError(f"No SQL literal for the constant {value!r}.")
