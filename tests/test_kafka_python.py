"""kafka-python (pure Python, its own protocol code) against the broker."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from helpers import unique_topic, wait_until


def consume_n(bootstrap: str, topic: str, partition: int, n: int, timeout_s: float = 60):
    """n records from offset 0 via assign() with no group (group_id=None, no commits)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none", request_timeout_ms=30000)
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek(tp, 0)
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n:
            assert time.monotonic() < deadline, f"consumed {len(out)} of {n} records in {timeout_s}s"
            for records in c.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        c.close()


@pytest.mark.parametrize("idempotent", [False, True])
def test_producer_consumer_round_trip_acks_all(broker, idempotent):
    topic = unique_topic("kpy")
    n = 2000
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                      enable_idempotence=idempotent, request_timeout_ms=30000)
    try:
        futures = [p.send(topic, key=b"k%d" % (i % 11), value=b"value-%d" % i, partition=0) for i in range(n)]
        p.flush(timeout=60)
        metas = [f.get(timeout=60) for f in futures]
    finally:
        p.close(timeout=10)
    assert [m.offset for m in metas] == list(range(n)), "acknowledged offsets are not 0..n-1 in send order"
    assert {m.partition for m in metas} == {0}

    records = consume_n(broker.bootstrap, topic, 0, n)
    assert len(records) == n
    assert [r.offset for r in records] == list(range(n))
    assert [(r.key, r.value) for r in records] == [(b"k%d" % (i % 11), b"value-%d" % i) for i in range(n)]

    # Nothing beyond what was sent.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        assert c.end_offsets([tp])[tp] == n
        assert c.beginning_offsets([tp])[tp] == 0
    finally:
        c.close()


def test_admin_create_and_list_topics(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        t1, t2 = unique_topic("kpy-admin"), unique_topic("kpy-admin")
        a.create_topics({t1: {"num_partitions": 2, "replication_factor": 1},
                         t2: {"num_partitions": 1, "replication_factor": 1,
                              "configs": {"retention.ms": "60000"}}})
        wait_until(lambda: {t1, t2} <= set(a.list_topics()), 30, "both topics listed")

        # Field names follow the Metadata schema version kafka-python negotiated ("topic" or "name").
        described = {d.get("topic", d.get("name")): d for d in a.describe_topics([t1, t2])}
        assert len(described[t1]["partitions"]) == 2, described[t1]
        assert len(described[t2]["partitions"]) == 1, described[t2]
        for d in described.values():
            assert d["error_code"] == 0, d
            for part in d["partitions"]:
                assert part.get("leader", part.get("leader_id")) == broker.node_id, part
    finally:
        a.close()

    # The partitions are usable by a producer of the same library.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        meta = p.send(t1, value=b"x", partition=1).get(timeout=30)
        assert (meta.partition, meta.offset) == (1, 0)
    finally:
        p.close(timeout=10)
