"""The transactions scenario of `make bench` (issue 20): what producing in transactions costs
against the same producer without them, in one run against one broker.

The same client (chronik-bench), message size, concurrency, batching and topic layout three
times, each into a new topic of its own: an idempotent producer (acks=all), then a transactional
one committing every 100 messages, then one committing every 1,000. chronik-bench speaks the
producer's side of transactions itself (FindCoordinator for the transactional id,
InitProducerId, then per transaction AddPartitionsToTxn, the transactional Produce requests,
EndTxn once every message of it is acknowledged); a message counts as acknowledged when its
transaction commits. Every run is verified with `--verify full`: the run's range of every
partition is read back (read_committed for the transactional runs) and every committed message
must be there once and intact; its high watermarks must have moved by exactly the committed
messages plus one marker per partition per transaction."""

from __future__ import annotations

import json

from .common import BENCH, run_json, settle
from .topics import create_topic

PARTITIONS = 3
MESSAGE_BYTES = 1024
# Enough producers that a whole transaction of 1,000 messages is in flight at once, as an
# application's asynchronous sends before commitTransaction(); the idempotent run gets as many.
CONCURRENCY = 1024
# Each request carries up to 128 KiB per partition (as the throughput scenario), so that
# batching is not what limits any of the three.
BATCH_BYTES = 131072
# (name, extra chronik-bench flags), in the order they run.
MODES = [
    ("idempotent", ["--idempotence"]),
    ("txn-100", ["--transactional-id", "bench-txn-100", "--messages-per-transaction", "100"]),
    ("txn-1000", ["--transactional-id", "bench-txn-1000", "--messages-per-transaction", "1000"]),
]


def args(duration: list[str]) -> list[str]:
    """The producer flags the three runs share."""
    return [*duration, "--concurrency", str(CONCURRENCY), "--message-size", str(MESSAGE_BYTES),
            "--batch-size", str(BATCH_BYTES), "--acks", "all", "--partitions", str(PARTITIONS)]


WHAT = (f"c={CONCURRENCY}, {MESSAGE_BYTES // 1024} KiB, acks=all, {PARTITIONS} partitions, batch "
        f"{BATCH_BYTES // 1024} KiB: idempotent, then transactions of 100, then of 1,000 messages "
        "(the table's row is the last; ratios below it)")


def run(s, brokers: list, seconds: int, workdir) -> tuple[int, dict | None, str]:
    """The three runs one after another against the same broker. The report is the last run's,
    with a `transactions_vs_idempotent` section: every run's figures and the ratios to the
    idempotent run."""
    boot = ",".join(b.addr for b in brokers)
    runs = {}
    for name, extra in MODES:
        topic = f"bench-{s.name}-{name}"
        create_topic(boot, topic, PARTITIONS, -1)
        cmd = [str(BENCH), "--bootstrap-servers", boot, "--topic", topic, "--verify", "full", "--json",
               *s.args, *extra]
        settle()
        print(f"bench: {s.name}: {name}: {' '.join(cmd[1:])}", flush=True)
        rc, report, err = run_json(cmd, seconds * 4 + 180)
        if rc != 0 or report is None:
            return rc or 1, report, err
        runs[name] = report
    base = runs["idempotent"]
    summary = {}
    for name, r in runs.items():
        t = r.get("transactions") or {}
        summary[name] = {
            "msgs_per_s": r["msgs_per_s"],
            "mb_per_s": r["mb_per_s"],
            "p50_us": r["latency_us"]["p50"],
            "p99_us": r["latency_us"]["p99"],
            "ratio": r["msgs_per_s"] / max(base["msgs_per_s"], 1e-9),
            "verified": bool(r["verify"]["ok"]),
            "committed": t.get("committed"),
            "aborted": t.get("aborted"),
            "end_txn_p50_us": (t.get("end_txn_us") or {}).get("p50"),
            "end_txn_p99_us": (t.get("end_txn_us") or {}).get("p99"),
            "add_partitions_p50_us": (t.get("add_partitions_us") or {}).get("p50"),
            "concurrent_retries": t.get("concurrent_retries"),
        }
    report = runs[MODES[-1][0]]
    report["transactions_vs_idempotent"] = summary
    # Every run's verification counts, not only the reported one's.
    report["verify"]["ok"] = all(v["verified"] for v in summary.values())
    print(f"bench: {s.name}: {json.dumps(summary)}", flush=True)
    return rc, report, err


def report_lines(name: str, r: dict) -> list[str]:
    """The lines under the scenario table: each run's figures and its ratio to idempotent."""
    c = r.get("transactions_vs_idempotent")
    if not c:
        return []
    ms = lambda us: "-" if us is None else f"{us / 1000:.2f}"  # noqa: E731
    lines = ["", f"{name}: the same producer (c={CONCURRENCY}, {MESSAGE_BYTES:,} B, acks=all, {PARTITIONS} "
             "partitions) three times against one broker, each run verified (read back; read_committed for "
             "the transactional ones):", "",
             "| run | msg/s | MB/s | ÷ idempotent | p50 ms | p99 ms | transactions | EndTxn p50 / p99 ms "
             "| AddPartitionsToTxn p50 ms | CONCURRENT_TRANSACTIONS retries | verified |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run_name, v in c.items():
        txns = "-" if v["committed"] is None else f"{v['committed']:,} committed, {v['aborted']:,} aborted"
        lines.append(
            f"| {run_name} | {v['msgs_per_s']:,.0f} | {v['mb_per_s']:,.1f} | {v['ratio']:.2f} | {ms(v['p50_us'])} "
            f"| {ms(v['p99_us'])} | {txns} | {ms(v['end_txn_p50_us'])} / {ms(v['end_txn_p99_us'])} "
            f"| {ms(v['add_partitions_p50_us'])} | {'-' if v['concurrent_retries'] is None else v['concurrent_retries']} "
            f"| {'yes' if v['verified'] else '**NO**'} |")
    lines += ["", "A transactional message's latency runs from its send to its transaction's commit."]
    return lines
