"""The sandbox's delivery receipts, sent over HTTP the way Vonage sends them.

Each part of a sandbox SMS gets a `delivered` receipt: a GET (Vonage's default encoding) to the
SMS's callback URL, the real receipt webhook, signed when `VONAGE_SIGNATURE_SECRET` is set. Like
Vonage's, it leaves a moment after the send, once the caller has stored the message ids.

One daemon thread sends them in order of their due time, on one keep-alive HTTP session. Being
a daemon, it never holds a process open by itself; at exit `stop()` gives what is still queued
a few seconds, so a worker that exits right after sending (`run_outbox --once`) still delivers
its receipts when it can.
A receipt that cannot be delivered (connection refused, a non-2xx answer) is logged once and
dropped: the send it belongs to has already succeeded, and a demo needs no retries.

At most MAX_QUEUED receipts wait: when the receipt webhook answers more slowly than SMS are sent
(a web server saturated by a load test while `run_outbox` works through a backlog), the queue
would otherwise grow with every SMS for as long as that lasts (`run_outbox` +8 MB in `make
bench`'s soak; +8 MB over 7,000 sends to a webhook answering in 50 ms). Receipts beyond it are
dropped, with one warning until the queue has drained to half of that; their messages stay
`sent`, as with a webhook that refuses them.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

import requests

logger = logging.getLogger(__name__)

# Vonage's receipts arrive a moment after the send; so do the sandbox's.
RECEIPT_DELAY_SECONDS = 1.0
# Per receipt request: the receipt webhook answers at once, or something is wrong with it.
RECEIPT_TIMEOUT_SECONDS = 5.0
# How long a stopping process waits for the receipts still queued.
STOP_TIMEOUT_SECONDS = 5.0
# Receipts waiting at most (about 2 MB); a healthy webhook keeps a second's worth of sends.
MAX_QUEUED = 1000


@dataclass(order=True, frozen=True)
class PendingReceipt:
    due: float  # time.monotonic()
    sequence: int  # receipts due at the same moment leave in the order they were queued
    url: str = field(compare=False)
    params: dict[str, str] = field(compare=False)


class ReceiptSender:
    """A queue of receipts and the one thread that sends each when it is due."""

    def __init__(
        self,
        *,
        delay: float = RECEIPT_DELAY_SECONDS,
        timeout: float = RECEIPT_TIMEOUT_SECONDS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.delay = delay
        self.timeout = timeout
        self.max_queued = max_queued
        self.dropped_full = 0  # receipts dropped because the queue was full
        self._full = False  # dropping, and warned, since the queue last drained
        self._condition = threading.Condition()
        self._queue: list[PendingReceipt] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._exit_hook_registered = False

    def submit(self, url: str, receipts: list[dict[str, str]]) -> None:
        """Queue one receipt (its parameters) per part, to be sent `delay` seconds from now;
        dropped when MAX_QUEUED are waiting already."""
        due = time.monotonic() + self.delay
        with self._condition:
            if len(self._queue) <= self.max_queued // 2:
                self._full = False  # drained: a new overflow is worth a warning again
            if len(self._queue) + len(receipts) > self.max_queued:
                self.dropped_full += len(receipts)
                if not self._full:
                    self._full = True
                    logger.warning(
                        "[sandbox] %d delivery receipts waiting for %s: receipts dropped until "
                        "it answers faster.",
                        len(self._queue),
                        url,
                    )
                return
            for params in receipts:
                heapq.heappush(self._queue, PendingReceipt(due, next(self._sequence), url, params))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sandbox-receipts", daemon=True
                )
                self._thread.start()
                if not self._exit_hook_registered:
                    atexit.register(self.stop)
                    self._exit_hook_registered = True
            self._condition.notify()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """Send everything queued now, without waiting for its due time, for at most `timeout`
        seconds; drop what is left then. Returns how many receipts were dropped."""
        with self._condition:
            thread = self._thread
            self._stopping = True
            self._condition.notify()
        if thread is not None:
            thread.join(timeout)
        with self._condition:
            dropped = len(self._queue)
            self._queue.clear()
            # A thread still stuck in a request after `timeout` finds it is no longer the
            # sender and ends; the next submit starts a fresh one.
            self._thread = None
            self._stopping = False
        if dropped:
            logger.warning("[sandbox] %d delivery receipt(s) dropped: stopped first.", dropped)
        return dropped

    def _run(self) -> None:
        # One keep-alive connection for all the receipts this thread sends, instead of a new
        # connection (and a web-server worker's accept and teardown) per receipt: with
        # `run_outbox` sending beside the web server, receipts arrive as fast as SMS are sent.
        with requests.Session() as session:
            while True:
                with self._condition:
                    receipt = self._next_due()
                    if receipt is None:
                        return
                self._send(session, receipt)

    def _next_due(self) -> PendingReceipt | None:
        """The next receipt to send, waiting for its due time; None when this thread should end.

        Called with the condition held.
        """
        while self._thread is threading.current_thread():
            if self._queue and (self._stopping or self._queue[0].due <= time.monotonic()):
                return heapq.heappop(self._queue)
            if self._stopping:
                return None
            wait = self._queue[0].due - time.monotonic() if self._queue else None
            self._condition.wait(wait)
        return None

    def _send(self, session: requests.Session, receipt: PendingReceipt) -> None:
        message_id = receipt.params.get("messageId", "")
        try:
            response = session.get(receipt.url, params=receipt.params, timeout=self.timeout)
        except Exception as error:  # whatever it is, it must not end the thread
            logger.warning(
                "[sandbox] delivery receipt for %s not delivered to %s: %s",
                message_id,
                receipt.url,
                error,
            )
            return
        if not 200 <= response.status_code < 300:
            logger.warning(
                "[sandbox] delivery receipt for %s: %s answered HTTP %s",
                message_id,
                receipt.url,
                response.status_code,
            )


receipt_sender = ReceiptSender()
