"""Kafka's own admin APIs against three real nodes, driven by real clients: confluent-kafka's
AdminClient (incremental_alter_configs, alter_configs, elect_leaders) and kafka-python's
KafkaAdminClient (alter/list_partition_reassignments, elect_leaders). Every change goes
through Raft, so it is visible from every node."""

from __future__ import annotations

import signal
import uuid

import pytest
from confluent_kafka import ElectionType, KafkaException, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic
import kafka.errors
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient

from helpers import admin, producer, wait_until
from test_admin import ok, read_all


def topic(c, rf: int = 3, partitions: int = 1) -> str:
    name = f"kadm-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))  # kept referenced until the future resolves
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                    operation_timeout=30)[name].result(timeout=30)
    wait_until(lambda: all(name in admin(n.bootstrap).list_topics(timeout=10).topics for n in c.nodes.values()),
               15, "topic everywhere")
    return name


def topic_configs(bootstrap: str, name: str) -> dict[str, tuple[str, int]]:
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    a = admin(bootstrap)  # kept referenced until the future resolves
    entries = a.describe_configs([res])[res].result(timeout=30)
    return {k: (v.value, v.source) for k, v in entries.items()}


def test_incremental_and_legacy_alter_configs_change_topic_configs_everywhere(cluster_factory):
    c = cluster_factory(3).start()
    name = topic(c)
    a = admin(c.bootstrap(2))
    res = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(timeout=30)
    for n in c.nodes.values():
        got = topic_configs(n.bootstrap, name)
        assert got["retention.ms"] == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value), got["retention.ms"]
        assert got["max.message.bytes"][0] == "2000000"
    # Delete one key: back to the default.
    res = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([res])[res].result(timeout=30)
    got = topic_configs(c.bootstrap(3), name)
    assert got["retention.ms"][1] != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert got["max.message.bytes"][0] == "2000000"
    # The new max.message.bytes is live: a 1.5 MB message is taken.
    p = producer(c.bootstrap(), **{"message.max.bytes": 3_000_000})
    p.produce(name, value=b"x" * 1_500_000, partition=0)
    assert p.flush(30) == 0
    # Legacy AlterConfigs replaces every override.
    legacy = ConfigResource(ConfigResource.Type.TOPIC, name, set_config={"segment.ms": "600000"})
    a.alter_configs([legacy])[legacy].result(timeout=30)
    got = topic_configs(c.bootstrap(1), name)
    assert got["segment.ms"][0] == "600000"
    assert got["max.message.bytes"][1] != ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_alter_configs_refusals_change_nothing(cluster_factory):
    c = cluster_factory(3).start()
    name = topic(c)
    a = admin(c.bootstrap(1))
    before = topic_configs(c.bootstrap(1), name)
    for entry, why in [(ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET), "retention.ms"),
                       (ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET), "no.such.config")]:
        res = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[entry])
        try:
            a.incremental_alter_configs([res])[res].result(timeout=30)
            raise AssertionError(f"{entry} accepted")
        except KafkaException as e:
            assert e.args[0].name() == "INVALID_CONFIG" and why in e.args[0].str(), e
    missing = ConfigResource(ConfigResource.Type.TOPIC, "no-such-topic", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    try:
        a.incremental_alter_configs([missing])[missing].result(timeout=30)
        raise AssertionError("unknown topic accepted")
    except KafkaException as e:
        assert e.args[0].name() == "UNKNOWN_TOPIC_OR_PART", e
    # validate_only checks and changes nothing.
    res = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res], validate_only=True)[res].result(timeout=30)
    assert topic_configs(c.bootstrap(1), name) == before


def leader_of(bootstrap: str, name: str, p: int = 0) -> int:
    return admin(bootstrap).list_topics(name, timeout=10).topics[name].partitions[p].leader


@pytest.mark.chronik_only("moves leadership away first with chronik-admin leader elect")
def test_elect_leaders_returns_leadership_to_the_preferred_replica(cluster_factory):
    # Automatic rebalancing off, so only the elections below move leadership.
    c = cluster_factory(3, args=["--auto-leader-rebalance", "false"]).start()
    name = topic(c)
    preferred = ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"][0]["replicas"][0]
    other = next(i for i in (1, 2, 3) if i != preferred)
    ok(c.node(1).rpc, "leader", "elect", "--topic", name, "--partition", "0", "--replica", str(other))
    wait_until(lambda: leader_of(c.bootstrap(), name) == other, 15, "leadership moved away")
    a = admin(c.bootstrap(2))
    fut = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(name, 0)])
    results = fut.result(timeout=30)
    assert results[TopicPartition(name, 0)] is None, results
    wait_until(lambda: leader_of(c.bootstrap(), name) == preferred, 15, "preferred replica leads")
    # Again: nothing to do, and the error says so.
    results = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(name, 0)]).result(timeout=30)
    err = results[TopicPartition(name, 0)]
    assert err is not None and err.name() == "ELECTION_NOT_NEEDED", err
    # kafka-python's client against the same API.
    ok(c.node(1).rpc, "leader", "elect", "--topic", name, "--partition", "0", "--replica", str(other))
    kp = KafkaAdminClient(bootstrap_servers=c.bootstrap())
    try:
        kp.elect_leaders(0, {name: [0]})
    finally:
        kp.close()
    wait_until(lambda: leader_of(c.bootstrap(), name) == preferred, 15, "preferred replica leads again")


@pytest.mark.chronik_only("reads replica sets with chronik-admin topic describe")
def test_kafka_python_alter_and_list_partition_reassignments(cluster_factory):
    c = cluster_factory(3, args=["--broker-session-timeout-ms", "1000"]).start()
    name = topic(c, rf=2)
    old = ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"][0]["replicas"]
    new = next(i for i in (1, 2, 3) if i not in old)
    target = [new, old[0]]
    p = producer(c.bootstrap())
    for i in range(300):
        p.produce(name, value=f"r{i}".encode(), partition=0)
    assert p.flush(30) == 0
    # Held back, the new replica cannot catch up: the move shows as ongoing. Wait until it is
    # fenced (out of Metadata), so kafka-python does not pick the stopped node for its requests.
    c.node(new).proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: new not in admin(c.node(old[0]).bootstrap).list_topics(timeout=10).brokers, 30,
                   f"node {new} fenced")
        kp = KafkaAdminClient(bootstrap_servers=c.bootstrap(*old))
        try:
            res = kp.alter_partition_reassignments({KTopicPartition(name, 0): target})
            print(f"alter_partition_reassignments: {res}")
            ongoing = kp.list_partition_reassignments()
            got = ongoing[KTopicPartition(name, 0)]
            assert got["adding_replicas"] == [new] and got["removing_replicas"] == [old[1]], got
            assert sorted(got["replicas"]) == sorted(set(old) | {new})
        finally:
            kp.close()
    finally:
        c.node(new).proc.send_signal(signal.SIGCONT)

    def done():
        parts = ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"][0]
        return parts["replicas"] == target and "adding" not in parts
    wait_until(done, 60, "the reassignment completed", interval_s=0.2)
    kp = KafkaAdminClient(bootstrap_servers=c.bootstrap())
    try:
        assert kp.list_partition_reassignments() == {}
        # A refused move gets its error and changes nothing.
        before = ok(c.node(1).rpc, "topic", "describe", name)
        answer = kp.alter_partition_reassignments({KTopicPartition(name, 0): [1, 9]})
        print(f"move to an unknown broker: {answer!r}")
        err = answer[KTopicPartition(name, 0)]
        assert err is kafka.errors.InvalidReplicationAssignmentError, err  # code 39
        assert ok(c.node(1).rpc, "topic", "describe", name) == before
    finally:
        kp.close()
    read_all(c.bootstrap(), name, [f"r{i}".encode() for i in range(300)], exact=True)
