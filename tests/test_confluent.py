"""confluent-kafka (librdkafka 2.16) against the broker: idempotent producers with every codec,
exactly-once-in-order consumption, the AdminClient, timestamps, empty partitions and
auto.offset.reset. Tests share one broker and use their own topics.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceType

from helpers import (
    admin,
    admin_error,
    consume_all,
    consumer,
    create_topic,
    partition_count,
    produce_all,
    producer,
    unique_topic,
    wait_until,
    watermarks,
)

ADMIN_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def bootstrap(module_broker) -> str:
    return module_broker.bootstrap




def listed_topics(bootstrap: str) -> set[str]:
    return set(admin(bootstrap).list_topics(timeout=10).topics)


# ---------------------------------------------------------------------- produce / consume
@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_producer_each_codec_exactly_once_in_order(bootstrap, codec, partitions):
    topic = unique_topic(f"codec-{codec}")
    create_topic(bootstrap, topic, partitions=partitions)
    n = 4000
    p = producer(bootstrap, **{"compression.type": codec, "linger.ms": 10})
    items = [(f"key-{i % 37}".encode(), f"{codec}:{i:06d}:".encode() + b"payload" * (i % 20)) for i in range(n)]
    log = produce_all(p, topic, items)

    assert not log.failed, f"{len(log.failed)} delivery failures, first: {log.failed[:3]}"
    assert len(log.ok) == n
    acked_at = {(part, off): (k, v) for part, off, k, v in log.ok}
    assert len(acked_at) == n, "two messages were acknowledged at the same partition/offset"
    used = {part for part, _ in acked_at}
    if partitions > 1:
        assert len(used) > 1, "keyed messages all landed in one partition of a multi-partition topic"

    seen: set[int] = set()
    for part in range(partitions):
        msgs = consume_all(bootstrap, topic, part)
        seqs = []
        for m in msgs:
            assert (part, m.offset) in acked_at, f"partition {part} offset {m.offset} was never acknowledged"
            assert (m.key, m.value) == acked_at[(part, m.offset)], f"partition {part} offset {m.offset} differs"
            seq = int(m.value.split(b":")[1])
            assert seq not in seen, f"message {seq} consumed twice"
            seen.add(seq)
            seqs.append(seq)
        assert seqs == sorted(seqs), f"partition {part}: messages out of produce order"
        assert [m.offset for m in msgs] == list(range(len(msgs))), f"partition {part}: offsets not contiguous"
    assert seen == set(range(n)), f"missing messages: {sorted(set(range(n)) - seen)[:20]}"


def test_headers_keys_nulls_and_timestamps_round_trip(bootstrap):
    topic = unique_topic("headers")
    create_topic(bootstrap, topic)
    p = producer(bootstrap)
    ts = 1_600_000_000_123
    rows = [
        dict(key=b"k1", value=b"v1", headers=[("h1", b"a"), ("h2", b""), ("h1", b"again")]),
        dict(key=None, value=b"no key", headers=None),
        dict(key=b"no value", value=None, headers=[("n", None)]),
        dict(key=b"", value=b"", headers=None),
    ]
    for row in rows:
        p.produce(topic, partition=0, timestamp=ts, **row)
    assert p.flush(30) == 0
    got = consume_all(bootstrap, topic, 0)
    assert len(got) == len(rows)
    for m, row in zip(got, rows):
        assert m.key == row["key"] and m.value == row["value"], (m, row)
        assert (m.headers or []) == (row["headers"] or []), (m.headers, row["headers"])
        assert m.timestamp == ts


def test_long_client_id_metadata(bootstrap):
    """A client.id of hundreds of bytes must not break Metadata (a peer's broker broke here)."""
    topic = unique_topic("long-client-id")
    create_topic(bootstrap, topic)
    p = producer(bootstrap, **{"client.id": "c" * 600})
    md = p.list_topics(timeout=10)
    assert [b.id for b in md.brokers.values()], "no brokers in metadata"
    assert topic in md.topics
    log = produce_all(p, topic, [(b"k", b"v")])
    assert not log.failed, log.failed


def test_max_message_bytes_is_enforced(bootstrap):
    topic = unique_topic("maxbytes")
    create_topic(bootstrap, topic, config={"max.message.bytes": "2048"})
    p = producer(bootstrap, **{"linger.ms": 0, "enable.idempotence": False})
    small = produce_all(p, topic, [(b"s", b"x" * 500)])
    assert not small.failed, small.failed
    big = produce_all(p, topic, [(b"b", b"y" * 20_000)])
    assert len(big.failed) == 1, f"a 20 KB record was accepted by a topic with max.message.bytes=2048: {big.ok}"
    assert big.failed[0][1].code() == KafkaError.MSG_SIZE_TOO_LARGE, big.failed[0][1]
    assert watermarks(bootstrap, topic, 0)[1] == 1


# ---------------------------------------------------------------------- admin
def test_create_topic_with_configs_and_describe_configs(bootstrap):
    topic = unique_topic("configs")
    a = admin(bootstrap)
    configs = {"retention.ms": "3600000", "retention.bytes": "10485760", "segment.bytes": "1048576",
               "max.message.bytes": "65536"}
    fs = a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1, config=configs)],
                         operation_timeout=ADMIN_TIMEOUT_S)
    assert admin_error(fs[topic]) is None
    wait_until(lambda: partition_count(bootstrap, topic) == 2, 30, "the new topic in metadata")

    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = a.describe_configs([res], request_timeout=ADMIN_TIMEOUT_S)[res].result(timeout=ADMIN_TIMEOUT_S)
    for k, v in configs.items():
        assert k in entries, f"describe_configs has no {k}: {sorted(entries)}"
        e = entries[k]
        assert e.value == v, f"{k}: described {e.value!r}, created with {v!r}"
        assert ConfigSource(e.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG, f"{k}: source {e.source}"
        assert not e.is_default, f"{k} was set at creation but is reported as default"

    # Configs not set at creation are still described, with a value and a non-topic source.
    assert "cleanup.policy" in entries, sorted(entries)
    e = entries["cleanup.policy"]
    assert e.value == "delete", e
    assert ConfigSource(e.source) in (ConfigSource.DEFAULT_CONFIG, ConfigSource.STATIC_BROKER_CONFIG), e.source

    # A topic created without configs describes retention.ms with a default value and source.
    plain = unique_topic("configs-default")
    create_topic(bootstrap, plain)
    res2 = ConfigResource(ResourceType.TOPIC, plain)
    entries2 = a.describe_configs([res2], request_timeout=ADMIN_TIMEOUT_S)[res2].result(timeout=ADMIN_TIMEOUT_S)
    e = entries2["retention.ms"]
    assert e.value is not None and int(e.value) != 3600000, e
    assert ConfigSource(e.source) in (ConfigSource.DEFAULT_CONFIG, ConfigSource.STATIC_BROKER_CONFIG), e.source


def test_describe_configs_of_unknown_topic_fails(bootstrap):
    res = ConfigResource(ResourceType.TOPIC, unique_topic("nope"))
    a = admin(bootstrap)  # the client must outlive its futures
    err = admin_error(a.describe_configs([res], request_timeout=ADMIN_TIMEOUT_S)[res])
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


@pytest.mark.parametrize("name", ["bad name!", "..", ".", "a" * 250, "slash/topic", "ümlaut"])
def test_create_topic_with_invalid_name_is_refused(bootstrap, name):
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], operation_timeout=ADMIN_TIMEOUT_S)
    err = admin_error(fs[name])
    assert err is not None, f"topic {name!r} was created"
    assert err.code() == KafkaError.TOPIC_EXCEPTION, f"{name!r}: {err}"
    assert name not in listed_topics(bootstrap)


def test_create_topic_refusals(bootstrap):
    a = admin(bootstrap)
    compact = unique_topic("compact")
    rf3 = unique_topic("rf3")
    bad_value = unique_topic("badvalue")
    unknown_cfg = unique_topic("unknowncfg")
    fs = a.create_topics([
        NewTopic(compact, 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic(rf3, 1, replication_factor=3),
        NewTopic(bad_value, 1, 1, config={"retention.ms": "not-a-number"}),
        NewTopic(unknown_cfg, 1, 1, config={"no.such.config": "1"}),
    ], operation_timeout=ADMIN_TIMEOUT_S)

    assert admin_error(fs[compact]) is None  # both compact topics
    err = admin_error(fs[rf3])
    assert err is not None and err.code() == KafkaError.INVALID_REPLICATION_FACTOR, err
    err = admin_error(fs[bad_value])
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
    err = admin_error(fs[unknown_cfg])
    assert err is not None, "an unknown topic config was accepted"

    refused = {rf3, bad_value, unknown_cfg}
    assert not refused & listed_topics(bootstrap)

    # Zero partitions is not a topic.
    zero = unique_topic("zero")
    err = admin_error(a.create_topics([NewTopic(zero, 0, 1)], operation_timeout=ADMIN_TIMEOUT_S)[zero])
    assert err is not None, "a topic with 0 partitions was created"


def test_create_existing_topic_is_refused(bootstrap):
    topic = unique_topic("exists")
    create_topic(bootstrap, topic)
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(topic, 1, 1)], operation_timeout=ADMIN_TIMEOUT_S)
    err = admin_error(fs[topic])
    assert err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err


def test_delete_topics(bootstrap):
    a = admin(bootstrap)
    topic = unique_topic("delete")
    create_topic(bootstrap, topic)
    p = producer(bootstrap)
    assert not produce_all(p, topic, [(None, b"old-%d" % i) for i in range(10)]).failed

    fs = a.delete_topics([topic], operation_timeout=ADMIN_TIMEOUT_S)
    assert admin_error(fs[topic]) is None
    wait_until(lambda: topic not in listed_topics(bootstrap), 30, f"{topic} gone from metadata")

    missing = unique_topic("never-created")
    err = admin_error(a.delete_topics([missing], operation_timeout=ADMIN_TIMEOUT_S)[missing])
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err

    # A topic re-created under the same name starts empty: no data of the deleted one comes back.
    create_topic(bootstrap, topic)
    assert watermarks(bootstrap, topic, 0) == (0, 0)


def test_create_partitions_really_adds_partitions(bootstrap):
    a = admin(bootstrap)
    topic = unique_topic("grow")
    create_topic(bootstrap, topic, partitions=1)
    fs = a.create_partitions([NewPartitions(topic, 3)], operation_timeout=ADMIN_TIMEOUT_S)
    assert admin_error(fs[topic]) is None
    wait_until(lambda: partition_count(bootstrap, topic) == 3, 30, "3 partitions in metadata")

    p = producer(bootstrap)
    for part in (0, 1, 2):
        log = produce_all(p, topic, [(b"k", f"to-{part}".encode())], partition=part)
        assert not log.failed, log.failed
        assert log.ok[0][0] == part
    for part in (0, 1, 2):
        got = consume_all(bootstrap, topic, part)
        assert [m.value for m in got] == [f"to-{part}".encode()]

    # Shrinking is not possible.
    err = admin_error(a.create_partitions([NewPartitions(topic, 2)], operation_timeout=ADMIN_TIMEOUT_S)[topic])
    assert err is not None and err.code() == KafkaError.INVALID_PARTITIONS, err
    missing = unique_topic("grow-missing")
    err = admin_error(a.create_partitions([NewPartitions(missing, 2)], operation_timeout=ADMIN_TIMEOUT_S)[missing])
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_describe_cluster(module_broker):
    a = admin(module_broker.bootstrap)
    res = a.describe_cluster(request_timeout=ADMIN_TIMEOUT_S).result(timeout=ADMIN_TIMEOUT_S)
    assert res.cluster_id == module_broker.cluster_id
    assert [(n.id, n.host, n.port) for n in res.nodes] == [
        (module_broker.node_id, module_broker.host, module_broker.port)]
    assert res.controller is not None and res.controller.id == module_broker.node_id


# ---------------------------------------------------------------------- offsets
def test_offsets_for_times_returns_earliest_offset_at_or_after_target(bootstrap):
    topic = unique_topic("times")
    create_topic(bootstrap, topic, partitions=2)
    t0 = 1_700_000_000_000
    p = producer(bootstrap, **{"linger.ms": 0})
    # Partition 0: increasing timestamps, one second apart.
    for i in range(10):
        p.produce(topic, value=b"p0-%d" % i, partition=0, timestamp=t0 + i * 1000)
    # Partition 1: timestamps out of order; the answer is the first *offset* whose timestamp >= target.
    p1_ts = [t0, t0 + 5000, t0 + 2000, t0 + 3000, t0 + 9000]
    for i, ts in enumerate(p1_ts):
        p.produce(topic, value=b"p1-%d" % i, partition=1, timestamp=ts)
    assert p.flush(30) == 0

    assert [m.timestamp for m in consume_all(bootstrap, topic, 1)] == p1_ts

    cases = [
        (0, t0 - 1, 0), (0, t0, 0), (0, t0 + 3000, 3), (0, t0 + 3500, 4), (0, t0 + 9000, 9), (0, t0 + 9001, -1),
        (1, t0 + 1, 1), (1, t0 + 2500, 1), (1, t0 + 5001, 4), (1, t0 + 9001, -1),
    ]
    c = consumer(bootstrap)
    try:
        # One query per case (a ListOffsets request holds each partition at most once) ...
        singles = [c.offsets_for_times([TopicPartition(topic, part, ts)], timeout=15)[0] for part, ts, _ in cases]
        # ... and both partitions in one request, so a broker that mixes partitions up is caught.
        both = c.offsets_for_times([TopicPartition(topic, 0, t0 + 3500), TopicPartition(topic, 1, t0 + 2500)],
                                   timeout=15)
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 10)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10, cached=False) == (0, 5)
    finally:
        c.close()
    for (part, ts, want), got in zip(cases, singles):
        assert got.error is None, got
        assert got.offset == want, f"partition {part} timestamp t0{ts - t0:+d}: offset {got.offset}, want {want}"
    assert sorted((tp.partition, tp.offset) for tp in both) == [(0, 4), (1, 1)], both


def test_fetch_on_empty_partition_returns_nothing_then_new_data(bootstrap):
    topic = unique_topic("empty")
    create_topic(bootstrap, topic)
    assert watermarks(bootstrap, topic, 0) == (0, 0)
    c = consumer(bootstrap, **{"enable.partition.eof": True, "fetch.wait.max.ms": 200})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        # The first fetches find nothing: the only event allowed is end-of-partition at offset 0.
        eof = None
        deadline = time.monotonic() + 15
        while eof is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is not None, f"message from an empty partition: {m.value()!r}"
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            eof = m
        assert eof is not None, "no end-of-partition event: the fetch at offset 0 never completed"
        assert eof.offset() == 0

        p = producer(bootstrap)
        assert not produce_all(p, topic, [(b"k", b"first")]).failed

        def got_message():
            m = c.poll(0.2)
            if m is not None and not m.error():
                return m
            if m is not None and m.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(m.error())
            return None

        m = wait_until(got_message, 15, "the message produced to the formerly empty partition")
        assert (m.offset(), m.value()) == (0, b"first")
    finally:
        c.close()


@pytest.fixture(scope="module")
def five_message_topic(bootstrap) -> str:
    topic = unique_topic("reset")
    create_topic(bootstrap, topic)
    assert not produce_all(producer(bootstrap), topic, [(None, b"m%d" % i) for i in range(5)]).failed
    return topic


def test_offset_past_end_with_reset_earliest(bootstrap, five_message_topic):
    c = consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(five_message_topic, 0, 1000)])
        got = []

        def read_all():
            m = c.poll(0.2)
            if m is not None:
                assert not m.error(), m.error()
                got.append((m.offset(), m.value()))
            return len(got) >= 5

        wait_until(read_all, 20, "the 5 messages after a reset to earliest")
        assert got == [(i, b"m%d" % i) for i in range(5)]
    finally:
        c.close()


def test_offset_past_end_with_reset_latest(bootstrap):
    topic = unique_topic("reset-latest")
    create_topic(bootstrap, topic)
    p = producer(bootstrap)
    assert not produce_all(p, topic, [(None, b"m%d" % i) for i in range(5)]).failed
    c = consumer(bootstrap, **{"auto.offset.reset": "latest", "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])

        def reached_end():
            m = c.poll(0.2)
            if m is None:
                return None
            assert m.error() is not None, f"reset to latest delivered old message {m.offset()}"
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            return m

        eof = wait_until(reached_end, 20, "end of partition after a reset to latest")
        assert eof.offset() == 5
        assert not produce_all(p, topic, [(None, b"new")]).failed

        def got_new():
            m = c.poll(0.2)
            if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                return None
            assert not m.error(), m.error()
            return m

        m = wait_until(got_new, 20, "the message produced after the reset")
        assert (m.offset(), m.value()) == (5, b"new")
    finally:
        c.close()


def test_offset_past_end_with_reset_error(bootstrap, five_message_topic):
    c = consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(five_message_topic, 0, 1000)])

        def got_error():
            m = c.poll(0.2)
            if m is None:
                return None
            assert m.error() is not None, f"got message at offset {m.offset()} although the offset was out of range"
            return m.error()

        err = wait_until(got_error, 20, "an offset-out-of-range error")
        assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()
