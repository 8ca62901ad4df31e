"""The clients of the side-by-side benchmark: each runs one measurement against whatever broker
`bootstrap` names and returns it as a `Measurement`. The same client, command line and topic
layout go to every broker; only the bootstrap address (and, for Kafka with fsync, the topic's
`flush.messages`) differ.

chronik-bench runs for a duration. Kafka's ProducerPerformance and EndToEndLatency run for a
number of messages instead: that number is the rate this client reached against this broker in
the previous round times the seconds asked for (in the first round, half the rate chronik-bench
just reached against it, or a fixed guess), so every run lasts about the same time."""

from __future__ import annotations

from dataclasses import dataclass

from . import kafka_tools
from .common import BENCH, Measurement, run_json


@dataclass
class Workload:
    """What a scenario sends: the same for every client and broker."""
    message_size: int
    acks: str  # "1" or "all"
    partitions: int
    replication_factor: int = 1
    # chronik-bench: producers with one message in flight each.
    concurrency: int = 128
    # chronik-bench roundtrip: messages per second over all producers (0: as fast as it goes).
    rate: int = 0
    # chronik-bench: value bytes per partition in one request (its --batch-size).
    batch_size: int = 16384


@dataclass
class RunContext:
    bootstrap: str
    topic: str
    seconds: int
    workload: Workload
    # msg/s this client reached against this broker in the previous round, if any.
    previous_rate: float | None = None
    # msg/s chronik-bench reached against this broker in this round, if it ran first.
    chronik_bench_rate: float | None = None
    # consume scenarios: messages already in the topic.
    messages_in_topic: int = 0


def _from_bench_report(rc: int, report: dict | None, err: str) -> Measurement:
    if report is None:
        return Measurement(False, error=f"exit {rc}: {err.strip()[-600:]}")
    lat = report.get("latency_us") or {}
    verify = report.get("verify") or {}
    ok = rc == 0 and bool(verify.get("ok", True)) and not report.get("failed")
    error = "" if ok else f"exit {rc}, failed {report.get('failed', 0)}, verify: {verify.get('detail', '?')}"
    return Measurement(ok, msgs_per_s=float(report.get("msgs_per_s", 0)), mb_per_s=float(report.get("mb_per_s", 0)),
                       p50_ms=lat["p50"] / 1000 if "p50" in lat else None,
                       p99_ms=lat["p99"] / 1000 if "p99" in lat else None,
                       count=int(report.get("measured", 0)), error=error)


def _bench(ctx: RunContext, *args: str) -> list[str]:
    return [str(BENCH), "--bootstrap-servers", ctx.bootstrap, "--topic", ctx.topic, "--json", *args]


def _run_kafka_tool(ctx: RunContext, cmd: list[str], parse) -> Measurement:
    """Runs one of Kafka's perf tools and parses its output; a failed run is a failed measurement."""
    rc, out, err = kafka_tools.run_tool(cmd, ctx.seconds * 8 + 120)
    m = parse(out)
    if rc != 0 or not m.ok:
        return Measurement(False, error=f"exit {rc}: {m.error} {err.strip()[-600:]}")
    return m


def _planned_messages(ctx: RunContext, first_guess: float, use_hint: bool) -> int:
    """Messages for a run of about `ctx.seconds`. Half chronik-bench's rate errs on the short
    side: the Java producer batches differently, and an overlong first round costs more time
    than a short one costs accuracy (later rounds use this client's own rate)."""
    rate = ctx.previous_rate
    if not rate and use_hint and ctx.chronik_bench_rate:
        rate = ctx.chronik_bench_rate * 0.5
    return max(1_000, int((rate or first_guess) * ctx.seconds))


class Client:
    name = ""
    # What it does in the scenarios that use it (a client name can serve several).
    role = ""
    # What the client measures, for the report's method section.
    what = ""
    # Partitions of the topic it runs on (None: the scenario's).
    partitions: int | None = None

    def run(self, ctx: RunContext) -> Measurement:
        raise NotImplementedError


class ChronikBenchProduce(Client):
    name = "chronik-bench"
    role = "produce"
    what = ("`--concurrency` producers with one message in flight each, coalesced into one pipelined "
            "connection per broker (linger 0, 16 KiB batches); latency from send to acknowledgement of "
            "every message (HDR histogram); every acknowledged message is checked stored (`--verify count`)")

    def run(self, ctx: RunContext) -> Measurement:
        w = ctx.workload
        cmd = _bench(ctx, "--duration", str(ctx.seconds), "--warmup", "1", "--concurrency", str(w.concurrency),
                     "--message-size", str(w.message_size), "--acks", w.acks, "--partitions", str(w.partitions),
                     "--replication-factor", str(w.replication_factor), "--verify", "count")
        return _from_bench_report(*run_json(cmd, ctx.seconds * 4 + 120))


class ChronikBenchTxn(Client):
    """chronik-bench as an idempotent producer (`per_txn` None) or a transactional one committing
    every `per_txn` messages: the same command line otherwise, so their ratios compare the
    transactions alone."""
    role = "produce"

    def __init__(self, per_txn: int | None):
        self.per_txn = per_txn
        self.name = "chronik-bench-idempotent" if per_txn is None else f"chronik-bench-txn-{per_txn}"
        self.what = ("`--idempotence`, otherwise as the transactional runs" if per_txn is None else
                     f"`--transactional-id --messages-per-transaction {per_txn}`: a message is acknowledged "
                     "when its transaction commits (EndTxn), the next transaction's messages wait for it")

    def run(self, ctx: RunContext) -> Measurement:
        w = ctx.workload
        mode = ["--idempotence"] if self.per_txn is None else             ["--transactional-id", f"{ctx.topic}-tx", "--messages-per-transaction", str(self.per_txn)]
        cmd = _bench(ctx, "--duration", str(ctx.seconds), "--warmup", "1", "--concurrency", str(w.concurrency),
                     "--message-size", str(w.message_size), "--acks", w.acks, "--partitions", str(w.partitions),
                     "--batch-size", str(w.batch_size), "--replication-factor", str(w.replication_factor),
                     "--verify", "count", *mode)
        return _from_bench_report(*run_json(cmd, ctx.seconds * 4 + 120))


class ChronikBenchRoundtrip(Client):
    name = "chronik-bench"
    role = "end to end"
    what = ("`--mode roundtrip` at a fixed rate (`--rate-limit`): latency from send until a consumer's "
            "fetch returns the message")

    def run(self, ctx: RunContext) -> Measurement:
        w = ctx.workload
        cmd = _bench(ctx, "--mode", "roundtrip", "--rate-limit", str(w.rate), "--duration", str(ctx.seconds),
                     "--warmup", "1", "--concurrency", str(w.concurrency), "--message-size", str(w.message_size),
                     "--acks", w.acks, "--partitions", str(w.partitions), "--verify", "count")
        return _from_bench_report(*run_json(cmd, ctx.seconds * 4 + 120))


class ChronikBenchConsume(Client):
    name = "chronik-bench"
    role = "consume"
    what = ("`--mode consume`: reads the topic from its start to its end, 4 MiB per partition per fetch; "
            "its p50/p99 are one Fetch's round trip")

    def run(self, ctx: RunContext) -> Measurement:
        cmd = _bench(ctx, "--mode", "consume", "--duration", str(ctx.seconds * 6 + 30))
        return _from_bench_report(*run_json(cmd, ctx.seconds * 8 + 120))


class KafkaProducerPerf(Client):
    name = "kafka-producer-perf-test"
    role = "produce"
    what = ("Kafka's ProducerPerformance, unthrottled, with the Java producer's defaults (linger 5 ms, "
            "16 KiB batches, idempotence); latency from send() to its callback, in whole ms, of the "
            "steady state after one second's worth of warm-up messages")

    def run(self, ctx: RunContext) -> Measurement:
        w = ctx.workload
        records = _planned_messages(ctx, 50_000, use_hint=True)
        warmup = max(1, records // (ctx.seconds + 1))
        cmd = kafka_tools.producer_cmd(ctx.bootstrap, ctx.topic, records + warmup, w.message_size, w.acks, warmup)
        return _run_kafka_tool(ctx, cmd, kafka_tools.parse_producer)


class KafkaConsumerPerf(Client):
    name = "kafka-consumer-perf-test"
    role = "consume"
    what = ("Kafka's ConsumerPerformance: one group member reading the whole topic (1 MiB fetches); "
            "its fetch.* rates, which leave out the time the group took to form")

    def run(self, ctx: RunContext) -> Measurement:
        cmd = kafka_tools.consumer_cmd(ctx.bootstrap, ctx.topic, ctx.messages_in_topic)
        return _run_kafka_tool(ctx, cmd, kafka_tools.parse_consumer)


class KafkaEndToEnd(Client):
    name = "kafka-e2e-latency"
    role = "end to end"
    what = ("Kafka's EndToEndLatency: one message at a time (send, wait for the acknowledgement, poll "
            "until it is read back) on a one-partition topic, as the tool creates it; p50/p99 in whole "
            "ms rounded down, msg/s from its average")
    partitions = 1

    def run(self, ctx: RunContext) -> Measurement:
        w = ctx.workload
        messages = _planned_messages(ctx, 500, use_hint=False)
        cmd = kafka_tools.e2e_cmd(ctx.bootstrap, ctx.topic, messages, w.message_size, w.acks)
        return _run_kafka_tool(ctx, cmd, lambda out: kafka_tools.parse_e2e(out, messages, w.message_size))
