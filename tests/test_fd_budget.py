"""File descriptors (issue 21): a partition costs one descriptor, whatever its segment count.

A broker runs under a hard `ulimit -n` far below the number of segment files its partitions
hold. Sealed segments keep no descriptor (only the active segment of each partition does);
reads open them through a cache bounded by --max-open-segment-files. Before that, every segment
kept its file open, and this broker ran out of descriptors while writing.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ANSI_ESCAPE_RE, Broker
from helpers import unique_topic

pytestmark = [
    pytest.mark.chronik_only("--max-open-segment-files and the fd budget are Chronik's"),
    pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)"),
]

PARTITIONS = 100
ROUNDS = 48  # messages per partition, one per batch
VALUE_BYTES = 1000
SEGMENT_BYTES = 4096  # ~4 batches a segment: ~12 segments a partition, ~1,200 in all
NOFILE = 600  # soft and hard: the broker can raise nothing
CACHE = 32
MAX_CONNECTIONS = 64
# Segments a partition may hold open beyond its active one: one just rolled, until its seal.
SEAL_SLACK = 16


class LimitedBroker(Broker):
    """A broker started under `prlimit --nofile=NOFILE:NOFILE` (prlimit execs it: same pid)."""

    def command(self, kafka_addr):
        return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"] + super().command(kafka_addr)


def open_segment_files(pid: int, data_dir: Path) -> int:
    """Segment files (`*.log`) the process has open now."""
    n = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except FileNotFoundError:
            continue  # closed meanwhile
        if target.startswith(str(data_dir)) and ".log" in target:
            n += 1
    return n


def segment_files_on_disk(data_dir: Path, topic: str) -> int:
    return sum(1 for _ in (data_dir / "wal" / topic).glob("*/*.log"))


def metric(broker: Broker, name: str) -> float:
    text = urllib.request.urlopen(f"http://{broker.http}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def write(bootstrap: str, topic: str) -> None:
    """ROUNDS rounds of one message to every partition; each round is flushed, so each message
    is a batch of its own and the segments roll every few of them."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 60_000})
    failed = []
    for r in range(ROUNDS):
        for i in range(PARTITIONS):
            p.produce(topic, value=value(i, r), partition=i,
                      on_delivery=lambda err, _m: err is not None and failed.append(err))
        assert p.flush(60) == 0, "messages left undelivered"
        assert not failed, failed[:3]


def value(partition: int, n: int) -> bytes:
    head = f"{partition}:{n}:".encode()
    return head + b"x" * (VALUE_BYTES - len(head))


def read_all(bootstrap: str, topic: str, check) -> int:
    """Reads every partition from offset 0 and checks each value; calls `check()` as it goes."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                  "max.partition.fetch.bytes": 8 * 1024})
    c.assign([TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
    seen = {i: 0 for i in range(PARTITIONS)}
    total = PARTITIONS * ROUNDS
    got = 0
    deadline = time.monotonic() + 180
    try:
        while got < total:
            assert time.monotonic() < deadline, f"read {got} of {total} messages"
            for m in c.consume(500, timeout=1.0):
                assert m.error() is None, m.error()
                p = m.partition()
                assert m.offset() == seen[p], (p, m.offset(), seen[p])
                assert m.value() == value(p, seen[p])
                seen[p] += 1
                got += 1
            check()
    finally:
        c.close()
    return got


def test_many_segments_under_a_small_descriptor_limit(tmp_path):
    b = LimitedBroker(tmp_path / "b", name="limited",
                      args=["--max-open-segment-files", str(CACHE),
                            "--max-connections", str(MAX_CONNECTIONS)])
    try:
        b.start()
        log = ANSI_ESCAPE_RE.sub("", b.stderr_path.read_text())
        assert "file descriptor limit" in log and f"limit={NOFILE}" in log, log[-2000:]
        assert metric(b, "chronik_wal_max_open_segment_files") == CACHE

        topic = unique_topic("fds")
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        f = a.create_topics([NewTopic(topic, PARTITIONS, 1, config={
            "internal.segment.bytes": str(SEGMENT_BYTES)})], operation_timeout=60)
        f[topic].result(90)
        peak = 0

        def check():
            """Segment files open now are within the bound: an active segment per partition
            hosted (this topic's and the internal ones'), a few being sealed, the cache."""
            nonlocal peak
            hosted = len(list((b.data_dir / "wal").glob("*/*")))
            n = open_segment_files(b.pid, b.data_dir)
            peak = max(peak, n)
            assert n <= hosted + SEAL_SLACK + CACHE, f"{n} segment files open, {hosted} partitions"

        write(b.bootstrap, topic)
        check()
        on_disk = segment_files_on_disk(b.data_dir, topic)
        # The old design held every one of them open: more than the limit allows.
        assert on_disk > NOFILE, f"only {on_disk} segments: the test would not catch the old design"
        assert read_all(b.bootstrap, topic, check) == PARTITIONS * ROUNDS
        assert metric(b, "chronik_wal_open_segment_files") <= CACHE
        fds = len(os.listdir(f"/proc/{b.pid}/fd"))
        print(f"\n{on_disk} segment files on disk; at most {peak} open at once; "
              f"{fds} descriptors in all after the reads")

        # A clean restart recovers every partition without opening its sealed segments.
        b.restart()
        check()
        assert read_all(b.bootstrap, topic, check) == PARTITIONS * ROUNDS
        assert "cannot hold" not in ANSI_ESCAPE_RE.sub("", b.stderr_path.read_text())
    finally:
        b.cleanup()
