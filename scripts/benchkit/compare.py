"""Chronik and Apache Kafka side by side: each scenario runs against three broker setups one
after another (Chronik with its defaults, Kafka with its defaults, Kafka with an fsync per
append), in interleaved rounds (A B C, A B C, ...), each setup freshly started on the same
filesystem, with the same clients and parameters. Every client run gets its own new topic and
records the broker's peak RSS while it ran."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .chronik_broker import start_chronik
from .clients import (ChronikBenchConsume, ChronikBenchProduce, ChronikBenchRoundtrip, ChronikBenchTxn, Client,
                      KafkaConsumerPerf, KafkaEndToEnd, KafkaProducerPerf, RunContext, Workload)
from .common import BENCH, REPO, Measurement, peak_rss_bytes, reset_peak_rss, run_json, settle
from .kafka_broker import KafkaBrokers
from .topics import create_topic


@dataclass(frozen=True)
class Variant:
    """A broker setup: which broker, and the topic configs every topic gets."""
    name: str
    kind: str  # "chronik" or "kafka"
    topic_configs: tuple[tuple[str, str], ...]
    what: str


VARIANTS = [
    Variant("chronik", "chronik", (), "chronik-server with its default flags (`--fsync always`: a message is "
            "acknowledged once it is fdatasync'd)"),
    Variant("kafka-default", "kafka", (), "Apache Kafka 4.4.0 with its defaults: a message is acknowledged from "
            "the page cache, with no fsync"),
    Variant("kafka-flush", "kafka", (("flush.messages", "1"),), "Apache Kafka 4.4.0 with the topic config "
            "`flush.messages=1`: an fsync every append, which is what Chronik's default promises"),
]
VARIANT_NAMES = [v.name for v in VARIANTS]


@dataclass
class CompareScenario:
    name: str
    title: str
    workload: Workload
    clients: list[Client]
    nodes: int = 1
    # How the median round is chosen: "throughput" by msg/s, "latency" by p99.
    primary: str = "throughput"
    # Consume scenarios: one topic per broker and round, written before the clients read it.
    fill: bool = False
    # The client every other client's msg/s is also shown as a ratio to, per broker (None: none).
    relative_to: str | None = None


def scenarios() -> list[CompareScenario]:
    produce = [ChronikBenchProduce(), KafkaProducerPerf()]
    return [
        CompareScenario("produce-1k-acks-all", "one node, 1 KiB messages, acks=all, 3 partitions",
                        Workload(1024, "all", 3), produce),
        CompareScenario("produce-256b-acks-1", "one node, 256 B messages, acks=1, 3 partitions",
                        Workload(256, "1", 3), produce),
        CompareScenario("cluster-rf3", "three nodes, replication factor 3, 1 KiB messages, acks=all, 3 partitions",
                        Workload(1024, "all", 3, replication_factor=3), produce, nodes=3),
        CompareScenario("e2e-latency", "one node, end-to-end latency (produce → consume), 256 B messages, acks=all: "
                        "chronik-bench at a fixed 10,000 msg/s (c=64, 3 partitions), Kafka's EndToEndLatency "
                        "one message at a time (1 partition)",
                        Workload(256, "all", 3, concurrency=64, rate=10_000),
                        [ChronikBenchRoundtrip(), KafkaEndToEnd()], primary="latency"),
        CompareScenario("consume", "one node, consume throughput: 1 KiB messages in 3 partitions, written "
                        "(acks=1) before the clients read them from the start",
                        Workload(1024, "1", 3), [ChronikBenchConsume(), KafkaConsumerPerf()], fill=True),
        CompareScenario("transactions", "one node, 1 KiB messages, acks=all, 3 partitions, c=1024, 128 KiB batches: "
                        "chronik-bench idempotent, then in transactions of 100 and of 1,000 messages",
                        Workload(1024, "all", 3, concurrency=1024, batch_size=131072),
                        [ChronikBenchTxn(None), ChronikBenchTxn(100), ChronikBenchTxn(1000)],
                        relative_to="chronik-bench-idempotent"),
    ]


@dataclass
class Run:
    scenario: str
    broker: str
    client: str
    round: int
    m: Measurement


@dataclass
class Progress:
    """Rates of earlier rounds (client runs sized by message count use them) and the clock."""
    previous: dict[tuple[str, str, str], float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


# Bytes written before a consume scenario's clients read, per measured second asked for.
FILL_BYTES_PER_SECOND = 150_000_000
# More than any broker here writes per second (Kafka without fsync writes at memory speed until
# the page cache pushes back), for the free-space check: each run's data is deleted after it.
MAX_WRITE_MB_PER_S = 1_000


class Running:
    """The broker processes of one variant for one round."""

    def __init__(self, variant: Variant, nodes: int, workdir: Path):
        self.variant = variant
        self.workdir = workdir
        if variant.kind == "chronik":
            self.chronik = start_chronik(workdir, nodes)
            self.kafka = None
        else:
            self.chronik = []
            self.kafka = KafkaBrokers(workdir, nodes).start()

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap if self.kafka else ",".join(b.addr for b in self.chronik)

    @property
    def pids(self) -> list[int]:
        return self.kafka.pids if self.kafka else [b.pid for b in self.chronik]

    def stop(self) -> None:
        if self.kafka:
            self.kafka.stop()
        for b in self.chronik:
            b.stop()


def fill_topic(bootstrap: str, topic: str, w: Workload, seconds: int) -> tuple[int, str]:
    """Writes the consume scenario's messages with chronik-bench (large batches, acks=1):
    (messages written, error text or "")."""
    messages = FILL_BYTES_PER_SECOND * seconds // w.message_size
    cmd = [str(BENCH), "--bootstrap-servers", bootstrap, "--topic", topic, "--json", "--messages", str(messages),
           "--message-size", str(w.message_size), "--acks", "1", "--linger-ms", "5", "--batch-size", "524288",
           "--concurrency", "1024", "--partitions", str(w.partitions), "--verify", "none"]
    rc, report, err = run_json(cmd, 600)
    if rc != 0 or report is None or report.get("failed") or report.get("acked") != messages:
        return 0, f"fill failed (exit {rc}): {err.strip()[-400:]}"
    return messages, ""


def run_client(s: CompareScenario, v: Variant, c: Client, rnd: int, running: Running, topic: str,
               seconds: int, progress: Progress, hint: float | None, in_topic: int) -> Measurement:
    w = s.workload
    ctx = RunContext(running.bootstrap, topic, seconds, w, previous_rate=progress.previous.get((s.name, v.name, c.name)),
                     chronik_bench_rate=hint, messages_in_topic=in_topic)
    for pid in running.pids:
        reset_peak_rss(pid)
    m = c.run(ctx)
    peaks = [peak_rss_bytes(pid) for pid in running.pids]
    m.peak_rss_bytes = sum(p for p in peaks if p) or None
    if m.ok and m.msgs_per_s > 0:
        progress.previous[(s.name, v.name, c.name)] = m.msgs_per_s
    return m


def run_variant(base: Path, s: CompareScenario, v: Variant, rnd: int, seconds: int, progress: Progress,
                clients: list[Client]) -> list[Run]:
    """Starts the variant's brokers, runs every client of the scenario against them, stops them
    and deletes their data (unsynced pages of Kafka's go with the files, unwritten)."""
    workdir = base / f"{s.name}-{v.name}-r{rnd}"
    settle()
    try:
        running = Running(v, s.nodes, workdir)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - SystemExit from a Chronik start, KafkaError, ...
        keep = keep_logs(workdir)
        print(f"bench: {s.name} r{rnd} {v.name}: brokers did not start: {e}; logs kept in {keep}",
              file=sys.stderr, flush=True)
        return [Run(s.name, v.name, c.name, rnd, Measurement(False, error=f"brokers did not start: {e}"))
                for c in clients]
    runs: list[Run] = []
    try:
        configs = dict(v.topic_configs)
        hint, in_topic, shared = None, 0, None
        for c in clients:
            if s.fill and shared is None:
                shared = f"sbs-{s.name}-r{rnd}"
                create_topic(running.bootstrap, shared, s.workload.partitions, s.workload.replication_factor, configs)
                in_topic, err = fill_topic(running.bootstrap, shared, s.workload, seconds)
                if err:
                    runs += [Run(s.name, v.name, x.name, rnd, Measurement(False, error=err)) for x in clients]
                    break
                settle()
            topic = shared or f"sbs-{s.name}-{c.name}-r{rnd}"
            if not s.fill:
                create_topic(running.bootstrap, topic, c.partitions or s.workload.partitions,
                             s.workload.replication_factor, configs)
            m = run_client(s, v, c, rnd, running, topic, seconds, progress, hint, in_topic)
            if c.name == "chronik-bench" and m.ok:
                hint = m.msgs_per_s
            runs.append(Run(s.name, v.name, c.name, rnd, m))
            print(f"bench: [{(time.monotonic() - progress.started) / 60:.1f} min] {s.name} r{rnd} {v.name} "
                  f"{c.name}: {describe(m)}", flush=True)
            settle()
    except Exception as e:  # noqa: BLE001 - a failed topic creation fails this variant's round only
        print(f"bench: {s.name} r{rnd} {v.name}: {e}", file=sys.stderr, flush=True)
        done = {r.client for r in runs}
        runs += [Run(s.name, v.name, c.name, rnd, Measurement(False, error=str(e)[-600:]))
                 for c in clients if c.name not in done]
    finally:
        running.stop()
        if any(not r.m.ok for r in runs):
            keep = keep_logs(workdir)
            print(f"bench: {s.name} r{rnd} {v.name}: broker logs kept in {keep}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return runs


def keep_logs(workdir: Path) -> Path:
    """Moves the brokers' logs of a failed run to target/bench-logs/ and deletes the rest of
    its work dir (the data)."""
    dest = REPO / "target" / "bench-logs" / workdir.name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in ("broker.stderr", "kafka.stdout", "format.log"):
        for log in workdir.rglob(name):
            shutil.copy(log, dest / f"{log.parent.name}.{name}")
    shutil.rmtree(workdir, ignore_errors=True)
    return dest


def describe(m: Measurement) -> str:
    if not m.ok:
        return f"FAILED: {m.error}"
    lat = "" if m.p99_ms is None else f", p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms"
    rss = "" if m.peak_rss_bytes is None else f", peak RSS {m.peak_rss_bytes / 1e6:,.0f} MB"
    return f"{m.msgs_per_s:,.0f} msg/s, {m.mb_per_s:,.1f} MB/s{lat}{rss}"


def run_compare(base: Path, chosen: list[CompareScenario], variants: list[Variant], rounds: int, seconds: int,
                client_names: list[str] | None = None) -> list[Run]:
    """Every scenario in turn; within it `rounds` rounds of every variant in order."""
    progress = Progress()
    runs: list[Run] = []
    for s in chosen:
        clients = [c for c in s.clients if not client_names or c.name in client_names]
        if not clients:
            continue
        for rnd in range(1, rounds + 1):
            for v in variants:
                runs += run_variant(base, s, v, rnd, seconds, progress, clients)
    return runs
