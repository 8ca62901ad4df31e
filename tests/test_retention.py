"""Topic retention configs that are accepted are enforced: retention.bytes and retention.ms delete
whole closed segments from the front of the log, and what remains reads back intact."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

from helpers import consume_range, consumer, create_topic, produce_all, producer, unique_topic, wait_until, watermarks

VALUE_BYTES = 500
SEGMENT_BYTES = 4096
# segment.bytes starts at 1 MiB (Kafka 4.x, and Chronik as Kafka); internal.segment.bytes, the
# internal config Kafka's own tests use, takes small segments on both brokers.
SEGMENT_CONFIG = "internal.segment.bytes"


@pytest.fixture
def retention_broker(broker_factory):
    # Retention runs every 100 ms instead of every 5 minutes.
    return broker_factory(args=["--retention-check-interval-ms", "100"])


def small_batch_producer(bootstrap: str):
    # Few records per batch, so that segments of 4 KiB hold several batches.
    return producer(bootstrap, **{"linger.ms": 0, "batch.num.messages": 4})


def value(i: int) -> bytes:
    return (b"%06d:" % i).ljust(VALUE_BYTES, b"r")


def assert_tail_intact(bootstrap: str, topic: str, low: int, high: int) -> None:
    got = consume_range(bootstrap, topic, 0, low, high)
    assert [m.offset for m in got] == list(range(low, high))
    assert [m.value for m in got] == [value(o) for o in range(low, high)]


def settled_watermarks(bootstrap: str, topic: str, quiet_s: float = 1.5):
    """The watermarks of partition 0 if they stay the same for quiet_s (15 retention passes), else None."""
    first = watermarks(bootstrap, topic, 0)
    time.sleep(quiet_s)
    return first if watermarks(bootstrap, topic, 0) == first else None


def test_retention_bytes_deletes_old_segments(retention_broker):
    b = retention_broker
    topic = unique_topic("ret-bytes")
    retention_bytes = 16384
    create_topic(b.bootstrap, topic, config={SEGMENT_CONFIG: str(SEGMENT_BYTES), "retention.bytes": str(retention_bytes)})
    n = 200
    log = produce_all(small_batch_producer(b.bootstrap), topic, [(None, value(i)) for i in range(n)])
    assert not log.failed, log.failed[:3]
    assert sorted(off for _, off, _, _ in log.ok) == list(range(n))

    # Retention passes run while the producer is still writing, so the log start offset may have moved
    # before the last segments were written: wait for a pass that has seen the whole log.
    def trimmed():
        lo, hi = watermarks(b.bootstrap, topic, 0)
        return (lo, hi) if (hi - lo) * VALUE_BYTES <= retention_bytes + 2 * SEGMENT_BYTES else None

    wait_until(trimmed, 20, f"retention.bytes={retention_bytes} to trim the log")
    # Apache Kafka may delete one more segment a pass later: read from a start that stays put.
    low, high = wait_until(lambda: settled_watermarks(b.bootstrap, topic), 20, "the log start offset to settle")
    assert (high - low) * VALUE_BYTES <= retention_bytes + 2 * SEGMENT_BYTES
    assert high == n
    kept_bytes = (high - low) * VALUE_BYTES
    assert kept_bytes >= retention_bytes - 2 * SEGMENT_BYTES, f"too much deleted: only {high - low} records kept"
    assert_tail_intact(b.bootstrap, topic, low, high)

    # Offset 0 is gone: a fetch there is out of range.
    c = consumer(b.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])

        def poll_error():
            m = c.poll(0.2)
            if m is None:
                return None
            assert m.error() is not None, f"offset {m.offset()} delivered though it was deleted"
            return m.error()

        err = wait_until(poll_error, 20, "an out-of-range error at deleted offset 0")
        assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()


def test_retention_ms_deletes_segments_older_than_the_limit(retention_broker):
    b = retention_broker
    topic = unique_topic("ret-ms")
    create_topic(b.bootstrap, topic, config={SEGMENT_CONFIG: str(SEGMENT_BYTES), "retention.ms": "60000"})
    p = small_batch_producer(b.bootstrap)
    now_ms = int(time.time() * 1000)
    old, new = 100, 20
    log = produce_all(p, topic, [(None, value(i)) for i in range(old)], timestamp=now_ms - 3_600_000)
    assert not log.failed
    log = produce_all(p, topic, [(None, value(i)) for i in range(old, old + new)], timestamp=now_ms)
    assert not log.failed

    # Passes run while the producer writes: wait for one that has seen every old segment closed, and
    # then for the log start offset to settle (Apache Kafka deletes the last old segments a few passes
    # later, so reading from a start offset seen earlier can be out of range).
    floor = old - 2 * (SEGMENT_BYTES // VALUE_BYTES + 1)
    wait_until(lambda: watermarks(b.bootstrap, topic, 0)[0] >= floor, 20,
               f"retention.ms to move the log start offset to at least {floor}")
    low, high = wait_until(lambda: settled_watermarks(b.bootstrap, topic), 20, "the log start offset to settle")
    assert high == old + new
    assert low <= old, f"records younger than retention.ms were deleted: log starts at {low}"
    assert_tail_intact(b.bootstrap, topic, low, high)


def test_default_retention_keeps_everything(retention_broker):
    b = retention_broker
    topic = unique_topic("ret-default")
    create_topic(b.bootstrap, topic, config={SEGMENT_CONFIG: str(SEGMENT_BYTES)})
    n = 100
    assert not produce_all(small_batch_producer(b.bootstrap), topic, [(None, value(i)) for i in range(n)]).failed
    # Several retention passes (every 100 ms) must leave a topic with default retention alone:
    # wait until the broker has certainly run some, by watching a topic that it does trim.
    probe = unique_topic("ret-probe")
    create_topic(b.bootstrap, probe, config={SEGMENT_CONFIG: str(SEGMENT_BYTES), "retention.bytes": "4096"})
    assert not produce_all(small_batch_producer(b.bootstrap), probe, [(None, value(i)) for i in range(60)]).failed
    wait_until(lambda: watermarks(b.bootstrap, probe, 0)[0] > 0, 20, "retention to run on the probe topic")
    assert watermarks(b.bootstrap, topic, 0) == (0, n)
    assert_tail_intact(b.bootstrap, topic, 0, n)
