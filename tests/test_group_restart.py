"""A broker restart does not rebalance a stable group: its membership is recorded in
__consumer_offsets and restored on start, so members carry on heartbeating in their generation."""

from __future__ import annotations

import time

from confluent_kafka import Consumer

from helpers import create_topic, unique_topic

DEADLINE_S = 30
# Long enough for librdkafka to reconnect and heartbeat several times after the restart.
WATCH_AFTER_RESTART_S = 8


def test_stable_group_survives_a_broker_sigkill_without_rebalance(broker_factory):
    b = broker_factory(name="gr", args=["--group-initial-rebalance-delay-ms", "0"])
    topic, group = unique_topic("grs"), unique_topic("grp-restart")
    create_topic(b.bootstrap, topic, partitions=2)
    events: list[tuple[str, list[int]]] = []
    # The session outlasts the restart (Apache Kafka takes 5-15 s to start here): a member that
    # the restarted broker forgot still fails its next heartbeat and rejoins.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "session.timeout.ms": 45_000,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic],
                    on_assign=lambda _c, ps: events.append(("assign", sorted(p.partition for p in ps))),
                    on_revoke=lambda _c, ps: events.append(("revoke", sorted(p.partition for p in ps))))
        deadline = time.monotonic() + DEADLINE_S
        while len(c.assignment()) < 2 and time.monotonic() < deadline:
            c.poll(0.2)
        assert sorted(p.partition for p in c.assignment()) == [0, 1]
        # Let the leader's SyncGroup be recorded (the group timer writes it within 100 ms).
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            c.poll(0.1)
        assert events == [("assign", [0, 1])], events

        b.kill()
        b.restart(same_port=True)
        watch = time.monotonic() + WATCH_AFTER_RESTART_S
        while time.monotonic() < watch:
            c.poll(0.2)
        assert events == [("assign", [0, 1])], f"the group rebalanced across the restart: {events}"
        assert sorted(p.partition for p in c.assignment()) == [0, 1]
    finally:
        c.close()
