"""Thousands of partitions on a node (issue 21): create, write, restart and failover with 2,000.

The figures each step took are printed (`-s` shows them); the bounds asserted are loose, for a
loaded 2-core machine running a debug build: `make bench`'s many-partitions scenario measures the
release build against the issue's targets.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from helpers import unique_topic, wait_until

pytestmark = pytest.mark.chronik_only("the clean-shutdown marker and the restart paths are Chronik's")

PARTITIONS = 2000
# Per-partition ListOffsets errors that a moment later go away. librdkafka does not mark them
# retriable() in list_offsets results, so they are named here.
TRANSIENT = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
             KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.OFFSET_NOT_AVAILABLE,
             KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH,
             KafkaError.REQUEST_TIMED_OUT}


def create(bootstrap: str, name: str, partitions: int, rf: int) -> float:
    t0 = time.monotonic()
    a = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future resolves
    f = a.create_topics([NewTopic(name, partitions, rf)], request_timeout=120, operation_timeout=120)
    f[name].result(180)
    return time.monotonic() - t0


def one_message_each(bootstrap: str, topic: str, partitions: int, value: bytes) -> float:
    """One acks=all message to every partition (linger 20 ms); seconds until all are acked."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                  "message.timeout.ms": 120_000})
    failed = []
    t0 = time.monotonic()
    for i in range(partitions):
        p.produce(topic, value=value, partition=i,
                  on_delivery=lambda err, _m: err is not None and failed.append(err))
    assert p.flush(150) == 0, "messages left undelivered"
    assert not failed, failed[:3]
    return time.monotonic() - t0


def high_watermarks(bootstrap: str, topic: str, partitions: int, timeout_s: float = 60) -> dict[int, int]:
    """Every partition's high watermark, in one ListOffsets round per leader. Retried while a
    leader answers NOT_LEADER_OR_FOLLOWER: right after a failover, Metadata names a new leader
    a moment before it has taken the role (Kafka too: clients retry)."""
    a = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    specs = {TopicPartition(topic, i): OffsetSpec.latest() for i in range(partitions)}
    deadline = time.monotonic() + timeout_s
    while True:
        out = a.list_offsets(specs, request_timeout=60)
        try:
            return {tp.partition: f.result(60).offset for tp, f in out.items()}
        except KafkaException as e:
            err = e.args[0]
            if not (err.retriable() or err.code() in TRANSIENT) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    # Quiet: polled while a node is down, and librdkafka logs every refused connection to it.
    md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(topic, timeout=20)
    return {p: m.leader for p, m in md.topics[topic].partitions.items()}


def test_two_thousand_partitions_create_write_restart(broker):
    topic = unique_topic("many")
    took = {"create": create(broker.bootstrap, topic, PARTITIONS, 1)}
    took["first write"] = one_message_each(broker.bootstrap, topic, PARTITIONS, b"first")
    assert set(high_watermarks(broker.bootstrap, topic, PARTITIONS).values()) == {1}

    # A graceful stop leaves the clean-shutdown marker; the next start takes it and reads
    # no segment, and everything acknowledged is there.
    t0 = time.monotonic()
    broker.terminate(timeout_s=120)
    took["SIGTERM to exit"] = time.monotonic() - t0
    marker = broker.data_dir / "wal" / ".chronik_cleanshutdown"
    assert marker.exists(), "a graceful shutdown leaves the clean-shutdown marker"
    t0 = time.monotonic()
    broker.restart()
    took["clean restart"] = time.monotonic() - t0
    assert not marker.exists(), "a start removes the marker before it opens anything"
    assert "opened the logs of a clean shutdown" in broker.stderr_path.read_text(errors="replace")
    assert set(high_watermarks(broker.bootstrap, topic, PARTITIONS).values()) == {1}
    took["second write"] = one_message_each(broker.bootstrap, topic, PARTITIONS, b"second")

    # A crash leaves no marker: the next start recovers every log in full.
    broker.kill()
    assert not marker.exists()
    t0 = time.monotonic()
    broker.restart()
    took["restart after SIGKILL"] = time.monotonic() - t0
    assert "opened the logs of a clean shutdown" not in broker.stderr_path.read_text(errors="replace")
    assert set(high_watermarks(broker.bootstrap, topic, PARTITIONS).values()) == {2}
    print(f"{PARTITIONS} partitions: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    assert took["SIGTERM to exit"] < 60 and took["clean restart"] < 60


def test_two_thousand_partitions_fail_over_when_a_node_dies(cluster_factory):
    c = cluster_factory(3).start()
    topic = unique_topic("many-rf3")
    took = {"create": create(c.bootstrap(1), topic, PARTITIONS, 3)}
    wait_until(lambda: all(l >= 0 for l in leaders(c.bootstrap(), topic).values()), 120,
               "a leader for every partition", interval_s=0.5)
    took["write"] = one_message_each(c.bootstrap(), topic, PARTITIONS, b"before")
    counts: dict[int, int] = {}
    for leader in leaders(c.bootstrap(), topic).values():
        counts[leader] = counts.get(leader, 0) + 1
    victim = max(counts, key=counts.get)
    survivors = [i for i in c.nodes if i != victim]
    c.node(victim).kill()
    t0 = time.monotonic()
    # Every partition gets a new leader: one controller decision for all of the dead node's
    # partitions, not one per partition (6 s session timeout; loose bound for a loaded machine).
    wait_until(lambda: all(l >= 0 and l != victim for l in leaders(c.bootstrap(*survivors), topic).values()),
               60, f"new leaders for the {counts[victim]} partitions node {victim} led", interval_s=0.2)
    took[f"failover of {counts[victim]} leaders"] = time.monotonic() - t0
    # Nothing acknowledged was lost, and every partition takes writes again.
    assert set(high_watermarks(c.bootstrap(*survivors), topic, PARTITIONS).values()) == {1}
    took["write after"] = one_message_each(c.bootstrap(*survivors), topic, PARTITIONS, b"after")
    t0 = time.monotonic()
    c.node(victim).start()
    took["restart of the dead node"] = time.monotonic() - t0
    print(f"{PARTITIONS} partitions at RF=3: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    assert set(high_watermarks(c.bootstrap(), topic, PARTITIONS).values()) == {2}
