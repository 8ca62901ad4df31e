"""DeleteRecords, DescribeLogDirs and DescribeProducers through real clients (confluent-kafka's
AdminClient.delete_records, kafka-python's KafkaAdminClient), on one broker and on three.

DeleteRecords moves the log start offset: ListOffsets earliest answers it, a consumer from the
beginning starts there, a fetch below it is out of range, and it survives a restart; on three
nodes every replica moves its own (followers learn it from the leader's replication fetches)
and keeps it across a restart and a leadership change.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition

from conftest import kafka_mode
from helpers import admin, consumer, create_topic, produce_all, producer, unique_topic, wait_until, watermarks

VALUE_BYTES = 200
SEGMENT_BYTES = 4096
# Small segments: Kafka's internal config, on both brokers (segment.bytes starts at 1 MiB).
SEGMENT_CONFIG = "internal.segment.bytes"


def value(i: int) -> bytes:
    return (b"%06d:" % i).ljust(VALUE_BYTES, b"d")


def fill(bootstrap: str, topic: str, n: int, partition: int = 0) -> None:
    # Few records per batch, so a 4 KiB segment holds several batches and DeleteRecords lands
    # inside a segment.
    p = producer(bootstrap, **{"linger.ms": 0, "batch.num.messages": 4})
    log = produce_all(p, topic, [(None, value(i)) for i in range(n)], partition=partition)
    assert not log.failed, log.failed[:3]


def delete_records(bootstrap: str, topic: str, offset: int, partition: int = 0, operation_timeout: float = 30):
    """confluent-kafka's delete_records: the partition's result (low_watermark) or its error.
    operation_timeout bounds the broker's wait for the replicas (DeleteRecords' timeout_ms)."""
    a = admin(bootstrap)
    fs = a.delete_records([TopicPartition(topic, partition, offset)], request_timeout=operation_timeout + 10,
                          operation_timeout=operation_timeout)
    return list(fs.values())[0].result(timeout=40)


def first_consumed_offset(bootstrap: str, topic: str) -> int:
    """The offset a consumer reading from the beginning gets first."""
    c = consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING

        def first():
            m = c.poll(0.5)
            if m is None:
                return None
            assert m.error() is None, m.error()
            return m.offset() + 1  # truthy even for offset 0

        return wait_until(first, 30, "a first message") - 1
    finally:
        c.close()


def out_of_range_below(bootstrap: str, topic: str, offset: int) -> KafkaError:
    """The error a consumer without offset reset gets for a fetch at `offset`."""
    c = consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, offset)])

        def poll_error():
            m = c.poll(0.2)
            if m is None:
                return None
            assert m.error() is not None, f"offset {m.offset()} delivered though it was deleted"
            return m.error()

        return wait_until(poll_error, 20, f"an out-of-range error at offset {offset}")
    finally:
        c.close()


def test_delete_records_moves_the_log_start_and_survives_a_restart(broker):
    b = broker
    topic = unique_topic("delrec")
    create_topic(b.bootstrap, topic, config={SEGMENT_CONFIG: str(SEGMENT_BYTES)})
    n = 200
    fill(b.bootstrap, topic, n)
    assert watermarks(b.bootstrap, topic, 0) == (0, n)

    target = 101  # inside a batch and a segment
    res = delete_records(b.bootstrap, topic, target)
    assert res.low_watermark == target
    assert watermarks(b.bootstrap, topic, 0) == (target, n)
    assert first_consumed_offset(b.bootstrap, topic) == target
    err = out_of_range_below(b.bootstrap, topic, 10)
    assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    # ListOffsets by timestamp: the earliest remaining record at or after the time, the deleted
    # ones skipped even inside the batch holding the start. (Apache Kafka 4.4 answers -1 here
    # once the log start lies inside a segment; Chronik keeps the documented meaning.)
    c = consumer(b.bootstrap)
    try:
        got = c.offsets_for_times([TopicPartition(topic, 0, 0)], timeout=10)
        assert got[0].offset == (-1 if kafka_mode() else target), got
    finally:
        c.close()

    # Beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing moves.
    with pytest.raises(KafkaException) as e:
        delete_records(b.bootstrap, topic, n + 1)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, e.value
    # Not moving backwards: an older offset changes nothing.
    assert delete_records(b.bootstrap, topic, 5).low_watermark == target

    b.restart()
    assert watermarks(b.bootstrap, topic, 0, timeout_s=30) == (target, n)
    assert first_consumed_offset(b.bootstrap, topic) == target
    if not kafka_mode():
        # Whole segments below the log start are gone; the one holding it stays.
        d = b.data_dir / "wal" / topic / "0"
        bases = sorted(int(p.name.split("_")[2].split(".")[0]) for p in d.glob("wal_0_*.log"))
        assert bases[0] <= target and (len(bases) == 1 or bases[1] > target), bases
        assert bases[0] > 0, bases
        assert (d / "log-start-offset-checkpoint").read_text().split() == ["0", str(target)]

    # -1 deletes up to the high watermark (kafka-python's delete_records this time).
    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=30000)
    try:
        out = ka.delete_records({KTopicPartition(topic, 0): -1}, timeout_ms=30000)
        got = list(out.values())[0]
        assert got["low_watermark"] == n, out
    finally:
        ka.close()
    assert watermarks(b.bootstrap, topic, 0) == (n, n)


def test_describe_log_dirs_sizes_grow_with_produce(broker):
    b = broker
    topic = unique_topic("logdirs")
    create_topic(b.bootstrap, topic, partitions=2)
    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=30000)

    def sizes() -> dict[int, int]:
        out = {}
        for broker_dirs in ka.describe_log_dirs(topic_partitions=[topic]):
            for d in broker_dirs["log_dirs"]:
                assert d["error_code"] == 0, d
                for t in d["topics"]:
                    if t["name"] == topic:
                        for p in t["partitions"]:
                            assert p["offset_lag"] == 0 and p["is_future_key"] is False, p
                            out[p["partition_index"]] = p["partition_size"]
        return out

    try:
        before = sizes()
        assert set(before) == {0, 1}, before
        fill(b.bootstrap, topic, 100, partition=0)
        wait_until(lambda: sizes()[0] >= before[0] + 100 * VALUE_BYTES, 20, "partition 0 to grow on disk")
        assert sizes()[1] == before[1]
        dirs = ka.describe_log_dirs()
        d = dirs[0]["log_dirs"][0]
        assert d["log_dir"].startswith("/"), d
        assert d["total_bytes"] > 0 and 0 < d["usable_bytes"] <= d["total_bytes"], d
        if not kafka_mode():
            assert Path(d["log_dir"]) == (b.data_dir / "wal").resolve()
    finally:
        ka.close()


def test_describe_producers_shows_an_idempotent_producer(broker):
    b = broker
    topic = unique_topic("producers")
    create_topic(b.bootstrap, topic)
    n = 37
    p = producer(b.bootstrap, **{"linger.ms": 0, "batch.num.messages": 5})
    before_ms = int(time.time() * 1000)
    assert not produce_all(p, topic, [(None, value(i)) for i in range(n)]).failed
    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=30000)
    try:
        out = ka.describe_producers([KTopicPartition(topic, 0)])
        state = out[KTopicPartition(topic, 0)]
        producers = state.active_producers
        assert len(producers) == 1, producers
        ps = producers[0]
        assert ps.producer_id >= 0 and ps.producer_epoch >= 0, ps
        # Sequences count records: the last one is n - 1.
        assert ps.last_sequence == n - 1, ps
        assert ps.last_timestamp >= before_ms - 60_000, ps
        assert ps.coordinator_epoch == -1 and ps.current_transaction_start_offset == -1, ps
    finally:
        ka.close()


# ---------------------------------------------------------------------- three nodes
def checkpoint(data_dir: Path, topic: str) -> int | None:
    f = data_dir / "wal" / topic / "0" / "log-start-offset-checkpoint"
    try:
        return int(f.read_text().split()[1])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def first_segment_base(data_dir: Path, topic: str) -> int:
    d = data_dir / "wal" / topic / "0"
    return min(int(p.name.split("_")[2].split(".")[0]) for p in d.glob("wal_0_*.log"))


def leader_of(bootstrap: str, topic: str) -> int:
    return admin(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions[0].leader


@pytest.mark.chronik_only("reads each replica's WAL directory")
def test_every_replica_moves_its_log_start_and_keeps_it(cluster_factory):
    c = cluster_factory(3).start()
    topic = unique_topic("delrec3")
    a = admin(c.bootstrap())
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                   config={SEGMENT_CONFIG: str(SEGMENT_BYTES)})],
                         operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=30)
    n = 300
    fill(c.bootstrap(), topic, n)
    target = 157
    t0 = time.monotonic()
    res = delete_records(c.bootstrap(), topic, target)
    took = time.monotonic() - t0
    # Answered once every replica's log start reached the target (Kafka's low watermark).
    assert res.low_watermark >= target, res
    print(f"DeleteRecords on 3 replicas answered in {took:.2f}s")
    for node in c.nodes.values():
        assert checkpoint(node.data_dir, topic) == target, node
        wait_until(lambda: first_segment_base(node.data_dir, topic) > 0, 10,
                   f"node {node.cluster_node_id} to delete the segments below {target}")
        assert first_segment_base(node.data_dir, topic) <= target

    # A follower restarted keeps it; so does a new leader after the old one dies.
    leader = leader_of(c.bootstrap(), topic)
    follower = next(i for i in c.nodes if i != leader)
    c.node(follower).restart()
    assert checkpoint(c.node(follower).data_dir, topic) == target
    c.node(leader).kill()
    alive = [i for i in c.nodes if i != leader]
    wait_until(lambda: leader_of(c.bootstrap(*alive), topic) in alive, 30, "a new leader")
    low, high = wait_until(lambda: watermarks(c.bootstrap(*alive), topic, 0, timeout_s=30), 30, "watermarks")
    assert (low, high) == (target, n)
    assert first_consumed_offset(c.bootstrap(*alive), topic) == target


def in_sync(bootstrap: str, topic: str) -> tuple[int, ...]:
    return tuple(sorted(admin(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions[0].isrs))


@pytest.mark.chronik_only("reads each replica's WAL directory")
def test_a_follower_behind_the_leaders_log_start_starts_again_there(cluster_factory):
    c = cluster_factory(3, args=["--replica-lag-time-max-ms", "1500"]).start()
    topic = unique_topic("delrec-behind")
    a = admin(c.bootstrap())
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                   config={SEGMENT_CONFIG: str(SEGMENT_BYTES)})],
                         operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=30)
    fill(c.bootstrap(), topic, 50)
    leader = leader_of(c.bootstrap(), topic)
    victim = next(i for i in c.nodes if i != leader)
    alive = [i for i in c.nodes if i != victim]
    c.node(victim).kill()
    wait_until(lambda: victim not in in_sync(c.bootstrap(*alive), topic), 30, f"node {victim} out of the ISR")
    # The leader rolls past where the victim stopped, then deletes everything below its high
    # watermark: it no longer holds a single offset the victim could fetch next.
    fill(c.bootstrap(*alive), topic, 200)
    try:
        delete_records(c.bootstrap(*alive), topic, -1, operation_timeout=3)
    except KafkaException as e:
        # The victim's broker may not be fenced yet: it still counts for the low watermark.
        assert e.args[0].code() == KafkaError.REQUEST_TIMED_OUT, e
    assert watermarks(c.bootstrap(*alive), topic, 0) == (250, 250)
    assert first_segment_base(c.node(leader).data_dir, topic) > 50
    fill(c.bootstrap(*alive), topic, 30)

    # Back, the victim empties its log, starts again at the leader's log start and rejoins.
    c.node(victim).start()
    wait_until(lambda: in_sync(c.bootstrap(), topic) == (1, 2, 3), 60, f"node {victim} back in the ISR")
    assert checkpoint(c.node(victim).data_dir, topic) == 250
    assert 50 < first_segment_base(c.node(victim).data_dir, topic) <= 250
    # It holds what the leader holds from there, and can lead.
    c.node(leader).kill()
    rest = [i for i in c.nodes if i != leader]
    wait_until(lambda: leader_of(c.bootstrap(*rest), topic) in rest, 30, "a new leader")
    assert wait_until(lambda: watermarks(c.bootstrap(*rest), topic, 0, timeout_s=30), 30, "watermarks") == (250, 280)
