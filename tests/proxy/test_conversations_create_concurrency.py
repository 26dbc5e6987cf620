"""Concurrent openings of conversations between different people, on PostgreSQL.

`make bench` logged one 500 on `POST /api/conversations/` during concurrent creations of fresh
people (bench/RESULTS.md). Such creations share nothing but the pool's rows: each locks its
two numbers' rows (the candidate's KEY SHARE, then the load's NO KEY UPDATE). These tests hold
the creations at the worst moment — every one has chosen and locked its numbers, none has
written their load — and check that they then queue instead of deadlocking: every request
answers 201 once, no write runs twice, and the stored loads are exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, NumberUse, Participant
from smsproxy.proxy.services import conversations
from smsproxy.proxy.services.assignment import number_loads_recount
from tests.factories import VirtualNumberFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]


def _loads_held_until_all_chose(monkeypatch: pytest.MonkeyPatch, parties: int) -> Callable[[], int]:
    """Make each creation wait, before it writes its numbers' load, until `parties` creations
    have chosen (and locked) their numbers; returns how many load writes ran in all (a write
    that PostgreSQL aborted and that ran again counts twice)."""
    all_chose = threading.Barrier(parties, timeout=20)
    write = conversations.usage_and_intros_write
    calls: list[int] = []
    lock = threading.Lock()

    def write_when_all_chose(**kwargs: Any) -> Any:
        with lock:
            calls.append(1)
            first = len(calls) <= parties
        if first:
            all_chose.wait()
        return write(**kwargs)

    # The use history and the loads are written by one call (and one statement on PostgreSQL).
    monkeypatch.setattr(conversations, "usage_and_intros_write", write_when_all_chose)
    return lambda: len(calls)


def _open_at_once(token: str, pairs: list[tuple[str, str]]) -> list[int | str]:
    """POST /api/conversations/ for each pair of real numbers, one thread each."""
    outcomes: list[int | str] = []
    lock = threading.Lock()

    def open_one(first: str, second: str) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        body = {"participants": [{"number": first}, {"number": second}], "intro": False}
        try:
            outcome: int | str = client.post("/api/conversations/", body, format="json").status_code
        except Exception as exc:  # the test client re-raises a view's exception (a 500)
            outcome = repr(exc)
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=open_one, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.fixture
def token(api_user: Any) -> str:
    return str(Token.objects.create(user=api_user).key)


def test_two_creations_holding_the_same_numbers_in_opposite_order_queue(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """A's people get (N1, N2); B's first person used N1 recently (rule 3), so B's get
    (N2, N1). Both hold both rows when they write the loads: in participant order that is a
    deadlock (one request aborted and run again); in id order B waits for A's commit."""
    first, second = VirtualNumberFactory.create_batch(2)
    assert first.pk < second.pk
    alice, bob, carol, dave = (f"+447700900{n}" for n in (500, 501, 502, 503))
    NumberUse.objects.create(
        real_number=carol, proxy_number=first, last_used_at=timezone.now() - timedelta(hours=1)
    )
    load_writes = _loads_held_until_all_chose(monkeypatch, parties=2)

    outcomes = _open_at_once(token, [(alice, bob), (carol, dave)])

    assert outcomes == [201, 201], outcomes
    assert load_writes() == 2  # neither write was aborted and run again
    routes = dict(Participant.objects.values_list("real_number", "proxy_number_id"))
    assert routes == {alice: first.pk, bob: second.pk, carol: second.pk, dave: first.pk}
    assert set(VirtualNumber.objects.values_list("assigned_participants", flat=True)) == {2}
    assert number_loads_recount() == 0


def test_many_creations_of_different_people_on_the_same_numbers_all_answer_201(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """The bench's case: equal loads and fresh people, so every request chooses the same two
    numbers; all hold them at once, then write their loads one after the other."""
    VirtualNumberFactory.create_batch(3)
    creations = 6
    load_writes = _loads_held_until_all_chose(monkeypatch, parties=creations)
    pairs = [(f"+447700900{600 + 2 * i}", f"+447700900{601 + 2 * i}") for i in range(creations)]

    outcomes = _open_at_once(token, pairs)

    assert outcomes == [201] * creations, outcomes
    assert load_writes() == creations
    assert Conversation.objects.count() == creations
    assert Participant.objects.filter(active=True).count() == 2 * creations
    assert number_loads_recount() == 0
