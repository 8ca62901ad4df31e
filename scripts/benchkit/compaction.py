"""The log cleaner's scenarios of `make bench` (issue 19): how fast the cleaner compacts, and what
it costs acks=all produce latency while it works.

Both fill a compacted topic (3 partitions, `--keys` 3,000 keys, 1 KiB values, acks=1) with many
versions of each key, so nearly everything written is superseded and the cleaner has real work:
read the dirty section into its key map, then read every segment again and write what survives.
What the cleaner did is read from the broker itself: its `log cleaned` lines (bytes read, time
taken, per clean) and its `chronik_log_cleaner_bytes_read_total` counter."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from .common import BENCH, run_json, settle
from .topics import create_topic

# Bytes of keyed values written into the compacted topic before measuring.
FILL_BYTES = 300_000_000
FILL_MESSAGE_BYTES = 1024
KEYS = 3000
# Small segments (Kafka's minimum is 1 MiB with internal.segment.bytes) so that cleaning starts
# while the fill runs and covers many segments; Kafka's default dirty ratio (0.5).
COMPACTED_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(16 << 20)}
# The budget the p99 scenario gives the cleaner (--log-cleaner-io-max-bytes-per-second).
P99_IO_BUDGET = 20_000_000

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
CLEANED_RE = re.compile(r"log cleaned.*?\bbytes_read=(\d+).*?\bms=(\d+)")


def fill(s, brokers: list, topic: str, configs: dict[str, str]) -> tuple[int, dict | None, str]:
    """Creates a compacted topic and writes FILL_BYTES of keyed versions into it (acks=1)."""
    boot = ",".join(b.addr for b in brokers)
    create_topic(boot, topic, 3, -1, configs)
    cmd = [str(BENCH), "--bootstrap-servers", boot, "--topic", topic, "--json", "--acks", "1",
           "--message-size", str(FILL_MESSAGE_BYTES), "--keys", str(KEYS), "--batch-size", "262144",
           "--linger-ms", "5", "--concurrency", "256", "--messages", str(FILL_BYTES // FILL_MESSAGE_BYTES),
           "--verify", "count"]
    print(f"bench: {s.name}: fill: {' '.join(cmd[1:])} ({configs})", flush=True)
    return run_json(cmd, 900)


def cleaner_bytes_read(broker) -> int:
    """The broker's chronik_log_cleaner_bytes_read_total (0 before the first clean)."""
    with urllib.request.urlopen(f"http://{broker.http}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^chronik_log_cleaner_bytes_read_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def cleans(broker) -> list[tuple[int, int, float]]:
    """(bytes read, ms, end as a Unix time) of every clean the broker logged so far."""
    out = []
    for line in Path(broker.workdir / "broker.stderr").read_text(errors="replace").splitlines():
        line = ANSI_RE.sub("", line)
        m = CLEANED_RE.search(line)
        if m:
            end = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
            out.append((int(m.group(1)), int(m.group(2)), end))
    return out


def busy_seconds(done: list[tuple[int, int, float]], start: float, end: float) -> float:
    """How long the cleaner spent cleaning within [start, end] (Unix times)."""
    return sum(max(0.0, min(e, end) - max(e - ms / 1000, start)) for _, ms, e in done)


def wait_idle(broker, quiet_s: float = 5.0, start_s: float = 60.0, limit_s: float = 900.0) -> None:
    """Until the cleaner has cleaned (its read counter moved; up to `start_s`) and then not read
    for `quiet_s`: every log is clean enough."""
    last, since, deadline = 0, time.monotonic(), time.monotonic() + limit_s
    first_deadline = time.monotonic() + start_s
    while time.monotonic() < deadline:
        now = cleaner_bytes_read(broker)
        if now != last:
            last, since = now, time.monotonic()
        elif last == 0 and time.monotonic() > first_deadline:
            return
        elif last and time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)


def run_cleaner_throughput(s, brokers: list, seconds: int, workdir: Path) -> tuple[int, dict | None, str]:
    """Fills the compacted topic with the cleaner unthrottled, waits until it has nothing left to
    clean, and reports its speed: bytes it read ÷ time it spent cleaning, from its own log. The
    report is the fill's, with a `cleaner` section."""
    b = brokers[0]
    rc, report, err = fill(s, brokers, f"bench-{s.name}-compacted", COMPACTED_CONFIGS)
    if rc != 0 or report is None:
        return rc or 1, report, err
    wait_idle(b)
    done = cleans(b)
    read, took_ms = sum(r for r, _, _ in done), sum(t for _, t, _ in done)
    report["cleaner"] = {
        "cleans": len(done),
        "read_mb": read / 1e6,
        "cleaning_s": took_ms / 1000,
        "mb_per_s": read / 1e6 / max(took_ms / 1000, 1e-3),
        "written_mb": FILL_BYTES / 1e6,
    }
    print(f"bench: {s.name}: {json.dumps(report['cleaner'])}", flush=True)
    return rc, report, err


def run_cleaner_p99(s, brokers: list, seconds: int, workdir: Path) -> tuple[int, dict | None, str]:
    """acks=all produce p99 (into a topic of its own) right after FILL_BYTES were written to a
    compacted topic the cleaner may not touch yet (min.cleanable.dirty.ratio=1: the same scenario
    without the cleaner), then right after the same was written to a second compacted topic, while
    the cleaner (at P99_IO_BUDGET) works through it. The report is the second producer run's, with
    a `cleaner_p99` section: both p99s, their ratio, and how long the cleaner cleaned during it."""
    b = brokers[0]
    produce = [str(BENCH), "--bootstrap-servers", b.addr, "--topic", f"bench-{s.name}", "--verify", "count",
               "--json", *s.args]
    runs = {}
    for name, configs in (("without", {**COMPACTED_CONFIGS, "min.cleanable.dirty.ratio": "1"}),
                          ("with", COMPACTED_CONFIGS)):
        rc, filled, err = fill(s, brokers, f"bench-{s.name}-{name}", configs)
        if rc != 0 or filled is None:
            return rc or 1, filled, err
        settle()
        print(f"bench: {s.name}: {name} the cleaner: {' '.join(produce[1:])}", flush=True)
        read_before, started = cleaner_bytes_read(b), time.time()
        rc, report, err = run_json(produce, seconds * 4 + 120)
        if rc != 0 or report is None:
            return rc or 1, report, err
        ended = time.time()
        if name == "with":
            wait_idle(b, start_s=0)  # so that the cleans that overlapped the run are logged
        report["cleaner_busy_s"] = busy_seconds(cleans(b), started, ended)
        report["cleaner_read_mb"] = (cleaner_bytes_read(b) - read_before) / 1e6
        report["run_s"] = ended - started
        runs[name] = report
    without, loaded = runs["without"], runs["with"]
    loaded["cleaner_p99"] = {
        "p99_alone_us": without["latency_us"]["p99"],
        "p99_with_cleaner_us": loaded["latency_us"]["p99"],
        "ratio": loaded["latency_us"]["p99"] / max(without["latency_us"]["p99"], 1),
        "cleaner_busy_s": loaded["cleaner_busy_s"],
        "cleaner_busy_without_s": without["cleaner_busy_s"],
        "run_s": loaded["run_s"],
        "io_budget_mb_per_s": P99_IO_BUDGET / 1e6,
    }
    print(f"bench: {s.name}: {json.dumps(loaded['cleaner_p99'])}", flush=True)
    return rc, loaded, err


def report_lines(name: str, r: dict) -> list[str]:
    """The line under the scenario table for a cleaner scenario's report."""
    if (c := r.get("cleaner")) is not None:
        return ["", f"{name}: the cleaner read {c['read_mb']:,.0f} MB in {c['cleans']} cleans taking "
                f"{c['cleaning_s']:.1f} s: {c['mb_per_s']:,.0f} MB/s unthrottled, compacting {c['written_mb']:,.0f} MB "
                f"of {KEYS:,} keys × 1 KiB versions (written at acks=1 while it cleaned)."]
    if (c := r.get("cleaner_p99")) is not None:
        return ["", f"{name}: acks=all p99 {c['p99_alone_us'] / 1000:.2f} ms after {FILL_BYTES // 1_000_000} MB "
                f"went into a compacted topic the cleaner may not clean yet, {c['p99_with_cleaner_us'] / 1000:.2f} ms "
                f"after the same went into one it cleans (budget {c['io_budget_mb_per_s']:.0f} MB/s; cleaning "
                f"{c['cleaner_busy_s']:.1f} of the run's {c['run_s']:.1f} s, against "
                f"{c['cleaner_busy_without_s']:.1f} s in the first run): ratio {c['ratio']:.2f} (target ≤ 1.3)."]
    return []
