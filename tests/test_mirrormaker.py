"""Migration from Apache Kafka to Chronik with MirrorMaker 2 (issue 25, scenario 3), the path
docs/migration.md describes for operators.

A single-node Apache Kafka 4.4.0 (tests/reference) holds three topics of keyed records with
headers and explicit timestamps, a compacted topic with several updates per key, and a consumer
group `billing` that consumed part of `orders` and committed. MirrorMaker 2 (dedicated mode,
connect-mirror 4.3.1, IdentityReplicationPolicy, tests/mirrormaker.py) copies them into a
three-node Chronik cluster while the source keeps taking writes. Two faults: a Chronik node is
SIGKILLed mid-copy and restarted; MirrorMaker is SIGKILLed mid-copy and restarted.

Checks: every record arrives on Chronik with the same key, value, headers and timestamp, in order,
partition by partition, at the offset it had on Kafka up to the first record MirrorMaker copied
twice (it delivers at least once: after its SIGKILL it copies again what it copied since its last
commit; nothing may be missing); the compacted topic arrives as a compacted topic
(cleanup.policy=compact and the other set configs synced), yields the latest value of every key,
and Chronik's cleaner compacts it to one record per key; billing's offsets, translated by
MirrorMaker, let a consumer of the group on Chronik resume at or before where it stopped on Kafka
(nothing skipped), at an offset sync MirrorMaker wrote (its documented window), and a restarted
MirrorMaker never moves them back. The figures (records in and out, copy and recovery times,
re-reads) are printed (`-s`) and written to figures.json in the test's tmp dir.

It starts both clusters itself, so it runs in the default mode only. MM2_TARGET=kafka runs the
same steps against a three-node Apache Kafka target instead (a comparison, by hand).
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from conftest import Cluster, kafka_mode
from helpers import admin, consume_range, producer, wait_until, watermarks
from mirrormaker import MirrorMaker, properties
from mirrormaker import missing as mm2_missing
from reference.kafka import KafkaCluster, KafkaNode
from test_bench_side_by_side import kafka_missing

pytestmark = [pytest.mark.ecosystem,
              pytest.mark.skipif(kafka_mode(), reason="starts Apache Kafka (source) and Chronik (target) "
                                                      "itself; it runs in the default mode")]

TOPICS = ["orders", "payments", "users"]
COMPACTED = "customers"
PARTITIONS = 3
GROUP = "billing"
# Records per partition of each keyed topic, written while MirrorMaker copies: before the
# faults, while a Chronik node is down, and just before MirrorMaker is killed.
PHASE1 = 200
PHASE2 = 100
PHASE3 = 100
KEYS = 40  # keys of the compacted topic
UPDATES = 6  # values per key, the last one wins
# Where `billing` stopped on Kafka in each partition of `orders` (of PHASE1 records).
GROUP_AT = {0: 60, 1: 123, 2: 190}
OFFSET_LAG_MAX = 10
# Small segments that roll fast and any dirt cleanable: MirrorMaker copies these configs, so
# Chronik's cleaner compacts its copy within seconds too.
COMPACTED_CONFIG = {"cleanup.policy": "compact", "segment.ms": "1000", "min.cleanable.dirty.ratio": "0.01",
                    "delete.retention.ms": "1000"}
# Timestamps an hour in the past, one millisecond apart: MirrorMaker must keep them, not stamp
# the time it copied the record.
TS0 = int(time.time() * 1000) - 3_600_000
COPY_TIMEOUT_S = 180
# Translated group offsets count as settled once unchanged for this long (MirrorMaker translates
# and syncs every second here).
STABLE_S = 8


def record(topic: str, p: int, i: int) -> dict:
    return {"key": f"{topic}-k{(i * 7 + p) % 50}".encode(), "value": f"{topic}/{p}/{i}".encode(),
            "headers": [("trace", f"t-{topic}-{p}-{i}".encode()), ("seq", str(i).encode()), ("empty", b"")],
            "timestamp": TS0 + p * 100_000 + i}


def produce_keyed(bootstrap: str, start: int, end: int, batch: int = 10, pause_s: float = 0.2) -> int:
    """Records [start, end) of every partition of TOPICS, `batch` at a time with a pause between
    batches: writes that keep coming while MirrorMaker copies, as on a live cluster (and
    MirrorMaker's offset syncs, one every offset.lag.max + 1 records, keep up with them)."""
    p = producer(bootstrap, **{"linger.ms": 20})
    n = 0
    for lo in range(start, end, batch):
        for topic in TOPICS:
            for part in range(PARTITIONS):
                for i in range(lo, min(lo + batch, end)):
                    p.produce(topic, partition=part, **record(topic, part, i))
                    n += 1
        assert p.flush(60) == 0
        time.sleep(pause_s)
    return n


def produce_compacted(bootstrap: str) -> dict[bytes, bytes]:
    """KEYS keys x UPDATES values, interleaved; returns the latest value of each key."""
    p = producer(bootstrap)
    latest = {}
    for u in range(UPDATES):
        for k in range(KEYS):
            key, value = f"cust-{k}".encode(), f"cust-{k}-v{u}".encode()
            p.produce(COMPACTED, key=key, value=value, partition=k % PARTITIONS,
                      headers=[("version", str(u).encode())], timestamp=TS0 + u * 1000 + k)
            latest[key] = value
    assert p.flush(60) == 0
    return latest


def create_source_topics(bootstrap: str) -> None:
    a = admin(bootstrap)
    new = [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in TOPICS]
    new.append(NewTopic(COMPACTED, num_partitions=PARTITIONS, replication_factor=1,
                        config=COMPACTED_CONFIG))
    for f in a.create_topics(new, operation_timeout=30).values():
        f.result(timeout=30)


def consume_and_commit(bootstrap: str) -> None:
    """`billing` reads orders[p] up to GROUP_AT[p] and commits there, then leaves (the group is
    empty, as it is once an application is stopped for its cutover)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        for p, upto in GROUP_AT.items():
            c.assign([TopicPartition("orders", p, 0)])
            got = 0
            deadline = time.monotonic() + 30
            while got < upto:
                assert time.monotonic() < deadline, f"read {got} of orders[{p}] on Kafka"
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got = m.offset() + 1
        c.commit(offsets=[TopicPartition("orders", p, o) for p, o in GROUP_AT.items()], asynchronous=False)
    finally:
        c.close()


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    return {(t, p): watermarks(bootstrap, t, p)[1] for t in topics for p in range(PARTITIONS)}


def copied(source_ends: dict, target: str) -> bool:
    """Every partition of the target holds at least as many offsets as the source's end. While a
    node is down or a topic is still being created, asking may fail: not copied yet."""
    try:
        return all(watermarks(target, t, p, timeout_s=3)[1] >= end for (t, p), end in source_ends.items())
    except KafkaException:
        return False


def read_partition(bootstrap: str, topic: str, p: int) -> list:
    low, high = watermarks(bootstrap, topic, p)
    return consume_range(bootstrap, topic, p, low, high, timeout_s=60)


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}
    finally:
        c.close()


def resume_positions(bootstrap: str) -> dict[int, int]:
    """A consumer of `billing` on Chronik subscribes and reads: the first offset it gets in each
    partition is where the migrated group resumed."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                  # No committed offset would read everything again: 'earliest' shows it.
                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    first: dict[int, int] = {}
    try:
        c.subscribe(["orders"])
        deadline = time.monotonic() + 60
        while len(first) < PARTITIONS:
            assert time.monotonic() < deadline, f"the migrated group read only partitions {first}"
            m = c.poll(0.5)
            if m is not None and not m.error():
                first.setdefault(m.partition(), m.offset())
    finally:
        c.close()
    return first


def same_records(a: list, b: list, what: str) -> int:
    """Chronik's copy `b` of Kafka's partition `a`: every record of `a`, in order, with its key,
    value, headers and timestamp, and at its Kafka offset before the first duplicate. A record of
    `b` may repeat a record copied before it (a re-copy after MirrorMaker was killed). Returns
    how many records of `b` are such repeats."""
    def content(m):
        return (m.key, m.value, tuple(m.headers or ()), m.timestamp)

    seen: set = set()
    firsts = []
    for m in b:
        if content(m) in seen:
            continue
        seen.add(content(m))
        firsts.append(m)
    assert [content(m) for m in firsts] == [content(m) for m in a], f"{what}: records differ from Kafka's"
    dup = next((i for i, (x, y) in enumerate(zip(firsts, b)) if x is not y), len(firsts))
    assert [m.offset for m in b[:dup]] == [m.offset for m in a[:dup]], f"{what}: offsets differ from Kafka's"
    return len(b) - len(firsts)


def stable(read, quiet_s: float, timeout_s: float, what: str):
    """read() once it returned the same value for quiet_s."""
    deadline = time.monotonic() + timeout_s
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what} ({last})"
        time.sleep(0.5)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last


def offset_syncs(bootstrap: str, topic: str) -> dict[int, list[tuple[int, int]]]:
    """MirrorMaker's offset syncs for `topic` (mm2-offset-syncs.chronik.internal on the source):
    partition -> [(upstream offset, downstream offset)] in the order they were written. The record
    key is Connect's struct (topic: int16-length string, partition: int32), the value
    (upstream: int64, downstream: int64), both big-endian."""
    out: dict[int, list[tuple[int, int]]] = {}
    for m in read_partition(bootstrap, "mm2-offset-syncs.chronik.internal", 0):
        n = struct.unpack(">h", m.key[:2])[0]
        t = m.key[2:2 + n].decode()
        p = struct.unpack(">i", m.key[2 + n:6 + n])[0]
        if t == topic:
            out.setdefault(p, []).append(struct.unpack(">qq", m.value[:16]))
    return out


def nudge(bootstrap: str) -> None:
    """One record of a key of its own per partition of the compacted topic, stamped now: the
    append that rolls the active segment once segment.ms passed. Kafka measures that age from
    record timestamps (the new batch's against the segment's first batch's), so a record stamped
    as old as the copied ones would roll nothing there; Chronik measures it by the wall clock
    since the segment's first append (docs/migration.md, differences)."""
    p = producer(bootstrap)
    for part in range(PARTITIONS):
        p.produce(COMPACTED, key=f"nudge-{part}".encode(), value=b"nudge", partition=part,
                  headers=[("version", b"nudge")], timestamp=int(time.time() * 1000))
    assert p.flush(30) == 0


def latest_per_key(bootstrap: str) -> tuple[dict[bytes, bytes], int]:
    """The compacted topic read from its start: (latest value of each key, records read)."""
    got, n = {}, 0
    for p in range(PARTITIONS):
        for m in read_partition(bootstrap, COMPACTED, p):
            assert m.headers and m.headers[0][0] == "version", m
            got[m.key] = m.value
            n += 1
    return got, n


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    a = admin(bootstrap)
    res = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    entries = list(res.values())[0].result(timeout=30)
    return {k: v.value for k, v in entries.items()}


@pytest.mark.timeout(420)
def test_mirrormaker2_migrates_topics_compacted_topic_and_group(tmp_path: Path):
    missing = kafka_missing() or mm2_missing()
    if missing:
        pytest.skip(missing)
    figures: dict[str, object] = {"records_in": 0}
    kafka = KafkaNode(tmp_path / "kafka")
    chronik = target_cluster(tmp_path)
    mm2 = None
    try:
        t0 = time.monotonic()
        kafka.launch()
        chronik.start()
        kafka.wait_ready()
        figures["clusters_up_s"] = round(time.monotonic() - t0, 1)
        src, dst = kafka.bootstrap, chronik.bootstrap()

        create_source_topics(src)
        mm2 = MirrorMaker(tmp_path / "mm2", properties(source=src, target=dst, topics=[*TOPICS, COMPACTED],
                                                       groups=[GROUP], offset_lag_max=OFFSET_LAG_MAX))
        t_start = time.monotonic()
        mm2.start()
        wait_until(lambda: topics_exist(dst, [*TOPICS, COMPACTED]) or not mm2.alive(), COPY_TIMEOUT_S,
                   "MirrorMaker creating the topics on Chronik", interval_s=0.5)
        assert mm2.alive(), mm2.stderr_tail()
        figures["mm2_started_s"] = round(time.monotonic() - t_start, 1)

        # Writes while MirrorMaker copies; billing reads orders partway and commits.
        t_copy = time.monotonic()
        figures["records_in"] += produce_keyed(src, 0, PHASE1)
        latest = produce_compacted(src)
        figures["records_in"] += KEYS * UPDATES
        consume_and_commit(src)
        wait_copied(src, dst, mm2, "the first phase")
        figures["first_copy_s"] = round(time.monotonic() - t_copy, 1)
        # MirrorMaker translates billing's offsets and commits them on Chronik.
        wait_until(lambda: len(committed(dst, GROUP, "orders")) == PARTITIONS, 120,
                   "billing's translated offsets on Chronik", interval_s=0.5)
        translated = stable(lambda: committed(dst, GROUP, "orders"), STABLE_S, 120,
                            "billing's translated offsets to settle")
        figures["group_translated_after_s"] = round(time.monotonic() - t_copy, 1)

        kill_a_chronik_node(src, chronik, figures)
        kill_mirrormaker(src, dst, mm2, figures)
        figures["records_out"] = compare_keyed(src, dst, figures)
        figures["records_out"] += check_compacted(src, dst, latest, figures)
        figures["records_in"] += PARTITIONS  # nudge()
        check_group(src, dst, translated, figures)
        mm2.terminate()
    finally:
        print("\nMIGRATION " + json.dumps(figures))
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=1))
        if mm2 is not None:
            mm2.cleanup()
        chronik.cleanup()
        kafka.cleanup()


def target_cluster(tmp_path: Path):
    """The three-node target: Chronik, or (MM2_TARGET=kafka, for a comparison run by hand) a
    KRaft cluster of Apache Kafka 4.4.0 going through the same steps and checks. The cleaner
    looks for dirty logs every second instead of every 15 s."""
    if os.environ.get("MM2_TARGET") == "kafka":
        return KafkaCluster(tmp_path / "kafka-target", 3, properties={"log.cleaner.backoff.ms": "1000"})
    return Cluster(tmp_path / "chronik", 3, args=["--log-cleaner-backoff-ms", "1000"])


def topics_exist(bootstrap: str, topics: list[str]) -> bool:
    md = admin(bootstrap).list_topics(timeout=10)
    return all(t in md.topics and md.topics[t].error is None for t in topics)


def wait_copied(src: str, dst: str, mm2: MirrorMaker, what: str) -> None:
    ends = end_offsets(src, TOPICS)
    wait_until(lambda: copied(ends, dst) or not mm2.alive(), COPY_TIMEOUT_S,
               f"MirrorMaker copying {what}", interval_s=0.5)
    assert mm2.alive(), mm2.stderr_tail()


def kill_a_chronik_node(src: str, chronik: Cluster | KafkaCluster, figures: dict) -> None:
    """Fault: a Chronik node SIGKILLed while MirrorMaker copies the writes the source keeps
    taking; the two others take over its partitions. Then it comes back and catches up."""
    victim = chronik.node(2)
    victim.kill()
    t_kill = time.monotonic()
    figures["records_in"] += produce_keyed(src, PHASE1, PHASE1 + PHASE2)
    ends = end_offsets(src, TOPICS)
    wait_until(lambda: copied(ends, chronik.bootstrap(1, 3)), COPY_TIMEOUT_S,
               "MirrorMaker copying the second phase with node 2 down", interval_s=0.5)
    figures["copy_with_node_down_s"] = round(time.monotonic() - t_kill, 1)
    t_restart = time.monotonic()
    victim.start()
    figures["node_restart_s"] = round(time.monotonic() - t_restart, 1)
    wait_until(lambda: copied(ends, victim.bootstrap), COPY_TIMEOUT_S,
               "the restarted node serving every record", interval_s=0.5)
    figures["node_caught_up_s"] = round(time.monotonic() - t_restart, 1)


def kill_mirrormaker(src: str, dst: str, mm2: MirrorMaker, figures: dict) -> None:
    """Fault: MirrorMaker itself SIGKILLed while it copies, then started again. It resumes from
    the source offsets it committed to Chronik (mm2-offsets.kafka.internal), so what it copied
    since its last commit (chronik.offset.flush.interval.ms) is copied again: MirrorMaker
    delivers at least once."""
    t_produce = time.monotonic()
    figures["records_in"] += produce_keyed(src, PHASE1 + PHASE2, PHASE1 + PHASE2 + PHASE3)
    figures["third_phase_produce_s"] = round(time.monotonic() - t_produce, 1)
    mm2.kill()
    t_mm2 = time.monotonic()
    mm2.start()
    wait_until(lambda: mm2.source_task_committed() or not mm2.alive(), COPY_TIMEOUT_S,
               "the restarted MirrorMaker copying and committing", interval_s=0.5)
    assert mm2.alive(), mm2.stderr_tail()
    figures["mm2_copying_again_after_s"] = round(time.monotonic() - t_mm2, 1)
    wait_copied(src, dst, mm2, "the third phase after its restart")
    # What it copies again after the restart: until Chronik's end offsets stop moving.
    stable(lambda: end_offsets(dst, TOPICS), 3, COPY_TIMEOUT_S, "Chronik's end offsets to settle")
    figures["copy_after_mm2_sigkill_s"] = round(time.monotonic() - t_mm2, 1)


def compare_keyed(src: str, dst: str, figures: dict) -> int:
    """Every record, partition by partition, in order, with its key, value, headers and
    timestamp, at the offset it had on Kafka up to the first record copied twice."""
    records_out, duplicates = 0, 0
    for topic in TOPICS:
        for p in range(PARTITIONS):
            a = read_partition(src, topic, p)
            b = read_partition(dst, topic, p)
            assert len(a) == PHASE1 + PHASE2 + PHASE3
            records_out += len(b)
            duplicates += same_records(a, b, f"{topic}[{p}]")
    figures["duplicates_after_mm2_sigkill"] = duplicates
    return records_out


def check_compacted(src: str, dst: str, latest: dict, figures: dict) -> int:
    """The compacted topic arrives as a compacted topic, yields the latest value of every key,
    and Chronik's cleaner compacts it."""
    conf = topic_config(dst, COMPACTED)
    figures["compacted_config_on_chronik"] = {k: conf.get(k) for k in COMPACTED_CONFIG}
    assert conf["cleanup.policy"] == "compact", conf
    state = wait_until(lambda: (lambda s: s if s[0] == latest else None)(latest_per_key(dst)), 60,
                       "the latest value of every key of the compacted topic on Chronik", interval_s=1)
    figures["compacted_records_in"] = KEYS * UPDATES
    figures["compacted_records_on_kafka_when_read"] = latest_per_key(src)[1]
    figures["compacted_records_on_chronik_when_read"] = state[1]
    # Chronik's cleaner, with the segment.ms and min.cleanable.dirty.ratio MirrorMaker copied,
    # compacts the copy once its active segment rolled (on the next append after segment.ms, as
    # in Kafka): one more record per partition on Kafka, copied, rolls it.
    t_clean = time.monotonic()
    nudge(src)
    latest.update({f"nudge-{p}".encode(): b"nudge" for p in range(PARTITIONS)})
    state = wait_until(lambda: (lambda s: s if s[0] == latest and s[1] == len(latest) else None)(
        latest_per_key(dst)), 90, "Chronik's cleaner leaving one record per key", interval_s=1)
    figures["compacted_cleaned_after_s"] = round(time.monotonic() - t_clean, 1)
    figures["compacted_records_on_chronik_after_clean"] = state[1]
    return state[1]


def check_group(src: str, dst: str, translated: dict[int, int], figures: dict) -> None:
    """billing on Chronik resumes where MirrorMaker's translation put it: at or before where it
    stopped on Kafka, back by MirrorMaker's window only."""
    syncs = offset_syncs(src, "orders")
    figures["offset_syncs"] = {p: syncs.get(p) for p in range(PARTITIONS)}
    # The restarted MirrorMaker never moves a synced group offset back.
    now = committed(dst, GROUP, "orders")
    assert all(now[p] >= translated[p] for p in translated), (now, translated)
    resumed = resume_positions(dst)
    figures["group_on_kafka"] = GROUP_AT
    figures["group_translated_on_chronik"] = now
    figures["group_resumed_at"] = resumed
    for p, at in GROUP_AT.items():
        # The consumer on Chronik starts at the committed (translated) offset...
        assert resumed[p] == now[p], (p, resumed, now)
        # ... never past the first record billing had not processed on Kafka (nothing skipped:
        # offsets below the first re-copied record are Kafka's, compare_keyed checked) ...
        assert now[p] <= at, (p, now, GROUP_AT)
        # ... and back by MirrorMaker's window only: at an offset sync (upstream u, downstream
        # d) MirrorMaker wrote at or below where billing stopped, d + 1 when billing was past u
        # (OffsetSyncStore.translateDownstream). Syncs come every offset.lag.max + 1 records,
        # fewer when MirrorMaker coalesced them under load.
        explained = {d + (1 if u < at else 0) for u, d in syncs.get(p, []) if u <= at}
        assert now[p] in explained, (p, now[p], at, syncs.get(p))
    figures["reread"] = {p: at - resumed[p] for p, at in GROUP_AT.items()}
