"""ACLs enforced (`--authorizer acl`) for SASL users with real clients: without an ACL a user
can neither produce, consume, join a group, create or delete a topic nor call the admin APIs,
each refused with Kafka's code (TOPIC_, GROUP_, CLUSTER_AUTHORIZATION_FAILED); Metadata hides
the topics it may not describe; each grant opens exactly its operation (WRITE implies
DESCRIBE); a DENY wins over an ALLOW; super users may do everything; authorized operations
report the allowed set; denials are counted; ACLs survive a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourcePatternType,
                                   ResourceType, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion)

from conftest import Broker
from helpers import http_get, unique_topic, wait_until

pytestmark = pytest.mark.chronik_only(
    "SASL users on the reference broker would need JAAS settings tests/reference does not write")

ADMIN = ("admin", "admin-secret")
ALICE = ("alice", "alice-secret")


def conf(bootstrap: str, user: tuple[str, str], **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user[0], "sasl.password": user[1], **extra}


@pytest.fixture
def acl_broker(tmp_path: Path):
    b = Broker(tmp_path / "acl", name="acl", args=[
        "--listeners", "SASL_PLAINTEXT://127.0.0.1:0", "--bootstrap-user", f"{ADMIN[0]}:{ADMIN[1]}",
        "--authorizer", "acl", "--super-users", f"User:{ADMIN[0]}", "--http-addr", "127.0.0.1:0"])
    b.start(kafka_addr=None)
    a = AdminClient(conf(b.bootstrap, ADMIN))
    up = UserScramCredentialUpsertion(ALICE[0], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                      ALICE[1].encode())
    for f in a.alter_user_scram_credentials([up]).values():
        f.result(timeout=30)
    yield b
    b.cleanup()


def grant(bootstrap: str, rt, name: str, op, perm=AclPermissionType.ALLOW, pattern=ResourcePatternType.LITERAL):
    a = AdminClient(conf(bootstrap, ADMIN))
    b = AclBinding(rt, name, pattern, f"User:{ALICE[0]}", "*", op, perm)
    for f in a.create_acls([b]).values():
        f.result(timeout=30)


def produce_error(bootstrap: str, topic: str) -> KafkaError | None:
    """The delivery error of one message, or None when it was stored."""
    p = Producer(conf(bootstrap, ALICE, **{"message.timeout.ms": 5000, "allow.auto.create.topics": False}))
    got: list = []
    p.produce(topic, b"x", partition=0, on_delivery=lambda err, msg: got.append(err))
    p.flush(15)
    assert got, "no delivery report"
    return got[0]


def make_topic(bootstrap: str, topic: str) -> None:
    a = AdminClient(conf(bootstrap, ADMIN))
    for f in a.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(timeout=30)


def test_produce_and_consume_need_write_and_read(acl_broker):
    b = acl_broker.bootstrap
    topic = unique_topic("acl")
    make_topic(b, topic)
    err = produce_error(b, topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    grant(b, ResourceType.TOPIC, topic, AclOperation.WRITE)
    wait_until(lambda: produce_error(b, topic) is None, 20, "alice may write")
    # WRITE implies DESCRIBE: the topic is visible now, but not readable.
    c = Consumer(conf(b, ALICE, **{"group.id": "g-acl", "enable.auto.commit": False}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # librdkafka also looks up the group's coordinator (refused too: no group ACL yet);
        # the fetch must come back TOPIC_AUTHORIZATION_FAILED and deliver nothing.
        codes = set()
        deadline = time.monotonic() + 15
        while KafkaError.TOPIC_AUTHORIZATION_FAILED not in codes and time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None:
                assert m.error(), "a message was delivered without READ"
                codes.add(m.error().code())
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, codes
    finally:
        c.close()
    grant(b, ResourceType.TOPIC, topic, AclOperation.READ)
    c = Consumer(conf(b, ALICE, **{"group.id": "g-acl", "auto.offset.reset": "earliest"}))
    try:
        c.subscribe([topic])
        m = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None:
                break
        # No READ on the group: joining it is refused.
        assert m is not None and m.error() and m.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED, m
    finally:
        c.close()
    grant(b, ResourceType.GROUP, "g-acl", AclOperation.READ)
    c = Consumer(conf(b, ALICE, **{"group.id": "g-acl", "auto.offset.reset": "earliest"}))
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                break
        assert m is not None and not m.error() and m.value() == b"x", m
    finally:
        c.close()
    # A DENY wins over the ALLOW.
    grant(b, ResourceType.TOPIC, topic, AclOperation.WRITE, AclPermissionType.DENY)
    wait_until(lambda: (e := produce_error(b, topic)) is not None
               and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, 20, "the DENY applies")
    _, text = http_get(acl_broker.http, "/metrics")
    assert "chronik_authorization_denied_total" in text


def test_metadata_hides_topics_and_reports_the_allowed_operations(acl_broker):
    b = acl_broker.bootstrap
    hidden, seen = unique_topic("hidden"), unique_topic("seen")
    make_topic(b, hidden)
    make_topic(b, seen)
    grant(b, ResourceType.TOPIC, "seen", AclOperation.READ, pattern=ResourcePatternType.PREFIXED)
    a = AdminClient(conf(b, ALICE))
    topics = a.list_topics(timeout=10).topics
    assert seen in topics and hidden not in topics, sorted(topics)
    from confluent_kafka import TopicCollection
    desc = a.describe_topics(TopicCollection([seen]), include_authorized_operations=True)[seen].result(timeout=30)
    assert set(desc.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE}, desc.authorized_operations


def test_admin_operations_need_their_acls(acl_broker):
    b = acl_broker.bootstrap
    a = AdminClient(conf(b, ALICE))
    topic = unique_topic("alice-made")
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Listing ACLs needs DESCRIBE on the cluster. librdkafka reports the refusal as an empty
    # result, so one ACL exists here that alice must not see.
    grant(b, ResourceType.TOPIC, "unrelated", AclOperation.READ)
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    try:
        assert a.describe_acls(every).result(timeout=30) == []
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert len(AdminClient(conf(b, ADMIN)).describe_acls(every).result(timeout=30)) == 1
    up = UserScramCredentialUpsertion("mallory", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"x")
    with pytest.raises(KafkaException) as e:
        a.alter_user_scram_credentials([up])["mallory"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # librdkafka calls resource type 4 (Kafka's CLUSTER) BROKER.
    grant(b, ResourceType.BROKER, "kafka-cluster", AclOperation.CREATE)
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    with pytest.raises(KafkaException) as e:
        a.delete_topics([topic])[topic].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(b, ResourceType.TOPIC, topic, AclOperation.DELETE)
    a.delete_topics([topic])[topic].result(timeout=30)


def config_error(call) -> int | None:
    """The error code of the one resource in an admin config call, None on success."""
    futures = call()
    try:
        for f in futures.values():
            f.result(timeout=30)
        return None
    except KafkaException as e:
        return e.args[0].code()


def test_config_apis_need_describe_configs_and_alter_configs(acl_broker):
    """DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: a topic resource needs the
    operation on the topic (TOPIC_AUTHORIZATION_FAILED), a broker resource on the cluster
    (CLUSTER_AUTHORIZATION_FAILED), each resource answered on its own."""
    b = acl_broker.bootstrap
    topic = unique_topic("cfg")
    make_topic(b, topic)
    a = AdminClient(conf(b, ALICE))
    res = ConfigResource(ResourceType.TOPIC, topic)
    broker = ConfigResource(ResourceType.BROKER, "1")
    describe = lambda r: config_error(lambda: a.describe_configs([r]))  # noqa: E731
    alter = lambda: config_error(lambda: a.alter_configs(  # noqa: E731
        [ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "3600000"})]))
    incremental = lambda: config_error(lambda: a.incremental_alter_configs([ConfigResource(  # noqa: E731
        ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("segment.ms", "600000", incremental_operation=AlterConfigOpType.SET)])]))
    assert describe(res) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert describe(broker) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert alter() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert incremental() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(b, ResourceType.TOPIC, topic, AclOperation.DESCRIBE_CONFIGS)
    assert describe(res) is None
    assert alter() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(b, ResourceType.TOPIC, topic, AclOperation.ALTER_CONFIGS)
    assert alter() is None and incremental() is None
    grant(b, ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE_CONFIGS)
    assert describe(broker) is None


def test_acls_survive_a_restart(acl_broker):
    b = acl_broker
    topic = unique_topic("kept")
    make_topic(b.bootstrap, topic)
    grant(b.bootstrap, ResourceType.TOPIC, topic, AclOperation.WRITE)
    b.terminate()
    b.start(kafka_addr=None)
    assert produce_error(b.bootstrap, topic) is None
    other = unique_topic("other")
    make_topic(b.bootstrap, other)
    err = produce_error(b.bootstrap, other)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_committed_offsets_show_only_topics_the_user_may_describe(acl_broker):
    from confluent_kafka import ConsumerGroupTopicPartitions
    b = acl_broker.bootstrap
    seen, hidden = unique_topic("off-seen"), unique_topic("off-hidden")
    for t in (seen, hidden):
        make_topic(b, t)
    # The admin (a super user) commits offsets of group g-off on both topics.
    c = Consumer(conf(b, ADMIN, **{"group.id": "g-off", "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition(seen, 0, 1), TopicPartition(hidden, 0, 1)], asynchronous=False)
    finally:
        c.close()
    grant(b, ResourceType.GROUP, "g-off", AclOperation.DESCRIBE)
    grant(b, ResourceType.TOPIC, seen, AclOperation.DESCRIBE)
    a = AdminClient(conf(b, ALICE))
    got = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g-off")])["g-off"].result(timeout=30)
    assert {tp.topic for tp in got.topic_partitions} == {seen}, got.topic_partitions


def test_users_and_acls_are_enforced_on_every_node_of_a_cluster(cluster_factory):
    """Three nodes with SASL listeners and the ACL authorizer: a user and an ACL made through one
    node hold on the others (Raft metadata), for produce to each partition's leader."""
    c = cluster_factory(3, args=["--bootstrap-user", f"{ADMIN[0]}:{ADMIN[1]}", "--authorizer", "acl",
                                 "--super-users", f"User:{ADMIN[0]}"], listener="SASL_PLAINTEXT").start()
    b1 = c.bootstrap(1)
    a = AdminClient(conf(b1, ADMIN))
    up = UserScramCredentialUpsertion(ALICE[0], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                      ALICE[1].encode())
    for f in a.alter_user_scram_credentials([up]).values():
        f.result(timeout=30)
    topic = unique_topic("acl3")
    for f in a.create_topics([NewTopic(topic, 3, 3)]).values():
        f.result(timeout=30)

    def produced_everywhere(node: int) -> list:
        """Delivery errors of one message to each partition, bootstrapping through `node`."""
        p = Producer(conf(c.bootstrap(node), ALICE, **{"message.timeout.ms": 8000}))
        got: list = []
        for part in range(3):
            p.produce(topic, b"x", partition=part, on_delivery=lambda err, msg: got.append(err))
        p.flush(20)
        return got

    for node in (1, 2, 3):
        errs = produced_everywhere(node)
        assert len(errs) == 3 and all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
                                      for e in errs), (node, errs)
    grant(c.bootstrap(2), ResourceType.TOPIC, topic, AclOperation.WRITE)
    for node in (1, 2, 3):
        wait_until(lambda: produced_everywhere(node) == [None, None, None], 30, f"alice writes through node {node}")


def test_deleting_committed_offsets_needs_delete_on_the_group_and_read_on_the_topic(acl_broker):
    from confluent_kafka import ConsumerGroupTopicPartitions
    b = acl_broker.bootstrap
    topic = unique_topic("off-del")
    make_topic(b, topic)
    c = Consumer(conf(b, ADMIN, **{"group.id": "g-del", "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        c.close()
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition
    from kafka.errors import KafkaError as KError
    ka = KafkaAdminClient(bootstrap_servers=b, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                          sasl_plain_username=ALICE[0], sasl_plain_password=ALICE[1])

    def delete_error():
        """OffsetDelete through kafka-python (confluent-kafka's Python client has no such call)."""
        try:
            res = ka.delete_group_offsets("g-del", [KTopicPartition(topic, 0)])
        except KError as e:
            return e.errno
        errs = [e.errno for e in res.values() if e.errno != 0]
        return errs[0] if errs else None

    assert delete_error() == KafkaError.GROUP_AUTHORIZATION_FAILED
    grant(b, ResourceType.GROUP, "g-del", AclOperation.DELETE)
    assert delete_error() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(b, ResourceType.TOPIC, topic, AclOperation.READ)
    assert delete_error() is None
    ka.close()


def test_transactions_need_write_on_the_transactional_id(acl_broker):
    """A transactional producer needs WRITE on its transactional id (InitProducerId refused with
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED without it) and WRITE on the topics it adds."""
    b = acl_broker.bootstrap
    topic = unique_topic("acl-txn")
    make_topic(b, topic)
    txn_id = f"{topic}-tx"

    def txn_producer() -> Producer:
        return Producer(conf(b, ALICE, **{"transactional.id": txn_id, "transaction.timeout.ms": 10000,
                                          "socket.timeout.ms": 10000}))

    p = txn_producer()
    with pytest.raises(KafkaException) as e:
        p.init_transactions(20)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, e.value
    grant(b, ResourceType.TRANSACTIONAL_ID, txn_id, AclOperation.WRITE)
    grant(b, ResourceType.TOPIC, topic, AclOperation.WRITE)
    p = txn_producer()
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, b"t", partition=0)
    p.commit_transaction(30)
