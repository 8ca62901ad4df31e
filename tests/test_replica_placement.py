"""Where partitions go, as Kafka does it: the broker's default.replication.factor and
num.partitions for CreateTopics with -1 and for auto-created topics, manual replica
assignments in CreateTopics and CreatePartitions (Kafka's checks and messages), and the
broker's min.insync.replicas as the topics' default, enforced on acks=all.

Every test runs on Chronik and on Apache Kafka 4.4 (`--broker=kafka`); where Chronik promises
more than Kafka (its default.replication.factor follows the alive brokers, Kafka's is 1), the
test reads the broker's reported value and checks the stricter value on Chronik only.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

import kafkawire as w
from helpers import admin, consume_all, producer, unique_topic, wait_until, watermarks
from reference import probe

TIMEOUT_S = 30
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
# DescribeConfigs config_source values.
DYNAMIC_DEFAULT_BROKER_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 3, 4, 5


def broker_default_sources(broker_kind: str, chronik: int) -> set[int]:
    """Where a broker-wide default of min.insync.replicas may come from. Apache Kafka 4.4 with
    eligible leader replicas (KIP-966) writes the cluster-wide min.insync.replicas into its
    metadata at start, so it reports it as DYNAMIC_DEFAULT_BROKER_CONFIG, set or not; Chronik
    takes it from a flag (STATIC_BROKER_CONFIG) or its default (DEFAULT_CONFIG)."""
    return {chronik} if broker_kind == "chronik" else {chronik, DYNAMIC_DEFAULT_BROKER_CONFIG}


def layout(a, name: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas in Metadata order, isr)."""
    t = a.list_topics(name, timeout=10).topics[name]
    if t.error is not None:
        return {}
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in t.partitions.values()}


def wait_layout(a, name: str, partitions: int) -> dict[int, tuple[int, list[int], list[int]]]:
    """The topic's layout once every partition has a leader (Kafka answers creation first)."""
    return wait_until(lambda: (lambda l: l if len(l) == partitions and all(v[0] >= 0 for v in l.values())
                               else None)(layout(a, name)), TIMEOUT_S, f"{name} with {partitions} led partitions")


def create(a, topic: NewTopic) -> None:
    a.create_topics([topic], operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)[topic.topic].result(TIMEOUT_S)


def refusal(fut) -> KafkaError:
    """The error a refused admin request carries (fails if it succeeded)."""
    with pytest.raises(KafkaException) as e:
        fut.result(TIMEOUT_S)
    return e.value.args[0]


def broker_config(bootstrap: str, node_id: int, name: str) -> dict:
    err, cfg = probe.describe_configs(bootstrap, RESOURCE_BROKER, str(node_id))
    assert err == 0, err
    return cfg[name]


def create_topics_raw(bootstrap: str, name: str, partitions: int, rf: int,
                      assignments: list[list[int]]) -> tuple[int, str | None]:
    """CreateTopics v2 with counts and an assignment together, which confluent-kafka will not
    send: (error code, message)."""
    body = (w.i32(1) + w.string(name) + w.i32(partitions) + w.i16(rf)
            + w.i32(len(assignments))
            + b"".join(w.i32(i) + w.i32(len(r)) + b"".join(w.i32(b) for b in r) for i, r in enumerate(assignments))
            + w.i32(0)  # configs
            + w.i32(TIMEOUT_S * 1000) + w.i8(0))  # timeout, validate_only
    with w.Connection(bootstrap, timeout_s=TIMEOUT_S + 5) as c:
        r = w.Reader(c.roundtrip(w.request(19, 2, 11, body)))
    r.i32()  # correlation id
    r.i32()  # throttle
    assert r.i32() == 1
    assert r.string() == name
    return r.i16(), r.string()


def test_defaults_on_one_node(broker_factory, broker_kind):
    """num_partitions and replication_factor -1 take num.partitions and
    default.replication.factor (1 on one node); the broker reports both."""
    b = broker_factory(args=["--num-partitions", "3"])
    a = admin(b.bootstrap)
    name = unique_topic("defaults")
    create(a, NewTopic(name))  # both counts -1
    got = wait_layout(a, name, 3)
    assert all(len(replicas) == 1 for _, replicas, _ in got.values()), got
    rf = broker_config(b.bootstrap, 1, "default.replication.factor")
    assert (rf["default"], rf["type"]) == ("1", "INT"), rf
    isr = broker_config(b.bootstrap, 1, "min.insync.replicas")
    assert isr["default"] == "1" and isr["source"] in broker_default_sources(broker_kind, DEFAULT_CONFIG), isr
    parts = broker_config(b.bootstrap, 1, "num.partitions")
    assert (parts["default"], parts["source"]) == ("3", STATIC_BROKER_CONFIG), parts


def test_default_replication_factor_and_manual_assignments_on_three_nodes(cluster_factory, broker_kind):
    c = cluster_factory(3).start()
    a = admin(c.bootstrap())
    # default.replication.factor: Chronik's follows the alive brokers (at most 3); Kafka's is 1.
    rf = broker_config(c.bootstrap(1), 1, "default.replication.factor")
    if broker_kind == "chronik":
        assert (rf["default"], rf["source"]) == ("3", DEFAULT_CONFIG), rf
    want_rf = int(rf["default"])
    defaulted = unique_topic("rf-default")
    create(a, NewTopic(defaulted, 2))  # replication_factor -1
    assert [len(r) for _, r, _ in wait_layout(a, defaulted, 2).values()] == [want_rf] * 2
    auto = unique_topic("rf-auto")
    with w.Connection(c.bootstrap(2)) as conn:  # Metadata v1 creates unknown topics
        conn.roundtrip(w.metadata_request_v1(1, [auto]))
    assert [len(r) for _, r, _ in wait_layout(a, auto, 1).values()] == [want_rf]

    # Manual assignment: replicas in the order given; the first replica leads.
    manual = unique_topic("manual")
    lists = [[3, 1], [2, 3], [1, 2]]
    create(a, NewTopic(manual, len(lists), replica_assignment=lists))
    got = wait_layout(a, manual, 3)
    assert {p: (leader, replicas) for p, (leader, replicas, _) in got.items()} == \
        {i: (r[0], r) for i, r in enumerate(lists)}, got
    # CreatePartitions with assignments, the same way.
    fs = a.create_partitions([NewPartitions(manual, 5, replica_assignment=[[2, 1], [3, 2]])],
                             operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
    fs[manual].result(TIMEOUT_S)
    got = wait_layout(a, manual, 5)
    assert (got[3][:2], got[4][:2]) == ((2, [2, 1]), (3, [3, 2])), got
    # A produce to a manually placed partition reaches its leader and is acknowledged by all.
    p = producer(c.bootstrap())
    p.produce(manual, value=b"v", partition=4)
    assert p.flush(TIMEOUT_S) == 0

    # Bad assignments: INVALID_REPLICA_ASSIGNMENT with a message, and nothing created.
    for bad, why in [([[1, 9]], "missing broker"), ([[1, 1]], "duplicate broker"),
                     ([[1, 2], [3]], "uneven replication factor")]:
        name = unique_topic("bad")
        err = refusal(a.create_topics([NewTopic(name, len(bad), replica_assignment=bad)],
                                      operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)[name])
        assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT and err.str(), (why, err)
        print(f"CreateTopics {why}: {err.str()}")
        assert name not in a.list_topics(timeout=10).topics
    for bad, why in [([[1, 9]], "missing broker"), ([[2, 2]], "duplicate broker"),
                     ([[1, 2, 3]], "replication factor other than the topic's"),
                     ([[1, 2], [2, 3]], "more assignments than new partitions")]:
        err = refusal(a.create_partitions([NewPartitions(manual, 6, replica_assignment=bad)],
                                          operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)[manual])
        assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT and err.str(), (why, err)
        print(f"CreatePartitions {why}: {err.str()}")
    assert len(layout(a, manual)) == 5
    # Counts and an assignment together: INVALID_REQUEST, as Kafka answers.
    for partitions, rf_ in [(1, -1), (-1, 2)]:
        code, msg = create_topics_raw(c.bootstrap(1), unique_topic("both"), partitions, rf_, [[1, 2]])
        assert code == KafkaError.INVALID_REQUEST and msg, (partitions, rf_, code, msg)
        print(f"CreateTopics num_partitions={partitions} replication_factor={rf_} with an assignment: {msg}")


def test_broker_min_insync_replicas_is_the_topic_default_and_acks_all_enforces_it(cluster_factory, broker_kind):
    """--min-insync-replicas 3 (Kafka's broker min.insync.replicas) on an RF=3 topic: with one
    node down and out of the ISR, acks=all gets NOT_ENOUGH_REPLICAS, acks=1 is stored but stays
    above the high watermark until the ISR is full again; then acks=all works again. (One node down, not two: the metadata quorum must stay up to
    shrink the ISR, on Kafka's KRaft as on Chronik's Raft.)"""
    c = cluster_factory(3, args=["--min-insync-replicas", "3", "--replica-lag-time-max-ms", "1500",
                                 "--broker-session-timeout-ms", "2000"]).start()
    a = admin(c.bootstrap())
    name = unique_topic("minisr")
    create(a, NewTopic(name, 1, replica_assignment=[[1, 2, 3]]))
    wait_until(lambda: layout(a, name).get(0, (0, [], []))[2] == [1, 2, 3], TIMEOUT_S, "full ISR")
    # The topic's effective value is the broker's, reported as a broker-wide default.
    sources = broker_default_sources(broker_kind, STATIC_BROKER_CONFIG)
    cfg = wait_until(lambda: (lambda r: r[1] if r[0] == 0 else None)(
        probe.describe_configs(c.bootstrap(1), RESOURCE_TOPIC, name)), TIMEOUT_S, "the topic's configs on node 1")
    topic_isr = cfg["min.insync.replicas"]
    assert topic_isr["default"] == "3" and topic_isr["source"] in sources, topic_isr
    broker_isr = broker_config(c.bootstrap(1), 1, "min.insync.replicas")
    assert broker_isr["default"] == "3" and broker_isr["source"] in sources, broker_isr

    c.node(3).kill()
    a1 = admin(c.bootstrap(1))
    wait_until(lambda: layout(a1, name).get(0, (0, [], []))[2] == [1, 2], TIMEOUT_S, "node 3 out of the ISR")
    results = []
    p = producer(c.bootstrap(1), **{"enable.idempotence": False, "retries": 0, "message.timeout.ms": 20000})
    p.produce(name, value=b"all", partition=0, on_delivery=lambda e, m: results.append(e))
    assert p.flush(TIMEOUT_S) == 0
    if broker_kind == "kafka":
        # Kafka 4.4 runs new clusters with Eligible Leader Replicas (KIP-966): node 3 left the ISR
        # for the ELR (its log shows isr=[1, 2], elr=[3]), the leader still appends, and the high
        # watermark may not pass an ISR below min.insync.replicas (KAFKA-15583), so the produce
        # waits until it times out. Chronik, without ELR, refuses it up front as Kafka 3.x did
        # (the high watermark rule it has, as the acks=1 check below shows on both).
        assert results[0] is not None and results[0].code() in (
            KafkaError._MSG_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS), results
    else:
        assert results[0] is not None and results[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, results
    one = producer(c.bootstrap(1), acks="1", **{"enable.idempotence": False})
    one.produce(name, value=b"one", partition=0, on_delivery=lambda e, m: results.append(e))
    assert one.flush(TIMEOUT_S) == 0 and results[1] is None, results
    # Stored on the leader, but the high watermark does not move while the ISR is below
    # min.insync.replicas (KAFKA-15583, Kafka 3.7+): consumers do not see it yet.
    time.sleep(2)
    assert watermarks(c.bootstrap(1), name, 0)[1] == 0

    c.node(3).start()
    wait_until(lambda: layout(a1, name).get(0, (0, [], []))[2] == [1, 2, 3], 60, "node 3 back in the ISR")
    wait_until(lambda: watermarks(c.bootstrap(1), name, 0)[1] >= 1, TIMEOUT_S, "the high watermark moves")
    assert b"one" in [m.value for m in consume_all(c.bootstrap(1), name, 0)]
    t0 = time.monotonic()
    p.produce(name, value=b"all-again", partition=0, on_delivery=lambda e, m: results.append(e))
    assert p.flush(TIMEOUT_S) == 0 and results[2] is None, results
    print(f"acks=all acknowledged {time.monotonic() - t0:.2f}s after the ISR was full again")
