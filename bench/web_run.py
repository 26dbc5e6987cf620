"""The HTTP bench's running servers (gunicorn per the Procfile, the delivery worker) and its wrk
runs against them: each run's bodies made, its results kept for the checks, memory noted."""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from bench import web_load as load


class Bench:
    """The running servers and everything measured against them."""

    def __init__(self, args: argparse.Namespace, workdir: Path, port: int) -> None:
        self.args, self.workdir, self.port = args, workdir, port
        self.url = f"http://127.0.0.1:{port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workers: list[int] = []
        self.outbox_pid = 0
        self.runs = 0
        self.answered_webhooks = 0
        self.next_person = 0
        self.to_check: list[tuple[str, str, load.WrkResult]] = []  # kind, prefix, run
        self.memory: list[tuple[str, int, list[float], float]] = []

    def start(self) -> None:
        # bench.settings removes DJANGO_* variables from this process's environment once loaded.
        env = {**os.environ, "PYTHONPATH": str(load.ROOT)}
        env["DJANGO_SETTINGS_MODULE"] = "bench.http_settings"
        web = load.procfile_command("web", port=self.port)
        outbox = [sys.executable, "manage.py", "run_outbox"]
        print("Server:", " ".join([Path(web[0]).name, *web[1:]]), flush=True)
        print("Delivery worker:", "python manage.py run_outbox", flush=True)
        for command, log in ((web, "web.log"), (outbox, "outbox.log")):
            with open(self.workdir / log, "wb") as output:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        cwd=load.ROOT,
                        env=env,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        load.wait_until_up(self.url, self.processes[0])
        self.workers = load.children(self.processes[0].pid)
        self.outbox_pid = self.processes[1].pid

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def prefix(self, kind: str) -> str:
        self.runs += 1
        return f"{kind}{self.runs:03d}-"

    def bodies_file(self, name: str, bodies: list[bytes]) -> Path:
        return load.bodies_write(self.workdir / f"{name}.txt", bodies)

    def wrk(
        self, name: str, path: str, bodies: Path, connections: int, **options: object
    ) -> load.WrkResult:
        headers = options.pop("headers", {"Content-Type": "application/x-www-form-urlencoded"})
        result = load.wrk_run(
            name=name,
            url=self.url + path,
            bodies=bodies,
            connections=connections,
            seconds=float(options.pop("seconds", self.args.seconds)),  # type: ignore[arg-type]
            workdir=self.workdir,
            headers=headers,  # type: ignore[arg-type]
            workers=self.workers,
            **options,  # type: ignore[arg-type]
        )
        print(
            f"  {name}: {result.rate:.0f}/s, p50 {result.p50_ms:.1f} ms, p99 "
            f"{result.p99_ms:.1f} ms, {result.errors} errors"
            + (f" (last status {result.last_bad})" if result.bad else ""),
            flush=True,
        )
        return result

    def webhooks(
        self, *, name: str, conversations: int, count: int, connections: int, **options: object
    ) -> load.WrkResult:
        from bench import web_data

        prefix = self.prefix("H")
        bodies = web_data.webhook_bodies(
            prefix=prefix, count=count, conversations=conversations, seed=self.runs
        )
        run = self.wrk(
            name,
            web_data.WEBHOOK_PATH,
            self.bodies_file("webhooks", bodies),
            connections,
            **options,
        )
        self.to_check.append(("webhook", prefix, run))
        self.answered_webhooks += run.ok
        return run

    def bare(self, *, conversations: int, connections: int) -> load.WrkResult:
        from bench import web_data

        bodies = web_data.webhook_bodies(
            prefix="B", count=5000, conversations=conversations, seed=0
        )
        path = self.bodies_file("bare", bodies)
        return self.wrk(
            f"ceiling c{connections}", web_data.BARE_PATH, path, connections, cycle=True
        )

    def creations(self, *, token: str, connections: int = 16) -> tuple[str, load.WrkResult]:
        from bench import web_data

        prefix = self.prefix("C")
        count = int(600 * self.args.seconds) + 1000
        bodies = web_data.creation_bodies(prefix=prefix, count=count, first_person=self.next_person)
        self.next_person += 2 * count
        headers = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
        run = self.wrk(
            "creations",
            web_data.CREATE_PATH,
            self.bodies_file("creations", bodies),
            connections,
            headers=headers,
            expected=201,
        )
        self.to_check.append(("creation", prefix, run))
        return prefix, run

    def remember_memory(self, moment: str) -> None:
        workers = [load.rss_mb(pid) for pid in self.workers]
        self.memory.append((moment, self.answered_webhooks, workers, load.rss_mb(self.outbox_pid)))


def pace(bench: Bench, *, conversations: int, peak: float, connections: int) -> load.WrkResult:
    """The webhook at half `peak` req/s: each connection waits before each request (wrk's
    `delay()`) so that connections / (delay + latency) is that rate; the latency is taken from
    a short probe at the same rate first (its requests are checked like the others)."""
    target = max(peak / 2, 1.0)
    period_ms = 1000 * connections / target
    probe = bench.webhooks(
        name="pacing probe",
        conversations=conversations,
        count=math.ceil(target * 3) + 500,
        connections=connections,
        delay_ms=period_ms,
        seconds=2.0,
    )
    delay_ms = max(period_ms - probe.p50_ms, 1.0)
    return bench.webhooks(
        name="webhook at half peak",
        conversations=conversations,
        count=math.ceil(target * 1.5 * bench.args.seconds) + 1000,
        connections=connections,
        delay_ms=delay_ms,
    )
