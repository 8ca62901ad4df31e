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
import threading
import time
import urllib.request
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

CLEANED_RE = re.compile(r"log cleaned.*?\bbytes_read=(\d+).*?\bms=(\d+)")


def fill(s, brokers: list) -> tuple[int, dict | None, str, str]:
    """Creates the compacted topic and writes FILL_BYTES of keyed versions into it (acks=1)."""
    boot = ",".join(b.addr for b in brokers)
    topic = f"bench-{s.name}-compacted"
    create_topic(boot, topic, 3, -1, COMPACTED_CONFIGS)
    cmd = [str(BENCH), "--bootstrap-servers", boot, "--topic", topic, "--json", "--acks", "1",
           "--message-size", str(FILL_MESSAGE_BYTES), "--keys", str(KEYS), "--batch-size", "262144",
           "--linger-ms", "5", "--concurrency", "256", "--messages", str(FILL_BYTES // FILL_MESSAGE_BYTES),
           "--verify", "count"]
    print(f"bench: {s.name}: fill: {' '.join(cmd[1:])}", flush=True)
    rc, report, err = run_json(cmd, 900)
    return rc, report, err, topic


def cleaner_bytes_read(broker) -> int:
    """The broker's chronik_log_cleaner_bytes_read_total (0 before the first clean)."""
    with urllib.request.urlopen(f"http://{broker.http}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^chronik_log_cleaner_bytes_read_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def cleans(broker) -> list[tuple[int, int]]:
    """(bytes read, ms) of every clean the broker logged so far."""
    out = []
    for line in Path(broker.workdir / "broker.stderr").read_text(errors="replace").splitlines():
        m = CLEANED_RE.search(line)
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def wait_idle(broker, quiet_s: float = 5.0, limit_s: float = 600.0) -> None:
    """Until the cleaner's read counter has not moved for `quiet_s` (every log clean enough)."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        now = cleaner_bytes_read(broker)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)


def run_cleaner_throughput(s, brokers: list, seconds: int, workdir: Path) -> tuple[int, dict | None, str]:
    """Fills the compacted topic with the cleaner unthrottled, waits until it has nothing left to
    clean, and reports its speed: bytes it read ÷ time it spent cleaning, from its own log. The
    report is the fill's, with a `cleaner` section."""
    b = brokers[0]
    rc, report, err, _ = fill(s, brokers)
    if rc != 0 or report is None:
        return rc or 1, report, err
    wait_idle(b)
    done = cleans(b)
    read, took_ms = sum(r for r, _ in done), sum(t for _, t in done)
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
    """acks=all produce p99 (into a topic of its own) with the compacted topic clean, then again
    right after the compacted topic was filled, while the cleaner (at P99_IO_BUDGET) works through
    it. The report is the second producer run's, with a `cleaner_p99` section: both p99s, their
    ratio, and how much the cleaner read during the measurement."""
    b = brokers[0]
    boot = b.addr
    produce = [str(BENCH), "--bootstrap-servers", boot, "--topic", f"bench-{s.name}", "--verify", "count",
               "--json", *s.args]
    settle()
    print(f"bench: {s.name}: alone: {' '.join(produce[1:])}", flush=True)
    rc, alone, err = run_json(produce, seconds * 4 + 120)
    if rc != 0 or alone is None:
        return rc or 1, alone, err
    rc, filled, err, _ = fill(s, brokers)
    if rc != 0 or filled is None:
        return rc or 1, filled, err
    settle()
    print(f"bench: {s.name}: again, while the cleaner compacts the topic just filled", flush=True)
    read_before, started = cleaner_bytes_read(b), time.monotonic()
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(cleaner_bytes_read(b))
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        rc, loaded, err = run_json(produce, seconds * 4 + 120)
    finally:
        stop.set()
        sampler.join()
    if rc != 0 or loaded is None:
        return rc or 1, loaded, err
    elapsed = time.monotonic() - started
    read = cleaner_bytes_read(b) - read_before
    # Seconds of the run in which the cleaner read anything: it must have worked throughout.
    busy = sum(1 for a, c in zip([read_before, *samples], samples) if c > a)
    p99_alone, p99_loaded = alone["latency_us"]["p99"], loaded["latency_us"]["p99"]
    loaded["cleaner_p99"] = {
        "p99_alone_us": p99_alone,
        "p99_with_cleaner_us": p99_loaded,
        "ratio": p99_loaded / max(p99_alone, 1),
        "cleaner_read_mb": read / 1e6,
        "cleaner_mb_per_s": read / 1e6 / max(elapsed, 1e-3),
        "cleaner_busy_s": busy,
        "run_s": len(samples),
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
        return ["", f"{name}: acks=all p99 {c['p99_alone_us'] / 1000:.2f} ms alone, "
                f"{c['p99_with_cleaner_us'] / 1000:.2f} ms while the cleaner compacted (budget "
                f"{c['io_budget_mb_per_s']:.0f} MB/s; it read {c['cleaner_read_mb']:,.0f} MB, "
                f"{c['cleaner_mb_per_s']:,.1f} MB/s, busy {c['cleaner_busy_s']} of {c['run_s']} s): "
                f"ratio {c['ratio']:.2f} (target ≤ 1.3)."]
    return []
