"""The embedded worker's senders (`SendPool`): a few sends in flight, one per number, in order.

`deliver` here is a stand-in that records what it was given and, where a test needs sends to
stay in flight, waits for the test to let them finish; the delivery itself is tested elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from smsproxy.proxy.outbox.queue import Due
from smsproxy.proxy.outbox.send_pool import SendPool

SENT_OK = "sent"


class Deliveries:
    """A `deliver` whose sends stay in flight until released (or at once with `hold=False`)."""

    def __init__(self, *, hold: bool = True) -> None:
        self.hold = hold
        self.started: list[int] = []
        self.threads: set[str] = set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.released: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        self.reported: list[tuple[int, str]] = []
        self.failing: set[int] = set()

    def __call__(self, message_id: int) -> str:
        with self.lock:
            self.started.append(message_id)
            self.threads.add(threading.current_thread().name)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            release = self.released.setdefault(message_id, threading.Event())
        if self.hold:
            assert release.wait(10), f"message {message_id} was never released"
        with self.lock:
            self.in_flight -= 1
        if message_id in self.failing:
            raise RuntimeError(f"delivery of {message_id} failed")
        return SENT_OK

    def release(self, *message_ids: int) -> None:
        with self.lock:
            for message_id in message_ids:
                self.released.setdefault(message_id, threading.Event()).set()

    def report(self, message_id: int, result: str) -> None:
        self.reported.append((message_id, result))


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries()


@pytest.fixture
def stop() -> threading.Event:
    return threading.Event()


@pytest.fixture
def pool(deliveries: Deliveries) -> Iterator[SendPool[str]]:
    pool: SendPool[str] = SendPool(size=3, deliver=deliveries, report=deliveries.report)
    yield pool
    deliveries.release(*deliveries.started)
    pool.close()


def test_a_pool_of_one_sends_in_order_on_the_callers_thread(stop: threading.Event) -> None:
    deliveries = Deliveries(hold=False)
    pool: SendPool[str] = SendPool(size=1, deliver=deliveries, report=deliveries.report)

    handed = pool.send([Due(1, "+1"), Due(2, "+1"), Due(3, "+2")], stop=stop)

    assert handed == 3
    assert deliveries.started == [1, 2, 3]
    assert deliveries.reported == [(1, SENT_OK), (2, SENT_OK), (3, SENT_OK)]
    assert deliveries.threads == {threading.current_thread().name}
    assert pool.in_flight == 0


def test_no_more_than_size_sends_are_in_flight(
    pool: SendPool[str], deliveries: Deliveries, stop: threading.Event
) -> None:
    due = [Due(message_id, f"+{message_id}") for message_id in range(1, 8)]
    # Each send finishes once the pool is full (two more have started after it).
    finisher = threading.Thread(target=_release_in_turn, args=(deliveries, 7))
    finisher.start()

    handed = pool.send(due, stop=stop)
    pool.close()
    finisher.join(10)

    assert handed == 7
    assert deliveries.most_in_flight == 3
    assert sorted(deliveries.started) == list(range(1, 8))
    assert sorted(message_id for message_id, _ in deliveries.reported) == list(range(1, 8))
    assert threading.current_thread().name not in deliveries.threads


def _release_in_turn(deliveries: Deliveries, count: int) -> None:
    for message_id in range(1, count + 1):
        _started(deliveries, min(message_id + 2, count))
        deliveries.release(message_id)


def test_one_message_per_number_in_flight_and_its_later_ones_wait_their_turn(
    pool: SendPool[str], deliveries: Deliveries, stop: threading.Event
) -> None:
    first, second, other = Due(1, "+1"), Due(2, "+1"), Due(3, "+2")

    handed = pool.send([first, second, other], stop=stop)

    assert handed == 2
    assert _started(deliveries, 2) == [1, 3]
    # The first finishes; the pass that comes next hands out the second.
    deliveries.release(1)
    assert pool.wait_one()
    assert deliveries.reported == [(1, SENT_OK)]
    assert pool.send([second, other], stop=stop) == 1  # `other` is still in flight
    assert _started(deliveries, 3) == [1, 3, 2]


def test_a_number_that_is_not_ready_keeps_its_later_messages_back_in_that_pass(
    deliveries: Deliveries, stop: threading.Event
) -> None:
    asked: list[str] = []

    def ready(sender: str) -> bool:
        # "+1" is at its rate limit the first time it is asked, ready after.
        asked.append(sender)
        return sender != "+1" or asked.count("+1") > 1

    pool: SendPool[str] = SendPool(
        size=3, deliver=deliveries, report=deliveries.report, sender_ready=ready
    )
    try:
        handed = pool.send([Due(1, "+1"), Due(2, "+2"), Due(3, "+1")], stop=stop)

        # Message 3 is never sent before message 1, though "+1" was ready by then.
        assert handed == 1
        assert _started(deliveries, 1) == [2]
        assert asked == ["+1", "+2"]
    finally:
        deliveries.release(*deliveries.started)
        pool.close()


def test_a_message_in_flight_is_not_handed_out_again(
    pool: SendPool[str], deliveries: Deliveries, stop: threading.Event
) -> None:
    pool.send([Due(1, "+1")], stop=stop)

    assert pool.send([Due(1, "+1"), Due(2, "+2")], stop=stop) == 1
    assert sorted(_started(deliveries, 2)) == [1, 2]


def test_nothing_is_handed_out_once_stopped(
    pool: SendPool[str], deliveries: Deliveries, stop: threading.Event
) -> None:
    stop.set()

    assert pool.send([Due(1, "+1")], stop=stop) == 0
    assert not pool.wait_one()
    assert deliveries.started == []


def test_a_failed_delivery_is_raised_on_the_callers_thread_and_the_others_reported(
    pool: SendPool[str], deliveries: Deliveries, stop: threading.Event
) -> None:
    deliveries.failing.add(1)
    pool.send([Due(1, "+1"), Due(2, "+2")], stop=stop)

    deliveries.release(1)
    with pytest.raises(RuntimeError, match="delivery of 1 failed"):
        pool.wait_one()
    deliveries.release(2)
    pool.close()

    assert deliveries.reported == [(2, SENT_OK)]
    assert pool.in_flight == 0


def test_close_waits_for_the_sends_in_flight_and_stops_the_threads(
    deliveries: Deliveries, stop: threading.Event
) -> None:
    pool: SendPool[str] = SendPool(size=2, deliver=deliveries, report=deliveries.report)
    pool.send([Due(1, "+1"), Due(2, "+2")], stop=stop)
    _started(deliveries, 2)
    closing = threading.Thread(target=pool.close)
    closing.start()
    closing.join(0.05)
    assert closing.is_alive()  # both sends are still in flight

    deliveries.release(1, 2)
    closing.join(10)

    assert not closing.is_alive()
    assert sorted(deliveries.reported) == [(1, SENT_OK), (2, SENT_OK)]
    assert not [t for t in threading.enumerate() if t.name.startswith("send-")]


def test_a_pool_needs_a_sender() -> None:
    with pytest.raises(ValueError):
        SendPool(size=0, deliver=Deliveries(), report=lambda message_id, result: None)


def _started(deliveries: Deliveries, count: int) -> list[int]:
    """The messages started once `count` have been (threads start them a moment later)."""
    for _ in range(10_000):
        with deliveries.lock:
            if len(deliveries.started) >= count:
                return list(deliveries.started)
        threading.Event().wait(0.001)
    raise AssertionError(f"only {deliveries.started} started")
