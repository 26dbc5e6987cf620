"""Child processes of bench/throttling.py (run_outbox, Celery workers), their memory, and the
throwaway PostgreSQL database they share.

Every child runs in a session of its own and is stopped by its process-group id, so Celery's
pool processes go with it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.machine import child_pids, cpu_seconds, rss_mb

ROOT = Path(__file__).resolve().parent.parent


# --- The throwaway database -----------------------------------------------------------------------


def postgres_reachable(admin_url: str) -> str:
    """ "" when PostgreSQL answers at `admin_url`, else why not."""
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            return ""
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0]


def database_create(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def database_drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(admin_url: str, name: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


# --- Children -----------------------------------------------------------------------------------


def redis_reachable(url: str) -> str:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as error:
        return str(error)
    return ""


def procfile_worker_command() -> list[str]:
    """The Procfile's `worker` command, its ${VAR:-default}s expanded, celery from the venv."""
    line = next(
        line.partition(":")[2]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("worker:")
    )
    expanded = re.sub(
        r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1), m.group(2)), line
    )
    words = shlex.split(expanded)
    if words[0] == "celery":
        words[0] = str(Path(sys.executable).parent / "celery")
    return words


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    # pid → RSS samples (MB): the process itself and, for Celery, its pool processes.
    rss: dict[int, list[float]] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)  # pid → CPU seconds at the last sample

    def start(self) -> None:
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def sample(self) -> None:
        for pid in [self.pid, *child_pids(self.pid)]:
            value, cpu = rss_mb(pid), cpu_seconds(pid)
            if value is not None and cpu is not None:
                self.rss.setdefault(pid, []).append(value)
                self.cpu[pid] = cpu

    def stop(self, grace: float = 15.0) -> None:
        if self.process is None:
            return
        if self.alive():
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._log_file.close()


class Sampler:
    """Samples the children's resident memory every `every` seconds, in a thread."""

    def __init__(self, children: list[Child], every: float = 2.0) -> None:
        self.children = children
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for child in self.children:
                if child.alive():
                    child.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for child in self.children:
            if child.alive():
                child.sample()


def wait_for(text: str, child: Child, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in child.output():
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{child.name} not ready after {seconds:g} s:\n{child.output()[-3000:]}"
            )
        time.sleep(0.5)
