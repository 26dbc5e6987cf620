"""psycopg's by-name dumpers resolved before a connection's first statement (psycopg issue 1230)."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from psycopg.adapt import AdaptersMap, PyFormat
from psycopg.types.uuid import UUIDBinaryDumper, UUIDDumper

from smsproxy.common import psycopg_dumpers
from smsproxy.common.psycopg_dumpers import NAMED_CLASSES, dumpers_resolve


def _by_name_map() -> AdaptersMap:
    """A map with UUID's dumpers registered by name, as psycopg registers them."""
    adapters = AdaptersMap()
    adapters.register_dumper("uuid.UUID", UUIDDumper)
    adapters.register_dumper("uuid.UUID", UUIDBinaryDumper)
    return adapters


def _names_left(adapters: AdaptersMap) -> set[str]:
    # psycopg keeps the maps private; reading them is the only way to see a name not yet swapped.
    maps = adapters._dumpers.values()
    return {key for dumpers in maps for key in dumpers if isinstance(key, str)}


def test_resolving_swaps_the_name_for_the_class_in_every_format() -> None:
    adapters = _by_name_map()
    assert _names_left(adapters) == {"uuid.UUID"}

    dumpers_resolve(adapters)

    assert _names_left(adapters) == set()
    assert adapters.get_dumper(uuid.UUID, PyFormat.TEXT) is UUIDDumper
    assert adapters.get_dumper(uuid.UUID, PyFormat.BINARY) is UUIDBinaryDumper


def test_resolving_holds_the_lock_while_it_swaps(monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[bool] = []
    adapters = _by_name_map()
    get_dumper = adapters.get_dumper

    def spying_get_dumper(cls: type, format: PyFormat) -> object:
        held.append(psycopg_dumpers._lock.locked())
        return get_dumper(cls, format)

    monkeypatch.setattr(adapters, "get_dumper", spying_get_dumper)
    dumpers_resolve(adapters)

    assert held and all(held)


def test_every_class_psycopg_names_is_resolved() -> None:
    """The list follows psycopg: a class it registers by name and the list misses is caught here."""
    import psycopg

    names = {
        key
        for dumpers in psycopg.adapters._dumpers.values()
        for key in dumpers
        if isinstance(key, str) and not key.startswith("numpy.")
    }
    listed = {f"{cls.__module__}.{cls.__qualname__}" for cls in NAMED_CLASSES}
    assert names <= listed


@pytest.mark.django_db
def test_a_new_postgresql_connection_has_no_name_left_before_its_first_statement() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("psycopg's dumpers exist only on PostgreSQL")
    connection.close()
    connection.ensure_connection()
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in NAMED_CLASSES}
    assert _names_left(connection.connection.adapters) & names == set()
