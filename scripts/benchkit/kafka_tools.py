"""Kafka's own performance tools from kafka-tools 4.4.0, the classes behind
kafka-producer-perf-test.sh, kafka-consumer-perf-test.sh and kafka-e2e-latency.sh (with 4.4's
option names: --bootstrap-server, --command-property, --num-records; the older ones are
deprecated there), run with `java -cp 'tests/reference/lib/*'` and the JVM settings of those
scripts (512 MiB heap, G1), and parsers of what they print. Their figures are converted to this
report's units: MB = 10^6 bytes (the tools print MiB), latencies in ms."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .common import Measurement
from .kafka_broker import JAVA, LIB

HERE = Path(__file__).resolve().parent
TOOLS_LOG4J = HERE / "log4j2-tools.properties"
# kafka-producer-perf-test.sh and friends: KAFKA_HEAP_OPTS=-Xmx512M, and kafka-run-class.sh's
# KAFKA_JVM_PERFORMANCE_OPTS.
TOOL_JVM_OPTS = os.environ.get(
    "BENCH_KAFKA_TOOL_JVM_OPTS",
    "-Xmx512m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
    "-XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true").split()
MIB_IN_MB = 1024 * 1024 / 1e6

PRODUCER = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER = "org.apache.kafka.tools.ConsumerPerformance"
E2E = "org.apache.kafka.tools.EndToEndLatency"


def java(main: str, *args: str) -> list[str]:
    return [JAVA, *TOOL_JVM_OPTS, f"-Dlog4j2.configurationFile={TOOLS_LOG4J}", "-cp", f"{LIB}/*", main, *args]


def run_tool(cmd: list[str], timeout_s: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a run past its deadline is killed (exit -9)."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -9, out, f"killed after {timeout_s:.0f} s"
    return r.returncode, r.stdout, r.stderr


# ------------------------------------------------------------------ ProducerPerformance
def producer_cmd(bootstrap: str, topic: str, records: int, size: int, acks: str, warmup_records: int) -> list[str]:
    """Unthrottled (--throughput -1), the producer's defaults otherwise (Kafka 4: linger.ms 5,
    batch.size 16 KiB, idempotence on, 5 requests in flight per connection)."""
    args = ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(records),
            "--record-size", str(size), "--throughput", "-1", "--command-property", f"acks={acks}"]
    if warmup_records > 0:
        args += ["--warmup-records", str(warmup_records)]
    return java(PRODUCER, *args)


PRODUCER_TOTAL_RE = re.compile(
    r"(?P<count>\d+)(?P<steady> steady state)? records sent, (?P<rate>[\d.]+) records/sec "
    r"\((?P<mib>[\d.]+) MB/sec\), (?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, "
    r"(?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th")


def parse_producer(stdout: str) -> Measurement:
    """The summary line (the steady-state one when there was a warm-up). Percentiles are whole
    milliseconds, as the tool prints them."""
    lines = [m for m in map(PRODUCER_TOTAL_RE.search, stdout.splitlines()) if m]
    if not lines:
        return Measurement(False, error="no summary line in its output")
    m = next((x for x in lines if x["steady"]), lines[-1])
    return Measurement(True, msgs_per_s=float(m["rate"]), mb_per_s=float(m["mib"]) * MIB_IN_MB,
                      avg_ms=float(m["avg"]), p50_ms=float(m["p50"]), p99_ms=float(m["p99"]),
                      count=int(m["count"]))


# ------------------------------------------------------------------ ConsumerPerformance
def consumer_cmd(bootstrap: str, topic: str, messages: int, timeout_ms: int = 30_000) -> list[str]:
    """A consumer group member reading `messages` from the earliest offset (the tool's
    defaults: 1 MiB fetch size, auto commit)."""
    return java(CONSUMER, "--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(messages),
                "--timeout", str(timeout_ms), "--hide-header")


def parse_consumer(stdout: str) -> Measurement:
    """Its CSV line: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg,
    nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec. The fetch.* rates
    are taken: they leave out the time the group took to form."""
    for line in reversed(stdout.splitlines()):
        f = [x.strip() for x in line.split(",")]
        if len(f) != 10:
            continue
        try:
            consumed, fetch_mib_s, fetch_msg_s = int(f[4]), float(f[8]), float(f[9])
        except ValueError:
            continue
        warn = "Exiting before consuming" in stdout
        return Measurement(not warn, msgs_per_s=fetch_msg_s, mb_per_s=fetch_mib_s * MIB_IN_MB, count=consumed,
                          error="timed out before reading every message" if warn else "")
    return Measurement(False, error="no result line in its output")


# ------------------------------------------------------------------ EndToEndLatency
def e2e_cmd(bootstrap: str, topic: str, messages: int, size: int, acks: str) -> list[str]:
    """One message at a time: send, wait for the acknowledgement, poll until it is read back
    (linger 0, fetch.max.wait.ms 0), then the next."""
    return java(E2E, "--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(messages),
                "--producer-acks", acks, "--record-size", str(size))


E2E_AVG_RE = re.compile(r"Avg latency: (?P<avg>[\d.]+) ms")
E2E_PCT_RE = re.compile(r"Percentiles: 50th = (?P<p50>\d+), 99th = (?P<p99>\d+), 99.9th = (?P<p999>\d+)")


def parse_e2e(stdout: str, messages: int, size: int) -> Measurement:
    """Its average (to 0.1 µs) and percentiles (whole ms, rounded down, as it prints them);
    msg/s follows from the average, since it sends one message at a time."""
    avg, pct = E2E_AVG_RE.search(stdout), E2E_PCT_RE.search(stdout)
    if not avg or not pct:
        return Measurement(False, error="no result lines in its output")
    avg_ms = float(avg["avg"])
    rate = 1000.0 / avg_ms if avg_ms > 0 else 0.0
    return Measurement(True, msgs_per_s=rate, mb_per_s=rate * size / 1e6, avg_ms=avg_ms,
                      p50_ms=float(pct["p50"]), p99_ms=float(pct["p99"]), count=messages)
