"""The periodic sweep both dispatchers run (`run_outbox` every 30 s, Celery beat's task)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.stale import outbox_recover_stale
from smsproxy.proxy.services.conversations import conversations_expire
from smsproxy.proxy.services.inbound import InboundResult, inbound_parts_flush_stale
from smsproxy.proxy.services.released_numbers import released_numbers_settle


@dataclass(frozen=True)
class SweepResult:
    recovered: list[Message]  # rows a dead worker left in `sending`, now settled
    flushed: list[InboundResult]  # concatenated SMS joined as they were after the timeout
    expired: int  # conversations closed past their expires_at
    released: int  # live conversations closed on numbers released meanwhile (crash recovery)


def outbox_sweep(*, now: datetime | None = None) -> SweepResult:
    """Settle stuck `sending` rows, join timed-out concatenated SMS, close expired conversations.

    What the on-commit hand-off and the webhooks cannot do themselves; each step is its own
    short transactions. Re-sending what it re-queued is the dispatcher's part.
    """
    now = now or timezone.now()
    return SweepResult(
        recovered=outbox_recover_stale(now=now),
        flushed=inbound_parts_flush_stale(now=now),
        expired=conversations_expire(now=now),
        released=released_numbers_settle(),
    )
