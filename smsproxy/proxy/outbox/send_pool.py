"""The embedded worker's senders: due messages delivered from a few threads at once.

A send is mostly waiting for Vonage's answer (a round trip over the internet, tens to hundreds
of milliseconds), not work: one message at a time, `run_outbox` spent 45 of every 55 ms of a
send waiting and reached 18 of the 30 sends a second the account allows (bench/throttling.py).
A few sends in flight fill that wait, as the Celery workers' processes do.

Each message still goes through `message_deliver`, whole, on one thread: the claim (exactly one
sender however many threads, processes or hosts), the shared rate limit (thread-safe, and in
Redis across processes), the send and the write of its outcome. The pool adds two rules:
- Messages are handed out in the order given (`outbox_due`: forwards and intros first, oldest
  first, then out-of-session replies).
- At most one message per sending number is in flight, and none from a number that is not ready
  (`sender_ready`: the worker asks the rate limiter whether the number is at its own limit, so
  that its message is not claimed only to be put back); once a number's message has to wait,
  its later ones wait too: two texts of one conversation leg leave in the order they were
  queued, as with one thread.
A message passed over stays queued and due, and takes no sender; a later pass hands it out.

Threads start with the first message handed out, so a pool of one (`run_outbox --once`) sends on
the caller's thread. Each thread has its own database connection, checked before each message
as the worker's loop checks its own (`close_old_connections`) and closed when the pool closes.
Outcomes are reported, and the exceptions of deliveries re-raised, on the caller's thread.
`close` waits for the sends in flight: a stopping worker finishes and records them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db import close_old_connections, connections

from smsproxy.proxy.outbox.queue import Due

R = TypeVar("R")


@dataclass(frozen=True)
class _Done(Generic[R]):
    message_id: int
    sender: str
    result: R | None = None
    error: BaseException | None = None


class SendPool(Generic[R]):
    """Delivers messages on up to `size` threads, one per sending number at a time.

    `deliver(message_id)` sends one message and returns its result; `report(message_id,
    result)` is called on the caller's thread for each; `sender_ready(sender)` says whether a
    message from that number may be handed out now.
    """

    def __init__(
        self,
        *,
        size: int,
        deliver: Callable[[int], R],
        report: Callable[[int, R], None],
        sender_ready: Callable[[str], bool] = lambda sender: True,
    ) -> None:
        if size < 1:
            raise ValueError("A send pool needs at least one sender.")
        self.size = size
        self._deliver = deliver
        self._report = report
        self._sender_ready = sender_ready
        self._in_flight: dict[int, str] = {}  # message id → sender
        self._tasks: queue.SimpleQueue[Due | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Done[R]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def send(self, due: Iterable[Due], *, stop: threading.Event) -> int:
        """Hand out these messages in order, waiting for a free sender when all are busy;
        returns how many were handed out. Stops early once `stop` is set."""
        handed = 0
        held_back: set[str] = set()  # numbers with a message passed over in this pass
        for message in due:
            if stop.is_set():
                break
            if message.message_id in self._in_flight:
                continue
            while len(self._in_flight) >= self.size and not stop.is_set():
                self.wait_one()
            if stop.is_set():
                break
            if (
                message.sender in held_back
                or message.sender in self._in_flight.values()
                or not self._sender_ready(message.sender)
            ):
                held_back.add(message.sender)
                continue
            self._hand_out(message)
            handed += 1
        return handed

    def wait_one(self) -> bool:
        """Wait for one send in flight to finish and report it; False when none is in flight.

        The delivery's exception, if it raised one, is raised here.
        """
        if not self._in_flight:
            return False
        done = self._done.get()
        del self._in_flight[done.message_id]
        if done.error is not None:
            raise done.error
        self._report(done.message_id, done.result)  # type: ignore[arg-type]
        return True

    def close(self) -> None:
        """Wait for the sends in flight (reporting them), then stop the threads."""
        try:
            while self._in_flight:
                self.wait_one()
        finally:
            for _thread in self._threads:
                self._tasks.put(None)
            for thread in self._threads:
                thread.join()
            self._threads = []

    def _hand_out(self, message: Due) -> None:
        self._in_flight[message.message_id] = message.sender
        if self.size == 1:
            self._done.put(self._run(message))
            self.wait_one()
            return
        if len(self._threads) < self.size:
            thread = threading.Thread(
                target=self._work, name=f"send-{len(self._threads) + 1}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._tasks.put(message)

    def _run(self, message: Due) -> _Done[R]:
        try:
            result = self._deliver(message.message_id)
        except BaseException as error:  # handed to the caller's thread, which raises it
            return _Done(message.message_id, message.sender, error=error)
        return _Done(message.message_id, message.sender, result=result)

    def _work(self) -> None:
        try:
            while (message := self._tasks.get()) is not None:
                close_old_connections()
                self._done.put(self._run(message))
        finally:
            connections.close_all()
