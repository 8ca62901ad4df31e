"""The conformance probe: the same requests against any broker, answers as {key: value}.

Keys (compared between Chronik and Apache Kafka by tests/test_conformance.py):
  api.<key>.<Name>                    "min-max" from ApiVersions v3, or "absent"
  topic_config.<name>.{default,type,read_only}    DescribeConfigs v3 on a fresh topic
  broker_config.<name>.{default,type,read_only}   DescribeConfigs v3 on the broker (BROKER_CONFIGS)
  error.<probe>                       the error code of one bad (or borderline) request

Requests go over raw connections (tests/kafkawire.py) where the exact error code matters, and
through confluent-kafka's AdminClient for admin requests (it hands back the broker's code).
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic, ResourceType

import kafkawire as w

# ApiVersions key -> Kafka's name, for readable keys.
API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics",
    20: "DeleteTopics", 21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch",
    24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn", 27: "WriteTxnMarkers",
    28: "TxnOffsetCommit", 29: "DescribeAcls", 30: "CreateAcls", 31: "DeleteAcls", 32: "DescribeConfigs",
    33: "AlterConfigs", 34: "AlterReplicaLogDirs", 35: "DescribeLogDirs", 36: "SaslAuthenticate",
    37: "CreatePartitions", 38: "CreateDelegationToken", 39: "RenewDelegationToken",
    40: "ExpireDelegationToken", 41: "DescribeDelegationToken", 42: "DeleteGroups", 43: "ElectLeaders",
    44: "IncrementalAlterConfigs", 45: "AlterPartitionReassignments", 46: "ListPartitionReassignments",
    47: "OffsetDelete", 48: "DescribeClientQuotas", 49: "AlterClientQuotas",
    50: "DescribeUserScramCredentials", 51: "AlterUserScramCredentials", 55: "DescribeQuorum",
    57: "UpdateFeatures", 60: "DescribeCluster", 61: "DescribeProducers", 64: "UnregisterBroker",
    65: "DescribeTransactions", 66: "ListTransactions", 68: "ConsumerGroupHeartbeat",
    69: "ConsumerGroupDescribe", 71: "GetTelemetrySubscriptions", 72: "PushTelemetry",
    74: "ListConfigResources", 75: "DescribeTopicPartitions", 76: "ShareGroupHeartbeat",
    77: "ShareGroupDescribe", 78: "ShareFetch", 79: "ShareAcknowledge", 80: "AddRaftVoter",
    81: "RemoveRaftVoter", 83: "InitializeShareGroupState", 84: "ReadShareGroupState",
    85: "WriteShareGroupState", 86: "DeleteShareGroupState", 87: "ReadShareGroupStateSummary",
    88: "StreamsGroupHeartbeat", 89: "StreamsGroupDescribe", 90: "DescribeShareGroupOffsets",
    91: "AlterShareGroupOffsets", 92: "DeleteShareGroupOffsets", 93: "ListShareGroupOffsets",
    94: "DescribeShareGroupOffsetsV2",
}

# Broker configs that clients read (admin tools, librdkafka, the Java client, operators'
# dashboards): limits a producer must respect, defaults of auto-created topics, group timeouts.
BROKER_CONFIGS = [
    "message.max.bytes", "auto.create.topics.enable", "num.partitions", "default.replication.factor",
    "min.insync.replicas", "compression.type", "log.retention.ms", "log.retention.bytes", "log.segment.bytes",
    "log.roll.ms", "log.cleanup.policy", "delete.topic.enable", "unclean.leader.election.enable",
    "offsets.topic.num.partitions", "offsets.topic.replication.factor", "offsets.retention.minutes",
    "offset.metadata.max.bytes", "group.min.session.timeout.ms", "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms", "group.max.size", "transaction.max.timeout.ms",
    "replica.lag.time.max.ms", "auto.leader.rebalance.enable", "connections.max.idle.ms",
    "socket.request.max.bytes", "queued.max.request.bytes", "max.connections", "max.connections.per.ip",
    "broker.rack", "node.id",
]

CONFIG_TYPES = {0: "UNKNOWN", 1: "BOOLEAN", 2: "STRING", 3: "INT", 4: "SHORT", 5: "LONG", 6: "DOUBLE",
                7: "LIST", 8: "CLASS", 9: "PASSWORD"}

TIMEOUT_S = 30


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------- raw requests
def api_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    with w.Connection(bootstrap) as c:
        return w.parse_api_versions_response(c.roundtrip(w.api_versions_request(3, 1)), 3).api_keys


def describe_configs(bootstrap: str, resource_type: int, name: str) -> tuple[int, dict[str, dict]]:
    """DescribeConfigs v3 (non-flexible): (error code, {name: {default, type, read_only, source}})."""
    body = (w.i32(1) + w.i8(resource_type) + w.string(name) + w.i32(-1)  # all keys
            + w.i8(0) + w.i8(0))  # no synonyms, no documentation
    with w.Connection(bootstrap) as c:
        r = w.Reader(c.roundtrip(w.request(32, 3, 5, body)))
    r.i32()  # correlation id
    r.i32()  # throttle
    out: dict[str, dict] = {}
    err = 0
    for _ in range(r.i32()):
        err = r.i16()
        r.string()  # error message
        r.i8()
        r.string()
        for _ in range(r.i32()):
            cname, value, read_only, source, _sensitive = r.string(), r.string(), r.i8(), r.i8(), r.i8()
            for _ in range(r.i32()):  # synonyms
                r.string(), r.string(), r.i8()
            ctype = r.i8()
            r.string()  # documentation
            out[cname] = {"default": value, "type": CONFIG_TYPES.get(ctype, str(ctype)),
                          "read_only": bool(read_only), "source": source}
    return err, out


def produce_error(bootstrap: str, topic: str, partition: int, batch: bytes, acks: int = -1) -> int:
    with w.Connection(bootstrap) as c:
        _, parts = w.parse_produce_response(
            c.roundtrip(w.produce_request(7, 3, topic, partition, batch, acks=acks)), 7)
    return parts[0].error_code


def fetch_error(bootstrap: str, topic: str, partition: int, offset: int) -> int:
    """Fetch v4 (max wait 0): the partition's error code."""
    body = (w.i32(-1) + w.i32(0) + w.i32(1) + w.i32(1 << 20) + w.i8(0)
            + w.i32(1) + w.string(topic) + w.i32(1) + w.i32(partition) + w.i64(offset) + w.i32(1 << 20))
    with w.Connection(bootstrap) as c:
        r = w.Reader(c.roundtrip(w.request(1, 4, 6, body)))
    r.i32()
    r.i32()  # throttle
    r.i32()  # topics
    r.string()
    r.i32()  # partitions
    r.i32()
    return r.i16()


def list_offsets_error(bootstrap: str, topic: str, partition: int, timestamp: int = -1) -> int:
    """ListOffsets v1."""
    body = w.i32(-1) + w.i32(1) + w.string(topic) + w.i32(1) + w.i32(partition) + w.i64(timestamp)
    with w.Connection(bootstrap) as c:
        r = w.Reader(c.roundtrip(w.request(2, 1, 7, body)))
    r.i32()
    r.i32()  # topics
    r.string()
    r.i32()  # partitions
    r.i32()
    return r.i16()


def metadata_topic_error(bootstrap: str, topic: str) -> int:
    with w.Connection(bootstrap) as c:
        md = w.parse_metadata_response_v1(c.roundtrip(w.metadata_request_v1(8, [topic])))
    return md.topics[topic][0] if topic in md.topics else -999


def commit_error(bootstrap: str, group: str, topic: str, partition: int, *, generation: int = -1,
                 member_id: str = "", metadata: str | None = None) -> int:
    from test_offsets import offset_commit_request, parse_offset_commit_response
    with w.Connection(bootstrap) as c:
        errs = parse_offset_commit_response(c.roundtrip(offset_commit_request(
            2, 9, group, {topic: {partition: (1, metadata)}}, generation=generation, member_id=member_id)), 2, 9)
    return errs[(topic, partition)]


def init_producer(bootstrap: str) -> tuple[int, int]:
    with w.Connection(bootstrap) as c:
        _, err, pid, epoch = w.parse_init_producer_id_response_v0(c.roundtrip(w.init_producer_id_request_v0(4)))
    assert err == 0, f"InitProducerId: {err}"
    return pid, epoch


# ---------------------------------------------------------------------- admin requests
def _code(fut) -> int:
    try:
        fut.result(timeout=TIMEOUT_S)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def create_error(a: AdminClient, name: str, partitions: int = 1, rf: int = 1, config: dict | None = None) -> int:
    return _code(a.create_topics([NewTopic(name, partitions, rf, config=config or {})],
                                 operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)[name])


def alter_error(a: AdminClient, topic: str, config: dict[str, str]) -> int:
    res = ConfigResource(ResourceType.TOPIC, topic, set_config=config)
    return _code(a.alter_configs([res], request_timeout=TIMEOUT_S)[res])


# ---------------------------------------------------------------------- the probe
def probe(bootstrap: str, broker_id: int = 1) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, (lo, hi) in api_versions(bootstrap).items():
        out[f"api.{key}.{API_NAMES.get(key, 'Unknown')}"] = f"{lo}-{hi}"

    a = AdminClient({"bootstrap.servers": bootstrap})
    fresh = _name("probe-configs")
    assert create_error(a, fresh) == 0
    err, topic_cfg = describe_configs(bootstrap, 2, fresh)
    assert err == 0, f"DescribeConfigs topic: {err}"
    for name, entry in topic_cfg.items():
        for field in ("default", "type", "read_only"):
            out[f"topic_config.{name}.{field}"] = entry[field]
    err, broker_cfg = describe_configs(bootstrap, 4, str(broker_id))
    assert err == 0, f"DescribeConfigs broker: {err}"
    for name in BROKER_CONFIGS:
        entry = broker_cfg.get(name)
        for field in ("default", "type", "read_only"):
            out[f"broker_config.{name}.{field}"] = "absent" if entry is None else entry[field]

    out.update(error_probes(bootstrap, a))
    return out


def error_probes(bootstrap: str, a: AdminClient) -> dict[str, int]:
    e: dict[str, int] = {}
    # CreateTopics
    e["create.invalid_name_chars"] = create_error(a, "bad name!")
    e["create.invalid_name_dot"] = create_error(a, ".")
    e["create.invalid_name_dotdot"] = create_error(a, "..")
    e["create.invalid_name_250_chars"] = create_error(a, "a" * 250)
    e["create.invalid_name_non_ascii"] = create_error(a, "ümlaut")
    e["create.rf_above_brokers"] = create_error(a, _name("rf3"), rf=3)
    e["create.zero_partitions"] = create_error(a, _name("zero"), partitions=0)
    e["create.rf_zero"] = create_error(a, _name("rf0"), rf=0)
    e["create.retention_ms_not_a_number"] = create_error(a, _name("cfg"), config={"retention.ms": "abc"})
    e["create.unknown_config"] = create_error(a, _name("cfg"), config={"no.such.config": "1"})
    e["create.segment_bytes_4096"] = create_error(a, _name("cfg"), config={"segment.bytes": "4096"})
    e["create.cleanup_policy_bogus"] = create_error(a, _name("cfg"), config={"cleanup.policy": "bogus"})
    e["create.min_insync_replicas_0"] = create_error(a, _name("cfg"), config={"min.insync.replicas": "0"})
    e["create.compression_type_bogus"] = create_error(a, _name("cfg"), config={"compression.type": "bogus"})
    e["create.max_message_bytes_negative"] = create_error(a, _name("cfg"), config={"max.message.bytes": "-5"})
    e["create.cleanup_policy_compact"] = create_error(a, _name("cfg"), config={"cleanup.policy": "compact"})
    topic = _name("probe")
    assert create_error(a, topic, partitions=3) == 0
    e["create.existing_topic"] = create_error(a, topic)

    # CreatePartitions, DeleteTopics, configs of unknown topics
    e["create_partitions.shrink"] = _code(a.create_partitions([NewPartitions(topic, 2)],
                                                              request_timeout=TIMEOUT_S)[topic])
    e["create_partitions.same_count"] = _code(a.create_partitions([NewPartitions(topic, 3)],
                                                                  request_timeout=TIMEOUT_S)[topic])
    missing = _name("missing")
    e["create_partitions.unknown_topic"] = _code(a.create_partitions([NewPartitions(missing, 4)],
                                                                     request_timeout=TIMEOUT_S)[missing])
    e["delete.unknown_topic"] = _code(a.delete_topics([missing], operation_timeout=TIMEOUT_S)[missing])
    e["describe_configs.unknown_topic"] = describe_configs(bootstrap, 2, missing)[0]
    e["describe_configs.unknown_broker"] = describe_configs(bootstrap, 4, "9999")[0]
    e["alter_configs.retention_ms_not_a_number"] = alter_error(a, topic, {"retention.ms": "abc"})
    e["alter_configs.unknown_config"] = alter_error(a, topic, {"no.such.config": "1"})
    e["alter_configs.unknown_topic"] = alter_error(a, missing, {"retention.ms": "1000"})
    e["alter_configs.segment_bytes_4096"] = alter_error(a, topic, {"segment.bytes": "4096"})

    # Metadata
    e["metadata.invalid_topic_name"] = metadata_topic_error(bootstrap, "bad name!")

    # Produce
    batch = w.record_batch([(b"k", b"v")])
    assert produce_error(bootstrap, topic, 0, batch) == 0
    e["produce.partition_out_of_range"] = produce_error(bootstrap, topic, 7, batch)
    e["produce.unknown_topic"] = produce_error(bootstrap, _name("nope"), 0, batch)
    e["produce.corrupt_crc"] = produce_error(bootstrap, topic, 0, w.corrupt_record_batch(batch))
    e["produce.batch_over_max_message_bytes"] = produce_error(
        bootstrap, topic, 0, w.record_batch([(None, b"x" * (1_100_000))]))
    e["produce.acks_2"] = produce_error(bootstrap, topic, 0, batch, acks=2)
    pid, epoch = init_producer(bootstrap)
    e["produce.idempotent_first_sequence_5"] = produce_error(
        bootstrap, topic, 1, w.record_batch([(None, b"s")], producer_id=pid, producer_epoch=epoch, base_sequence=5))
    assert produce_error(bootstrap, topic, 2, w.record_batch(
        [(None, b"s")], producer_id=pid, producer_epoch=epoch, base_sequence=0)) == 0
    e["produce.idempotent_sequence_gap"] = produce_error(
        bootstrap, topic, 2, w.record_batch([(None, b"s")], producer_id=pid, producer_epoch=epoch, base_sequence=3))
    e["produce.idempotent_stale_epoch"] = produce_error(
        bootstrap, topic, 2, w.record_batch([(None, b"s")], producer_id=pid, producer_epoch=epoch - 1 if epoch > 0
                                            else 32767, base_sequence=1))

    # Fetch, ListOffsets
    e["fetch.beyond_high_watermark"] = fetch_error(bootstrap, topic, 0, 100)
    e["fetch.at_high_watermark"] = fetch_error(bootstrap, topic, 0, 1)
    e["fetch.partition_out_of_range"] = fetch_error(bootstrap, topic, 7, 0)
    e["fetch.unknown_topic"] = fetch_error(bootstrap, missing, 0, 0)
    e["list_offsets.partition_out_of_range"] = list_offsets_error(bootstrap, topic, 7)
    e["list_offsets.unknown_topic"] = list_offsets_error(bootstrap, missing, 0)

    # OffsetCommit
    group = _name("probe-group")
    e["offset_commit.stale_generation_unknown_group"] = commit_error(bootstrap, group, topic, 0, generation=5)
    assert commit_error(bootstrap, group, topic, 0) == 0
    e["offset_commit.unknown_member_empty_group"] = commit_error(bootstrap, group, topic, 0, generation=5,
                                                                 member_id="m-1")
    e["offset_commit.unknown_partition"] = commit_error(bootstrap, group, topic, 7)
    e["offset_commit.unknown_topic"] = commit_error(bootstrap, group, missing, 0)
    e["offset_commit.empty_group_id"] = commit_error(bootstrap, "", topic, 0)
    e["offset_commit.metadata_over_4096_bytes"] = commit_error(bootstrap, group, topic, 0, metadata="m" * 4097)

    # ApiVersions at a version the broker does not know
    with w.Connection(bootstrap) as c:
        e["api_versions.unsupported_version"] = w.parse_api_versions_response(
            c.roundtrip(w.api_versions_request(99, 2)), 0).error_code
    return {f"error.{k}": v for k, v in e.items()}



# ---------------------------------------------------------------------- three brokers
def find_coordinator(bootstrap: str, group: str) -> tuple[int, int]:
    """FindCoordinator v1 for a group: (error code, coordinator node id)."""
    with w.Connection(bootstrap) as c:
        r = w.Reader(c.roundtrip(w.request(10, 1, 11, w.string(group) + w.i8(0))))
    r.i32()  # correlation id
    r.i32()  # throttle
    err = r.i16()
    r.string()  # error message
    return err, r.i32()


def _until(what: str, f, timeout_s: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while (got := f()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"probe: timed out waiting for {what}")
        time.sleep(0.1)
    return got


def cluster_probes(nodes: dict[int, str]) -> dict[str, int]:
    """Error codes of requests that need more than one broker, each sent to a broker that does
    not lead the partition (a follower, and a broker with no replica) or does not coordinate the
    group. `nodes`: node id -> that broker's bootstrap address; three brokers."""
    a = AdminClient({"bootstrap.servers": ",".join(nodes.values())})
    topic = _name("probe-nl")
    assert create_error(a, topic, rf=2) == 0

    def placed():
        p = a.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions.get(0)
        return p if p is not None and p.leader in nodes and len(p.replicas) == 2 else None

    p = _until(f"{topic}-0 to have a leader", placed)
    # Every broker has the topic in its metadata before it is asked about it.
    for n, addr in nodes.items():
        _until(f"node {n} to know {topic}", lambda: metadata_topic_error(addr, topic) == 0 or None)
    follower = next(r for r in p.replicas if r != p.leader)
    outsider = next(n for n in nodes if n not in p.replicas)
    batch = w.record_batch([(None, b"v")])
    e: dict[str, int] = {}
    for who, node in (("follower", follower), ("non_replica", outsider)):
        e[f"produce_to_{who}"] = produce_error(nodes[node], topic, 0, batch)
        e[f"fetch_v4_from_{who}"] = fetch_error(nodes[node], topic, 0, 0)
        e[f"list_offsets_from_{who}"] = list_offsets_error(nodes[node], topic, 0)

    group = _name("probe-group")
    coordinator = _until("a group coordinator", lambda: (lambda r: r[1] if r[0] == 0 else None)(
        find_coordinator(nodes[p.leader], group)))
    other = next(n for n in nodes if n != coordinator)
    e["offset_commit_to_non_coordinator"] = commit_error(nodes[other], group, topic, 0)
    e["create.rf_above_3_brokers"] = create_error(a, _name("rf4"), rf=4)
    return {f"error.cluster.{k}": v for k, v in e.items()}
