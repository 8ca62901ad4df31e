#!/usr/bin/env python3
"""A/B two (or more) broker binaries on this noisy machine: interleaved rounds, a fresh broker and
data directory per run, one chronik-bench command line for all, medians at the end.

    cp target/release/chronik-server /tmp/server-before     # then change and rebuild
    python3 scripts/ab.py --rounds 3 --bench-args "--partitions 3 --duration 4 --warmup 1" \
        /tmp/server-before target/release/chronik-server

Interleaving (A B A B ...) is what makes the ratio trustworthy: the disk and the CPUs of this VM
change speed by 2x within minutes, so runs of A and B must alternate in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import settle

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "target" / "release" / "chronik-bench"
READY_RE = re.compile(r"kafka=(\S+)")
RUN_TIMEOUT_S = 600


def one_run(server: str, data_dir: Path, bench_args: list[str]) -> dict | None:
    broker = subprocess.Popen([server, "standalone", "--data-dir", str(data_dir), "--kafka-addr", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "CHRONIK_HTTP_ADDR": "127.0.0.1:0"})
    try:
        assert broker.stdout is not None
        m = READY_RE.search(broker.stdout.readline())
        if not m:
            print(f"{server}: no ready line", file=sys.stderr)
            return None
        out = subprocess.run([str(BENCH), "-b", m.group(1), "--topic", "ab", "--json", *bench_args],
                             capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        if out.returncode != 0:
            print(f"{server}: chronik-bench exit {out.returncode}: {out.stderr[-500:]}", file=sys.stderr)
        try:
            return json.loads(out.stdout)
        except json.JSONDecodeError:
            return None
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench-args", default="--partitions 3 --duration 4 --warmup 1")
    ap.add_argument("servers", nargs="+")
    args = ap.parse_args()
    if not BENCH.exists():
        ap.error(f"{BENCH} is missing: cargo build --release --bin chronik-bench")
    results: dict[str, list[dict]] = {s: [] for s in args.servers}
    base = Path(tempfile.mkdtemp(prefix="chronik-ab-", dir=REPO / "target"))
    try:
        n = 0
        for _ in range(args.rounds):
            for s in args.servers:
                n += 1
                settle()
                r = one_run(s, base / f"run{n}", shlex.split(args.bench_args))
                # Each run starts from the same state: no earlier run's files in the page cache.
                shutil.rmtree(base / f"run{n}", ignore_errors=True)
                if r:
                    results[s].append(r)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for s, rs in results.items():
        if not rs:
            print(f"{s}: no results")
            continue
        med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
        print(f"{s}: median {med(lambda r: r['msgs_per_s']):,.0f} msg/s, {med(lambda r: r['mb_per_s']):.1f} MB/s, "
              f"p99 {med(lambda r: r['latency_us']['p99']) / 1000:.2f} ms; runs "
              f"{[round(r['msgs_per_s']) for r in rs]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
