"""Benchmarks of smsproxy: inbound routing, the webhook, assignment, delivery, memory.

    DJANGO_SETTINGS_MODULE=bench.settings .venv/bin/python bench/run.py \
        [--database-url URL] [--conversations N [N ...]] [--only NAME [NAME ...]] \
        [--output FILE]

Without --database-url a throwaway SQLite file in a temporary directory is used (and removed).
A PostgreSQL database must have "bench" in its name: the script empties the tables it writes,
before and after (keep them with --keep-data). Each measurement prints a Markdown table with
its target and whether it was met; the exit status is 1 when a check failed (queries per
inbound message growing with the number of conversations, a wrong outcome). Targets and
results: bench/RESULTS.md. CI does not run this.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
# Run as a script, Python puts bench/ first on sys.path: the repository root belongs there.
sys.path[:] = [
    str(REPO),
    *(entry for entry in sys.path[1:] if Path(entry or ".").resolve() != BENCH),
]

ALL = ("inbound", "webhook", "assign", "delivery")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
POOL_SIZE = 50
SCALE_POOL = 100
# Longest a timed assignment loop runs once it has 20 samples.
CASE_BUDGET_S = 40.0
SEED = 20261124

# Targets (see RESULTS.md for the reasoning behind each).
INBOUND_P95_MS = 10.0
WEBHOOK_P95_MS = 20.0
ASSIGN_P95_MS = 50.0
PIPELINE_MIN_RATE = 250.0
LIMITED_RATE = 25.0
RATE_TOLERANCE = 0.10
INBOUND_PEAK_MB = 5.0
ASSIGN_PEAK_MB = 5.0
MAXRSS_MB = 400.0

TEXTS = (
    "Hi, is the flat on Mill Road still available for the weekend of the 12th?",
    "Yes it is! Check-in from 3pm, the key is in the lockbox by the door.",
    "Great, we'll arrive around 6. Can we leave the bags at 11 on Sunday?",
    "Sure, no problem. Parking is free after 6.30pm on the street.",
    "Could you call me on 07700 900123 instead? Easier to explain the way.",
)

_message_ids = itertools.count(1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL (or SQLite) URL of a bench database.")
    parser.add_argument(
        "--conversations",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        metavar="N",
        help="Live conversations to route among (default 10000 100000).",
    )
    parser.add_argument("--only", nargs="+", choices=ALL, default=list(ALL))
    parser.add_argument("--messages", type=int, default=2000, help="Inbound SMS per size.")
    parser.add_argument("--creates", type=int, default=200, help="Conversations per pool size.")
    parser.add_argument("--existing", type=int, default=10_000, help="For the assignment.")
    parser.add_argument("--pools", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument(
        "--assign-scale",
        type=int,
        nargs="*",
        default=[100_000],
        metavar="N",
        help=f"Also time a few creations among N conversations (pool of {SCALE_POOL}).",
    )
    parser.add_argument("--queued", type=int, default=2000, help="Messages to deliver.")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--output", type=Path, help="Also write the tables to this file.")
    parser.add_argument("--keep-data", action="store_true", help="Leave the rows in place.")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)  # bench.settings creates a throwaway SQLite file
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from bench.common import progress, tables_clear

    name = str(settings.DATABASES["default"]["NAME"])
    if "bench" not in name.lower():
        print(f"Refusing to use database {name!r}: its name must contain 'bench' (it is wiped).")
        return 2
    progress(f"Migrating {connection.vendor} database {name}")
    call_command("migrate", verbosity=0, interactive=False)
    tables_clear()

    report = Report(output=args.output)
    report.add(machine_header(args))
    try:
        if "inbound" in args.only or "webhook" in args.only:
            sizes = sorted(set(args.conversations))
            if "inbound" not in args.only:
                sizes = sizes[-1:]
            report.add(bench_inbound(sizes=sizes, messages=args.messages, report=report))
            if "webhook" in args.only:
                report.add(bench_webhook(conversations=sizes[-1], count=args.messages // 2))
        if "assign" in args.only:
            report.add(
                bench_assign(
                    pools=args.pools,
                    existing=args.existing,
                    count=args.creates,
                    scale=args.assign_scale,
                    report=report,
                )
            )
        if "delivery" in args.only:
            report.add(bench_delivery(count=args.queued, redis_url=args.redis_url, report=report))
        report.add(memory_footer())
    finally:
        if connection.vendor == "sqlite" and not args.database_url:
            connection.close()
            shutil.rmtree(Path(name).parent, ignore_errors=True)
        elif not args.keep_data:
            tables_clear()
    if report.failures:
        print("\nFAILED CHECKS:\n" + "\n".join(f"- {failure}" for failure in report.failures))
        return 1
    return 0


class Report:
    def __init__(self, *, output: Path | None) -> None:
        self.output = output
        self.parts: list[str] = []
        self.failures: list[str] = []
        if output is not None:
            output.write_text("")

    def add(self, text: str) -> None:
        self.parts.append(text)
        if self.output is not None:
            self.output.write_text("\n".join(self.parts))

    def check(self, condition: bool, failure: str) -> bool:
        if not condition:
            self.failures.append(failure)
            print(f"CHECK FAILED: {failure}", flush=True)
        return condition


def machine_header(args: argparse.Namespace) -> str:
    import django
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        db_version = cursor.fetchone()[0]
    command = " ".join(["bench/run.py", *sys.argv[1:]])
    lines = [
        f"## Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `DJANGO_SETTINGS_MODULE=bench.settings .venv/bin/python {command}`",
        f"- machine: nproc {os.cpu_count()}, {platform.machine()}, {platform.system()}",
        f"- Python {platform.python_version()}, Django {django.get_version()}",
        f"- database: {connection.vendor} {db_version}",
        "- load average at the start (1, 5, 15 min): "
        + ", ".join(f"{load:.2f}" for load in os.getloadavg()),
        "",
    ]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def memory_footer() -> str:
    from bench.common import maxrss_mb, verdict

    peak = maxrss_mb()
    text = (
        f"\nPeak resident memory of the whole run (getrusage maxrss): {peak:.0f} MB "
        f"(target < {MAXRSS_MB:.0f} MB: {verdict(peak < MAXRSS_MB)}). Load average at the end: "
        + ", ".join(f"{load:.2f}" for load in os.getloadavg())
        + ".\n"
    )
    print(text, flush=True)
    return text


# --- (a) Inbound routing at scale ---------------------------------------------------------------


def inbound_params(*, sender: str, recipient: str, text: str) -> dict[str, str]:
    """An inbound-SMS webhook's parameters, as Vonage sends them."""
    from smsproxy.gateway.webhooks import inbound_sms_params

    return inbound_sms_params(
        sender=sender, recipient=recipient, text=text, message_id=f"BENCH{next(_message_ids):011X}"
    )


def routed_params(rng: random.Random, *, conversations: int, pool_size: int) -> dict[str, str]:
    from bench.common import pool_msisdn, route_of

    real_number, pool_index = route_of(
        conversation_index=rng.randrange(conversations), side=rng.randrange(2), pool_size=pool_size
    )
    return inbound_params(
        sender=real_number, recipient=pool_msisdn(pool_index), text=rng.choice(TEXTS)
    )


def handle_inbound(params: dict[str, str]) -> Any:
    """What the inbound webhook runs once the request is read and its signature checked."""
    from smsproxy.gateway.webhooks import inbound_sms_parse
    from smsproxy.proxy.services.inbound import inbound_receive

    return inbound_receive(sms=inbound_sms_parse(params))


def bench_inbound(*, sizes: list[int], messages: int, report: Report) -> str:
    from django.db import connection
    from django.test import override_settings
    from django.test.utils import CaptureQueriesContext

    from bench.common import (
        Timings,
        conversations_build,
        maxrss_mb,
        pool_build,
        pool_msisdn,
        progress,
        stranger_number,
        table,
        tables_clear,
        verdict,
    )
    from smsproxy.proxy.services.inbound import Outcome

    rng = random.Random(SEED)
    tables_clear()
    pool = pool_build(size=POOL_SIZE)
    strangers = itertools.count(1)
    rows = []
    memory_rows = []
    query_counts: dict[str, dict[int, set[int]]] = {"routed": {}, "unrouted": {}}
    route_sql = ""
    built = 0
    for size in sizes:
        progress(f"(a) building {size - built} conversations ({size} in all)")
        started = time.perf_counter()
        conversations_build(
            pool=pool,
            start=built,
            stop=size,
            on_batch=lambda done: (
                progress(f"    {done} conversations") if done % 20000 == 0 else None
            ),
        )
        progress(f"    built in {time.perf_counter() - started:.1f}s; maxrss {maxrss_mb():.0f} MB")
        built = size

        def routed(size: int = size) -> dict[str, str]:
            return routed_params(rng, conversations=size, pool_size=POOL_SIZE)

        def unrouted() -> dict[str, str]:
            return inbound_params(
                sender=stranger_number(next(strangers)),
                recipient=pool_msisdn(rng.randrange(POOL_SIZE)),
                text="Hello? Is anyone there?",
            )

        for kind, make, expected, count in (
            ("routed", routed, Outcome.ROUTED, messages),
            ("unrouted", unrouted, Outcome.UNROUTED, max(messages // 10, 50)),
        ):
            for _ in range(50):  # warm-up: connection, caches, imports
                handle_inbound(make())
            counts = set()
            for _ in range(30):
                with CaptureQueriesContext(connection) as captured:
                    result = handle_inbound(make())
                report.check(result.outcome == expected, f"inbound {kind}: {result.outcome}")
                counts.add(len(captured.captured_queries))
                if kind == "routed" and not route_sql:
                    route_sql = next(
                        query["sql"]
                        for query in captured.captured_queries
                        if "real_number" in query["sql"] and query["sql"].startswith("SELECT")
                    )
            query_counts[kind][size] = counts
            timings = Timings()
            outcomes = set()
            for _ in range(count):
                params = make()
                outcomes.add(timings.time(lambda params=params: handle_inbound(params)).outcome)
            report.check(outcomes == {expected}, f"inbound {kind} outcomes {outcomes}")
            met = timings.percentile(95) * 1000 < INBOUND_P95_MS
            rows.append(
                [
                    f"{size:,}",
                    kind,
                    count,
                    timings.ms(50),
                    timings.ms(95),
                    timings.ms(99),
                    timings.ms(95, cpu=True),
                    "/".join(str(c) for c in sorted(counts)),
                    verdict(met),
                ]
            )
            progress(f"    {kind}: p50 {timings.ms(50)} ms, p95 {timings.ms(95)} ms")

        # Without redaction: how much of the time is the database's.
        with override_settings(PROXY_REDACT_NUMBERS=False):
            timings = Timings()
            for _ in range(messages // 2):
                params = routed()
                timings.time(lambda params=params: handle_inbound(params))
        rows.append(
            [
                f"{size:,}",
                "routed, PROXY_REDACT_NUMBERS off",
                messages // 2,
                timings.ms(50),
                timings.ms(95),
                timings.ms(99),
                timings.ms(95, cpu=True),
                "",
                "(diagnostic)",
            ]
        )

        # (e) memory of the handling itself: what 500 messages allocate at their peak.
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            handle_inbound(routed())
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak_mb = (peak - baseline) / 2**20
        memory_rows.append(
            [
                f"{size:,}",
                f"{peak_mb:.2f}",
                f"{(current - baseline) / 2**20:.2f}",
                f"{maxrss_mb():.0f}",
                verdict(peak_mb < INBOUND_PEAK_MB),
            ]
        )

    for kind, by_size in query_counts.items():
        distinct = set().union(*by_size.values())
        report.check(
            len(distinct) == 1,
            f"queries per {kind} inbound SMS vary with the number of conversations: {by_size}",
        )
    text = table(
        f"(a) Inbound routing: inbound_parse + inbound_receive per SMS, pool of {POOL_SIZE} "
        f"numbers, target p95 < {INBOUND_P95_MS:g} ms",
        [
            "conversations",
            "SMS",
            "count",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p95 CPU ms",
            "queries/SMS",
            "target",
        ],
        rows,
    )
    constant = all(len(set().union(*by_size.values())) == 1 for by_size in query_counts.values())
    seen = {kind: sorted(set().union(*by_size.values())) for kind, by_size in query_counts.items()}
    line = (
        "\nQueries per inbound SMS independent of the number of conversations: "
        f"{verdict(constant)} (counts seen: {seen})\n"
    )
    print(line, flush=True)
    text += line
    text += "\nRoute lookup (rule 2):\n\n" + explain(route_sql)
    text += table(
        "(e) Memory of inbound handling: tracemalloc over 500 routed SMS, target peak < "
        f"{INBOUND_PEAK_MB:g} MB",
        ["conversations", "peak MB", "retained MB", "process maxrss MB", "target"],
        memory_rows,
    )
    return text


def explain(sql: str, *, show_sql: bool = True) -> str:
    """The plan of a query, to show which indexes it uses."""
    from django.db import connection

    if not sql:
        return ""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
    text = f"```sql\n{sql}\n```\n\n" if show_sql else ""
    text += f"Plan ({connection.vendor}):\n\n```\n{plan}\n```\n"
    print(text, flush=True)
    return text


# --- (b) The webhook end to end --------------------------------------------------------------


def bench_webhook(*, conversations: int, count: int) -> str:
    from django.test import Client, override_settings
    from django.urls import reverse

    from bench.common import Timings, progress, table, verdict
    from smsproxy.gateway.signatures import sign_params
    from smsproxy.proxy.models import Message

    rng = random.Random(SEED + 1)
    client = Client()
    url = reverse("vonage-inbound-sms")
    secret = "bench-signature-secret-0123456789"
    rows = []
    for label, method in (("none", ""), ("md5hash", "md5hash"), ("sha256 HMAC", "sha256")):
        progress(f"(b) webhook, signature {label}")
        with override_settings(
            VONAGE_SIGNATURE_SECRET=secret if method else "",
            VONAGE_SIGNATURE_METHOD=method or "md5hash",
        ):
            timings = Timings()
            received_before = Message.objects.filter(status=Message.Status.RECEIVED).count()
            for index in range(50 + count):
                params = routed_params(rng, conversations=conversations, pool_size=POOL_SIZE)
                if method:
                    params = sign_params(params, secret=secret, method=method)
                body = urlencode(params)

                def post(body: str = body) -> Any:
                    return client.post(
                        url, data=body, content_type="application/x-www-form-urlencoded"
                    )

                response = timings.time(post) if index >= 50 else post()
                if response.status_code != HTTPStatus.OK:
                    raise RuntimeError(
                        f"Webhook answered {response.status_code}: {response.content!r}"
                    )
            # The answer is the same whatever happened: the rows say whether it was routed.
            received = Message.objects.filter(status=Message.Status.RECEIVED).count()
            if received - received_before != 50 + count:
                raise RuntimeError(f"{received - received_before} of {50 + count} SMS routed")
        met = timings.percentile(95) * 1000 < WEBHOOK_P95_MS
        rows.append(
            [
                f"{conversations:,}",
                label,
                count,
                timings.ms(50),
                timings.ms(95),
                timings.ms(99),
                timings.ms(95, cpu=True),
                verdict(met),
            ]
        )
    return table(
        "(b) Webhook end to end: test Client POST form to /webhooks/vonage/inbound-sms/, "
        f"target p95 < {WEBHOOK_P95_MS:g} ms",
        [
            "conversations",
            "signature",
            "count",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p95 CPU ms",
            "target",
        ],
        rows,
    )


# --- (c) Assignment ---------------------------------------------------------------------------


def bench_assign(
    *, pools: list[int], existing: int, count: int, scale: list[int], report: Report
) -> str:
    """conversation_create on `existing` conversations per pool size, then larger databases."""
    from bench.common import table

    cases = [(pool_size, existing, count, True) for pool_size in pools]
    # How assignment scales with the conversations: a few creations on larger databases.
    cases += [(SCALE_POOL, size, 10, False) for size in scale]
    rows = []
    memory_rows = []
    slowest: dict[str, Any] = {}
    for pool_size, conversations, creations, measure_memory in cases:
        row, memory_row, query = assign_case(
            pool_size=pool_size,
            existing=conversations,
            count=creations,
            measure_memory=measure_memory,
            report=report,
        )
        rows.append(row)
        if memory_row:
            memory_rows.append(memory_row)
        if query["time"] > slowest.get("time", 0.0):
            slowest = query
    text = table(
        "(c) Assignment: conversation_create (sandbox insight, two proxy numbers, two intro SMS "
        f"queued), target p95 < {ASSIGN_P95_MS:g} ms",
        [
            "pool",
            "existing conversations",
            "count",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p95 CPU ms",
            "queries",
            "slowest query ms (share)",
            "target",
        ],
        rows,
    )
    if slowest:
        heading = f"\nSlowest query of a creation ({slowest['label']}):\n"
        print(heading, flush=True)
        text += heading + "\n" + explain(slowest["sql"])
    text += table(
        "(e) Memory of assignment: tracemalloc over 50 creations, target peak < "
        f"{ASSIGN_PEAK_MB:g} MB",
        ["pool", "existing conversations", "peak MB", "retained MB", "target"],
        memory_rows,
    )
    return text


def assign_case(
    *, pool_size: int, existing: int, count: int, measure_memory: bool, report: Report
) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.common import (
        Timings,
        conversations_build,
        fresh_person_number,
        person_number,
        pool_build,
        progress,
        tables_clear,
        verdict,
    )
    from smsproxy.common.phone import RealNumber
    from smsproxy.proxy.models import Participant
    from smsproxy.proxy.services.conversations import conversation_create
    from smsproxy.proxy.services.participants import ParticipantSpec

    progress(f"(c) pool of {pool_size}, {existing} existing conversations")
    tables_clear()
    pool = pool_build(size=pool_size)
    conversations_build(pool=pool, start=0, stop=existing)
    rng = random.Random(SEED + pool_size + existing)
    warm_up, captured_runs = (50, 5) if count >= 50 else (3, 2)
    memory_runs = 50 if measure_memory else 0
    # An existing user (already in two live conversations) meets a new one.
    people = iter(rng.sample(range(existing + 1), warm_up + captured_runs + count + memory_runs))
    fresh = itertools.count(existing * 10)

    def create() -> Any:
        return conversation_create(
            participants=[
                ParticipantSpec(
                    position=0,
                    name="Guest",
                    number=RealNumber(e164=person_number(next(people)), country="GB"),
                ),
                ParticipantSpec(
                    position=1,
                    name="Host",
                    number=RealNumber(e164=fresh_person_number(next(fresh)), country="GB"),
                ),
            ],
            reference="bench",
        )

    for _ in range(warm_up):
        create()
    counts = set()
    slowest = {"time": 0.0, "share": 0.0, "sql": "", "label": ""}
    for _ in range(captured_runs):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            create()
        total = time.perf_counter() - started
        counts.add(len(captured.captured_queries))
        query = max(captured.captured_queries, key=lambda query: float(query["time"]))
        if not slowest["sql"] or float(query["time"]) > slowest["time"]:
            slowest = {
                "time": float(query["time"]),
                "share": float(query["time"]) / total,
                "sql": query["sql"],
                "label": f"pool {pool_size}, {existing:,} conversations",
            }
    timings = Timings()
    started = time.perf_counter()
    for _ in range(count):
        conversation = timings.time(create)
        if time.perf_counter() - started > CASE_BUDGET_S and len(timings.samples) >= 20:
            break  # enough for the percentiles; keeps the suite bounded on a slow database
    count = len(timings.samples)
    report.check(
        Participant.objects.filter(conversation=conversation).count() == 2,
        "conversation_create made no two participants",
    )
    progress(f"    p50 {timings.ms(50)} ms, p95 {timings.ms(95)} ms")
    row = [
        pool_size,
        f"{existing:,}",
        count,
        timings.ms(50),
        timings.ms(95),
        timings.ms(99),
        timings.ms(95, cpu=True),
        "/".join(str(c) for c in sorted(counts)),
        f"{slowest['time'] * 1000:.1f} ({slowest['share']:.0%})",
        verdict(timings.percentile(95) * 1000 < ASSIGN_P95_MS),
    ]
    memory_row: list[Any] = []
    if measure_memory:
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(memory_runs):
            create()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak_mb = (peak - baseline) / 2**20
        memory_row = [
            pool_size,
            f"{existing:,}",
            f"{peak_mb:.2f}",
            f"{(current - baseline) / 2**20:.2f}",
            verdict(peak_mb < ASSIGN_PEAK_MB),
        ]
    return row, memory_row, slowest


# --- (d) Delivery throughput ---------------------------------------------------------------


def bench_delivery(*, count: int, redis_url: str, report: Report) -> str:
    import io

    from django.core.management import call_command
    from django.test import override_settings

    from bench.common import (
        Timings,
        outbound_queue_build,
        pool_build,
        progress,
        table,
        tables_clear,
        verdict,
    )
    from bench.fakes import InstantProvider, measured_rate
    from smsproxy.proxy.models import Message
    from smsproxy.proxy.outbox import deliver as delivery

    rows = []
    provider = InstantProvider()
    original = delivery.get_provider
    delivery.get_provider = lambda: provider
    try:
        with override_settings(SMS_RATE_LIMIT=1_000_000.0, CELERY_BROKER_URL=""):
            progress(f"(d) message_deliver over {count} queued messages, no effective limit")
            tables_clear()
            ids = outbound_queue_build(count=count, pool=pool_build(size=POOL_SIZE))
            timings = Timings()
            started = time.perf_counter()
            for message_id in ids:
                result = timings.time(
                    lambda message_id=message_id: delivery.message_deliver(message_id=message_id)
                )
                if result.outcome != delivery.Outcome.SENT:
                    raise RuntimeError(f"Message {message_id}: {result}")
            elapsed = time.perf_counter() - started
            rate = count / elapsed
            rows.append(
                [
                    "message_deliver loop, limit 1e6/s",
                    count,
                    f"{elapsed:.2f}",
                    f"{rate:.0f}",
                    f"p50 {timings.ms(50)} / p95 {timings.ms(95)}",
                    f">= {PIPELINE_MIN_RATE:g}/s",
                    verdict(rate >= PIPELINE_MIN_RATE),
                ]
            )
            report.check(
                Message.objects.filter(status=Message.Status.SENT).count() == count,
                "not every message was sent",
            )

            progress(f"(d) run_outbox --once over {count} queued messages")
            tables_clear()
            outbound_queue_build(count=count, pool=pool_build(size=POOL_SIZE))
            started = time.perf_counter()
            call_command("run_outbox", once=True, stdout=io.StringIO())
            elapsed = time.perf_counter() - started
            sent = Message.objects.filter(status=Message.Status.SENT).count()
            report.check(sent == count, f"run_outbox --once sent {sent} of {count}")
            rate = sent / elapsed
            rows.append(
                [
                    "run_outbox --once (embedded worker), limit 1e6/s",
                    sent,
                    f"{elapsed:.2f}",
                    f"{rate:.0f}",
                    "",
                    f">= {PIPELINE_MIN_RATE:g}/s",
                    verdict(rate >= PIPELINE_MIN_RATE),
                ]
            )

        limited = int(LIMITED_RATE * 4)
        with override_settings(SMS_RATE_LIMIT=LIMITED_RATE, CELERY_BROKER_URL=""):
            progress(f"(d) {limited} messages at SMS_RATE_LIMIT={LIMITED_RATE:g} (local bucket)")
            tables_clear()
            ids = outbound_queue_build(count=limited, pool=pool_build(size=POOL_SIZE))
            provider.sent_at.clear()
            started = time.perf_counter()
            for message_id in ids:
                delivery.message_deliver(message_id=message_id)
            elapsed = time.perf_counter() - started
            rows.append(
                rate_row(
                    "in-process token bucket, 1 process",
                    limited,
                    elapsed,
                    measured_rate(provider.sent_at),
                )
            )
    finally:
        delivery.get_provider = original

    redis_note = ""
    if redis_available(redis_url):
        rows.append(bench_redis_limiter(redis_url=redis_url, count=limited, report=report))
    else:
        redis_note = f"\nRedis at {redis_url} not reachable: the shared limiter was not measured.\n"
    return (
        table(
            "(d) Delivery throughput (provider answering at once)",
            ["run", "messages", "seconds", "msg/s", "ms per message", "target", "result"],
            rows,
        )
        + redis_note
    )


def rate_row(label: str, count: int, elapsed: float, rate: float) -> list[Any]:
    from bench.common import verdict

    low, high = LIMITED_RATE * (1 - RATE_TOLERANCE), LIMITED_RATE * (1 + RATE_TOLERANCE)
    return [
        label,
        count,
        f"{elapsed:.2f}",
        f"{rate:.2f}",
        "",
        f"{LIMITED_RATE:g}/s ± {RATE_TOLERANCE:.0%}",
        verdict(low <= rate <= high),
    ]


def redis_available(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def bench_redis_limiter(*, redis_url: str, count: int, report: Report) -> list[Any]:
    """Two worker processes sharing the Redis bucket; their combined send rate."""
    from bench.common import outbound_queue_build, pool_build, progress, tables_clear
    from bench.fakes import measured_rate

    progress(f"(d) {count} messages at {LIMITED_RATE:g}/s, two processes sharing Redis")
    tables_clear()
    ids = outbound_queue_build(count=count, pool=pool_build(size=POOL_SIZE))
    start_at = time.time() + 4.0  # both processes are set up by then
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "delivery_worker.py"),
                "--redis-url",
                redis_url,
                "--rate",
                str(LIMITED_RATE),
                "--start-at",
                repr(start_at),
                "--ids",
                ",".join(str(message_id) for message_id in ids[worker::2]),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"},
        )
        for worker in range(2)
    ]
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        report.check(worker.returncode == 0, f"delivery worker exited with {worker.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    sent_at = [stamp for result in results for stamp in result["sent_at"]]
    report.check(len(sent_at) == count, f"the two workers sent {len(sent_at)} of {count}")
    # Both processes must really have competed: their sends interleave.
    first_end = min(max(result["sent_at"]) for result in results)
    last_start = max(min(result["sent_at"]) for result in results)
    report.check(last_start < first_end, "the two workers did not run at the same time")
    elapsed = max(sent_at) - min(sent_at)
    per_worker = " + ".join(str(len(result["sent_at"])) for result in results)
    return rate_row(
        f"Redis token bucket ({redis_url}), 2 processes ({per_worker} messages)",
        len(sent_at),
        elapsed,
        measured_rate(sent_at),
    )


if __name__ == "__main__":
    sys.exit(main())
