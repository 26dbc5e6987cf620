"""The HTTP bench's processes and load: gunicorn per the Procfile, wrk with a Lua script, py-spy.

wrk cannot compute Vonage's signature in Lua, so every request body is made (and signed) in
Python beforehand, one per line of a file; the Lua script gives each wrk thread its own slice of
the lines and sends each line once. A run that uses up its bodies stops the thread and says so
(`exhausted`): a repeated `messageId` would be answered 200 and stored once, and the loss check
could no longer tell. Per thread the script counts the requests sent, the answers with the
expected status and the others; `done()` prints them with wrk's latency percentiles as one JSON
line, which `wrk_run` reads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK_THREADS = 2

LUA_SCRIPT = """
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  bodies, sent, ok, bad, exhausted, last_bad = {}, 0, 0, 0, 0, 0
  local n = 0
  for line in io.lines(BODIES) do
    if n % THREADS == id then table.insert(bodies, line) end
    n = n + 1
  end
end
function request()
  if bodies == nil then return wrk.format("POST", nil, nil, "") end
  if sent >= #bodies and not CYCLE then
    exhausted = 1
    wrk.thread:stop()
  end
  sent = sent + 1
  return wrk.format("POST", nil, nil, bodies[(sent - 1) % #bodies + 1])
end
function response(status, headers, body)
  if status == EXPECTED then ok = ok + 1 else bad, last_bad = bad + 1, status end
end
DELAY
function done(summary, latency, requests)
  local sent, ok, bad, exhausted, last_bad = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    if thread:get("last_bad") ~= 0 then last_bad = thread:get("last_bad") end
    sent = sent + thread:get("sent")
    ok = ok + thread:get("ok")
    bad = bad + thread:get("bad")
    exhausted = exhausted + thread:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"sent": %d, "ok": %d, "bad": %d, "last_bad": %d, "exhausted": %d, "seconds": %.3f, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f, "socket_errors": %d}\\n',
    sent, ok, bad, last_bad, exhausted, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class WrkResult:
    name: str
    connections: int
    sent: int  # requests written
    ok: int  # answered with the expected status
    bad: int  # answered with another status
    last_bad: int  # the last such status (0: none)
    exhausted: int  # threads that ran out of bodies (the run is then invalid)
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    worker_cpu: float = 0.0  # seconds of CPU of every gunicorn worker during the run
    delay_ms: float = 0.0  # wrk's pause before each request of a connection (paced runs)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.bad + self.socket_errors

    @property
    def in_flight(self) -> int:
        """Requests written but not answered when wrk stopped (at most one per connection)."""
        return max(self.sent - self.ok - self.bad, 0)


def wrk_ensure() -> str:
    """The wrk binary; installed with apt-get when missing (said so on stdout)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing it with `apt-get install -y wrk`.", flush=True)
    install = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, stdout=subprocess.DEVNULL, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, check=False)
        subprocess.run(install, stdout=subprocess.DEVNULL, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed: install it and run again.")
    return found


def bodies_write(path: Path, bodies: list[bytes]) -> Path:
    """One body per line: form bodies (percent-encoded) and compact JSON have no newline."""
    if any(b"\n" in body for body in bodies):
        raise ValueError("A request body contains a newline.")
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


def wrk_run(
    *,
    name: str,
    url: str,
    bodies: Path,
    connections: int,
    seconds: float,
    workdir: Path,
    headers: dict[str, str],
    expected: int = 200,
    delay_ms: float = 0.0,
    cycle: bool = False,
    workers: list[int] | None = None,
) -> WrkResult:
    """POST each line of `bodies` once (`cycle`: round and round) to `url` from `connections`
    keep-alive connections; `delay_ms` paces each connection."""
    delay = f"function delay() return {delay_ms:.3f} end" if delay_ms > 0 else ""
    script = (
        LUA_SCRIPT.replace("BODIES", json.dumps(str(bodies)))
        .replace("THREADS", str(WRK_THREADS))
        .replace("EXPECTED", str(expected))
        .replace("DELAY", delay)
        .replace("CYCLE", "true" if cycle else "false")
    )
    script_path = workdir / "bench.lua"
    script_path.write_text(script)
    command = [
        wrk_ensure(),
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script_path),
        "-H",
        "Connection: keep-alive",
    ]
    for header, value in headers.items():
        command += ["-H", f"{header}: {value}"]
    command.append(url)
    cpu_before = cpu_seconds(workers or [])
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = cpu_seconds(workers or []) - cpu_before
    line = next((ln for ln in finished.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if finished.returncode != 0 or line is None:
        raise SystemExit(
            f"wrk failed ({finished.returncode}): {finished.stderr or finished.stdout}"
        )
    data = json.loads(line.removeprefix("BENCH "))
    return WrkResult(name=name, connections=connections, worker_cpu=cpu, delay_ms=delay_ms, **data)


# --- gunicorn, as the Procfile runs it -----------------------------------------------------------


def procfile_command(process: str, *, port: int) -> list[str]:
    """The Procfile's `process` command, its ${VAR:-default}s expanded, bound to 127.0.0.1:port."""
    line = next(
        line.partition(":")[2]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith(f"{process}:")
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


def wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not answer /healthz in time")


def children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent:
                pids.append(int(entry.name))
    return sorted(pids)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- py-spy ---------------------------------------------------------------------------------------


def py_spy_start(*, pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    """Sample `pid` (on-CPU stacks, 100 Hz, not pausing it) for `seconds`; None: no py-spy."""
    binary = Path(sys.executable).with_name("py-spy")
    if not binary.exists():
        print("py-spy is not installed (bench/requirements.txt): no profile.", flush=True)
        return None
    command = [str(binary), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    command += ["--rate", "100", "--format", "raw", "--nonblocking", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def py_spy_top(
    raw: Path, *, count: int = 15
) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, top own-time frames, top inclusive smsproxy/Django frames) of a raw profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        weight = int(samples)
        total += weight
        frames = [_frame_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += weight
        for frame in set(frames):
            if "smsproxy/" in frame or "django/" in frame or "psycopg/" in frame:
                inclusive[frame] += weight
    share = 100 / max(total, 1)
    return (
        total,
        [(frame, n * share) for frame, n in own.most_common(count)],
        [(frame, n * share) for frame, n in inclusive.most_common(count)],
    )


def _frame_name(frame: str) -> str:
    """`fn (path/site-packages/pkg/mod.py:12)` as `fn (pkg/mod.py)`: lines merged, paths cut."""
    match = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame.strip())
    if not match:
        return frame.strip()
    function, path = match.groups()
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    path = re.sub(r"^.*/python3\.\d+/", "", path)
    return f"{function} ({path})"
