"""WAL replication with three real nodes: byte-identical replicas, ISR shrink and expand.

Frames are compared straight from each node's segment files (`data/wal/{topic}/{p}/*.log`:
a 32-byte segment header, then frames `[len u32 LE][crc u32 LE][record batch]`), over the
range below the high watermark.
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from helpers import admin, consumer, producer, wait_until

SEGMENT_HEADER = 32


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(bootstrap: str, name: str, partitions: int, rf: int) -> None:
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                         operation_timeout=30, request_timeout=30)
    fs[name].result(timeout=30)


def isr(bootstrap: str, name: str) -> dict[int, tuple[int, tuple[int, ...]]]:
    """partition -> (leader, sorted ISR)."""
    t = admin(bootstrap).list_topics(name, timeout=10).topics[name]
    return {p.id: (p.leader, tuple(sorted(p.isrs))) for p in t.partitions.values()}


def frames_below(data_dir: Path, topic: str, partition: int, end: int) -> list[bytes]:
    """Every frame (header included) of the partition's log whose batch ends below `end`."""
    out = []
    d = data_dir / "wal" / topic / str(partition)
    for seg in sorted(d.glob(f"wal_{partition}_*.log")):
        data = seg.read_bytes()
        pos = SEGMENT_HEADER
        while pos + 8 <= len(data):
            (length,) = struct.unpack_from("<I", data, pos)
            if length == 0 or pos + 8 + length > len(data):
                break
            batch = data[pos + 8:pos + 8 + length]
            base = struct.unpack_from(">q", batch, 0)[0]
            last_delta = struct.unpack_from(">i", batch, 23)[0]
            if base + last_delta < end:
                out.append(data[pos:pos + 8 + length])
            pos += 8 + length
    return out


def high_watermarks(bootstrap: str, name: str, partitions: int) -> dict[int, int]:
    c = consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def assert_identical(c, name: str, partitions: int) -> None:
    hws = high_watermarks(c.bootstrap(), name, partitions)
    for p in range(partitions):
        digests = {}
        for i, n in c.nodes.items():
            frames = frames_below(n.data_dir, name, p, hws[p])
            digests[i] = (len(frames), hashlib.sha256(b"".join(frames)).hexdigest())
        assert len(set(digests.values())) == 1, f"partition {p} below {hws[p]}: {digests}"
        count = digests[1][0]
        assert count > 0 or hws[p] == 0, f"partition {p}: no frames below {hws[p]}"


def produce_acked(bootstrap: str, name: str, n: int, partitions: int, tag: str) -> None:
    p = producer(bootstrap, **{"linger.ms": 5})
    errors = []
    for i in range(n):
        p.produce(name, value=f"{tag}{i}".encode(), partition=i % partitions,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    assert errors == [], errors[:5]


def test_three_replicas_hold_byte_identical_frames(cluster_factory):
    c = cluster_factory(3).start()
    name = topic_name("replicated")
    create(c.bootstrap(1), name, 6, 3)
    produce_acked(c.bootstrap(1), name, 50_000, 6, "m")
    hws = high_watermarks(c.bootstrap(), name, 6)
    assert sum(hws.values()) == 50_000, hws
    # Every replica has every acknowledged message below the high watermark, frame for frame.
    wait_until(lambda: all(len(frames_below(n.data_dir, name, p, hws[p])) > 0
                           for n in c.nodes.values() for p in range(6)), 20, "replicas on disk")
    assert_identical(c, name, 6)


def test_a_killed_follower_leaves_the_isr_and_rejoins_after_restart(cluster_factory):
    c = cluster_factory(3, args=["--replica-lag-time-max-ms", "1500"]).start()
    name = topic_name("isr")
    create(c.bootstrap(1), name, 3, 3)
    produce_acked(c.bootstrap(1), name, 3000, 3, "a")
    wait_until(lambda: all(v[1] == (1, 2, 3) for v in isr(c.bootstrap(1), name).values()), 20, "full ISR")
    # A follower of some partition dies: every ISR it was in shrinks, produces keep working.
    victim = 3
    c.node(victim).kill()
    alive = [1, 2]
    t0 = time.monotonic()
    wait_until(lambda: all(victim not in v[1] for v in isr(c.bootstrap(1), name).values()), 20,
               f"node {victim} out of every ISR")
    print(f"ISR shrank {time.monotonic() - t0:.1f}s after the kill")
    produce_acked(c.bootstrap(*alive), name, 3000, 3, "b")
    # Back: it catches up and rejoins.
    c.node(victim).start()
    t0 = time.monotonic()
    wait_until(lambda: all(v[1] == (1, 2, 3) for v in isr(c.bootstrap(1), name).values()), 30,
               f"node {victim} back in every ISR")
    print(f"ISR expanded {time.monotonic() - t0:.1f}s after the restart")
    produce_acked(c.bootstrap(1), name, 1000, 3, "c")
    wait_until(lambda: sum(high_watermarks(c.bootstrap(1), name, 3).values()) == 7000, 20, "all acked visible")
    assert_identical(c, name, 3)
