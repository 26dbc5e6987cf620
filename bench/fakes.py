"""An in-memory provider for the delivery benchmark: it answers at once and notes when."""

from __future__ import annotations

import itertools
import threading
import time
from decimal import Decimal

from smsproxy.gateway.base import SendResult, SentPart


class InstantProvider:
    """Accepts every SMS immediately as one part; records the wall-clock time of each send.

    Only `send_sms` exists: message delivery calls nothing else on the provider.
    """

    def __init__(self, *, prefix: str = "BENCH") -> None:
        self.prefix = prefix
        self.sent_at: list[float] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send_sms(
        self, *, sender: str, recipient: str, text: str, client_ref: str, callback_url: str
    ) -> SendResult:
        with self._lock:
            self.sent_at.append(time.time())
            number = next(self._ids)
        return SendResult(
            parts=(
                SentPart(
                    message_id=f"{self.prefix}-{number:012d}",
                    price=Decimal("0.03330000"),
                    network="23410",
                ),
            )
        )


def measured_rate(timestamps: list[float]) -> float:
    """Sends per second between the first and the last send (n sends make n - 1 intervals)."""
    ordered = sorted(timestamps)
    if len(ordered) < 2 or ordered[-1] == ordered[0]:
        return float("inf")
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])
