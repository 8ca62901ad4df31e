#!/usr/bin/env python3
"""`make bench`: Chronik's standard scenarios, then Chronik and Apache Kafka side by side; writes
docs/benchmarks.md with every figure from this one run.

Chronik-only scenarios (`--seconds`, standard 30): the raw disk first (`chronik-bench disk`),
then each scenario against its own fresh release broker (fsync=always, every message verified
stored), with ratios to the disk's limits and the targets of their issues.

Side by side (`--compare-seconds`, standard 8, `--rounds`, standard 3): each scenario against
Chronik with its defaults, Apache Kafka 4.4.0 with its defaults (no fsync) and Kafka with
`flush.messages=1` (an fsync every append), one after another on the same disk, in interleaved
rounds, with chronik-bench and Kafka's own perf tools as clients (benchkit/compare.py).

    python3 scripts/bench.py                         # everything (make bench), ~45 min on 2 cores
    python3 scripts/bench.py --side-by-side --compare-seconds 3 --rounds 1 --out /tmp/x.md   # ~8 min
    python3 scripts/bench.py --only durable --only cluster --seconds 10   # Chronik-only scenarios

Standard library only, so it runs before any venv exists. The pieces live in scripts/benchkit/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path

from benchkit import chronik_suite, compare, compare_report
from benchkit.common import BENCH, REPO, SERVER, commit, machine, run_json, settle  # noqa: F401 - ab.py imports settle

# Rough wall-clock cost, for the estimate printed at the start: per Chronik-only scenario beyond
# its measured seconds (start, warm-up, verification, settling), per client run of the side-by-
# side scenarios beyond its seconds (broker start and stop shared out, JVM start, topic, settling).
SUITE_OVERHEAD_S = 12
COMPARE_OVERHEAD_S = 10


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30, help="measured seconds per Chronik-only scenario (standard: 30)")
    ap.add_argument("--compare-seconds", type=int, default=None,
                    help="seconds per client run side by side (standard: 8, or --seconds if that is smaller)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds side by side (standard: 3)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--only", action="append", help="run only this Chronik-only scenario (repeatable; "
                    "no side-by-side scenario then, unless --compare-only names one)")
    ap.add_argument("--compare-only", action="append", help="run only this side-by-side scenario (repeatable; "
                    "no Chronik-only scenario then, unless --only names one)")
    ap.add_argument("--side-by-side", action="store_true", help="only the side-by-side scenarios")
    ap.add_argument("--no-side-by-side", action="store_true", help="only the Chronik-only scenarios")
    ap.add_argument("--brokers", default=",".join(compare.VARIANT_NAMES),
                    help=f"side by side: the broker setups, in order (default: {','.join(compare.VARIANT_NAMES)})")
    ap.add_argument("--clients", help="side by side: only these clients (comma-separated, e.g. chronik-bench)")
    args = ap.parse_args()
    if args.seconds < 1 or args.rounds < 1:
        ap.error("--seconds and --rounds must be at least 1")
    if args.compare_seconds is None:
        args.compare_seconds = min(args.seconds, 8)
    if args.compare_seconds < 1:
        ap.error("--compare-seconds must be at least 1")
    if args.side_by_side and args.no_side_by_side:
        ap.error("--side-by-side and --no-side-by-side exclude each other")
    args.run_suite = not args.side_by_side and (bool(args.only) or not args.compare_only)
    args.run_compare = not args.no_side_by_side and (bool(args.compare_only) or not args.only)
    args.variants = [v for name in args.brokers.split(",") for v in compare.VARIANTS if v.name == name.strip()]
    if args.run_compare and len(args.variants) != len(args.brokers.split(",")):
        ap.error(f"--brokers: choose from {','.join(compare.VARIANT_NAMES)}")
    args.client_names = [c.strip() for c in args.clients.split(",")] if args.clients else None
    return args


def main() -> int:
    args = parse_args()
    for b in (SERVER, BENCH):
        if not b.exists():
            raise SystemExit(f"bench: {b} is missing: run `cargo build --release --workspace --bins` first")
    suite = [s for s in chronik_suite.scenarios(args.seconds) if not args.only or s.name in args.only] \
        if args.run_suite else []
    if args.run_suite and not suite:
        raise SystemExit(f"bench: no Chronik-only scenario named {args.only}")
    side = [s for s in compare.scenarios() if not args.compare_only or s.name in args.compare_only] \
        if args.run_compare else []
    if args.run_compare and not side:
        raise SystemExit(f"bench: no side-by-side scenario named {args.compare_only}")
    if side and any(v.kind == "kafka" for v in args.variants):
        from benchkit import kafka_broker
        why = kafka_broker.unavailable()
        if why:
            raise SystemExit(f"bench: Apache Kafka cannot run: {why}")
    estimate_s = sum(args.seconds + SUITE_OVERHEAD_S for _ in suite) + (90 if suite else 0) + sum(
        len(s.clients) * (args.compare_seconds + COMPARE_OVERHEAD_S) * args.rounds * len(args.variants)
        for s in side)
    print(f"bench: {len(suite)} Chronik-only scenario(s), {len(side)} side-by-side scenario(s) x "
          f"{len(args.variants)} broker setups x {args.rounds} round(s); about {estimate_s / 60:.0f} min", flush=True)

    base = Path(tempfile.mkdtemp(prefix="chronik-bench-", dir=REPO / "target"))
    try:
        disk, results, runs = None, [], []
        if suite:
            disk = measure_disk(base, args.seconds)
            results = chronik_suite.run_suite(base, suite, args.seconds)
        if side:
            check_free_space(base, compare.MAX_WRITE_MB_PER_S, args.compare_seconds)
            runs = compare.run_compare(base, side, args.variants, args.rounds, args.compare_seconds,
                                       args.client_names)
        write_report(args, disk, results, side, runs)
        print(f"bench: wrote {args.out}")
        failed = [s.name for s, rc, _ in results if rc != 0]
        failed += sorted({f"{r.scenario}/{r.broker}/{r.client}" for r in runs if not r.m.ok})
        if failed:
            print(f"bench: runs that failed or did not verify: {failed}", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def measure_disk(base: Path, seconds: int) -> dict:
    print("bench: measuring the raw disk", flush=True)
    rc, disk, err = run_json([str(BENCH), "disk", "--dir", str(base), "--seconds", "5", "--json"], 120)
    if rc != 0 or disk is None:
        print(err, file=sys.stderr)
        raise SystemExit(f"bench: disk probe failed with {rc}")
    print(f"bench: disk {json.dumps(disk)}", flush=True)
    # A scenario can write as fast as the disk takes it: refuse to start one that would fill the
    # disk (a full disk fails the broker's appends, and everything else here). Warm-up and
    # measured seconds at the disk's own bandwidth (no scenario beats it), plus 10% and 2 GB of
    # slack; each scenario's data is deleted before the next.
    check_free_space(base, float(disk["seq_fsync_mb_per_s"]), seconds)
    settle()
    return disk


def check_free_space(base: Path, mb_per_s: float, seconds: int) -> None:
    need = mb_per_s * 1e6 * (seconds + 2) * 1.1 + 2e9
    free = shutil.disk_usage(base).free
    if free < need:
        raise SystemExit(f"bench: {base} has {free / 1e9:.1f} GB free; a {seconds} s run at {mb_per_s:.0f} MB/s "
                         f"may write {need / 1e9:.1f} GB (use --seconds or --compare-seconds to shorten it)")


def write_report(args: argparse.Namespace, disk: dict | None, results: list, side: list, runs: list) -> None:
    what = []
    if results:
        what.append(f"Chronik-only scenarios: {args.seconds} s measured after 2 s of warm-up")
    if runs:
        what.append(f"side by side: about {args.compare_seconds} s per client run, {args.rounds} round(s)")
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (scripts/bench.py); do not edit by hand. Every figure below comes from",
        "one run on one machine: compare them as ratios, not with figures from other runs.",
        "",
        "| | |",
        "|---|---|",
        f"| date | {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} |",
        f"| commit | {commit()} |",
        f"| machine | {machine()} |",
        "| Chronik | release build, standalone (cluster: three nodes on this machine), `--fsync always` "
        "(acknowledged = fdatasync'd) |",
    ]
    if runs:
        lines.append("| Apache Kafka | 4.4.0, KRaft (combined nodes; three on this machine for the cluster), "
                     "its defaults, and with `flush.messages=1` |")
    lines += [f"| duration | {'; '.join(what)} |", ""]
    if runs:
        lines += compare_report.section(side, runs, args.rounds, args.compare_seconds)
    if disk is not None:
        lines += chronik_suite.disk_section(disk)
    if results:
        lines += chronik_suite.section(disk, results)
    lines += ["## Method", ""]
    if runs:
        lines += compare_report.method(side)
    if results:
        lines += ["### Method of the Chronik-only scenarios", ""] + chronik_suite.METHOD.strip("\n").splitlines() + [""]
    lines += ["Where the time goes, what was tried and what it changed: [performance.md](performance.md).", ""]
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
