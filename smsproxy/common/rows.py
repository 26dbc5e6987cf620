"""Model instances from the rows of raw SQL that the hot paths write once per process.

A statement built by hand (its SQL cached) returns plain columns; `ModelColumns` names the
columns of one model under a table alias for the SELECT list and turns its share of a row
back into an instance, the database's values converted as the ORM converts them (SQLite's
datetimes, decimals and booleans). Build it once (cache it with the statement).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class ModelColumns(Generic[M]):
    model: type[M]
    alias: str
    attnames: list[str]
    # (column expression, its converters), per selected column, as the ORM applies them.
    converters: list[tuple[Any, list[Any]]]
    sql: str  # 'alias."column", ...' for the SELECT list

    @property
    def width(self) -> int:
        return len(self.attnames)

    def instance(self, values: Sequence[Any]) -> M:
        """The instance of these columns' share of a row (`values`, in the columns' order)."""
        converted = []
        for value, (column, converters) in zip(values, self.converters, strict=True):
            for converter in converters:
                value = converter(value, column, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.attnames, converted)


def model_columns(model: type[M], alias: str) -> ModelColumns[M]:
    """Every concrete column of `model` under `alias` (the current connection's backend)."""
    quote = connection.ops.quote_name
    fields = list(model._meta.concrete_fields)
    converters = []
    for field in fields:
        column = field.get_col(alias)
        backend_converters = connection.ops.get_db_converters(column)
        converters.append((column, backend_converters + column.get_db_converters(connection)))
    return ModelColumns(
        model=model,
        alias=alias,
        attnames=[field.attname for field in fields],
        converters=converters,
        sql=", ".join(f"{alias}.{quote(str(field.column))}" for field in fields),
    )
