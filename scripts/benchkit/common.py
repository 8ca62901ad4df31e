"""What every part of the benchmark shares: where the binaries are, waiting for a quiet disk,
running a JSON-printing command, the peak RSS of a process, and facts about the machine."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SERVER = Path(os.environ.get("BENCH_SERVER_BIN", REPO / "target" / "release" / "chronik-server"))
BENCH = Path(os.environ.get("BENCH_CLIENT_BIN", REPO / "target" / "release" / "chronik-bench"))


@dataclass
class Measurement:
    """One client run against one broker, in this report's units (MB = 10^6 bytes, ms);
    `ok` False with `error` when it failed. `peak_rss_bytes` is the broker's (summed over its
    nodes) during the run."""
    ok: bool
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    avg_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    count: int = 0
    error: str = ""
    peak_rss_bytes: int | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settle(max_wait_s: float = 60.0) -> None:
    """Waits (polling, with a deadline) until the disk is quiet: less than 5% of each of two
    consecutive half seconds stalled on I/O (/proc/pressure/io). The disk probe's deletes
    (ext4 here is mounted with `discard`) and the previous scenario's writeback otherwise slow
    the next scenario down."""
    path = Path("/proc/pressure/io")
    if not path.exists():
        return

    def stalled_us() -> int:
        line = path.read_text().splitlines()[0]  # "some avg10=.. avg60=.. avg300=.. total=N"
        return int(line.rsplit("total=", 1)[1])

    start = time.monotonic()
    quiet, prev = 0, stalled_us()
    while time.monotonic() - start < max_wait_s and quiet < 2:
        time.sleep(0.5)
        cur = stalled_us()
        quiet = quiet + 1 if cur - prev < 25_000 else 0
        prev = cur
    waited = time.monotonic() - start
    print(f"bench: disk {'quiet' if quiet >= 2 else 'still busy'} after {waited:.1f} s", flush=True)


def run_json(cmd: list[str], timeout_s: float) -> tuple[int, dict | None, str]:
    """Runs `cmd`; its last stdout line is its JSON report. A run past `timeout_s` is killed
    and reported as exit code -9 with no report."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return -9, None, f"killed after {timeout_s:.0f} s\n{err}"
    try:
        report = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    return r.returncode, report, r.stderr


def reset_peak_rss(pid: int) -> None:
    """Resets the process's peak RSS (VmHWM) to its current RSS, so the next reading covers
    only what follows (`echo 5 > /proc/PID/clear_refs`, Linux 4.0+; own processes only).
    Where that is refused the peak stays the one since the process started."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM of a live process: the most resident memory it had since it started (or since
    `reset_peak_rss`); None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    return f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}"


def ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"
