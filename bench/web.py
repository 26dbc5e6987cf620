"""smsproxy over HTTP as production runs it (`make bench`; issue 11, measurements 1, 2, 3, 6).

A throwaway PostgreSQL database (`smsproxy_bench_web_<pid>`, created and dropped here; skipped
with a message when no PostgreSQL answers), a pool of 100 numbers, live conversations built with
set-based SQL and grown between the sizes (`bench.web_data`). The Procfile's gunicorn command
(bound to 127.0.0.1 on a free port) and the delivery worker (`manage.py run_outbox`, sandbox
provider, its delivery receipts sent back to that server) run for the whole bench, with
`bench.http_settings`: production settings, signed webhooks, INFO logging. wrk sends the load
from request bodies made and signed beforehand (`bench.web_load`). Per size:

1. webhook vs ceiling: at each concurrency, a bare Django view (the ceiling: same settings,
   server, load) then the inbound-SMS webhook, each request signed, with a unique messageId,
   from a live route drawn at random among all conversations; then the webhook paced at half
   its peak rate (wrk's `delay()` per connection) for its p99;
2. the largest size: a py-spy profile of one web worker during the busiest run, and the
   webhook's statements and the route lookup's plan (in process, one signed webhook);
3. conversation creations through the API (token auth, unique valid numbers per request);
6. RSS of each web worker (and of run_outbox) after each step; the full run keeps sending
   webhooks at the largest size until at least --soak-webhooks were answered in all.

Every answered webhook must be stored once and forwarded (queued) once, every answered creation
one conversation of two participants: the exit status is 1 otherwise. Targets missed are
reported, not failed.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from bench import web_load as load
from bench import web_report as report
from bench.web_run import Bench, pace

WARMUP_SECONDS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="webhooks at 100k only, short runs")
    parser.add_argument("--sizes", type=int, nargs="+", help="live conversations for the webhook")
    parser.add_argument("--creation-sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, help="per wrk run (default 10, quick 6)")
    parser.add_argument(
        "--soak-webhooks",
        type=int,
        help="webhooks answered in all before the last memory line (default 100000, quick 0)",
    )
    parser.add_argument("--soak-max-seconds", type=float, default=900)
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL database to connect to while creating and dropping the bench one",
    )
    args = parser.parse_args()
    args.sizes = sorted(args.sizes or ([100_000] if args.quick else [1000, 100_000, 1_000_000]))
    args.seconds = args.seconds or (6.0 if args.quick else 10.0)
    if args.soak_webhooks is None:
        args.soak_webhooks = 0 if args.quick else 100_000
    return args


def command_line(args: argparse.Namespace) -> str:
    if sys.argv[1:] in (["--quick"], []):
        return "make bench" + (" QUICK=1" if args.quick else "")
    return f"{Path(sys.executable).name} -m bench.web {' '.join(sys.argv[1:])}"


def measure(args: argparse.Namespace, bench: Bench, out: report.Report, token: str) -> list[str]:
    from bench import web_data

    webhook_rows, paced_rows, creation_rows = [], [], []
    profile = ""
    built = 0
    largest = args.sizes[-1]
    for size in sorted({*args.sizes, *args.creation_sizes}):
        started = time.monotonic()
        web_data.conversations_grow(
            start=built, stop=size, on_chunk=lambda n: print(f"  {n:,} built", flush=True)
        )
        built = size
        print(
            f"{size:,} live conversations built in {time.monotonic() - started:.0f} s.", flush=True
        )
        if not bench.workers:
            bench.start()
            bench.webhooks(
                name="warm-up",
                conversations=size,
                count=5000,
                connections=16,
                seconds=WARMUP_SECONDS,
            )
            bench.remember_memory("warm-up")
        if size in args.sizes:
            peak = 0.0
            for connections in args.connections:
                bare = bench.bare(conversations=size, connections=connections)
                count = math.ceil(bare.rate * 1.5 * args.seconds) + 2000
                spy = None
                if size == largest and connections == max(args.connections):
                    spy = load.py_spy_start(
                        pid=bench.workers[0],
                        seconds=args.seconds - 1,
                        output=bench.workdir / "profile.txt",
                    )
                run = bench.webhooks(
                    name=f"webhook c{connections}",
                    conversations=size,
                    count=count,
                    connections=connections,
                )
                if spy is not None:
                    _, error = spy.communicate(timeout=60)
                    if spy.returncode == 0:
                        profile = report.profile_text(
                            *load.py_spy_top(bench.workdir / "profile.txt")
                        )
                    else:
                        profile = f"py-spy failed: {error.decode(errors='replace').strip()}"
                webhook_rows.append((size, bare, run))
                peak = max(peak, run.rate)
            paced = pace(bench, conversations=size, peak=peak, connections=min(args.connections))
            paced_rows.append((size, peak, paced))
            bench.remember_memory(f"webhooks at {size:,}")
        if size in args.creation_sizes:
            live = web_data.live_conversations()
            creation_rows.append((live, *bench.creations(token=token)))
            bench.remember_memory(f"creations at {size:,}")
    soak_started = time.monotonic()
    while (
        bench.answered_webhooks < args.soak_webhooks
        and time.monotonic() - soak_started < args.soak_max_seconds
    ):
        seconds = 30.0
        bench.webhooks(
            name=f"soak ({bench.answered_webhooks:,} so far)",
            conversations=largest,
            count=int(seconds * 1500),
            connections=max(args.connections),
            seconds=seconds,
        )
        bench.remember_memory(f"more webhooks at {largest:,}")
    time.sleep(2)  # requests in flight when wrk stopped finish on the server
    statements, plan = web_data.webhook_queries(conversations=largest)

    problems: list[str] = []
    stored: dict[str, int] = {}
    for kind, prefix, run in bench.to_check:
        check = web_data.webhooks_check if kind == "webhook" else web_data.creations_check
        stored[prefix], found = check(prefix=prefix, answered=run.ok, in_flight=run.in_flight)
        problems += found
        if run.exhausted:
            problems.append(f"{prefix}: wrk ran out of request bodies")
    by_run = {id(run): stored[prefix] for _, prefix, run in bench.to_check}

    out.add(
        "#### 1. Inbound webhook vs the ceiling (signed, delivery worker running)\n\n"
        + report.webhook_table(
            [(size, bare, run, by_run[id(run)]) for size, bare, run in webhook_rows]
        )
        + "\n\nTarget: webhook / ceiling ≥ 0.5 at 1,000,000 conversations."
    )
    out.add(
        "#### 1. The webhook at half its peak rate (p99 target < 50 ms)\n\n"
        + report.paced_table([(size, peak, run, by_run[id(run)]) for size, peak, run in paced_rows])
    )
    out.add(
        f"#### 2. Where a web worker's time goes at {largest:,} conversations\n\n"
        + (profile or "No profile.")
    )
    out.add(
        f"#### 2. One signed routed webhook in process at {largest:,} conversations: "
        f"{len(statements)} statements\n\n"
        + "\n".join(f"{n}. `{' '.join(sql.split())[:110]}`" for n, sql in enumerate(statements, 1))
        + "\n\nThe route lookup's plan (`EXPLAIN ANALYZE`):\n\n```\n"
        + plan
        + "\n```"
    )
    if creation_rows:
        out.add(
            "#### 3. Conversation creations over HTTP (pool of 100, API token, throttle raised to "
            "1000000/minute for the bench)\n\n"
            + report.creations_table(
                [(live, run, stored[prefix]) for live, prefix, run in creation_rows]
            )
        )
    bench.remember_memory("the end")
    out.add("#### 6. Memory (RSS)\n\n" + report.memory_table(bench.memory))
    return problems


def error_blocks(log: str, *, limit: int = 40) -> list[list[str]]:
    """Each ERROR line of the server's log with the lines that follow it up to the next record
    (its traceback), at most `limit` lines each."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in log.splitlines():
        if line[:4].isdigit() and line[4:5] == "-":  # a new record: "2026-12-01 19:53:49,902 ..."
            current = [line] if " ERROR " in line else None
            if current is not None:
                blocks.append(current)
        elif current is not None and len(current) < limit:
            current.append(line)
    return blocks


def main() -> int:
    args = parse_args()
    # Stopped from outside: the servers are stopped and the database dropped all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load.wrk_ensure()
    import psycopg

    try:
        admin = psycopg.connect(args.admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        print(f"Skipped: no PostgreSQL at {args.admin_url} ({error}).".strip())
        return 0
    name = f"smsproxy_bench_web_{os.getpid()}"
    admin.execute(f"CREATE DATABASE {name}")
    port = load.free_port()
    os.environ["DATABASE_URL"] = (
        urllib.parse.urlsplit(args.admin_url)._replace(path=f"/{name}").geturl()
    )
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.http_settings"
    os.environ["BENCH_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    out = report.Report(args.output)
    with tempfile.TemporaryDirectory(prefix="smsproxy-bench-web-") as workdir:
        bench = Bench(args, Path(workdir), port)
        try:
            import django

            django.setup()
            from django.db import connections

            from bench import web_data

            out.add(f"### smsproxy over HTTP\n\n{report.machine(command_line(args))}")
            web_data.pool_prepare()
            token = web_data.api_token()
            problems = measure(args, bench, out, token)
            bench.stop()
            deliveries = web_data.delivery_counts()
            errors = error_blocks((Path(workdir) / "web.log").read_text(errors="replace"))
            connections.close_all()
        finally:
            bench.stop()
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.close()
    out.add(
        f"Delivery worker during the run (outbound messages by status at the end): {deliveries}. "
        f"Server log: {len(errors)} ERROR lines{': ' + errors[0][0] if errors else ''}. "
        f"Whole bench: {time.monotonic() - started:.0f} s; load average "
        f"{os.getloadavg()[0]:.2f} at the end."
    )
    if errors:
        # No input may give a 5xx (DESIGN.md §8): the first error's traceback, and a failed run.
        out.add(
            "The server's first ERROR, with its traceback:\n\n```\n"
            + "\n".join(errors[0])
            + "\n```\n"
        )
        problems.append(f"the server logged {len(errors)} ERROR line(s)")
    for problem in problems:
        print("CHECK FAILED:", problem)
    print(
        "Checks:",
        "failed" if problems else "every answered request stored once (and forwarded once)",
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
