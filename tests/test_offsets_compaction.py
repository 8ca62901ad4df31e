"""__consumer_offsets stays small: once a partition's log holds many more records than live keys,
the broker appends a snapshot of the live state and deletes the older segments. Replay on start
then reads the snapshot, and nothing committed is lost."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from helpers import create_topic, unique_topic, wait_until, watermarks

pytestmark = pytest.mark.chronik_only("compaction of Chronik's offsets WAL (--offsets-compact-after-records)")

COMMITS = 300
DEADLINE_S = 30


def test_offsets_log_is_snapshotted_and_replays_the_same_state(broker_factory):
    b = broker_factory(name="compact", args=["--offsets-compact-after-records", "50",
                                             "--offsets-topic-partitions", "1"])
    topic, group = unique_topic("cmp"), unique_topic("grp-cmp")
    create_topic(b.bootstrap, topic, partitions=3)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for i in range(COMMITS):
            c.commit(offsets=[TopicPartition(topic, i % 3, i)], asynchronous=False)
    finally:
        c.close()
    # Only the last commit of each partition is live: 297, 298, 299.
    want = {0: 297, 1: 298, 2: 299}

    def log_start() -> int:
        return watermarks(b.bootstrap, "__consumer_offsets", 0)[0]

    wait_until(lambda: log_start() > 0, DEADLINE_S, "older offsets segments deleted after a snapshot")
    low, high = watermarks(b.bootstrap, "__consumer_offsets", 0)
    assert high - low < COMMITS, (low, high)

    b.kill()
    b.restart()
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert {tp.partition: tp.offset for tp in got} == want
    finally:
        c.close()
