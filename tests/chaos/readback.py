"""The final state, read after every fault is healed and the producers stopped.

Two views, compared by the checker:
  - what clients read: each partition consumed from offset 0 to its high watermark, from its
    leader, through the Kafka API (the only way a client sees the log);
  - what each replica holds: every node's WAL files for the partition, read directly (the Kafka
    API only serves a partition from its leader, so this is the only way to see a follower's copy).
    The WAL is read once every replica holds the whole range below the high watermark (or a
    deadline passes), and again after all nodes are stopped with SIGTERM, so the files are final.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from . import walread
from .history import ACKED, Attempt, compact_value

Log = dict[int, list[tuple[int, bytes]]]


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-readback", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "socket.timeout.ms": 10000,
                     "fetch.max.bytes": 8 << 20})


def high_watermarks(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30) -> dict[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        c = _consumer(bootstrap)
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in range(partitions)}
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            c.close()


def wait_high_watermarks(bootstrap: str, topic: str, partitions: int, attempts: list[Attempt],
                         timeout_s: float = 60) -> dict[int, int]:
    """High watermarks once they cover every acknowledged offset (right after a leader change a
    new leader's high watermark may trail until its followers fetched); at the deadline, whatever
    they are then (the checker then reports what is missing)."""
    need = {p: 0 for p in range(partitions)}
    for a in attempts:
        if a.outcome == ACKED and a.offset is not None:
            need[a.partition] = max(need[a.partition], a.offset + 1)
    deadline = time.monotonic() + timeout_s
    while True:
        hws = high_watermarks(bootstrap, topic, partitions)
        if all(hws[p] >= need[p] for p in range(partitions)) or time.monotonic() > deadline:
            return hws
        time.sleep(0.5)


def consume_all(bootstrap: str, topic: str, hws: dict[int, int], timeout_s: float = 180) -> Log:
    got: dict[int, dict[int, bytes]] = {p: {} for p in hws}
    top = {p: -1 for p in hws}
    c = _consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, p, 0) for p in hws])
        deadline = time.monotonic() + timeout_s
        while any(top[p] < hws[p] - 1 for p in hws) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                p, off = m.partition(), m.offset()
                if off < hws[p]:
                    got[p][off] = compact_value(m.value())
                top[p] = max(top[p], off)
    finally:
        c.close()
    return {p: sorted(got[p].items()) for p in got}


def replica_logs(data_dirs: dict[int, object], topic: str, partitions: int) -> dict[int, Log]:
    out: dict[int, Log] = {}
    for node, d in data_dirs.items():
        out[node] = {}
        for p in range(partitions):
            out[node][p] = [(o, compact_value(v)) for o, v in walread.partition_records(d, topic, p)]
    return out


def wait_replicas(data_dirs: dict[int, object], topic: str, hws: dict[int, int], timeout_s: float = 30) -> None:
    """Until every replica's WAL holds offsets up to its high watermark (followers fetch on their
    own schedule), bounded; the checker reports any replica still short."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = replica_logs(data_dirs, topic, len(hws))
        if all(sum(1 for o, _ in logs[n][p] if o < hws[p]) >= hws[p] for n in logs for p in hws):
            return
        time.sleep(0.5)
