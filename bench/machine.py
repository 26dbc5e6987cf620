"""What bench/pool.py and bench/throttling.py share: the machine header, Markdown output, and
the resident memory of a process (from /proc, Linux)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def memory_total_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def command_line(module: str) -> str:
    """The command that ran, without `--output FILE` (a path of this machine)."""
    words, skip = [], False
    for word in sys.argv[1:]:
        if skip or word == "--output" or word.startswith("--output="):
            skip = word == "--output"
            continue
        words.append(shlex.quote(word))
    return " ".join([".venv/bin/python", "-m", module, *words])


class Output:
    """Markdown printed as it comes and, with `path`, written to that file as well."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.parts: list[str] = []
        if path is not None:
            path.write_text("")

    def add(self, text: str) -> None:
        print(text, flush=True)
        self.parts.append(text)
        if self.path is not None:
            self.path.write_text("\n".join(self.parts) + "\n")

    def header(self, *, title: str, module: str, database: str) -> None:
        self.add(
            "\n".join(
                [
                    f"## {title}: run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                    "",
                    f"- command: `{command_line(module)}`",
                    f"- machine: {os.cpu_count()} cores, {memory_total_gb():.1f} GB memory, "
                    f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
                    f"- database: {database}",
                    "- load average at the start (1, 5, 15 min): "
                    + ", ".join(f"{load:.2f}" for load in os.getloadavg()),
                    "",
                ]
            )
        )

    def table(self, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        lines = [f"### {title}", "", "| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
        self.add("\n".join(lines) + "\n")


def verdict(met: bool) -> str:
    return "met" if met else "**MISSED**"


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process now, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]) * PAGE_SIZE / 1024 / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process so far, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (a Celery worker's pool processes)."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        found: list[int] = []
        for task in tasks:
            children = (task / "children").read_text().split()
            found.extend(int(child) for child in children)
        return found
    except (FileNotFoundError, ProcessLookupError):
        return []
