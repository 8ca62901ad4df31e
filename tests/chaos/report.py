"""Writes a campaign's figures as Markdown (docs/reliability.md)."""

from __future__ import annotations

import statistics
import subprocess
import time

from . import checker
from .campaign import NODE_ARGS, TMPFS_SIZE, Result
from .history import ACKED, FAILED, UNKNOWN
from .nemesis import KINDS

MAX_LISTED = 30


def _s(x: float | None) -> str:
    return "never" if x is None else f"{x:.1f}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except Exception:
        return "?"


def render(r: Result, seed: int, hold_s: tuple[float, float], rate: float, producers: int, pad: int) -> str:
    outcomes = {k: sum(1 for a in r.attempts if a.outcome == k) for k in (ACKED, UNKNOWN, FAILED)}
    counts = checker.summarize(r.violations)
    lines = [
        "# Reliability: fault-injection campaign",
        "",
        f"Written by `make chaos` (tests/chaos/) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"commit {_commit()}, seed {seed}, {r.seconds / 60:.1f} min on the 2-core build machine (debug "
        "binaries; the machine was shared with other builds and tests, so times are pessimistic).",
        "",
        f"Setup: 3 nodes, each in its own network namespace (tests/netns.py), flags `{' '.join(NODE_ARGS)}`, "
        f"each data dir on its own {TMPFS_SIZE} tmpfs. Topic with {r.partitions} partitions, RF=3, "
        f"min.insync.replicas=2. {producers} idempotent acks=all producers (confluent-kafka) send "
        f"`producer:seq` (plus {pad} bytes of padding) round-robin over the partitions, {rate:.0f} msg/s each, "
        "for the whole run. "
        f"Faults one at a time, each held {hold_s[0]:.0f}-{hold_s[1]:.0f} s, then healed; the next one starts "
        "after every node is up and every partition's ISR is full again (at most 60 s). A disk-full fault is "
        "held until the node logs ENOSPC from something other than its high-watermark checkpoint (the WAL "
        "first fills its preallocated blocks), at most 30 s.",
        "",
        "## Summary",
        "",
        f"- Faults: {len(r.faults)}",
        f"- Messages: {len(r.attempts)} sent, {outcomes[ACKED]} acknowledged, {outcomes[UNKNOWN]} unknown "
        f"(timed out; may or may not be stored), {outcomes[FAILED]} failed",
        f"- Violations: {len(r.violations)} "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())})",
        f"- Fatal client errors (producer replaced): {len(r.fatal_client_errors)}",
        f"- Heal to full ISR: median {_s(statistics.median(r.settle_times) if r.settle_times else None)} s, "
        f"worst {_s(max(r.settle_times) if r.settle_times else None)} s",
        "",
        "## Faults by kind",
        "",
        "Unavailability is measured from acknowledgement times, in the window from the fault's start to the "
        "next fault's start. *Partition*: the longest time one partition acknowledged nothing. *Cluster*: "
        "the longest time no partition acknowledged anything. *Heal to ack*: from the heal until every "
        "partition acknowledged again. Worst (max) over the faults of that kind, median in brackets.",
        "",
        "| fault | count | partition unavailable, worst (median) s | cluster unavailable, worst s "
        "| heal to ack, worst s | notes |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        ws = [w for w in r.windows if w.kind == kind]
        fs = [f for f in r.faults if f.kind == kind]
        if not ws:
            continue
        gaps = [w.partition_gap for w in ws]
        heals = [w.heal_to_ack for w in ws]
        worst_heal = None if any(h is None for h in heals) else max(heals)
        notes = sum(len(f.notes) for f in fs)
        lines.append(f"| {kind} | {len(ws)} | {max(gaps):.1f} ({statistics.median(gaps):.1f}) "
                     f"| {max(w.cluster_gap for w in ws):.1f} | {_s(worst_heal)} | {notes} |")
    lines += ["", "## Violations", "", "| kind | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    if r.violations:
        lines += ["", f"First {min(MAX_LISTED, len(r.violations))}:", ""]
        lines += [f"- {v.kind} p{v.partition}: {v.detail}" for v in r.violations[:MAX_LISTED]]
    noted = [f for f in r.faults if f.notes]
    lines += ["", "## Fault notes", ""]
    if not noted:
        lines.append("None: every node stayed up (apart from the kills) and every fault settled in time.")
    for i, f in enumerate(r.faults):
        if f.notes:
            lines.append(f"- fault {i + 1} ({f.kind}, {f.target}): {'; '.join(f.notes)}")
    lines += [f"- read-back: {n}" for n in r.final_notes]
    if r.fatal_client_errors:
        lines += ["", "Fatal client errors:", ""] + [f"- {e}" for e in r.fatal_client_errors[:MAX_LISTED]]
    lines += ["", METHOD]
    return "\n".join(lines) + "\n"


METHOD = """## How it checks

After the last fault the producers stop, every node is brought up and the ISRs fill again; then
each partition is consumed from offset 0 to its high watermark through the Kafka API (from the
leader, the only replica a client can read), and each node's WAL segment files are read directly
(tests/chaos/walread.py, docs/wal-format.md) once they cover the high watermark and again after
every node stopped with SIGTERM. The checker (tests/chaos/checker.py, self-tested by
tests/test_chaos_checker.py with histories damaged in each way) reports:

- **lost**: acknowledged, and in no partition;
- **duplicate**: one `producer:seq` stored at more than one offset;
- **reordered**: within one producer and partition, a lower seq stored after a higher one;
- **offset-moved**: acknowledged at (partition, offset) but stored at another place;
- **divergence**: a replica's records below the high watermark differ from what clients read;
- **phantom**: a record nobody sent.

Messages whose outcome is unknown (the client gave up) may be stored or not; both are correct.

Limits: data dirs are tmpfs, where fdatasync is a no-op, so disk-full tests ENOSPC handling and
nothing here tests power loss (SIGKILL keeps the page cache too). A disk-full node gets 30 s after
the filler is deleted to recover on its own; if it does not, the campaign restarts it and notes
it above. Clock: one host, so times are comparable across nodes.
"""
