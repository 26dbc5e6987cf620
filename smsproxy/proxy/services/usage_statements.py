"""The numbers' stored load and which numbers each person used (rule 3), written once per
process like `assignment_statements`.

- `number_uses_write`: the (real number, proxy number) pairs and when they were used, kept
  at the later of two times, in one statement;
- `number_loads_add`: every number's stored load changed in one statement;
- `number_usage_write`: both, one statement on PostgreSQL (opening a conversation writes both
  at its end: one round trip fewer);
- `number_usage_ctes`: the same two as WITH items of a caller's statement (PostgreSQL: the
  intro SMS of a new conversation are inserted by the same statement, `opening_statements`).

Lock order, the same in the three: the use rows first (in key order), then the number rows
(in id order), so two transactions recording the same pairs or changing the same numbers
queue instead of deadlocking. SQLite serialises writers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import NumberUse

Use = tuple[str, int, datetime]  # (real number, proxy number id, used at)


def number_uses_write(*, uses: Iterable[Use]) -> None:
    """Remember that each real number used each proxy number at that time (one statement)."""
    rows = _uses_rows(uses)
    if rows:
        with connection.cursor() as cursor:
            cursor.execute(_uses_sql(connection.vendor, len(rows) // 3), rows)


def number_loads_add(*, changes: Mapping[int, int]) -> None:
    """Add `changes` (number id → participants gained or lost) to the numbers' stored load, in
    one statement. On PostgreSQL the rows are locked in id order first."""
    params = _loads_params(changes)
    if params:
        with connection.cursor() as cursor:
            cursor.execute(_loads_sql(connection.vendor, len(params) // 3, ""), params)


def number_usage_write(*, uses: Iterable[Use], changes: Mapping[int, int]) -> None:
    """`number_uses_write` then `number_loads_add`: one statement on PostgreSQL, whose update
    reads the upsert's rows before it locks a number, so the use rows are written first as
    when the two run one after the other."""
    rows = _uses_rows(uses)
    loads = _loads_params(changes)
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql" and rows and loads:
            cursor.execute(_usage_sql(vendor, len(rows) // 3, len(loads) // 3), rows + loads)
            return
        if rows:
            cursor.execute(_uses_sql(vendor, len(rows) // 3), rows)
        if loads:
            cursor.execute(_loads_sql(vendor, len(loads) // 3, ""), loads)


def number_usage_ctes(*, uses: Iterable[Use], changes: Mapping[int, int]) -> tuple[str, list[Any]]:
    """`number_usage_write`'s statement as two WITH items, `used` (the upsert) and `loaded` (the
    load update, which locks the numbers after every use row is written), and their values
    (PostgreSQL only; both sets non-empty). A caller's statement starts `WITH <items>, ...`."""
    if connection.vendor != "postgresql":
        raise ValueError("number_usage_ctes is a PostgreSQL statement")
    rows = _uses_rows(uses)
    loads = _loads_params(changes)
    if not rows or not loads:
        raise ValueError("number_usage_ctes needs uses and load changes")
    return _usage_ctes_sql(len(rows) // 3, len(loads) // 3), rows + loads


def _uses_rows(uses: Iterable[Use]) -> list[Any]:
    """The upsert's values: each pair once at its latest time, in key order."""
    latest: dict[tuple[str, int], datetime] = {}
    for real_number, number_id, used_at in uses:
        key = (real_number, number_id)
        latest[key] = max(used_at, latest.get(key, used_at))
    params: list[Any] = []
    for (real_number, number_id), used_at in sorted(latest.items()):
        params += [real_number, number_id, connection.ops.adapt_datetimefield_value(used_at)]
    return params


def _loads_params(changes: Mapping[int, int]) -> list[Any]:
    deltas = sorted((number_id, delta) for number_id, delta in changes.items() if delta)
    params: list[Any] = []
    for number_id, delta in deltas:
        params += [number_id, delta]
    params += [number_id for number_id, _ in deltas]
    return params


@cache
def _uses_sql(vendor: str, count: int) -> str:
    table = connection.ops.quote_name(NumberUse._meta.db_table)
    values = ", ".join(["(%s, %s, %s)"] * count)
    # Portable upsert (SQLite 3.24+, PostgreSQL): the ORM's update_conflicts cannot keep the
    # later of two times. Only the model's own table name is interpolated.
    return (
        f"INSERT INTO {table} (real_number, proxy_number_id, last_used_at) VALUES {values} "  # noqa: S608
        "ON CONFLICT (real_number, proxy_number_id) DO UPDATE SET last_used_at = CASE "
        f"WHEN excluded.last_used_at > {table}.last_used_at THEN excluded.last_used_at "
        f"ELSE {table}.last_used_at END"
    )


@cache
def _usage_sql(vendor: str, uses: int, loads: int) -> str:
    after = "(SELECT count(*) FROM used) > 0"  # every use row written before a number is locked
    return (
        f"WITH used AS ({_uses_sql(vendor, uses)} RETURNING 1) {_loads_sql(vendor, loads, after)}"
    )


@cache
def _usage_ctes_sql(uses: int, loads: int) -> str:
    after = "(SELECT count(*) FROM used) > 0"  # every use row written before a number is locked
    return (
        f"used AS ({_uses_sql('postgresql', uses)} RETURNING 1), "
        f"loaded AS ({_loads_sql('postgresql', loads, after)})"
    )


@cache
def _loads_sql(vendor: str, count: int, after: str) -> str:
    """The load update; `after`, a condition the number rows are locked after (PostgreSQL)."""
    table = connection.ops.quote_name(VirtualNumber._meta.db_table)
    ids = ", ".join(["%s"] * count)
    if vendor == "postgresql":
        condition = f" AND {after}" if after else ""
        rows = (
            f"SELECT id FROM {table} WHERE id IN ({ids}){condition} "  # noqa: S608
            "ORDER BY id FOR NO KEY UPDATE"
        )
    else:
        rows = ids
    # Only the model's own table and column names are interpolated; the values are parameters.
    return (
        f"UPDATE {table} SET assigned_participants = assigned_participants + "  # noqa: S608
        f"CASE id {' '.join(['WHEN %s THEN %s'] * count)} ELSE 0 END WHERE id IN ({rows})"
    )
