"""Pool efficiency: a simulated marketplace day through the real assignment service.

    .venv/bin/python -m bench.pool [--quick] [--database-url URL] [--output FILE]

A day of orders (bench/pool_day.py: hundreds of couriers, thousands of customers, a courier in
up to 4 conversations at once, closes and expiries) is generated first; from it comes the lower
bound L of the pool: the largest number of live conversations of one real number at any
moment (that person needs L distinct proxy numbers). The day is then run through the services
(`conversation_create` with the sandbox's Number Insight and the intro SMS queued,
`conversation_close`, and the expiry sweep `conversations_expire` every simulated minute) on a
simulated clock (`django.utils.timezone.now` patched, as the tests do), with a pool of exactly
L numbers: rule 3 says that is enough, so the target is no refusal, i.e. pool needed / L = 1.0.
The same day then runs on L - 1 numbers, which must be refused somewhere (the bound is tight).
Numbers in use are counted from the proxy numbers the service assigned, and checked against the
database every simulated hour.

Without --database-url a throwaway SQLite file is used (bench/settings.py); a PostgreSQL
database must have "bench" in its name (its tables are emptied before each day).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.machine import Output, progress, verdict
from bench.pool_day import MAX_PER_COURIER, OPEN_HOURS, TTL_SECONDS, Day, day_events, day_generate

SEED = 20261201
START = datetime.fromisoformat("2026-11-24T07:00:00+00:00")
SWEEP_EVERY = 60.0
CHECK_EVERY = 3600.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller day (about a minute)")
    parser.add_argument("--couriers", type=int)
    parser.add_argument("--customers", type=int)
    parser.add_argument("--orders", type=int, help="orders over the day")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--database-url", help="a PostgreSQL (or SQLite) bench database")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    defaults = (120, 1500, 1200) if args.quick else (300, 5000, 6000)
    args.couriers = args.couriers or defaults[0]
    args.customers = args.customers or defaults[1]
    args.orders = args.orders or defaults[2]
    return args


def courier_number(index: int) -> str:
    return f"+4475{index:08d}"


def customer_number(index: int) -> str:
    return f"+4474{index:08d}"


class Clock:
    """The simulated time every service reads through the patched `timezone.now`."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = START + timedelta(seconds=seconds)


@dataclass
class DayResult:
    pool: int
    created: int = 0
    refused: int = 0
    first_refusal: str = ""
    closed: int = 0
    expired: int = 0
    peak_numbers_used: int = 0
    mismatches: list[str] = field(default_factory=list)
    create_ms: list[float] = field(default_factory=list)
    create_cpu_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


def pool_create(size: int) -> None:
    from smsproxy.numbers.models import VirtualNumber

    now = START - timedelta(days=1)
    VirtualNumber.objects.bulk_create(
        VirtualNumber(
            msisdn=f"+{447700900000 + index}",
            country="GB",
            features="SMS,VOICE",
            inbound_webhook_url="https://proxy.example.com/webhooks/vonage/inbound-sms/",
            configured_at=now,
            rented_at=now,
        )
        for index in range(size)
    )


def numbers_in_use_stored(clock: Clock) -> int:
    from smsproxy.proxy.selectors import participant_live_list

    return participant_live_list(now=clock()).values("proxy_number").distinct().count()


def day_run(day: Day, *, pool: int, clock: Clock, stop_at_refusal: bool = False) -> DayResult:
    """The day through the services on a pool of `pool` numbers (tables emptied first), up to
    its first refusal with `stop_at_refusal`."""
    from bench.common import tables_clear
    from smsproxy.common.errors import ApplicationError
    from smsproxy.common.phone import phone_parse
    from smsproxy.proxy.models import Conversation
    from smsproxy.proxy.services.conversations import (
        conversation_close,
        conversation_create,
        conversations_expire,
    )
    from smsproxy.proxy.services.participants import ParticipantSpec

    def spec(position: int, number: str, name: str) -> ParticipantSpec:
        parsed = phone_parse(number=number)
        assert parsed is not None, number
        return ParticipantSpec(position=position, name=name, number=parsed)

    tables_clear()
    pool_create(pool)
    result = DayResult(pool=pool)
    opened: dict[int, Conversation] = {}
    numbers_of: dict[int, tuple[int, int]] = {}  # live order → its two proxy number ids
    in_use: Counter[int] = Counter()  # proxy number id → live participants on it

    def ended_by(seconds: float) -> None:
        """Forget what stopped being live by then (closed, or expired: dead before the sweep)."""
        for ended in [index for index in numbers_of if day.orders[index].end <= seconds]:
            for number_id in numbers_of.pop(ended):
                in_use[number_id] -= 1
                if not in_use[number_id]:
                    del in_use[number_id]

    next_check = CHECK_EVERY
    started = time.perf_counter()
    for at, _rank, kind, order in day_events(day, sweep_every=SWEEP_EVERY):
        while next_check <= at:
            ended_by(next_check)
            clock.at(next_check)
            stored = numbers_in_use_stored(clock)
            if stored != len(in_use):
                result.mismatches.append(f"{next_check / 3600:.0f} h: {stored} != {len(in_use)}")
            next_check += CHECK_EVERY
        clock.at(at)
        ended_by(at)
        if kind == "sweep":
            result.expired += conversations_expire(now=clock())
            continue
        assert order is not None
        if kind == "close":
            conversation = opened.pop(order.index, None)
            if conversation is not None:
                conversation_close(conversation=conversation, reason="api")
                result.closed += 1
            continue
        specs = [
            spec(0, courier_number(order.courier), f"Courier {order.courier}"),
            spec(1, customer_number(order.customer), f"Customer {order.customer}"),
        ]
        begun, cpu_begun = time.perf_counter(), time.process_time()
        try:
            conversation = conversation_create(
                participants=specs, reference=f"order-{order.index}", ttl=TTL_SECONDS
            )
        except ApplicationError as error:
            if error.code != "pool_exhausted":
                raise
            result.refused += 1
            result.first_refusal = f"{clock():%H:%M}, order {order.index}"
            if stop_at_refusal:
                break
            continue
        result.create_ms.append((time.perf_counter() - begun) * 1000)
        result.create_cpu_ms.append((time.process_time() - cpu_begun) * 1000)
        result.created += 1
        if order.close_at is not None and order.close_at < order.start + TTL_SECONDS:
            opened[order.index] = conversation
        assigned = tuple(
            conversation.participants.values_list("proxy_number_id", flat=True).order_by("pk")
        )
        numbers_of[order.index] = (assigned[0], assigned[1])
        for number_id in assigned:
            in_use[number_id] += 1
        result.peak_numbers_used = max(result.peak_numbers_used, len(in_use))
        if result.created % 500 == 0:
            progress(f"pool {pool}: {result.created} conversations opened, at {clock():%H:%M}")
    result.seconds = time.perf_counter() - started
    return result


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(percent / 100 * len(ordered)) - 1))]


def report(
    out: Output, day: Day, bound: int, runs: list[DayResult], peaks: tuple[int, int]
) -> bool:
    peak_conversations, peak_people = peaks
    exact, below = runs[0], runs[1] if len(runs) > 1 else None
    ratio = exact.peak_numbers_used / bound if bound else 0.0
    met = exact.refused == 0 and ratio == 1.0 and not exact.mismatches
    out.table(
        "Pool efficiency: one simulated day",
        ["", "value"],
        [
            ["couriers / customers", f"{day.couriers} / {day.customers}"],
            [
                "orders (conversations opened) over the day",
                f"{len(day.orders)} over {OPEN_HOURS} h (lunch and dinner peaks); "
                f"{day.undispatched} found every courier at {MAX_PER_COURIER}",
            ],
            [
                "closed by the marketplace / expired (TTL 2 h, swept every minute)",
                f"{exact.closed} / {exact.expired}",
            ],
            ["peak live conversations", peak_conversations],
            [
                "peak live participants (one number per participant would need)",
                2 * peak_conversations,
            ],
            ["peak distinct people in live conversations", peak_people],
            ["**lower bound L** (most live conversations of one real number)", bound],
            [f"pool of L = {bound} numbers: refused (`pool_exhausted`)", exact.refused],
            ["pool of L: peak numbers in use", exact.peak_numbers_used],
            [
                "**peak numbers used / L** (target exactly 1.0)",
                f"{ratio:.2f} ({verdict(met)})",
            ],
            [
                "peak numbers used / one number per participant",
                f"{exact.peak_numbers_used} / {2 * peak_conversations} = "
                f"{exact.peak_numbers_used / max(1, 2 * peak_conversations):.4f}",
            ],
            [
                f"pool of L - 1 = {bound - 1} numbers",
                f"refused at {below.first_refusal} (the day stops there)"
                if below and below.refused
                else "none refused",
            ],
            [
                "numbers in use, database vs service, checked hourly",
                "equal" if not exact.mismatches else "; ".join(exact.mismatches[:5]),
            ],
            [
                "conversation_create on the pool of L: wall ms p50 / p95; CPU ms p50",
                f"{statistics.median(exact.create_ms):.1f} / "
                f"{percentile(exact.create_ms, 95):.1f}; "
                f"{statistics.median(exact.create_cpu_ms):.1f}",
            ],
            [
                "wall time of each day (pool of L; pool of L - 1 to its refusal)",
                ", ".join(f"{run.seconds:.0f} s" for run in runs),
            ],
        ],
    )
    return met


def database_description() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SHOW server_version"
            if connection.vendor == "postgresql"
            else "SELECT sqlite_version()"
        )
        version = cursor.fetchone()[0]
    return f"{connection.vendor} {version}"


def main() -> int:
    args = parse_args()
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)  # bench.settings makes a throwaway SQLite file
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    name = str(settings.DATABASES["default"]["NAME"])
    if "bench" not in name.lower():
        print(f"Refusing to use database {name!r}: its name must contain 'bench' (it is wiped).")
        return 2
    total = time.perf_counter()
    day = day_generate(
        seed=args.seed, couriers=args.couriers, customers=args.customers, orders=args.orders
    )
    peak_conversations, bound, peak_people = day.live_peaks()
    progress(f"{len(day.orders)} orders generated; lower bound L = {bound}")
    out = Output(args.output)
    call_command("migrate", verbosity=0, interactive=False)
    out.header(
        title="Pool efficiency (bench/pool.py)",
        module="bench.pool",
        database=database_description(),
    )
    clock = Clock()
    real_now: Any = timezone.now
    timezone.now = clock  # type: ignore[assignment]
    runs = []
    try:
        progress(f"Running the day on a pool of L = {bound} numbers")
        runs.append(day_run(day, pool=bound, clock=clock))
        progress(f"Running the day on a pool of L - 1 = {bound - 1} numbers, to a refusal")
        runs.append(day_run(day, pool=bound - 1, clock=clock, stop_at_refusal=True))
    finally:
        timezone.now = real_now
        if not args.database_url and connection.vendor == "sqlite":
            connection.close()
            shutil.rmtree(Path(name).parent, ignore_errors=True)
    met = report(out, day, bound, runs, (peak_conversations, peak_people))
    if runs[1].refused == 0:
        out.add(f"Note: the pool of L - 1 = {bound - 1} served the day: L is not tight.")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    out.add(f"Whole run: {time.perf_counter() - total:.0f} s; load average at the end: {load}.\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
