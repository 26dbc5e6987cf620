"""Processes the fault tests start (gunicorn, Celery, run_outbox, Redis, PostgreSQL), and their
clean-up.

Every process is started in a session of its own and stopped by its process-group id (the pid
of the process started here), so that gunicorn's and Celery's children go with it, also when an
assertion failed half-way (a private PostgreSQL is stopped by `pg_ctl`, or by its postmaster's
pid). Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from django.db import connection

REPO = Path(__file__).resolve().parents[2]
SECRET_KEY = "fault-tests-only-secret-key-not-for-production-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], Any], *, seconds: float, what: str) -> Any:
    """Poll `condition` until it is truthy (returned) or `seconds` pass (the test fails)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {seconds:g}s waiting for {what}.")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def child_database_url() -> str:
    """A URL of the database this test runs on (pytest-django's `test_<name>`), for a child."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): a child process cannot see SQLite's test db")
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or "5432"
    return f"postgres://{credentials}@{host}:{port}/{quote(db['NAME'], safe='')}"


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child process: none of this shell's settings, only what is given."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DJANGO_", "VONAGE_", "PROXY_", "SMS_", "SANDBOX_", "API_", "CELERY_", "DATABASE_")
        )
        and key != "PUBLIC_BASE_URL"
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "smsproxy.settings",
            "DJANGO_READ_DOT_ENV": "0",
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_DEBUG": "1",
            "SMS_PROVIDER": "sandbox",
            "SANDBOX_DELIVERY_RECEIPTS": "0",
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
    )
    return env


class Child:
    """One started process (and its process group), its output in a file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            args,
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye (a crash, or the OOM killer)."""
        self._signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, *, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL whatever of the group is left after `grace` seconds."""
        if self.alive():
            self._signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        self._signal(signal.SIGKILL)  # children that outlived their parent
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._log_file.close()

    def _signal(self, signum: int) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


@contextmanager
def children(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """A starter of child processes; every one of them is stopped when the block ends."""
    started: list[Child] = []

    def start(name: str, args: list[str], env: Mapping[str, str]) -> Child:
        child = Child(name, args, env, tmp_path / f"{name}-{len(started)}.log")
        started.append(child)
        return child

    try:
        yield start
    finally:
        for child in reversed(started):
            child.stop()


def manage(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "manage.py"), *args]


def venv_tool(name: str) -> str:
    """A console script installed beside this Python (gunicorn, celery)."""
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        pytest.skip(f"{name} is not installed beside {Path(sys.executable).name}")
    return str(tool)


def wait_http(url: str, *, seconds: float, child: Child) -> None:
    def answers() -> bool:
        if not child.alive():
            pytest.fail(f"{child.name} exited:\n{child.output()[-3000:]}")
        try:
            requests.get(url, timeout=2)
        except requests.RequestException:
            return False
        return True

    wait_until(answers, seconds=seconds, what=f"{child.name} to answer {url}")


def gunicorn(
    start: Callable[..., Child], *, env: Mapping[str, str], workers: int = 3, threads: int = 0
) -> str:
    """The Procfile's web process on a free loopback port; returns its base URL.

    `threads`: gthread workers with that many threads each, as the Procfile runs them.
    """
    port = free_port()
    threaded = ["--worker-class", "gthread", "--threads", str(threads)] if threads else []
    child = start(
        "gunicorn",
        [
            venv_tool("gunicorn"),
            "smsproxy.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            *threaded,
            "--timeout",
            "30",
        ],
        env,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_http(f"{base_url}/healthz", seconds=60, child=child)
    return base_url


class RedisServer:
    """A private redis-server on a free port: no persistence, its own directory."""

    def __init__(self, start: Callable[..., Child], directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self._binary = binary
        self._start = start
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.child: Child | None = None

    def up(self) -> None:
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._directory),
        ]
        self.child = self._start("redis", args, os.environ)
        wait_until(lambda: port_open(self.port), seconds=20, what="redis-server to listen")

    def down(self) -> None:
        """Killed (by its pid): the port refuses connections until `up` again."""
        assert self.child is not None
        self.child.kill()
        wait_until(lambda: not port_open(self.port), seconds=10, what="redis-server to go")


class PrivatePostgres:
    """A PostgreSQL cluster of its own (never the system one): run as the `postgres` user.

    `initdb` and `pg_ctl` refuse to run as root, so they run through `runuser -u postgres` in a
    temporary directory created here and given to `postgres` (pytest's `tmp_path` lies under a
    directory only root may enter). It listens on a free 127.0.0.1 port and on a unix socket in
    that directory, with trust authentication. `init`, then `start`; `close` stops it
    (immediately; by its pid if `pg_ctl` cannot) and removes the directory.
    """

    USER = "postgres"

    def __init__(self) -> None:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("a private PostgreSQL needs root (initdb and pg_ctl run as `postgres`)")
        tools = {name: shutil.which(name) for name in ("initdb", "pg_ctl", "runuser")}
        missing = sorted(name for name, path in tools.items() if path is None)
        if missing:
            pytest.skip(f"a private PostgreSQL needs {', '.join(missing)} on PATH")
        try:
            account = pwd.getpwnam(self.USER)
        except KeyError:
            pytest.skip(f"a private PostgreSQL needs a `{self.USER}` user")
        self._initdb = str(tools["initdb"])
        self._pg_ctl = str(tools["pg_ctl"])
        self._runuser = str(tools["runuser"])
        self.directory = Path(tempfile.mkdtemp(prefix="smsproxy-pg-"))
        os.chown(self.directory, account.pw_uid, account.pw_gid)
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        self._started = False

    def init(self) -> None:
        """`initdb`: a new cluster in the directory, the `postgres` superuser trusted."""
        self._as_postgres(
            self._initdb,
            "--pgdata",
            str(self.data),
            "--username",
            self.USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )

    def url(self, database: str) -> str:
        return f"postgres://{self.USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start and wait (`pg_ctl -w`) until it accepts connections."""
        self._started = True
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            " -c max_connections=50"
        )
        self._pg_ctl_run("start", "-w", "-t", "30", "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop and wait (`pg_ctl -w`) until the server is gone: connections are refused."""
        self._pg_ctl_run("stop", "-w", "-t", "30", "-m", mode)

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.USER, dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

    def server_log(self) -> str:
        with suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def close(self) -> None:
        if self._started:
            with suppress(subprocess.SubprocessError, OSError):
                self.stop("immediate")
            self._kill_postmaster()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """If `pg_ctl stop` failed: SIGKILL the postmaster named in `postmaster.pid`."""
        with suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    def _pg_ctl_run(self, *args: str) -> None:
        self._as_postgres(self._pg_ctl, "--pgdata", str(self.data), *args)

    def _as_postgres(self, *args: str) -> None:
        result = subprocess.run(
            [self._runuser, "-u", self.USER, "--", *args],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"{Path(args[0]).name} {' '.join(args[1:])} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n{self.server_log()[-3000:]}"
            )
