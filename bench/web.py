"""The inbound webhook over HTTP: gunicorn as the Procfile runs it, on PostgreSQL (`make bench`).

Creates a throwaway PostgreSQL database (its name contains "bench"), migrates it, builds N live
conversations, starts gunicorn with the Procfile's `web` command (bound to 127.0.0.1 on a free
port, whatever the Procfile binds) and, for each case in turn, sends requests from keep-alive
`http.client` connections in threads for a fixed time:

- bare: a Django view that answers 200 and does nothing (`bench/urls.py`), same settings/server;
- routed: inbound SMS from a random live participant to their proxy number;
- unrouted: inbound SMS from a number in no conversation to a pool number.

Each request is the same Vonage form POST (unsigned: the bench settings set no signature
secret), with a unique messageId. Reported per case: answered requests per second, and the CPU
time of the gunicorn workers per request (utime + stime of every worker from /proc/<pid>/stat,
before and after the timed window). Then every answered webhook is checked: stored once, and
each routed one forwarded (queued) once. The database is dropped at the end. Without a
PostgreSQL server the benchmark is skipped with a message (exit 0).
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POOL_SIZE = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL database to connect to while creating and dropping the bench one",
    )
    parser.add_argument("--conversations", type=int, default=1000, help="live conversations")
    parser.add_argument("--large", action="store_true", help="100,000 live conversations")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window per case")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed warm-up per case")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections")
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    return parser.parse_args()


# --- gunicorn, as the Procfile runs it -----------------------------------------------------------


def procfile_web_command(*, port: int) -> list[str]:
    """The Procfile's `web` command, its ${VAR:-default}s expanded, bound to 127.0.0.1:port."""
    line = next(
        line.partition(":")[2]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    expanded = re.sub(
        r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1), m.group(2)), line
    )
    words = shlex.split(expanded)
    for index, word in enumerate(words):
        if word in ("--bind", "-b"):
            words[index + 1] = f"127.0.0.1:{port}"
        elif word.startswith("--bind="):
            words[index] = f"--bind=127.0.0.1:{port}"
    if not any(word.startswith(("--control-socket", "--no-control-socket")) for word in words):
        # gunicorn 27's default control socket is one per user, shared by every gunicorn.
        words.append("--no-control-socket")
    words[0] = str(Path(sys.executable).with_name(words[0]))
    return words


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(port: int, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not answer /healthz in time")


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == master:
                pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


# --- The load ----------------------------------------------------------------------------------


@dataclass
class CaseResult:
    name: str
    answered: int  # 200s in the timed window
    errors: int
    seconds: float
    cpu: float
    answered_total: int  # 200s including the warm-up (for the loss check)


class Load:
    """Threads, each on one keep-alive connection, posting `body_of(thread, sequence)`."""

    def __init__(
        self, *, port: int, path: str, body_of: Callable[[int, int], bytes], concurrency: int
    ) -> None:
        self.port, self.path, self.body_of = port, path, body_of
        self.concurrency = concurrency
        self.counting = False
        self.stop = threading.Event()
        self.answered = [0] * concurrency
        self.counted = [0] * concurrency
        self.errors = [0] * concurrency

    def run_thread(self, index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        sequence = 0
        while not self.stop.is_set():
            sequence += 1
            try:
                connection.request("POST", self.path, self.body_of(index, sequence), headers)
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.answered[index] += 1
                    if self.counting:
                        self.counted[index] += 1
                else:
                    self.errors[index] += 1
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException):
                self.errors[index] += 1
                connection.close()

    def measure(
        self, *, name: str, warmup: float, seconds: float, workers: list[int]
    ) -> CaseResult:
        threads = [
            threading.Thread(target=self.run_thread, args=(index,), daemon=True)
            for index in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        time.sleep(warmup)
        errors_before = sum(self.errors)
        cpu_before = cpu_seconds(workers)
        started = time.monotonic()
        self.counting = True
        time.sleep(seconds)
        self.counting = False
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(workers) - cpu_before
        errors = sum(self.errors) - errors_before
        self.stop.set()
        for thread in threads:
            thread.join()
        return CaseResult(name, sum(self.counted), errors, elapsed, cpu, sum(self.answered))


# --- Data and checks (in this process, on the same database) -----------------------------------


def database_prepare(*, conversations: int) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    from bench.common import conversations_build, pool_build

    call_command("migrate", "--noinput", verbosity=0)
    pool = pool_build(size=POOL_SIZE)
    conversations_build(pool=pool, start=0, stop=conversations)


def form_body(*, sender: str, recipient: str, message_id: str) -> bytes:
    from smsproxy.gateway.webhooks import inbound_sms_params

    params = inbound_sms_params(
        sender=sender, recipient=recipient, text="On my way, 10 minutes", message_id=message_id
    )
    return urllib.parse.urlencode(params).encode()


def check(result: CaseResult, *, prefix: str, routed: bool) -> list[str]:
    """Every answered webhook stored once; each routed one forwarded once, nothing else sent."""
    from django.db.models import Count

    from smsproxy.proxy.models import Message

    inbound = Message.objects.filter(vonage_message_id__startswith=prefix)
    stored = inbound.count()
    problems = []
    # A request cut off by the end of the run may be stored without its answer being read.
    if not result.answered_total <= stored <= result.answered_total + result.errors:
        problems.append(f"{result.name}: {result.answered_total} answered, {stored} stored")
    expected_status = Message.Status.RECEIVED if routed else Message.Status.UNROUTED
    if inbound.exclude(status=expected_status).exists():
        problems.append(f"{result.name}: a message not {expected_status}")
    forwards = Message.objects.filter(forwarded_from__vonage_message_id__startswith=prefix)
    if forwards.count() != (stored if routed else 0):
        problems.append(f"{result.name}: {forwards.count()} forwards for {stored} stored")
    twice = forwards.values("forwarded_from").annotate(n=Count("id")).filter(n__gt=1)
    if twice.exists():
        problems.append(f"{result.name}: a message forwarded twice")
    replies = Message.objects.filter(purpose=Message.Purpose.OUT_OF_SESSION).count()
    if replies:
        problems.append(f"{result.name}: {replies} out-of-session replies to strangers")
    return problems


def table(results: list[CaseResult], *, command: str, header: str) -> str:
    bare = results[0]
    lines = [
        header,
        "",
        f"`{command}`",
        "",
        "| case | answered | errors | req/s | worker CPU ms/req | req/s vs bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        rate = result.answered / result.seconds
        per_request = 1000 * result.cpu / max(result.answered, 1)
        ratio = rate / (bare.answered / bare.seconds)
        lines.append(
            f"| {result.name} | {result.answered} | {result.errors} | {rate:.0f} "
            f"| {per_request:.2f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    conversations = 100_000 if args.large else args.conversations
    import psycopg

    try:
        admin = psycopg.connect(args.admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        print(f"Skipped: no PostgreSQL at {args.admin_url} ({error}).".strip())
        return 0
    name = f"smsproxy_bench_web_{os.getpid()}"
    admin.execute(f"CREATE DATABASE {name}")
    server: subprocess.Popen[bytes] | None = None
    try:
        database_url = urllib.parse.urlsplit(args.admin_url)._replace(path=f"/{name}").geturl()
        os.environ["DATABASE_URL"] = database_url
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.http_settings"
        started = time.monotonic()
        print(f"Building {conversations} live conversations in {name}...", flush=True)
        database_prepare(conversations=conversations)
        from django.db import connections

        from bench.common import pool_msisdn, route_of, stranger_number

        connections.close_all()
        port = free_port()
        command = procfile_web_command(port=port)
        env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
        env["DJANGO_SETTINGS_MODULE"] = "bench.http_settings"
        print("Server:", shlex.join([Path(command[0]).name, *command[1:]]), flush=True)
        server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        wait_until_up(port, server)
        workers = worker_pids(server.pid)
        load_before = os.getloadavg()
        rng = random.Random(11)

        def routed(thread: int, sequence: int) -> bytes:
            real_number, pool_index = route_of(
                conversation_index=rng.randrange(conversations),
                side=rng.randrange(2),
                pool_size=POOL_SIZE,
            )
            return form_body(
                sender=real_number,
                recipient=pool_msisdn(pool_index),
                message_id=f"R{thread:03d}{sequence:08d}",
            )

        def unrouted(thread: int, sequence: int) -> bytes:
            return form_body(
                sender=stranger_number(thread * 10**7 + sequence),
                recipient=pool_msisdn(sequence % POOL_SIZE),
                message_id=f"U{thread:03d}{sequence:08d}",
            )

        def bare(thread: int, sequence: int) -> bytes:
            return form_body(
                sender=stranger_number(sequence),
                recipient=pool_msisdn(0),
                message_id=f"B{thread:03d}{sequence:08d}",
            )

        results = []
        for case, path, body_of in (
            ("bare view", "/bench/bare/", bare),
            ("webhook, routed", "/webhooks/vonage/inbound-sms/", routed),
            ("webhook, unrouted", "/webhooks/vonage/inbound-sms/", unrouted),
        ):
            load = Load(port=port, path=path, body_of=body_of, concurrency=args.concurrency)
            results.append(
                load.measure(name=case, warmup=args.warmup, seconds=args.seconds, workers=workers)
            )
            print(f"  {case}: {results[-1].answered} answered", flush=True)
        problems = check(results[1], prefix="R", routed=True)
        problems += check(results[2], prefix="U", routed=False)
        connections.close_all()
        header = (
            f"{conversations} live conversations, {len(workers)} gunicorn workers, "
            f"{args.concurrency} client connections, {args.seconds:g} s per case "
            f"after {args.warmup:g} s of warm-up; nproc {os.cpu_count()}; load average "
            f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
            f"{time.monotonic() - started:.0f} s in all."
        )
        invocation = "make bench" + (" BENCH_ARGS=--large" if args.large else "")
        report = table(results, command=invocation, header=header)
        print("\n" + report + "\n")
        if args.output:
            args.output.write_text(report + "\n")
        for problem in problems:
            print("CHECK FAILED:", problem)
        print(
            "Checks:", "failed" if problems else "every answered webhook stored and forwarded once"
        )
        return 1 if problems else 0
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
