"""Concurrent assignment on PostgreSQL: the unique constraint decides, losers retry (rule 4)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Participant
from smsproxy.proxy.services import assignment
from smsproxy.proxy.services.conversations import conversation_create, conversations_expire
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import participant_specs

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]

THREADS = 8
POOL = 3
BUSY_PERSON = "+447700900500"


def test_concurrent_conversations_for_one_person_never_share_a_proxy_number() -> None:
    pool = VirtualNumberFactory.create_batch(POOL)
    start = threading.Barrier(THREADS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def open_one(index: int) -> None:
        try:
            start.wait()
            conversation_create(
                participants=participant_specs(
                    (BUSY_PERSON, "Busy"), (f"+447700900{600 + index:03d}", f"Partner {index}")
                )
            )
            outcome = "created"
        except ApplicationError as exc:
            outcome = exc.code
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    counts = Counter(outcomes)
    assert sum(counts.values()) == THREADS, counts
    assert counts["created"] == POOL, counts
    assert counts["pool_exhausted"] == THREADS - POOL, counts
    assert Conversation.objects.count() == POOL

    busy_numbers = list(
        Participant.objects.filter(real_number=BUSY_PERSON, active=True).values_list(
            "proxy_number_id", flat=True
        )
    )
    assert len(busy_numbers) == POOL
    assert set(busy_numbers) == {number.pk for number in pool}  # distinct: no duplicate


def test_the_same_two_people_in_opposite_order_at_once_do_not_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each request inserts its first participant, then waits on the other's unique-index entry
    for its second: a deadlock. PostgreSQL aborts one; it runs again and gets a clear answer."""
    only = VirtualNumberFactory.create()
    alice, bob = "+447700900500", "+447700900501"
    # Both requests reach their second participant only once both have inserted their first.
    both_inserted_first = threading.Barrier(2, timeout=20)
    calls = threading.local()
    take = assignment.proxy_number_take

    def take_in_step(**kwargs: Any) -> Any:
        calls.count = getattr(calls, "count", 0) + 1
        if calls.count == 2:  # before the second participant of the first attempt
            both_inserted_first.wait()
        return take(**kwargs)

    monkeypatch.setattr(assignment, "proxy_number_take", take_in_step)
    outcomes: list[str] = []
    lock = threading.Lock()

    def open_one(first: str, second: str) -> None:
        try:
            conversation_create(participants=participant_specs(first, second))
            outcome = "created"
        except ApplicationError as exc:
            outcome = exc.code
        except Exception as exc:  # a deadlock surfacing as a server error fails the test
            outcome = repr(exc)
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [
        threading.Thread(target=open_one, args=pair) for pair in ((alice, bob), (bob, alice))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # The retried request finds both people already on the only number.
    assert sorted(outcomes) == ["created", "pool_exhausted"], outcomes
    assert Conversation.objects.count() == 1
    assert set(
        Participant.objects.filter(active=True).values_list("real_number", "proxy_number_id")
    ) == {(alice, only.pk), (bob, only.pk)}


def test_concurrent_expiry_sweeps_close_each_conversation_once() -> None:
    VirtualNumberFactory.create()
    conversations = [
        conversation_create(
            participants=participant_specs(
                f"+447700900{500 + 2 * i:03d}", f"+447700900{501 + 2 * i:03d}"
            ),
            ttl=60,
        )
        for i in range(40)
    ]
    Conversation.objects.filter(pk__in=[c.pk for c in conversations]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    sweeps = 4
    start = threading.Barrier(sweeps)
    closed: list[int] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            start.wait()
            closed.append(conversations_expire(batch_size=5))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(sweeps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(closed) == len(conversations)
    assert Conversation.objects.filter(status=Conversation.Status.ACTIVE).count() == 0
    assert not Participant.objects.filter(active=True).exists()


def test_a_number_released_while_it_is_being_assigned_is_never_assigned() -> None:
    """The release holds the number's row lock and has not committed yet when the assignment
    reads the pool: the assignment must wait for it and then take another number, instead of
    committing a live participant on a number whose rental is gone."""
    doomed, spare = VirtualNumberFactory.create_batch(2)
    locked = threading.Event()
    errors: list[BaseException] = []

    def release() -> None:
        try:
            with transaction.atomic():
                number = VirtualNumber.objects.select_for_update().get(pk=doomed.pk)
                number.status = VirtualNumber.Status.RELEASED
                number.released_at = timezone.now()
                number.save(update_fields=["status", "released_at"])
                locked.set()
                time.sleep(1.0)  # the assignment reads the pool meanwhile
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            locked.set()
        finally:
            connections.close_all()

    releaser = threading.Thread(target=release)
    releaser.start()
    assert locked.wait(timeout=10)
    try:
        conversation = conversation_create(
            participants=participant_specs(("+447700900500", "Alice"), ("+447700900501", "Bob"))
        )
    finally:
        releaser.join(timeout=30)
    assert not errors, errors

    assigned = set(conversation.participants.values_list("proxy_number", flat=True))
    assert assigned == {spare.pk}
    assert not Participant.objects.filter(proxy_number=doomed, active=True).exists()


@pytest.mark.parametrize("statement", ["candidate", "take"])
def test_the_chosen_number_stays_locked_against_a_release_until_commit(statement: str) -> None:
    """The candidate statement locks the row it returns (KEY SHARE), alone or inside
    `proxy_number_take`'s CTE: another assignment may take the same number at once, a release
    (FOR UPDATE) must wait for the commit."""
    number = VirtualNumberFactory.create()
    chosen = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def assign() -> None:
        try:
            with transaction.atomic():
                if statement == "take":
                    candidate, created = assignment.proxy_number_take(
                        conversation=Conversation(),
                        name="",
                        real_number="+447700900500",
                        country="GB",
                        now=timezone.now(),
                    )
                    assert created is not None
                else:
                    candidate = assignment.proxy_number_candidate(
                        real_number="+447700900500", country="GB", now=timezone.now()
                    )
                assert candidate is not None and candidate.number == number
                chosen.set()
                assert done.wait(timeout=20)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            chosen.set()
        finally:
            connections.close_all()

    assigner = threading.Thread(target=assign)
    assigner.start()
    try:
        assert chosen.wait(timeout=10)
        with transaction.atomic():
            shared = VirtualNumber.objects.select_for_update(no_key=True, nowait=True)
            assert shared.get(pk=number.pk) == number  # a load update does not wait
        with pytest.raises(OperationalError), transaction.atomic():
            VirtualNumber.objects.select_for_update(nowait=True).get(pk=number.pk)
    finally:
        done.set()
        assigner.join(timeout=30)
    assert not errors, errors
    with transaction.atomic():  # committed: the release may go ahead
        VirtualNumber.objects.select_for_update(nowait=True).get(pk=number.pk)


def test_a_close_deadlocked_with_a_release_runs_again(api_client: Any) -> None:
    """A release locks its number, then the conversations on it; the API close locks the
    conversation, then its number's load. PostgreSQL aborts the close (the first to wait);
    it runs again once the release commits, and the API answers 200, not 500."""
    number = VirtualNumberFactory.create()
    conversation = conversation_create(
        participants=participant_specs(("+447700900500", "Alice"), ("+447700900501", "Bob"))
    )
    number_locked = threading.Event()
    errors: list[BaseException] = []

    def release_like() -> None:
        try:
            with transaction.atomic():
                VirtualNumber.objects.select_for_update().get(pk=number.pk)
                number_locked.set()
                time.sleep(0.5)  # the close locks the conversation and waits for the number
                Conversation.objects.select_for_update().get(pk=conversation.pk)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            number_locked.set()
        finally:
            connections.close_all()

    releaser = threading.Thread(target=release_like)
    releaser.start()
    assert number_locked.wait(timeout=10)
    try:
        response = api_client.post(f"/api/conversations/{conversation.public_id}/close/")
    finally:
        releaser.join(timeout=30)

    assert not errors, errors
    assert response.status_code == 200, response.json()
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    assert not Participant.objects.filter(active=True).exists()
    number.refresh_from_db()
    assert number.assigned_participants == 0


def test_a_route_taken_while_the_candidate_is_read_is_skipped_by_the_same_statement() -> None:
    """The candidate and the insert are one statement (`proxy_number_take`): when another
    transaction, not committed yet when the candidate is read, gives this real number the
    chosen number, the insert waits for it, then writes nothing (ON CONFLICT) and the next
    number is used. The person never holds one number twice."""
    first, second = VirtualNumberFactory.create_batch(2)
    me = "+447700900500"
    other = conversation_create(participants=participant_specs("+447700900600", "+447700900601"))
    inserted = threading.Event()
    errors: list[BaseException] = []

    def hold_the_route() -> None:
        try:
            with transaction.atomic():
                Participant.objects.create(
                    conversation=other, real_number=me, country="GB", proxy_number=first
                )
                inserted.set()
                _wait_for_a_lock_waiter()  # the other statement waits on this route's entry
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            inserted.set()
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_route)
    holder.start()
    try:
        assert inserted.wait(timeout=10)
        with transaction.atomic():
            conversation = Conversation.objects.create()
            candidate, created = assignment.proxy_number_take(
                conversation=conversation, name="", real_number=me, country="GB", now=timezone.now()
            )
            assert candidate is not None and candidate.number == first
            assert created is None
            candidate, created = assignment.proxy_number_take(
                conversation=conversation,
                name="",
                real_number=me,
                country="GB",
                now=timezone.now(),
                exclude_ids=[first.pk],
            )
            assert candidate is not None and candidate.number == second
            assert created is not None and created.proxy_number == second
    finally:
        holder.join(timeout=30)
    assert not errors, errors
    assert sorted(
        Participant.objects.filter(real_number=me, active=True).values_list(
            "proxy_number_id", flat=True
        )
    ) == sorted([first.pk, second.pk])


def _wait_for_a_lock_waiter() -> None:
    """Return once another backend of this database waits for a lock (20 s at most)."""
    with connection.cursor() as cursor:
        for _ in range(2000):
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("no statement waited for the route")
