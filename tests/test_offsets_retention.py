"""Kafka's offsets retention: the committed offsets of a group without members are deleted once
its newest commit is older than offsets.retention.minutes; a group with members keeps them. This
test waits out the shortest retention the broker accepts (one minute)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from helpers import create_topic, unique_topic

RETENTION_MINUTES = 1
DEADLINE_S = 150


def committed(c: Consumer, topic: str) -> int:
    return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset


def test_offsets_of_idle_groups_expire_and_active_groups_keep_theirs(broker_factory):
    b = broker_factory(name="oret", args=[
        "--offsets-retention-minutes", str(RETENTION_MINUTES),
        "--retention-check-interval-ms", "1000",
        "--group-initial-rebalance-delay-ms", "0",
    ])
    topic, idle, active = unique_topic("oret"), unique_topic("grp-idle"), unique_topic("grp-active")
    create_topic(b.bootstrap, topic, partitions=1)

    simple = Consumer({"bootstrap.servers": b.bootstrap, "group.id": idle, "enable.auto.commit": False})
    member = Consumer({"bootstrap.servers": b.bootstrap, "group.id": active, "enable.auto.commit": False,
                       "session.timeout.ms": 10_000})
    try:
        simple.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        member.subscribe([topic])
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), "the member joined"
        member.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
        assert committed(simple, topic) == 5

        # Keep the member alive (polling heartbeats) until the idle group's offsets expire.
        deadline = time.monotonic() + DEADLINE_S
        expired = False
        while time.monotonic() < deadline:
            member.poll(0.5)
            if committed(simple, topic) < 0:
                expired = True
                break
        assert expired, "offsets of the group without members did not expire"
        assert committed(member, topic) == 7, "a group with members keeps its offsets"
    finally:
        simple.close()
        member.close()
