"""The statements of an assignment (DESIGN.md §5 rule 3), written once per process.

Opening a conversation is the API's busiest write, and building its queries through the ORM
cost more CPU than the database's own work (bench/RESULTS.md). The statements here are built
from the models' own tables and columns the first time each shape is needed, and then only
run with bound values, as `participant_route_get` does for the webhook's route:

- `proxy_number_candidate`: rule 3's ranking, the number it picks locked against a release
  in the same statement, and the expired conversation (if any) that still holds the route;
- `participant_insert`: the participant, or nothing when the route is taken meanwhile;
- `proxy_number_take`: both at once for a new participant, one statement on PostgreSQL;
(the numbers' stored load and use history are written by `usage_statements`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection

from smsproxy.common.inserts import insert_values, row_insert, row_insert_or_skip, row_saved
from smsproxy.common.rows import ModelColumns, model_columns
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, NumberUse, Participant
from smsproxy.proxy.selectors import RECENT_USE_WINDOW


@dataclass(frozen=True)
class Candidate:
    """The number rule 3 gives a real number, and the expired (not yet swept) conversation
    whose participant still holds that route's unique slot, if any: close it before the
    insert."""

    number: VirtualNumber
    held_by_conversation_id: int | None


def proxy_number_candidate(
    *,
    real_number: str,
    country: str,
    now: datetime,
    exclude_ids: Sequence[int] = (),
    pending_load: Mapping[int, int] | None = None,
    prefer_id: int | None = None,
) -> Candidate | None:
    """The best number `real_number` may be given in a new conversation (rule 3), or None.

    Eligible: active, unreserved, with the features a conversation needs (SMS; VOICE too with
    PROXY_VOICE), not in `exclude_ids`, and not used by this real number in a live
    conversation. Ranked: `prefer_id` first (prefer-sticky, a reopen's old number); the
    participant's country; not used by this real number within RECENT_USE_WINDOW, else the
    least recently used; the least loaded (the stored `assigned_participants` plus
    `pending_load`, number id → participants given it in the caller's transaction whose load
    is not written yet); the lowest id.

    On PostgreSQL the chosen row is locked FOR KEY SHARE by this same statement. A release
    (`number_release` locks the row FOR UPDATE) therefore either commits first — the row is
    then read again, found released and skipped for the next one — or waits until the caller's
    transaction ends and then sees the participant (its load). Assignments do not block each
    other. On SQLite every write transaction is exclusive (IMMEDIATE): nothing can change the
    pool between this read and the caller's commit.
    """
    pending = {number_id: count for number_id, count in (pending_load or {}).items() if count}
    sql, columns = _candidate_plan(
        connection.vendor,
        bool(settings.PROXY_VOICE),
        len(exclude_ids),
        len(pending),
        prefer_id is not None,
    )
    params = _candidate_params(
        real_number=real_number,
        country=country,
        now=now,
        exclude_ids=exclude_ids,
        pending=pending,
        prefer_id=prefer_id,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    held_by = row[columns.width]
    return Candidate(
        number=columns.instance(row[: columns.width]),
        held_by_conversation_id=int(held_by) if held_by is not None else None,
    )


def participant_insert(
    *, conversation: Conversation, name: str, real_number: str, country: str, number: VirtualNumber
) -> Participant | None:
    """The new participant on `number`, or None when this real number was given that number in
    another live conversation meanwhile (the live-route unique index decides; a concurrent
    uncommitted insert of the same route is waited for)."""
    return row_insert_or_skip(
        Participant(
            conversation=conversation,
            name=name,
            real_number=real_number,
            country=country,
            proxy_number=number,
        ),
        conflict=_live_route_conflict_target(connection.vendor),
    )


def proxy_number_take(
    *,
    conversation: Conversation,
    name: str,
    real_number: str,
    country: str,
    now: datetime,
    exclude_ids: Sequence[int] = (),
    pending_load: Mapping[int, int] | None = None,
    prefer_id: int | None = None,
) -> tuple[Candidate | None, Participant | None]:
    """`proxy_number_candidate` then `participant_insert` on the number it gives: (the
    candidate, the new participant). The participant is None when there is no candidate, when
    the candidate's route is still held by an expired conversation (`held_by_conversation_id`:
    the caller closes it, then inserts), or when a concurrent request gave this real number
    that number first (the live-route unique index skipped the insert).

    On PostgreSQL the two are one statement (the candidate, locked FOR KEY SHARE as
    `proxy_number_candidate` locks it, in a materialized CTE; the insert reads it): one round
    trip instead of two for each participant of a new conversation. SQLite runs the two.
    """
    if connection.vendor != "postgresql":
        if conversation.pk is None:
            row_insert(conversation)
        candidate = proxy_number_candidate(
            real_number=real_number,
            country=country,
            now=now,
            exclude_ids=exclude_ids,
            pending_load=pending_load,
            prefer_id=prefer_id,
        )
        if candidate is None or candidate.held_by_conversation_id is not None:
            return candidate, None
        created = participant_insert(
            conversation=conversation,
            name=name,
            real_number=real_number,
            country=country,
            number=candidate.number,
        )
        return candidate, created
    pending = {number_id: count for number_id, count in (pending_load or {}).items() if count}
    candidate_sql, columns = _candidate_plan(
        connection.vendor,
        bool(settings.PROXY_VOICE),
        len(exclude_ids),
        len(pending),
        prefer_id is not None,
    )
    participant = Participant(
        conversation=conversation, name=name, real_number=real_number, country=country
    )
    inserting = conversation.pk is None
    sql, fields = _take_plan(candidate_sql, inserting)
    params = insert_values(conversation, _conversation_fields()) if inserting else []
    params += _candidate_params(
        real_number=real_number,
        country=country,
        now=now,
        exclude_ids=exclude_ids,
        pending=pending,
        prefer_id=prefer_id,
    )
    params += insert_values(participant, fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None, None
    held_by, inserted_id = row[columns.width], row[columns.width + 1]
    if inserting:
        row_saved(conversation, row[columns.width + 2])
        participant.conversation = conversation  # its id, now known
    candidate = Candidate(
        number=columns.instance(row[: columns.width]),
        held_by_conversation_id=int(held_by) if held_by is not None else None,
    )
    if inserted_id is None:
        return candidate, None
    participant.proxy_number = candidate.number
    return candidate, row_saved(participant, inserted_id)


# --- The statements, built once per shape ----------------------------------------------------


def _candidate_params(
    *,
    real_number: str,
    country: str,
    now: datetime,
    exclude_ids: Sequence[int],
    pending: Mapping[int, int],
    prefer_id: int | None,
) -> list[Any]:
    """The values of `_candidate_plan`'s statement, in its placeholders' order."""
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any] = [real_number, real_number, adapt(now - RECENT_USE_WINDOW)]
    params += [VirtualNumber.Status.ACTIVE.value, *_feature_patterns()]
    params += list(exclude_ids)
    params += [Conversation.Status.ACTIVE.value, adapt(now)]
    if prefer_id is not None:
        params.append(prefer_id)
    params.append(country)
    for number_id, count in pending.items():
        params += [number_id, count]
    return params


def _feature_patterns() -> list[str]:
    """LIKE patterns on ",features," (`features` is a comma-joined list: whole items only)."""
    needed = ["SMS", "VOICE"] if settings.PROXY_VOICE else ["SMS"]
    return [f"%,{feature},%" for feature in needed]


@cache
def _candidate_plan(
    vendor: str, voice: bool, excluded: int, pending: int, prefer: bool
) -> tuple[str, ModelColumns[VirtualNumber]]:
    """`proxy_number_candidate`'s statement for this shape, and the number's columns in it.

    At most one participant row joins each number (the live-route unique index: one active
    participant per real number and proxy number) and at most one history row (one per pair),
    so the joins never repeat a number.
    """
    quote = connection.ops.quote_name
    columns = model_columns(VirtualNumber, "n")
    features = " AND ".join(
        ["(',' || n.features || ',') LIKE %s"] * (2 if voice else 1)
    )  # the patterns are parameters
    exclusion = f" AND n.id NOT IN ({', '.join(['%s'] * excluded)})" if excluded else ""
    load = "n.assigned_participants"
    if pending:
        load += f" + CASE n.id {' '.join(['WHEN %s THEN %s'] * pending)} ELSE 0 END"
    order = [
        *(["CASE WHEN n.id = %s THEN 0 ELSE 1 END"] if prefer else []),
        "CASE WHEN n.country = %s THEN 0 ELSE 1 END",
        # Not used recently (NULL) first, then the least recently used.
        "u.last_used_at ASC NULLS FIRST",
        load,
        "n.id",
    ]
    participants = quote(Participant._meta.db_table)
    conversations = quote(Conversation._meta.db_table)
    uses = quote(NumberUse._meta.db_table)
    # Only the models' own table and column names are interpolated; the values are parameters.
    if vendor == "postgresql":
        # This person's live routes and recent uses are read once each (a few rows from the
        # real_number-first indexes), not probed once per number of the pool: a quarter less
        # of the database's time for this statement with a pool of 100.
        head = (
            "WITH p AS MATERIALIZED (SELECT p.id, p.proxy_number_id, p.conversation_id, "  # noqa: S608
            f"c.status, c.expires_at FROM {participants} p "
            f"JOIN {conversations} c ON c.id = p.conversation_id "
            "WHERE p.active AND p.real_number = %s), "
            f"u AS MATERIALIZED (SELECT proxy_number_id, last_used_at FROM {uses} "
            "WHERE real_number = %s AND last_used_at >= %s) "
            f"SELECT {columns.sql}, p.conversation_id "
            f"FROM {quote(VirtualNumber._meta.db_table)} n "
            "LEFT JOIN p ON p.proxy_number_id = n.id LEFT JOIN u ON u.proxy_number_id = n.id "
        )
        conversation, lock = "p", " FOR KEY SHARE OF n"
    else:
        head = (
            f"SELECT {columns.sql}, p.conversation_id "  # noqa: S608
            f"FROM {quote(VirtualNumber._meta.db_table)} n "
            f"LEFT JOIN {participants} p ON p.proxy_number_id = n.id "
            "AND p.active AND p.real_number = %s "
            f"LEFT JOIN {conversations} c ON c.id = p.conversation_id "
            f"LEFT JOIN {uses} u ON u.proxy_number_id = n.id "
            "AND u.real_number = %s AND u.last_used_at >= %s "
        )
        conversation, lock = "c", ""
    sql = (
        f"{head}WHERE n.status = %s AND NOT n.reserved AND {features}{exclusion} "
        # Free for this real number: no participant on it, or only one whose conversation is
        # dead (closed, or expired and not swept yet: the caller closes it first).
        f"AND (p.id IS NULL OR NOT ({conversation}.status = %s AND "
        f"({conversation}.expires_at IS NULL OR {conversation}.expires_at > %s))) "
        f"ORDER BY {', '.join(order)} LIMIT 1{lock}"
    )
    return sql, columns


def _conversation_fields() -> list[Any]:
    meta = Conversation._meta
    return [field for field in meta.concrete_fields if field is not meta.pk]


@cache
def _take_plan(candidate_sql: str, inserting: bool) -> tuple[str, list[Any]]:
    """`proxy_number_take`'s statement (PostgreSQL) around this candidate statement, and the
    participant's fields whose values follow the candidate's (every column but the key and the
    proxy number, which is the candidate's id). `inserting`: the conversation is inserted
    first by the same statement (its values before the candidate's), and the participant
    belongs to it; its id is the row's last column.

    The values are cast to their columns' types: in INSERT ... SELECT, PostgreSQL does not type
    a parameter from its target column (text ones are left as text, and cast on assignment).
    """
    quote = connection.ops.quote_name
    meta = Participant._meta
    number_field = meta.get_field("proxy_number")
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    values = []
    conversation_field = meta.get_field("conversation")
    for field in fields:
        if field is number_field:
            values.append("candidate.id")
        elif inserting and field is conversation_field:
            values.append("conversation.id")
        elif field.get_internal_type() in ("CharField", "TextField"):
            values.append("%s")
        else:
            values.append(f"CAST(%s AS {field.cast_db_type(connection)})")
    head, sources, tail = "WITH ", "candidate", ""
    if inserting:
        table = quote(Conversation._meta.db_table)
        columns = _conversation_fields()
        head = (
            f"WITH conversation AS (INSERT INTO {table} "  # noqa: S608
            f"({', '.join(quote(str(field.column)) for field in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id), "
        )
        sources, tail = "candidate, conversation", ", (SELECT conversation.id FROM conversation)"
    # Only the models' own table and column names are interpolated; the values are parameters.
    sql = (
        f"{head}candidate AS MATERIALIZED ({candidate_sql}), "  # noqa: S608
        f"inserted AS (INSERT INTO {quote(meta.db_table)} "
        f"({', '.join(quote(str(field.column)) for field in fields)}) "
        f"SELECT {', '.join(values)} FROM {sources} WHERE candidate.conversation_id IS NULL "
        f"ON CONFLICT {_live_route_conflict_target(connection.vendor)} DO NOTHING "
        f"RETURNING {quote(str(meta.pk.column))}) "
        f"SELECT candidate.*, (SELECT inserted.id FROM inserted){tail} FROM candidate"
    )
    skipped = {number_field, conversation_field} if inserting else {number_field}
    return sql, [field for field in fields if field not in skipped]


@cache
def _live_route_conflict_target(vendor: str) -> str:
    """ON CONFLICT's target for the live-route unique index (participant_live_route_unique)."""
    quote = connection.ops.quote_name
    meta = Participant._meta
    fields = {field.name: str(field.column) for field in meta.concrete_fields}
    columns = ", ".join(quote(fields[name]) for name in ("real_number", "proxy_number"))
    return f"({columns}) WHERE {quote(fields['active'])}"
