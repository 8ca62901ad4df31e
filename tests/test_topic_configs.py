"""Topic configs as Kafka defines them (issue 16, items 3 and 4), with confluent-kafka and, for
the stored codec, aiokafka's raw Fetch:

* compression.type: a topic with each codec stores a batch the producer compressed differently
  in the topic's codec (read back by a raw Fetch), and a consumer reads back every key, value,
  header and timestamp; `producer` keeps the producer's codec.
* Hostile batches (raw Produce v9 through tests/kafkawire.py): a gzip bomb (8 MiB of records in
  8 KiB) to a topic that recompresses, with max.decompressed.message.bytes=1 MiB, gets
  INVALID_RECORD as from Kafka; garbage inside a valid CRC gets an error (Chronik:
  CORRUPT_MESSAGE; Kafka 4.4 answers UNKNOWN_SERVER_ERROR) and nothing is stored.
* message.timestamp.type=LogAppendTime: the broker stamps the batch; the delivery report (the
  produce response's log_append_time_ms) and the consumer see TIMESTAMP_LOG_APPEND_TIME with the
  broker's time, not the producer's.
* message.timestamp.before.max.ms / after.max.ms: a record outside the window is refused with
  INVALID_TIMESTAMP and nothing is stored; Kafka 4.x's default after.max.ms (1 h) applies to a
  topic that sets nothing.
* AdminClient: a value out of Kafka's range gets INVALID_CONFIG with Kafka's message; an unknown
  name INVALID_CONFIG; IncrementalAlterConfigs APPEND/SUBTRACT work on a list config and give
  Kafka's INVALID_CONFIG on a non-list one; Chronik-only: a config whose behaviour Chronik lacks
  (tiered storage, throttled replicas) is refused saying so, and Kafka 3.x's deprecated
  message.format.version is accepted and described (Apache Kafka 4.x refuses the name).

Every test passes against Apache Kafka 4.4 (`--broker=kafka`) where it checks Kafka behaviour.
"""

from __future__ import annotations

import asyncio
import gzip
import time

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

import kafkawire as kw
from conftest import kafka_mode
from helpers import admin, admin_error, consume_all, create_topic, produce_all, producer, unique_topic

ADMIN_TIMEOUT_S = 30
CODEC_IDS = {"uncompressed": 0, "none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.fixture(scope="module")
def bootstrap(module_broker) -> str:
    return module_broker.bootstrap




def stored_batches(bootstrap: str, topic: str, end: int) -> list[tuple[int, int]]:
    """(codec id, header max timestamp) of each batch of partition 0 below `end`, from a raw
    Fetch (aiokafka's)."""
    async def run() -> list[tuple[int, int]]:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
        await client.bootstrap()
        try:
            cluster = await client.fetch_all_metadata()
            leader = cluster.leader_for_partition(AioTopicPartition(topic, 0))
            batches, offset = [], 0
            while offset < end:
                resp = await client.send(leader, FetchRequest(
                    max_wait_time=500, min_bytes=1, max_bytes=8 << 20, isolation_level=0,
                    topics=[(topic, [(0, offset, 8 << 20)])]))
                [(_, [part])] = resp.topics
                assert part[1] == 0, f"fetch error {part[1]}"
                records = MemoryRecords(part[-1])
                while (batch := records.next_batch()) is not None:
                    if batch.next_offset > offset:
                        batches.append((batch.compression_type, batch.max_timestamp))
                        offset = batch.next_offset
            return batches
        finally:
            await client.close()
    return asyncio.run(run())


def stored_codecs(bootstrap: str, topic: str, end: int) -> set[int]:
    return {codec for codec, _ in stored_batches(bootstrap, topic, end)}


def items(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), f"value-{i:04d}-".encode() + b"abcdefgh" * (i % 50)) for i in range(n)]


# ---------------------------------------------------------------------- compression.type
@pytest.mark.parametrize("topic_codec,producer_codec", [
    ("uncompressed", "lz4"), ("gzip", "lz4"), ("snappy", "zstd"), ("lz4", "gzip"), ("zstd", "lz4"),
    ("producer", "snappy")])
def test_compression_type_recompresses_into_the_topic_codec(bootstrap, topic_codec, producer_codec):
    topic = unique_topic(f"codec-{topic_codec}")
    create_topic(bootstrap, topic, config={"compression.type": topic_codec})
    n, ts = 300, int(time.time() * 1000) - 5000
    p = producer(bootstrap, **{"compression.type": producer_codec, "linger.ms": 20})
    log = produce_all(p, topic, items(n), headers=[("h", b"1"), ("g", b"2")], timestamp=ts)
    assert not log.failed, log.failed[:3]
    got = consume_all(bootstrap, topic, 0)
    assert [(m.key, m.value) for m in got] == items(n)
    assert all(m.timestamp == ts for m in got), {m.timestamp for m in got}
    assert all(m.headers == [("h", b"1"), ("g", b"2")] for m in got), got[0].headers
    want = CODEC_IDS[producer_codec if topic_codec == "producer" else topic_codec]
    assert stored_codecs(bootstrap, topic, n) == {want}


def gzip_batch(compressed: bytes, records: int = 1) -> bytes:
    """A v2 batch whose records section is `compressed`, marked gzip, with a valid CRC."""
    now = int(time.time() * 1000)
    after_crc = (kw.i16(1) + kw.i32(records - 1) + kw.i64(now) + kw.i64(now) + kw.i64(-1) + kw.i16(-1)
                 + kw.i32(-1) + kw.i32(records) + compressed)
    rest = kw.i32(0) + kw.i8(2) + kw.u32(kw.crc32c(after_crc)) + after_crc
    return kw.i64(0) + kw.i32(len(rest)) + rest


def produce_raw(bootstrap: str, topic: str, batch: bytes) -> int:
    with kw.Connection(bootstrap, timeout_s=30) as c:
        _, [pr] = kw.parse_produce_response(c.roundtrip(kw.produce_request(9, 1, topic, 0, batch)), 9)
    return pr.error_code


def test_hostile_batches_get_kafkas_errors(bootstrap):
    bomb_topic, junk_topic = unique_topic("bomb"), unique_topic("junk")
    create_topic(bootstrap, bomb_topic, config={"compression.type": "lz4",
                                                "max.decompressed.message.bytes": str(1 << 20)})
    create_topic(bootstrap, junk_topic, config={"compression.type": "lz4"})
    value = bytes(8 << 20)
    record = kw.i8(0) + kw.varint(0) + kw.varint(0) + kw.varint(-1) + kw.varint(len(value)) + value + kw.varint(0)
    bomb = gzip_batch(gzip.compress(kw.varint(len(record)) + record))
    assert len(bomb) < 64 << 10
    assert produce_raw(bootstrap, bomb_topic, bomb) == 87  # INVALID_RECORD
    err = produce_raw(bootstrap, junk_topic, gzip_batch(b"\x1f\x8b\x08\x00" + bytes(range(200))))
    assert err == (-1 if kafka_mode() else 2), err  # Kafka: UNKNOWN_SERVER_ERROR; Chronik: CORRUPT_MESSAGE
    for t in (bomb_topic, junk_topic):
        assert consume_all(bootstrap, t, 0) == []


# ---------------------------------------------------------------------- timestamps
def test_log_append_time_is_stamped_by_the_broker(bootstrap):
    topic = unique_topic("lat")
    create_topic(bootstrap, topic, config={"message.timestamp.type": "LogAppendTime",
                                           "compression.type": "zstd"})
    before = int(time.time() * 1000)
    reports = []
    p = producer(bootstrap, **{"compression.type": "lz4"})
    for i in range(5):
        p.produce(topic, value=f"v{i}".encode(), timestamp=1_000_000 + i,
                  on_delivery=lambda err, msg: reports.append((err, msg.timestamp())))
    assert p.flush(60) == 0
    after = int(time.time() * 1000)
    assert all(err is None for err, _ in reports), reports
    # librdkafka takes the delivery report's timestamp from the produce response.
    for _, (kind, ts) in reports:
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= ts <= after + 1000, (kind, ts)
    got = consume_all(bootstrap, topic, 0)
    assert [m.value for m in got] == [f"v{i}".encode() for i in range(5)]
    assert all(before - 1000 <= m.timestamp <= after + 1000 for m in got), [m.timestamp for m in got]


def send_one(bootstrap: str, topic: str, ts: int) -> KafkaError | None:
    out = []
    p = producer(bootstrap, **{"message.timeout.ms": 30000})
    p.produce(topic, value=b"x", timestamp=ts, on_delivery=lambda err, msg: out.append((err, msg.timestamp())))
    assert p.flush(60) == 0
    [(err, (kind, _))] = out
    assert err is not None or kind == TIMESTAMP_CREATE_TIME
    return err


def produce_v9_record_errors(bootstrap: str, topic: str, batch: bytes) -> tuple[int, str, list]:
    """Raw Produce v9 of one batch: (error code, error message, [(batch index, message)])."""
    with kw.Connection(bootstrap, timeout_s=30) as c:
        r = kw.Reader(c.roundtrip(kw.produce_request(9, 1, topic, 0, batch)))
    r.i32()  # correlation id
    r.skip_tags()
    assert r.uvarint() == 2 and r.compact_string() == topic and r.uvarint() == 2
    r.i32()  # partition
    err = r.i16()
    r.i64(), r.i64(), r.i64()  # base offset, log append time, log start offset
    records = []
    for _ in range(r.uvarint() - 1):
        records.append((r.i32(), r.compact_string()))
        r.skip_tags()
    return err, r.compact_string(), records


def test_timestamps_outside_before_and_after_max_are_refused(bootstrap):
    topic = unique_topic("tswin")
    create_topic(bootstrap, topic, config={"message.timestamp.before.max.ms": "600000",
                                           "message.timestamp.after.max.ms": "600000"})
    now = int(time.time() * 1000)
    assert send_one(bootstrap, topic, now) is None
    for ts in (now - 3_600_000, now + 3_600_000):
        err = send_one(bootstrap, topic, ts)
        assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
    assert len(consume_all(bootstrap, topic, 0)) == 1
    # The whole batch is refused; the response names each record (Kafka's record_errors).
    err, msg, records = produce_v9_record_errors(
        bootstrap, topic, kw.record_batch([(None, b"a"), (None, b"b")], base_timestamp_ms=1000))
    assert err == 32 and msg.startswith("One or more records have been rejected due to invalid timestamp"), msg
    assert [i for i, _ in records] == [0, 1], records
    assert all("Timestamp 1000 of message with offset" in m and "is out of range" in m for _, m in records), records
    assert len(consume_all(bootstrap, topic, 0)) == 1
    # A topic that sets nothing has Kafka 4.x's after.max.ms of one hour, and no before bound.
    plain = unique_topic("tsdefault")
    create_topic(bootstrap, plain)
    err = send_one(bootstrap, plain, now + 2 * 3_600_000)
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
    assert send_one(bootstrap, plain, 1_000) is None


def test_every_record_timestamp_is_checked_and_the_header_max_set_from_the_records(bootstrap):
    """Kafka reads every record of a produced batch: a record out of range is found though the
    header's first and max timestamps are in range, and the stored header carries the records'
    largest timestamp whatever the producer wrote there."""
    topic = unique_topic("tsrec")
    create_topic(bootstrap, topic, config={"message.timestamp.before.max.ms": "600000"})
    now = int(time.time() * 1000)
    day = 86_400_000
    records = [(None, b"a"), (None, b"b"), (None, b"c")]
    hidden = kw.record_batch(records, base_timestamp_ms=now, timestamp_deltas=[0, -day, 0])
    err, msg, errors = produce_v9_record_errors(bootstrap, topic, hidden)
    assert err == 32 and msg.startswith("One or more records have been rejected"), (err, msg)
    assert [i for i, _ in errors] == [1], errors
    assert f"Timestamp {now - day} of message with offset 1 is out of range" in errors[0][1], errors
    # The header says `now`; the second record is 5 s later.
    lying = kw.record_batch(records, base_timestamp_ms=now, timestamp_deltas=[0, 5000, 0],
                            max_timestamp_ms=now)
    assert produce_raw(bootstrap, topic, lying) == 0
    assert stored_batches(bootstrap, topic, 3) == [(0, now + 5000)]
    assert [m.timestamp for m in consume_all(bootstrap, topic, 0)] == [now, now + 5000, now]


# ---------------------------------------------------------------------- admin
def test_config_values_are_checked_with_kafkas_ranges(bootstrap):
    a = admin(bootstrap)
    cases = {
        "compression.zstd.level": ("99", "Value must be no more than 22"),
        "compression.gzip.level": ("10", "Value must be between 1 and 9 or equal to -1"),
        "message.timestamp.type": ("Foo", "String must be one of: CreateTime, LogAppendTime"),
        "no.such.config": ("1", "Unknown topic config name: no.such.config"),
    }
    names = {k: unique_topic("badcfg") for k in cases}
    fs = a.create_topics([NewTopic(names[k], 1, 1, config={k: v}) for k, (v, _) in cases.items()],
                         operation_timeout=ADMIN_TIMEOUT_S)
    for k, (_, why) in cases.items():
        err = admin_error(fs[names[k]])
        assert err is not None and err.code() == KafkaError.INVALID_CONFIG, (k, err)
        assert why in err.str(), (k, err.str())


def described(a, topic: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=ADMIN_TIMEOUT_S)[res].result(timeout=ADMIN_TIMEOUT_S)


def incremental(a, topic: str, key: str, value: str, op) -> KafkaError | None:
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
    return admin_error(a.incremental_alter_configs([res])[res])


def test_incremental_append_and_subtract(bootstrap):
    topic = unique_topic("listcfg")
    create_topic(bootstrap, topic)
    a = admin(bootstrap)
    assert incremental(a, topic, "cleanup.policy", "compact", AlterConfigOpType.SUBTRACT) is None
    assert incremental(a, topic, "cleanup.policy", "delete", AlterConfigOpType.APPEND) is None
    assert described(a, topic)["cleanup.policy"].value == "delete"
    for op in (AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT):
        err = incremental(a, topic, "retention.ms", "5", op)
        assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
        assert "because its type is not LIST" in err.str(), err.str()
    err = incremental(a, topic, "leader.replication.throttled.replicas", "0:1", AlterConfigOpType.APPEND)
    if kafka_mode():
        assert err is None, err
        assert described(a, topic)["leader.replication.throttled.replicas"].value == "0:1"
    else:
        assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
        assert "not supported yet" in err.str(), err.str()
    assert incremental(a, topic, "leader.replication.throttled.replicas", "0:1", AlterConfigOpType.SUBTRACT) is None
    assert described(a, topic)["leader.replication.throttled.replicas"].value == ""


@pytest.mark.skipif(kafka_mode(), reason="Chronik's rules: Kafka 4.x refuses the 3.x names and "
                    "implements what Chronik refuses")
def test_chronik_rules_for_deprecated_and_missing_configs(bootstrap):
    a = admin(bootstrap)
    old = unique_topic("fmt")
    fs = a.create_topics([NewTopic(old, 1, 1, config={"message.format.version": "2.8-IV1",
                                                      "message.downconversion.enable": "false"})],
                         operation_timeout=ADMIN_TIMEOUT_S)
    assert admin_error(fs[old]) is None
    entries = described(a, old)
    assert entries["message.format.version"].value == "2.8-IV1"
    assert entries["message.downconversion.enable"].value == "false"
    res = ConfigResource(ResourceType.TOPIC, old, set_config={"message.format.version": "3.0"})
    assert admin_error(a.alter_configs([res])[res]) is None
    for key, value in [("remote.storage.enable", "true"),
                       ("follower.replication.throttled.replicas", "*"), ("preallocate", "true")]:
        t = unique_topic("missing")
        err = admin_error(a.create_topics([NewTopic(t, 1, 1, config={key: value})],
                                          operation_timeout=ADMIN_TIMEOUT_S)[t])
        assert err is not None and err.code() == KafkaError.INVALID_CONFIG, (key, err)
        assert "not supported yet" in err.str(), (key, err.str())
    # The default of a missing behaviour changes nothing and is accepted.
    t = unique_topic("defaults")
    fs = a.create_topics([NewTopic(t, 1, 1, config={"remote.storage.enable": "false", "preallocate": "false"})],
                         operation_timeout=ADMIN_TIMEOUT_S)
    assert admin_error(fs[t]) is None
