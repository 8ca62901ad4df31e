"""Authorized operations as confluent-kafka's AdminClient reads them (librdkafka asks Metadata,
DescribeCluster and DescribeGroups with the include flags set): without an authorizer, every
operation Kafka defines for the resource type, as Apache Kafka answers without one
(`--broker=kafka` runs the same test against it)."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AclOperation

from helpers import admin, create_topic, unique_topic

# Kafka's AclEntry.supportedOperations per resource type.
TOPIC_OPS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
             AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
             AclOperation.ALTER_CONFIGS}
CLUSTER_OPS = {AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.CLUSTER_ACTION,
               AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE}
GROUP_OPS = {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE, AclOperation.DESCRIBE_CONFIGS,
             AclOperation.ALTER_CONFIGS}


def test_topic_cluster_and_group_authorized_operations_are_every_operation(broker):
    name = unique_topic("authz")
    create_topic(broker.bootstrap, name, partitions=3)
    a = admin(broker.bootstrap)

    d = a.describe_topics(TopicCollection([name]), include_authorized_operations=True)[name].result(timeout=30)
    assert set(d.authorized_operations) == TOPIC_OPS
    assert [p.id for p in d.partitions] == [0, 1, 2]
    # Not asked for: not reported.
    d = a.describe_topics(TopicCollection([name]))[name].result(timeout=30)
    assert not d.authorized_operations

    c = a.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert set(c.authorized_operations) == CLUSTER_OPS
    assert not a.describe_cluster().result(timeout=30).authorized_operations

    # A group known by its committed offsets.
    group = f"{name}-group"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(name, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    g = a.describe_consumer_groups([group], include_authorized_operations=True)[group].result(timeout=30)
    assert set(g.authorized_operations) == GROUP_OPS
