"""What the number pool tells the layers above it (STYLE.md: a lower layer never imports them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum

from django.dispatch import Signal

from smsproxy.numbers.models import VirtualNumber

logger = logging.getLogger(__name__)


class RetireReason(StrEnum):
    RELEASED = "released"  # staff released it (admin, release_numbers)
    NOT_RENTED = "not_rented"  # a sync found the account no longer rents it


# Sent after the transaction that marked the numbers released has committed, with
# `numbers` (list[VirtualNumber], now released) and `reason` (RetireReason). Whatever used the
# numbers (live conversations, SMS queued from them) is the receivers' to settle, each in its
# own transactions.
numbers_retired = Signal()


def numbers_retired_send(*, numbers: Sequence[VirtualNumber], reason: RetireReason) -> None:
    """Tell the receivers; a failing receiver is logged and does not undo the retirement.

    The numbers are released already; what a receiver did not finish is settled by its own
    periodic recovery (the proxy's sweep), so an error here must not fail the release or sync.
    """
    if not numbers:
        return
    for receiver, outcome in numbers_retired.send_robust(
        sender=VirtualNumber, numbers=list(numbers), reason=reason
    ):
        if isinstance(outcome, Exception):
            logger.error(
                "numbers_retired receiver %r failed for %s: %r",
                receiver,
                ", ".join(number.msisdn for number in numbers),
                outcome,
                exc_info=outcome,
            )
