"""The HTTP bench's Markdown: the machine, the tables, the profile (printed and written)."""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.web_load import WrkResult


@dataclass
class Report:
    output: Path | None
    parts: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        print("\n" + text + "\n", flush=True)
        self.parts.append(text)
        if self.output is not None:
            self.output.write_text("\n\n".join(self.parts) + "\n")


def machine(command: str) -> str:
    """Where and when: cores, memory, versions, load, the exact command."""
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    import django
    import gunicorn
    import psycopg

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split("[")[0].strip() or "wrk"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"`{command}` — {now}; `nproc` {os.cpu_count()}, {memory_kb / 1024**2:.1f} GB, "
        f"{platform.machine()} {platform.system()}; Python {sys.version.split()[0]}, "
        f"Django {django.get_version()}, gunicorn {gunicorn.__version__}, psycopg "
        f"{psycopg.__version__}, {wrk_version}; load average {os.getloadavg()[0]:.2f} at the start."
    )


def table(headers: list[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def webhook_table(rows: list[tuple[int, WrkResult, WrkResult, int]]) -> str:
    """(conversations, bare, webhook, stored) per size and concurrency."""
    body = []
    for conversations, bare, webhook, stored in rows:
        cpu = 1000 * webhook.worker_cpu / max(webhook.ok + webhook.bad, 1)
        bare_cpu = 1000 * bare.worker_cpu / max(bare.ok + bare.bad, 1)
        body.append(
            [
                f"{conversations:,}",
                webhook.connections,
                f"{webhook.rate:.0f}",
                f"{webhook.p50_ms:.1f}",
                f"{webhook.p99_ms:.1f}",
                webhook.errors,
                f"{webhook.ok:,}",
                f"{stored:,}"
                + (f" ({stored - webhook.ok} in flight)" if stored > webhook.ok else ""),
                f"{cpu:.2f}",
                f"{bare.rate:.0f}",
                f"{bare.p99_ms:.1f}",
                f"{bare_cpu:.2f}",
                f"**{webhook.rate / bare.rate:.2f}**" if bare.rate else "-",
            ]
        )
    return table(
        [
            "conversations",
            "connections",
            "webhook req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "answered 200",
            "stored",
            "worker CPU ms/req",
            "ceiling req/s",
            "ceiling p99 ms",
            "ceiling CPU ms/req",
            "webhook / ceiling",
        ],
        body,
    )


def paced_table(rows: list[tuple[int, float, WrkResult, int]]) -> str:
    """(conversations, peak req/s, paced run, stored)."""
    body = [
        [
            f"{conversations:,}",
            f"{peak:.0f}",
            f"{peak / 2:.0f}",
            f"{paced.rate:.0f}",
            f"{paced.connections} x {paced.delay_ms:.0f} ms",
            f"{paced.p50_ms:.1f}",
            f"**{paced.p99_ms:.1f}**",
            paced.errors,
            f"{stored:,} / {paced.ok:,}",
        ]
        for conversations, peak, paced, stored in rows
    ]
    return table(
        [
            "conversations",
            "peak req/s",
            "half peak",
            "achieved req/s",
            "connections x delay",
            "p50 ms",
            "p99 ms",
            "errors",
            "stored / answered",
        ],
        body,
    )


def creations_table(rows: list[tuple[int, WrkResult, int]]) -> str:
    """(live conversations at the start, run, created)."""
    body = []
    for conversations, run, created in rows:
        cpu = 1000 * run.worker_cpu / max(run.ok + run.bad, 1)
        body.append(
            [
                f"{conversations:,}",
                run.connections,
                f"{run.rate:.1f}",
                f"{run.p50_ms:.0f}",
                f"{run.p99_ms:.0f}",
                run.errors,
                f"{run.ok:,}",
                f"{created:,}",
                f"{cpu:.1f}",
            ]
        )
    text = table(
        [
            "live conversations",
            "connections",
            "creations/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "answered 201",
            "created",
            "worker CPU ms/create",
        ],
        body,
    )
    if len(rows) >= 2 and rows[0][1].rate:
        small, large = rows[0], rows[-1]
        text += (
            f"\n\nRatio {large[0]:,} / {small[0]:,} (time per creation, 1 / rate): "
            f"**{small[1].rate / large[1].rate:.2f}** (target ≤ 1.5); creations/s target ≥ 300."
        )
    return text


def memory_table(checkpoints: list[tuple[str, int, list[float], float]]) -> str:
    """(moment, webhooks answered so far, RSS MB of each web worker, run_outbox RSS MB)."""
    # The long run's lines thinned to about eight (its first and last kept).
    soak = [n for n, line in enumerate(checkpoints) if line[0].startswith("more webhooks")]
    step = max(1, math.ceil(len(soak) / 8))
    dropped = set(soak) - set(soak[::step]) - set(soak[-1:])
    body = [
        [moment, f"{webhooks:,}", " / ".join(f"{rss:.0f}" for rss in workers), f"{outbox:.0f}"]
        for n, (moment, webhooks, workers, outbox) in enumerate(checkpoints)
        if n not in dropped
    ]
    text = table(["after", "webhooks answered", "web workers RSS MB", "run_outbox RSS MB"], body)
    if len(checkpoints) >= 2:
        first, last = checkpoints[0], checkpoints[-1]
        growth = max(b - a for a, b in zip(first[2], last[2], strict=False))
        verdict = "flat" if growth < 10 else "**growing**"
        text += (
            f"\n\nLargest web worker growth from the first to the last line: {growth:+.1f} MB "
            f"over {last[1] - first[1]:,} webhooks — {verdict} (≥ 10 MB counts as growing); "
            f"run_outbox {last[3] - first[3]:+.1f} MB."
        )
    return text


def profile_text(
    samples: int, own: list[tuple[str, float]], inclusive: list[tuple[str, float]]
) -> str:
    lines = [
        f"{samples} on-CPU samples of one web worker (py-spy, 100 Hz, idle threads left out).",
        "",
    ]
    lines += ["Own time (the frame on top of the stack):", "", "```"]
    lines += [f"{share:5.1f} %  {frame}" for frame, share in own]
    lines += ["```", "", "Inclusive (smsproxy, Django, psycopg frames):", "", "```"]
    lines += [f"{share:5.1f} %  {frame}" for frame, share in inclusive]
    lines.append("```")
    return "\n".join(lines)
