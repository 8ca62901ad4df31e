"""The many-partitions scenario of `make bench` (issue 21): what a node carrying thousands of
partitions costs. One standalone node with one topic of PARTITIONS partitions: CreateTopics, one
acks=all message to every partition through librdkafka, idle CPU and RSS, keyed acks=all
throughput over all of them next to the same load on 16 partitions, SIGTERM to exit, restart to
ready. Then three nodes with CLUSTER_PARTITIONS partitions at RF=3: idle CPU per node and the time
until every partition has a new leader after the node leading the most is SIGKILLed.

librdkafka is driven from the test venv (benchkit/mp_client.py, `make deps`); chronik-bench gives
the throughput figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from .chronik_broker import BrokerProcess, start_chronik
from .common import BENCH, REPO, ms, run_json, settle
from .topics import create_topic

# Smaller counts through the environment for a smoke run (tests/test_bench.py).
PARTITIONS = int(os.environ.get("BENCH_MANY_PARTITIONS", "10000"))
CLUSTER_PARTITIONS = int(os.environ.get("BENCH_CLUSTER_PARTITIONS", "3000"))
# The 16-partition comparison of the keyed throughput run.
FEW_PARTITIONS = 16
IDLE_WINDOW_S = 10.0
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
CLIENT = Path(__file__).resolve().parent / "mp_client.py"
# The targets of issue 21, by report key: (limit, "max" or "min").
TARGETS = {
    "create_s": (5.0, "max"), "produce_each_s": (5.0, "max"), "sigterm_exit_s": (3.0, "max"),
    "restart_ready_s": (3.0, "max"), "rss_mib": (256.0, "max"), "idle_cpu_pct": (2.0, "max"),
    "cluster_idle_cpu_pct_max": (3.0, "max"), "keyed_ratio": (0.5, "min"),
    # Chronik's default --broker-session-timeout-ms (6 s) + 2 s.
    "failover_s": (8.0, "max"),
}


def client(*args: str, timeout_s: float = 600) -> dict:
    out = subprocess.run([str(VENV_PYTHON), str(CLIENT), *args], capture_output=True, text=True,
                         timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"mp_client {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_cpu_pct(pids: list[int], window_s: float = IDLE_WINDOW_S) -> list[float]:
    """Percent of one core each process used over `window_s` of no client traffic."""
    before = [cpu_seconds(p) for p in pids]
    time.sleep(window_s)
    return [100 * (cpu_seconds(p) - b) / window_s for p, b in zip(pids, before)]


def keyed_throughput(boot: str, topic: str, seconds: int) -> dict | None:
    cmd = [str(BENCH), "--bootstrap-servers", boot, "--topic", topic, "--json", "--verify", "count",
           "--duration", str(seconds), "--warmup", "2", "--concurrency", "2048", "--message-size", "256",
           "--acks", "all", "--linger-ms", "5", "--keys", str(PARTITIONS * 4)]
    print(f"bench: many-partitions: {' '.join(cmd[1:])}", flush=True)
    rc, report, err = run_json(cmd, seconds * 4 + 180)
    return report if rc == 0 else None


def standalone(b: BrokerProcess, seconds: int, workdir: Path, extra: list[str]) -> dict:
    r: dict = {"partitions": PARTITIONS}
    t0 = time.monotonic()
    create_topic(b.addr, "many", PARTITIONS, -1)
    r["create_s"] = time.monotonic() - t0
    each = client("produce-each", b.addr, "many", str(PARTITIONS))
    r["produce_each_s"], r["produce_each_failed"] = each["seconds"], each["failed"]
    settle()
    r["idle_cpu_pct"] = idle_cpu_pct([b.pid])[0]
    r["rss_mib"] = rss_mib(b.pid)
    create_topic(b.addr, "few", FEW_PARTITIONS, -1)
    many, few = keyed_throughput(b.addr, "many", seconds), keyed_throughput(b.addr, "few", seconds)
    if many and few:
        r["keyed_many_msgs_per_s"], r["keyed_few_msgs_per_s"] = many["msgs_per_s"], few["msgs_per_s"]
        r["keyed_many_p99_us"], r["keyed_few_p99_us"] = many["latency_us"]["p99"], few["latency_us"]["p99"]
        r["keyed_ratio"] = many["msgs_per_s"] / max(few["msgs_per_s"], 1)
        r["report"] = many
    t0 = time.monotonic()
    b.proc.send_signal(signal.SIGTERM)
    b.proc.wait(120)
    r["sigterm_exit_s"] = time.monotonic() - t0
    b.stop()
    t0 = time.monotonic()
    again = BrokerProcess(workdir, extra)
    r["restart_ready_s"] = time.monotonic() - t0
    again.stop()
    return r


def cluster(workdir: Path) -> dict:
    nodes = start_chronik(workdir / "cluster", 3)
    try:
        boot = ",".join(n.addr for n in nodes)
        create_topic(boot, "many", CLUSTER_PARTITIONS, 3)
        client("wait-leaders", boot, "many", str(CLUSTER_PARTITIONS), "-1", "120")
        settle()
        r: dict = {"cluster_partitions": CLUSTER_PARTITIONS}
        r["cluster_idle_cpu_pct"] = idle_cpu_pct([n.pid for n in nodes])
        r["cluster_idle_cpu_pct_max"] = max(r["cluster_idle_cpu_pct"])
        counts = client("leader-counts", boot, "many", str(CLUSTER_PARTITIONS))["counts"]
        victim = max(counts, key=lambda k: counts[k])
        r["victim_led"] = counts[victim]
        node = nodes[int(victim) - 1]
        survivors = ",".join(n.addr for n in nodes if n is not node)
        node.proc.kill()
        t0 = time.monotonic()
        moved = client("wait-leaders", survivors, "many", str(CLUSTER_PARTITIONS), str(victim), "120")
        r["failover_s"] = time.monotonic() - t0 if moved["ok"] else None
        r["failover_ok"] = moved["ok"]
        return r
    finally:
        for n in nodes:
            n.stop()


def run_many_partitions(s, brokers: list, seconds: int, workdir: Path) -> tuple[int, dict | None, str]:
    if not VENV_PYTHON.exists():
        return 1, None, f"{VENV_PYTHON} is missing: run `make deps-venv`"
    r = standalone(brokers[0], seconds, workdir, s.broker_args)
    r.update(cluster(workdir))
    report = r.pop("report", {"msgs_per_s": 0, "verify": {"ok": False, "mode": "none"}})
    report["many_partitions"] = r
    print(f"bench: {s.name}: {json.dumps(r)}", flush=True)
    return 0, report, ""


def met_all(r: dict) -> bool:
    m = r.get("many_partitions", {})
    return all(m.get(k) is not None and (m[k] <= v if how == "max" else m[k] >= v) for k, (v, how) in TARGETS.items()) \
        and m.get("failover_ok", False)


def report_lines(name: str, report: dict) -> list[str]:
    m = report.get("many_partitions")
    if not m:
        return []

    def f(key: str, unit: str = "s") -> str:
        v = m.get(key)
        return "-" if v is None else f"{v:,.2f} {unit}".strip()
    return [
        "",
        f"{name}: one node, one topic of {m['partitions']:,} partitions: CreateTopics {f('create_s')}, one acks=all "
        f"message to every partition (librdkafka, linger 20 ms) {f('produce_each_s')} "
        f"({m.get('produce_each_failed', '?')} failed), idle CPU {f('idle_cpu_pct', '%')} of a core, RSS "
        f"{f('rss_mib', 'MiB')}, SIGTERM to exit {f('sigterm_exit_s')}, restart to ready {f('restart_ready_s')}; "
        f"keyed acks=all (c=2048, 256 B) over all partitions {m.get('keyed_many_msgs_per_s', 0):,.0f} msg/s (p99 "
        f"{ms(m.get('keyed_many_p99_us'))} ms), over {FEW_PARTITIONS} partitions {m.get('keyed_few_msgs_per_s', 0):,.0f} "
        f"msg/s (p99 {ms(m.get('keyed_few_p99_us'))} ms): ratio {m.get('keyed_ratio', 0):.2f}. Three nodes, "
        f"{m['cluster_partitions']:,} partitions at RF=3: idle CPU per node "
        f"{', '.join(f'{c:.1f}%' for c in m.get('cluster_idle_cpu_pct', []))}; SIGKILL of the node leading "
        f"{m.get('victim_led', '?')}: every partition has a new leader after {f('failover_s')}"
        f"{'' if m.get('failover_ok') else ' (**not all moved**)'}. Targets (issue 21): create, produce and "
        "restart ≤ 5/5/3 s, exit ≤ 3 s, RSS ≤ 256 MiB, idle ≤ 2% (≤ 3% per node at 3,000), failover ≤ session "
        f"timeout + 2 s, keyed ratio ≥ 0.5: {'met' if met_all(report) else '**not met**'}.",
    ]
