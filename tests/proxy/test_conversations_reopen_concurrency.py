"""Reopen racing reopen and create on PostgreSQL: a (real, proxy) pair is never live twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection, connections

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Participant
from smsproxy.proxy.services.conversations import conversation_close, conversation_create
from smsproxy.proxy.services.reopen import conversation_reopen
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between, participant_specs

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]

BUSY = "+447700900500"


def run_at_once(actions: list[Callable[[], object]]) -> list[str]:
    start = threading.Barrier(len(actions))
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(action: Callable[[], object]) -> None:
        try:
            start.wait()
            action()
            outcome = "ok"
        except ApplicationError as exc:
            outcome = exc.code
        except Exception as exc:  # a server error fails the test
            outcome = repr(exc)
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def assert_no_pair_live_twice() -> None:
    pairs = Counter(
        Participant.objects.filter(active=True).values_list("real_number", "proxy_number_id")
    )
    assert all(count == 1 for count in pairs.values()), pairs
    loads = Counter(
        Participant.objects.filter(active=True).values_list("proxy_number_id", flat=True)
    )
    for number in VirtualNumber.objects.all():
        assert number.assigned_participants == loads.get(number.pk, 0)


def test_reopens_and_creates_for_one_person_on_a_one_number_pool() -> None:
    VirtualNumberFactory.create()
    old = [
        conversation_close(
            conversation=open_between(BUSY, f"+447700900{600 + i:03d}"),
            reason=Conversation.CloseReason.API,
        )
        for i in range(3)
    ]

    def reopen(conversation: Conversation) -> Callable[[], object]:
        return lambda: conversation_reopen(conversation=conversation)

    def create(partner: str) -> Callable[[], object]:
        return lambda: conversation_create(participants=participant_specs(BUSY, partner))

    actions = [reopen(c) for c in old] + [create(f"+447700900{700 + i:03d}") for i in range(3)]

    outcomes = run_at_once(actions)

    counts = Counter(outcomes)
    assert counts == {"ok": 1, "pool_exhausted": 5}, counts
    assert Participant.objects.filter(real_number=BUSY, active=True).count() == 1
    assert_no_pair_live_twice()


def test_two_reopens_of_one_conversation_reopen_it_once() -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = conversation_close(
        conversation=open_between(BUSY, "+447700900601"), reason=Conversation.CloseReason.API
    )

    outcomes = run_at_once([lambda: conversation_reopen(conversation=conversation)] * 4)

    assert outcomes == ["ok"] * 4
    assert conversation.participants.filter(active=True).count() == 2
    assert_no_pair_live_twice()
