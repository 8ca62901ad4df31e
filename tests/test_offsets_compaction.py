"""__consumer_offsets is a compacted topic, as in Kafka: it is created with cleanup.policy=compact, the
log cleaner keeps the latest commit of each (group, topic, partition) and drops a deleted group's
tombstones after delete.retention.ms, and a restarted broker replays the compacted log (with its
gaps) into exactly the committed offsets it had."""

from __future__ import annotations

import struct

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from helpers import admin, consume_range, create_topic, unique_topic, wait_until, watermarks

pytestmark = pytest.mark.chronik_only("sets the offsets topic's partition count and the cleaner's backoff by flags")

OFFSETS = "__consumer_offsets"
COMMITS = 300
DEADLINE_S = 90


def commit_all(bootstrap: str, group: str, commits: list[tuple[str, int, int]]) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for topic, partition, offset in commits:
            c.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}
    finally:
        c.close()


def offset_key_group(key: bytes | None) -> str | None:
    """The group of an offset commit key (Kafka's layout: version 0 or 1, then the group string)."""
    if key is None or len(key) < 4:
        return None
    version, n = struct.unpack(">hh", key[:4])
    return key[4:4 + n].decode() if version in (0, 1) else None


def offsets_log(bootstrap: str):
    low, high = watermarks(bootstrap, OFFSETS, 0)
    return consume_range(bootstrap, OFFSETS, 0, low, high)


def set_small_segments(bootstrap: str) -> None:
    """Segments that roll after half a second and any dirt cleanable, so the cleaner works in seconds."""
    a = admin(bootstrap)
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in
               [("internal.segment.bytes", "16384"), ("segment.ms", "500"),
                ("min.cleanable.dirty.ratio", "0.01"), ("delete.retention.ms", "1000")]]
    res = ConfigResource(ResourceType.TOPIC, OFFSETS, incremental_configs=entries)
    a.incremental_alter_configs([res])[res].result(timeout=30)


def test_offsets_topic_is_compacted_and_replays_the_same_state(broker_factory):
    b = broker_factory(name="offcmp", args=["--offsets-topic-partitions", "1", "--log-cleaner-backoff-ms", "200"])
    a = admin(b.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, OFFSETS)
    configs = a.describe_configs([res])[res].result(timeout=30)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].value == str(100 << 20)
    set_small_segments(b.bootstrap)

    topic, kept, deleted = unique_topic("cmp"), unique_topic("grp-kept"), unique_topic("grp-deleted")
    create_topic(b.bootstrap, topic, partitions=3)
    commit_all(b.bootstrap, kept, [(topic, i % 3, i) for i in range(COMMITS)])
    commit_all(b.bootstrap, deleted, [(topic, i % 3, 1000 + i) for i in range(30)])
    want = {0: 297, 1: 298, 2: 299}  # only the last commit of each partition is live
    assert committed(b.bootstrap, deleted, topic) == {0: 1027, 1: 1028, 2: 1029}
    a.delete_consumer_groups([deleted])[deleted].result(timeout=30)

    def compacted():
        # A fresh commit rolls the active segment (segment.ms) so everything before it is cleanable,
        # and gives the cleaner new dirt, which it needs to look at the log again and drop the
        # deleted group's tombstones once delete.retention.ms has passed.
        commit_all(b.bootstrap, unique_topic("grp-nudge"), [(topic, 0, 1)])
        msgs = offsets_log(b.bootstrap)
        groups = [offset_key_group(m.key) for m in msgs]
        return msgs if groups.count(kept) == 3 and deleted not in groups else None

    msgs = wait_until(compacted, DEADLINE_S, "the cleaner to keep one commit per partition and drop tombstones",
                      interval_s=0.5)
    _, high = watermarks(b.bootstrap, OFFSETS, 0)
    assert len(msgs) < high / 4, (len(msgs), high)  # the log has gaps, its offsets kept their values
    assert watermarks(b.bootstrap, OFFSETS, 0)[0] == 0  # compaction never moves the log start

    # A restart replays the compacted log, with its gaps, into the same state.
    b.kill()
    b.restart()
    assert committed(b.bootstrap, kept, topic) == want
    assert committed(b.bootstrap, deleted, topic) == {}
    # And the coordinator goes on writing after the gaps.
    commit_all(b.bootstrap, kept, [(topic, 0, 5000)])
    assert committed(b.bootstrap, kept, topic) == {**want, 0: 5000}


def test_a_cluster_from_before_compaction_gets_its_offsets_topic_compacted(broker_factory):
    """A data dir whose offsets topic predates compaction (retention off, no cleanup.policy) gets
    Kafka's configs on its next start, keeping what was committed."""
    b = broker_factory(name="offupg", args=["--offsets-topic-partitions", "1"])
    topic, group = unique_topic("upg"), unique_topic("grp-upg")
    create_topic(b.bootstrap, topic, partitions=3)
    commit_all(b.bootstrap, group, [(topic, p, 10 + p) for p in range(3)])
    a = admin(b.bootstrap)
    # What an older Chronik created: delete policy, retention off.
    entries = [ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET),
               ConfigEntry("retention.ms", "-1", incremental_operation=AlterConfigOpType.SET)]
    res = ConfigResource(ResourceType.TOPIC, OFFSETS, incremental_configs=entries)
    a.incremental_alter_configs([res])[res].result(timeout=30)
    b.kill()
    b.restart()

    a = admin(b.bootstrap)

    def policy():
        got = a.describe_configs([ConfigResource(ResourceType.TOPIC, OFFSETS)])
        configs = next(iter(got.values())).result(timeout=30)
        return configs["cleanup.policy"].value == "compact" and configs["retention.ms"].is_default

    wait_until(policy, 30, "cleanup.policy=compact on the offsets topic after the restart", interval_s=0.2)
    assert committed(b.bootstrap, group, topic) == {0: 10, 1: 11, 2: 12}
