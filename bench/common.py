"""What the benchmarks share: timing statistics, result tables, and the data they build.

The data respects the models' constraints: real and proxy numbers are E.164, and no real
number uses one proxy number in two live conversations (participant_live_route_unique).

People: person `j` has the real number +4475 followed by `j` in eight digits (valid UK mobile
numbers for `phonenumbers`, so the sandbox's Number Insight accepts them). Conversation `i` is
between person `i` (on proxy number `i mod P`) and person `i + 1` (on proxy number
`(i + P // 2) mod P`), P being the pool size: every person is in two live conversations, on two
different proxy numbers, and the conversations spread evenly over the pool.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.proxy.models import (
    Conversation,
    InboundPart,
    Message,
    MessagePart,
    NumberUse,
    Participant,
)
from smsproxy.proxy.services.assignment import number_loads_recount
from smsproxy.sandbox.models import SandboxMessage, SandboxNumber

# Ofcom's drama range: 1000 numbers, enough for the largest pool measured.
POOL_FIRST = 447700900000
POOL_MAX = 1000
BUILD_BATCH = 5000


# --- Numbers and people ------------------------------------------------------------------------


def person_number(index: int) -> str:
    return f"+4475{index:08d}"


def fresh_person_number(index: int) -> str:
    """A real number no built conversation uses (for new conversations)."""
    return f"+4474{index:08d}"


def stranger_number(index: int) -> str:
    """A real number in no conversation at all (for out-of-session messages)."""
    return f"+4473{index:08d}"


def pool_msisdn(index: int) -> str:
    return f"+{POOL_FIRST + index}"


def route_of(*, conversation_index: int, side: int, pool_size: int) -> tuple[str, int]:
    """(real number, pool index) of one participant of built conversation `conversation_index`."""
    if side == 0:
        return person_number(conversation_index), conversation_index % pool_size
    return person_number(conversation_index + 1), (conversation_index + pool_size // 2) % pool_size


# --- Building and clearing data -----------------------------------------------------------------


def tables_clear() -> None:
    """Empty every table the benchmarks write (the database is a throwaway one)."""
    models = [
        InboundPart,
        MessagePart,
        Message,
        Participant,
        NumberUse,
        Conversation,
        VirtualNumber,
        ProvisioningJob,
        SandboxMessage,
        SandboxNumber,
    ]
    tables = [connection.ops.quote_name(model._meta.db_table) for model in models]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM")
    analyze()


def analyze() -> None:
    """Bring the database to a steady state after a bulk load, before measuring.

    Planner statistics as autovacuum (PostgreSQL) or a periodic ANALYZE (SQLite) keep them,
    and the bulk load's WAL checkpointed: otherwise the measurement that follows a 300,000-row
    insert competes with the server writing it out, which no steady production state does.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM (ANALYZE)")
            cursor.execute("CHECKPOINT")
        else:
            cursor.execute("ANALYZE")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def pool_build(*, size: int) -> list[VirtualNumber]:
    if not 4 <= size <= POOL_MAX:
        raise ValueError(f"A pool has 4 to {POOL_MAX} numbers, not {size}.")
    now = timezone.now()
    VirtualNumber.objects.bulk_create(
        VirtualNumber(
            msisdn=pool_msisdn(index),
            country="GB",
            features="SMS,VOICE",
            inbound_webhook_url="https://proxy.example.com/webhooks/vonage/inbound-sms/",
            configured_at=now,
            rented_at=now,
        )
        for index in range(size)
    )
    return list(VirtualNumber.objects.order_by("msisdn"))


def conversations_build(
    *,
    pool: Sequence[VirtualNumber],
    start: int,
    stop: int,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Insert live conversations `start` to `stop - 1`, two participants each, in batches."""
    pool_size = len(pool)
    for batch_start in range(start, stop, BUILD_BATCH):
        batch = range(batch_start, min(batch_start + BUILD_BATCH, stop))
        with transaction.atomic():
            conversations = Conversation.objects.bulk_create(
                Conversation(reference=f"listing-{index}") for index in batch
            )
            participants = []
            for index, conversation in zip(batch, conversations, strict=True):
                for side, name in ((0, "Guest"), (1, "Host")):
                    real_number, pool_index = route_of(
                        conversation_index=index, side=side, pool_size=pool_size
                    )
                    participants.append(
                        Participant(
                            conversation=conversation,
                            name=f"{name} {index}",
                            real_number=real_number,
                            country="GB",
                            proxy_number=pool[pool_index],
                        )
                    )
            Participant.objects.bulk_create(participants)
            # Rule 3's history, as the services write it with each assignment.
            NumberUse.objects.bulk_create(
                (
                    NumberUse(
                        real_number=participant.real_number,
                        proxy_number=participant.proxy_number,
                        last_used_at=conversations[0].created_at,
                    )
                    for participant in participants
                ),
                ignore_conflicts=True,
            )
        if on_batch is not None:
            on_batch(batch.stop)
    # bulk_create bypasses the services that keep each number's stored load.
    number_loads_recount()
    analyze()


def outbound_queue_build(*, count: int, pool: Sequence[VirtualNumber]) -> list[int]:
    """`count` queued outbound messages (as a burst of forwards leaves them), oldest first.

    Their senders are numbers of the pool: delivery refuses any other sender.
    """
    Message.objects.bulk_create(
        Message(
            direction=Message.Direction.OUTBOUND,
            purpose=Message.Purpose.CONVERSATION,
            status=Message.Status.QUEUED,
            sender=pool[index % len(pool)].msisdn,
            recipient=person_number(index),
            text=f"Is the flat still available? Message {index}.",
        )
        for index in range(count)
    )
    return list(
        Message.objects.filter(status=Message.Status.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- Measuring ----------------------------------------------------------------------------------


@dataclass
class Timings:
    """Durations in seconds of repeated runs of one operation."""

    samples: list[float] = field(default_factory=list)
    # CPU time of this process for each run: unlike the wall clock, it does not count the time
    # other processes of a busy machine held the CPU (nor, on PostgreSQL, the server's work).
    cpu_samples: list[float] = field(default_factory=list)

    def time(self, operation: Callable[[], Any]) -> Any:
        started, cpu_started = time.perf_counter(), time.process_time()
        result = operation()
        self.samples.append(time.perf_counter() - started)
        self.cpu_samples.append(time.process_time() - cpu_started)
        return result

    def percentile(self, percent: float, *, cpu: bool = False) -> float:
        """Nearest-rank percentile, in seconds."""
        ordered = sorted(self.cpu_samples if cpu else self.samples)
        rank = max(1, math.ceil(percent / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    def ms(self, percent: float, *, cpu: bool = False) -> str:
        return f"{self.percentile(percent, cpu=cpu) * 1000:.2f}"


def maxrss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def verdict(met: bool) -> str:
    return "met" if met else "**MISSED**"


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal, pasted as is into RESULTS.md)."""
    lines = [f"### {title}", "", "| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    text = "\n" + "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
