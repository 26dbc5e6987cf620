"""Delivery under throttling: a backlog of SMS through the real delivery workers, against a
local fake of Vonage's SMS endpoint that throttles.

    .venv/bin/python -m bench.throttling [--quick] [--messages N] [--account-rate N]
        [--celery-only] [--output FILE]

The fake (bench/fake_sms.py) allows --account-rate sends a second to the account (30: Vonage's
default) and one a second to each US long number of the pool, and answers status 1 (throttled)
beyond. smsproxy is configured as an operator of that account would: SMS_PROVIDER=vonage
pointed at the fake (VONAGE_REST_HOST, REQUESTS_CA_BUNDLE), SMS_RATE_LIMIT = the account's rate
and SMS_RATE_LIMIT_PER_SENDER=1 (the pool has US long numbers), production settings, on a
throwaway PostgreSQL database (created and dropped; its name contains "bench_sim").

The backlog (10,000 messages, 1,000 with --quick; senders drawn at random from a pool of GB and
US numbers) is written as `queued` rows, then delivered:
1. by the embedded worker, `manage.py run_outbox`, a process of its own;
2. by two Celery workers (the Procfile's `worker` command) on Redis database 4, the rows handed
   to them as the product does (`message_dispatch`); skipped when Redis does not answer.
Reported for each: the achieved rate against the allowed rate (target at least 90 %), throttled
answers, messages lost (never accepted by the fake), sent twice (accepted twice, by client-ref),
failed, and the resident memory (sampled every 2 s) and CPU time of every delivery process.
Each run is bounded: it stops at 3 x the time the allowed rate needs, plus a minute. Without
PostgreSQL the benchmark is skipped with a message (exit 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.fake_sms import FakeSms, fake_sms_server
from bench.machine import Output, progress, verdict
from bench.outbox_backlog import (
    ACCOUNT_RATE,
    GB_SENDERS,
    US_SENDERS,
    allowed_rate,
    backlog_write,
    pool_write,
    product_env,
    senders,
    statuses,
)
from bench.processes import (
    Child,
    Sampler,
    database_create,
    database_drop,
    database_url,
    postgres_reachable,
    procfile_worker_command,
    redis_reachable,
    wait_for,
)

TARGET_SHARE = 0.9
SEED = 20261201
CELERY_WORKERS = 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 messages instead of 10,000 (make bench QUICK=1 stays under 5 minutes)",
    )
    parser.add_argument("--messages", type=int)
    parser.add_argument(
        "--account-rate",
        type=int,
        default=ACCOUNT_RATE,
        help=f"sends a second the fake allows the account (default {ACCOUNT_RATE})",
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL database to connect to while creating and dropping the bench one",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--celery-only", action="store_true", help="skip the embedded worker's run")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    args.messages = args.messages or (1000 if args.quick else 10_000)
    return args


@dataclass
class Run:
    label: str
    count: int
    seconds: float
    finished: bool
    status: Counter[str]
    accepted: dict[str, list[float]]  # client-ref → times the fake accepted it
    throttled: Counter[str]
    children: list[Child]
    allowed: float
    executions: int = 0  # delivery tasks run (Celery: counted in the workers' logs)

    def achieved(self) -> float:
        times = sorted(at for times in self.accepted.values() for at in times)
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def delivery_run(
    label: str,
    *,
    children: list[Child],
    ids: list[int],
    fake: FakeSms,
    allowed: float,
    dispatch: bool = False,
    ready: str = "",
) -> Run:
    fake.reset()
    for child in children:
        child.start()
    if ready:
        for child in children:
            wait_for(ready, child, seconds=120)
    deadline_seconds = 3 * len(ids) / allowed + 60
    started = time.monotonic()
    if dispatch:
        from smsproxy.proxy.outbox.dispatch import message_dispatch

        for message_id in ids:
            message_dispatch(message_id=message_id)
    finished = False
    with Sampler(children):
        while time.monotonic() - started < deadline_seconds:
            time.sleep(2)
            status = statuses()
            done = status["sent"] + status["failed"]
            if done >= len(ids):
                finished = True
                break
            if int(time.monotonic() - started) % 20 < 2:
                progress(f"{label}: {dict(status)}, {fake.throttled.total()} throttled")
            if not all(child.alive() for child in children):
                break
    seconds = time.monotonic() - started
    for child in children:
        child.stop()
    status = statuses()
    accepted = {ref: list(times) for ref, times in fake.accepted.items()}
    throttled = Counter(fake.throttled)
    executions = sum(task_executions(child.log) for child in children)
    return Run(
        label,
        len(ids),
        seconds,
        finished,
        status,
        accepted,
        throttled,
        children,
        allowed,
        executions,
    )


def task_executions(log: Path) -> int:
    """Delivery tasks a Celery worker ran, from its INFO log (0 for anything else)."""
    if not log.exists():
        return 0
    marker = "smsproxy.proxy.deliver_message["
    with log.open(errors="replace") as lines:
        return sum(1 for line in lines if marker in line and "] succeeded in " in line)


def report(out: Output, runs: list[Run]) -> bool:
    ok = True
    rows = []
    for run in runs:
        achieved = run.achieved()
        share = achieved / run.allowed
        twice = sum(1 for times in run.accepted.values() if len(times) > 1)
        unsent = run.count - len(run.accepted)
        lost = unsent if run.finished else f"- ({unsent} not sent at the deadline)"
        consistent = run.status["sent"] == len(run.accepted)
        # The exit status is about correctness (as bench/web.py): a rate under the target is
        # reported in the table, a message lost, sent twice or failed fails the run.
        correct = run.finished and twice == 0 and unsent == 0
        ok = ok and correct and consistent and run.status["failed"] == 0
        rows.append(
            [
                run.label,
                f"{run.count} in {run.seconds:.0f} s"
                + ("" if run.finished else " (**stopped at the deadline**)"),
                f"{achieved:.1f}/s of {run.allowed:.1f}/s",
                f"**{share:.0%}** ({verdict(share >= TARGET_SHARE)})",
                f"{run.throttled['account']} + {run.throttled['sender']}",
                lost,
                twice,
                run.status["failed"],
                "yes" if consistent else f"**no**: {run.status['sent']} sent",
            ]
        )
    out.table(
        "Delivery under throttling",
        [
            "workers",
            "messages",
            "achieved / allowed rate",
            "share (target >= 90 %)",
            "throttled answers (account + per number)",
            "lost",
            "sent twice",
            "failed",
            "rows `sent` == accepted by the fake",
        ],
        rows,
    )
    memory = []
    for run in runs:
        for child in run.children:
            for number, (pid, samples) in enumerate(child.rss.items()):
                role = "" if pid == child.pid else f" pool process {number}"
                memory.append(
                    [
                        f"{child.name}{role}",
                        f"{samples[min(len(samples) - 1, 2)]:.0f}",
                        f"{samples[len(samples) // 2]:.0f}",
                        f"{samples[-1]:.0f}",
                        f"{max(samples):.0f}",
                        f"{child.cpu.get(pid, 0):.1f}",
                    ]
                )
        cpu = sum(cpu for child in run.children for cpu in child.cpu.values())
        memory.append([f"{run.label}: CPU per message sent", "", "", "", "", ""])
        memory[-1][-1] = f"{cpu * 1000 / max(1, run.status['sent']):.1f} ms"
        if run.executions:
            memory.append([f"{run.label}: delivery tasks run per message", "", "", "", "", ""])
            memory[-1][-1] = f"{run.executions / max(1, run.count):.2f}"
    out.table(
        "Resident memory (MB, sampled every 2 s) and CPU time of the delivery processes",
        ["process", "after ~5 s", "half-way", "at the end", "peak", "CPU s"],
        memory,
    )
    return ok


def main() -> int:
    args = parse_args()
    out = Output(args.output)
    total = time.monotonic()
    why = postgres_reachable(args.admin_url)
    if why:
        out.add(f"Delivery under throttling: skipped, PostgreSQL does not answer ({why}).")
        return 0
    name = f"bench_sim_throttling_{os.getpid()}"
    database_create(args.admin_url, name)
    workdir = Path(tempfile.mkdtemp(prefix="smsproxy-bench-throttling-"))
    _gb, us = senders()
    capped = frozenset(msisdn.lstrip("+") for msisdn in us)
    try:
        rate = args.account_rate
        with fake_sms_server(workdir, account_rate=rate, capped_senders=capped) as fake:
            env = product_env(database=database_url(args.admin_url, name), fake=fake)
            redis_why = redis_reachable(args.redis_url)
            # The bench hands the rows to Celery as the product does (`message_dispatch`).
            os.environ.update(env if redis_why else {**env, "CELERY_BROKER_URL": args.redis_url})
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
            out.header(
                title="Delivery under throttling (bench/throttling.py)",
                module="bench.throttling",
                database=f"PostgreSQL {postgres_version()}; Redis {args.redis_url}",
            )
            out.add(
                f"Fake Vonage: {args.account_rate} sends/s per account and 1/s per US long number "
                f"(fixed one-second windows); pool of {GB_SENDERS} GB and {US_SENDERS} US numbers, "
                "senders drawn at random. smsproxy: SMS_RATE_LIMIT="
                f"{args.account_rate}, SMS_RATE_LIMIT_PER_SENDER=1, production settings.\n"
            )
            pool_write()
            runs = []
            ids = backlog_write(args.messages, seed=SEED)
            allowed = allowed_rate(ids, account_rate=args.account_rate)
            python = sys.executable
            if not args.celery_only:
                progress(f"Embedded worker: {len(ids)} messages, allowed {allowed:.1f}/s")
                outbox = Child(
                    "run_outbox", [python, "manage.py", "run_outbox"], env, workdir / "outbox.log"
                )
                runs.append(
                    delivery_run(
                        "embedded (`run_outbox`)",
                        children=[outbox],
                        ids=ids,
                        fake=fake,
                        allowed=allowed,
                    )
                )
            if redis_why:
                out.add(f"Celery workers: skipped, no Redis at {args.redis_url} ({redis_why}).")
            else:
                import redis

                redis.Redis.from_url(args.redis_url).flushdb()
                ids = backlog_write(args.messages, seed=SEED)
                celery_env = {**env, "CELERY_BROKER_URL": args.redis_url}
                workers = [
                    Child(
                        f"celery {index + 1}",
                        [*procfile_worker_command(), "--hostname", f"benchsim{index + 1}@%h"],
                        celery_env,
                        workdir / f"celery-{index + 1}.log",
                    )
                    for index in range(CELERY_WORKERS)
                ]
                progress(f"Celery: {len(ids)} messages")
                runs.append(
                    delivery_run(
                        f"{CELERY_WORKERS} Celery workers (Procfile `worker`)",
                        children=workers,
                        ids=ids,
                        fake=fake,
                        allowed=allowed,
                        dispatch=True,
                        ready=" ready.",
                    )
                )
                redis.Redis.from_url(args.redis_url).flushdb()
            met = report(out, runs)
    finally:
        from django.conf import settings

        if settings.configured:
            from django.db import connections

            connections.close_all()
        database_drop(args.admin_url, name)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    out.add(f"Whole run: {time.monotonic() - total:.0f} s; load average at the end: {load}.\n")
    progress(f"Logs of the workers: {workdir}")
    return 0 if met else 1


def postgres_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0]).split()[0]


if __name__ == "__main__":
    sys.exit(main())
