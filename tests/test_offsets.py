"""Committed consumer offsets without group membership (no JoinGroup/SyncGroup yet).

What a consumer that uses assign() and commits sees, through three clients:

* confluent-kafka: commit explicit offsets, read them back with committed() from a new
  consumer, and resume from them (assign at OFFSET_STORED) without losing or repeating a
  message; commits and their metadata survive a SIGKILL of the broker.
* kafka-python: commit({TopicPartition: OffsetAndMetadata}), committed() and resuming.
* Raw wire requests (tests/kafkawire.py primitives, encoders below), for exact error codes:
  FindCoordinator v0-v4 (v4 batched keys; key_type 1 is refused with 15);
  OffsetCommit v2-v8 and OffsetFetch v1-v8 round trips at every version;
  per-partition errors that do not spill over to other partitions or groups: unknown topic or
  partition -> 3, metadata over 4096 bytes -> 12, empty group id -> 24 (as Kafka 4), a
  generation >= 0 for a group never seen -> 22 and for an empty group with offsets -> 25;
  OffsetFetch v8 with several groups, topics=null (all committed partitions of a group),
  unknown groups and never-committed partitions (offset -1, error 0).
* The internal topic `__consumer_offsets` is listed in Metadata with is_internal=true.

Schemas: https://kafka.apache.org/protocol and the kafka-protocol crate's generated code
(vendor/kafka-protocol/src/messages/{offset_commit,offset_fetch,find_coordinator}_*.rs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_STORED, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from kafka.structs import OffsetAndMetadata

import kafkawire as w
from conftest import kafka_mode
from helpers import admin, consumer, create_topic, produce_all, producer, unique_topic, wait_until

# API keys.
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
FIND_COORDINATOR = 10

# Error codes.
OFFSET_METADATA_TOO_LARGE = 12
COORDINATOR_NOT_AVAILABLE = 15
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
INVALID_GROUP_ID = 24

OFFSETS_TOPIC = "__consumer_offsets"
MAX_METADATA_BYTES = 4096  # Kafka's default offset.metadata.max.bytes
CLIENT_TIMEOUT_S = 30
CONSUME_TIMEOUT_S = 60


# ============================================================================ wire encoding
# Field encodings switch from classic to compact once a request version is "flexible".
def _str(s: str | None, flexible: bool) -> bytes:
    return w.compact_string(s) if flexible else w.string(s)


def _len(n: int | None, flexible: bool) -> bytes:
    """Array length prefix; None encodes a null array."""
    if flexible:
        return w.uvarint(0 if n is None else n + 1)
    return w.i32(-1 if n is None else n)


def _tags(flexible: bool) -> bytes:
    return w.EMPTY_TAGS if flexible else b""


def _read_str(r: w.Reader, flexible: bool) -> str | None:
    return r.compact_string() if flexible else r.string()


def _read_len(r: w.Reader, flexible: bool) -> int:
    """Array length; -1 for a null array."""
    return r.uvarint() - 1 if flexible else r.i32()


def _read_tags(r: w.Reader, flexible: bool) -> None:
    if flexible:
        r.skip_tags()


def _read_header(r: w.Reader, correlation_id: int, flexible: bool) -> None:
    """Response header v0 (correlation id) or v1 (plus tagged fields)."""
    got = r.i32()
    assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
    _read_tags(r, flexible)


def _expect_end(r: w.Reader, what: str) -> None:
    assert r.remaining() == 0, f"{r.remaining()} unexpected bytes after the {what} body"


# ---------------------------------------------------------------------------- FindCoordinator
@dataclass
class Coordinator:
    key: str
    node_id: int
    host: str
    port: int
    error_code: int


def find_coordinator_request(version: int, corr: int, keys: list[str], key_type: int = 0) -> bytes:
    """v0-v3 carry one key; v4 batches them in coordinator_keys. v3+ is flexible."""
    flexible = version >= 3
    if version >= 4:
        body = w.i8(key_type) + _len(len(keys), True) + b"".join(w.compact_string(k) for k in keys)
    else:
        assert len(keys) == 1, "FindCoordinator before v4 takes one key"
        body = _str(keys[0], flexible)
        if version >= 1:
            body += w.i8(key_type)
        else:
            assert key_type == 0, "FindCoordinator v0 has no key_type"
    body += _tags(flexible)
    return w.request(FIND_COORDINATOR, version, corr, body, flexible=flexible)


def parse_find_coordinator_response(payload: bytes, version: int, corr: int,
                                    keys: list[str]) -> list[Coordinator]:
    flexible = version >= 3
    r = w.Reader(payload)
    _read_header(r, corr, flexible)
    if version >= 1:
        r.i32()  # throttle time
    out = []
    if version >= 4:
        for _ in range(_read_len(r, True)):
            key, node, host, port, err = r.compact_string(), r.i32(), r.compact_string(), r.i32(), r.i16()
            r.compact_string()  # error message
            r.skip_tags()
            out.append(Coordinator(key, node, host, port, err))
    else:
        err = r.i16()
        if version >= 1:
            _read_str(r, flexible)  # error message
        node, host, port = r.i32(), _read_str(r, flexible), r.i32()
        out.append(Coordinator(keys[0], node, host, port, err))
    _read_tags(r, flexible)
    _expect_end(r, f"FindCoordinator v{version}")
    return out


# ---------------------------------------------------------------------------- OffsetCommit
# topic -> partition -> (offset, metadata)
Commit = dict[str, dict[int, tuple[int, str | None]]]


def offset_commit_request(version: int, corr: int, group: str, offsets: Commit, *,
                          generation: int = -1, member_id: str = "") -> bytes:
    """OffsetCommit v2-v8 (v8 is flexible). generation -1 and member "" is a simple commit."""
    flexible = version >= 8
    body = _str(group, flexible) + w.i32(generation) + _str(member_id, flexible)
    if version >= 7:
        body += _str(None, flexible)  # group instance id
    if version <= 4:
        body += w.i64(-1)  # retention time: the broker's default
    body += _len(len(offsets), flexible)
    for topic, partitions in offsets.items():
        body += _str(topic, flexible) + _len(len(partitions), flexible)
        for partition, (offset, metadata) in partitions.items():
            body += w.i32(partition) + w.i64(offset)
            if version >= 6:
                body += w.i32(-1)  # committed leader epoch: unknown
            body += _str(metadata, flexible) + _tags(flexible)
        body += _tags(flexible)
    body += _tags(flexible)
    return w.request(OFFSET_COMMIT, version, corr, body, flexible=flexible)


def parse_offset_commit_response(payload: bytes, version: int, corr: int) -> dict[tuple[str, int], int]:
    """(topic, partition) -> error code."""
    flexible = version >= 8
    r = w.Reader(payload)
    _read_header(r, corr, flexible)
    if version >= 3:
        r.i32()  # throttle time
    out = {}
    for _ in range(_read_len(r, flexible)):
        topic = _read_str(r, flexible)
        for _ in range(_read_len(r, flexible)):
            partition, err = r.i32(), r.i16()
            _read_tags(r, flexible)
            out[(topic, partition)] = err
        _read_tags(r, flexible)
    _read_tags(r, flexible)
    _expect_end(r, f"OffsetCommit v{version}")
    return out


# ---------------------------------------------------------------------------- OffsetFetch
@dataclass
class Committed:
    offset: int
    metadata: str | None
    error_code: int


@dataclass
class GroupOffsets:
    error_code: int
    partitions: dict[tuple[str, int], Committed]


# group -> (topic -> partitions), or None for "every committed partition of the group"
FetchGroups = dict[str, dict[str, list[int]] | None]


def offset_fetch_request(version: int, corr: int, groups: FetchGroups) -> bytes:
    """OffsetFetch v1-v8: one group before v8, a `groups` array from v8; v6+ is flexible.

    topics=None (null array) needs v2+.
    """
    flexible = version >= 6

    def topics_field(topics: dict[str, list[int]] | None) -> bytes:
        if topics is None:
            assert version >= 2, "null topics need OffsetFetch v2+"
            return _len(None, flexible)
        out = _len(len(topics), flexible)
        for topic, partitions in topics.items():
            out += _str(topic, flexible) + _len(len(partitions), flexible)
            out += b"".join(w.i32(p) for p in partitions) + _tags(flexible)
        return out

    if version >= 8:
        body = _len(len(groups), True)
        for group, topics in groups.items():
            body += w.compact_string(group) + topics_field(topics) + w.EMPTY_TAGS
    else:
        assert len(groups) == 1, "OffsetFetch before v8 takes one group"
        ((group, topics),) = groups.items()
        body = _str(group, flexible) + topics_field(topics)
    if version >= 7:
        body += w.i8(0)  # require_stable
    body += _tags(flexible)
    return w.request(OFFSET_FETCH, version, corr, body, flexible=flexible)


def parse_offset_fetch_response(payload: bytes, version: int, corr: int,
                                groups: FetchGroups) -> dict[str, GroupOffsets]:
    """group -> its offsets. Before v8 the response does not name the group: it is the one asked for."""
    flexible = version >= 6
    r = w.Reader(payload)
    _read_header(r, corr, flexible)
    if version >= 3:
        r.i32()  # throttle time

    def read_topics() -> dict[tuple[str, int], Committed]:
        out = {}
        for _ in range(_read_len(r, flexible)):
            topic = _read_str(r, flexible)
            for _ in range(_read_len(r, flexible)):
                partition, offset = r.i32(), r.i64()
                if version >= 5:
                    r.i32()  # committed leader epoch
                metadata, err = _read_str(r, flexible), r.i16()
                _read_tags(r, flexible)
                out[(topic, partition)] = Committed(offset, metadata, err)
            _read_tags(r, flexible)
        return out

    result = {}
    if version >= 8:
        for _ in range(_read_len(r, True)):
            group = r.compact_string()
            partitions = read_topics()
            result[group] = GroupOffsets(r.i16(), partitions)
            r.skip_tags()
    else:
        partitions = read_topics()
        err = r.i16() if version >= 2 else w.NONE
        ((group, _),) = groups.items()
        result[group] = GroupOffsets(err, partitions)
    _read_tags(r, flexible)
    _expect_end(r, f"OffsetFetch v{version}")
    return result


# ---------------------------------------------------------------------------- round trips
class Wire:
    """One raw connection with a running correlation id."""

    def __init__(self, conn: w.Connection):
        self.conn = conn
        self.corr = 0

    def _next(self) -> int:
        self.corr += 1
        return self.corr

    def find_coordinator(self, version: int, keys: list[str], key_type: int = 0) -> list[Coordinator]:
        corr = self._next()
        payload = self.conn.roundtrip(find_coordinator_request(version, corr, keys, key_type))
        return parse_find_coordinator_response(payload, version, corr, keys)

    def commit(self, version: int, group: str, offsets: Commit, **kw) -> dict[tuple[str, int], int]:
        corr = self._next()
        payload = self.conn.roundtrip(offset_commit_request(version, corr, group, offsets, **kw))
        return parse_offset_commit_response(payload, version, corr)

    def fetch(self, version: int, groups: FetchGroups) -> dict[str, GroupOffsets]:
        corr = self._next()
        payload = self.conn.roundtrip(offset_fetch_request(version, corr, groups))
        return parse_offset_fetch_response(payload, version, corr, groups)

    def fetch_one(self, version: int, group: str, topics: dict[str, list[int]] | None) -> GroupOffsets:
        result = self.fetch(version, {group: topics})
        assert set(result) == {group}, f"OffsetFetch answered for groups {sorted(result)}, asked for {group!r}"
        return result[group]


def assert_offsets(got: GroupOffsets, expected: dict[tuple[str, int], tuple[int, str | None]]) -> None:
    """Exactly these partitions, each with error 0 and this (offset, metadata).

    Kafka answers a never-committed partition with offset -1 and metadata "" (some encoders
    send null); both spellings are accepted for an expected metadata of "" or None.
    """
    assert got.error_code == w.NONE, f"group-level error {got.error_code}"
    assert set(got.partitions) == set(expected), \
        f"partitions {sorted(got.partitions)}, expected {sorted(expected)}"
    for tp, (offset, metadata) in expected.items():
        c = got.partitions[tp]
        assert c.error_code == w.NONE, f"{tp}: error {c.error_code}"
        assert c.offset == offset, f"{tp}: offset {c.offset}, expected {offset}"
        if metadata in ("", None):
            assert c.metadata in ("", None), f"{tp}: metadata {c.metadata!r}, expected none"
        else:
            assert c.metadata == metadata, f"{tp}: metadata {c.metadata!r:.80}, expected {metadata!r:.80}"


@pytest.fixture
def wire(module_broker):
    with w.Connection(module_broker.bootstrap) as conn:
        yield Wire(conn)


# ============================================================================ confluent-kafka
def produce_to_partitions(bootstrap: str, topic: str, counts: list[int]) -> None:
    p = producer(bootstrap)
    for partition, n in enumerate(counts):
        log = produce_all(p, topic, [(None, b"p%d-%d" % (partition, i)) for i in range(n)], partition=partition)
        assert not log.failed, log.failed
        assert sorted(off for _, off, _, _ in log.ok) == list(range(n)), f"partition {partition}: {log.ok}"


def poll_messages(c, n: int, timeout_s: float = CONSUME_TIMEOUT_S) -> list[tuple[int, int]]:
    """Exactly n messages as (partition, offset); fails on a message error or at the deadline."""
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"read {len(got)} of {n} messages in {timeout_s}s: {got}"
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, f"consumer error {m.error()!r}"
        got.append((m.partition(), m.offset()))
    return got


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: list[int]) -> dict[int, TopicPartition]:
    """committed() from a brand-new consumer of `group`: partition -> TopicPartition."""
    c = consumer(bootstrap, **{"group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=CLIENT_TIMEOUT_S)
    finally:
        c.close()
    for tp in tps:
        assert tp.error is None, f"committed() {tp}: {tp.error}"
    return {tp.partition: tp for tp in tps}


def commit_sync(c, offsets: list[TopicPartition]) -> None:
    result = c.commit(offsets=offsets, asynchronous=False)
    for tp in result:
        assert tp.error is None, f"commit {tp}: {tp.error}"


def test_confluent_commit_then_resume_from_committed_offsets(broker):
    topic, group = unique_topic("offsets"), unique_topic("group")
    counts = [34, 33, 33]
    create_topic(broker.bootstrap, topic, partitions=3)
    produce_to_partitions(broker.bootstrap, topic, counts)

    # First consumer: read 60 of the 100 messages from the beginning, commit where it stands.
    c1 = consumer(broker.bootstrap, **{"group.id": group})
    try:
        c1.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        first = poll_messages(c1, 60)
        next_offset = {}
        for p in range(3):
            offsets = [off for part, off in first if part == p]
            assert offsets == list(range(len(offsets))), f"partition {p} read out of order: {offsets}"
            next_offset[p] = len(offsets)
        commit_sync(c1, [TopicPartition(topic, p, next_offset[p]) for p in range(3)])
    finally:
        c1.close()

    # Second consumer of the same group: committed() returns exactly those offsets.
    committed = committed_offsets(broker.bootstrap, group, topic, [0, 1, 2])
    assert {p: tp.offset for p, tp in committed.items()} == next_offset

    # Third consumer: assigned at the stored offsets, it reads exactly the other 40 messages.
    c3 = consumer(broker.bootstrap, **{"group.id": group})
    try:
        c3.assign([TopicPartition(topic, p, OFFSET_STORED) for p in range(3)])
        rest = poll_messages(c3, 40)
    finally:
        c3.close()
    assert len(set(rest)) == len(rest), f"messages read twice: {sorted(rest)}"
    expected = {(p, off) for p in range(3) for off in range(next_offset[p], counts[p])}
    # Exactly the 40 unread ones: a partition resumed anywhere but at its committed offset would
    # show up as a missing or an already-read (partition, offset).
    assert set(rest) == expected, \
        f"missing {sorted(expected - set(rest))}, unexpected {sorted(set(rest) - expected)}"


def test_committed_offsets_and_metadata_survive_sigkill(broker):
    topic, group = unique_topic("offsets-crash"), unique_topic("group-crash")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_to_partitions(broker.bootstrap, topic, [20, 20])

    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        commit_sync(c, [TopicPartition(topic, 0, 3, "first")])
        # The later commit must win when the offsets are replayed after the crash.
        commit_sync(c, [TopicPartition(topic, 0, 5, "meta-p0"), TopicPartition(topic, 1, 9, "meta-p1 \u00e9")])
    finally:
        c.close()
    expected = {0: (5, "meta-p0"), 1: (9, "meta-p1 \u00e9")}

    before = committed_offsets(broker.bootstrap, group, topic, [0, 1])
    assert {p: (tp.offset, tp.metadata) for p, tp in before.items()} == expected

    broker.kill()
    broker.restart()  # a new port: broker.bootstrap follows it

    after = committed_offsets(broker.bootstrap, group, topic, [0, 1])
    assert {p: (tp.offset, tp.metadata) for p, tp in after.items()} == expected
    # The stored bytes, seen without a client in between: confluent-kafka sends metadata with
    # its C string terminator (metadata_size = strlen + 1), and the broker keeps it verbatim.
    with w.Connection(broker.bootstrap) as conn:
        got = Wire(conn).fetch_one(5, group, {topic: [0, 1]})
    assert_offsets(got, {(topic, p): (off, meta + "\0") for p, (off, meta) in expected.items()})


# ============================================================================ kafka-python
def test_kafka_python_commit_committed_and_resume(broker):
    topic, group = unique_topic("offsets-kpy"), unique_topic("group-kpy")
    create_topic(broker.bootstrap, topic, partitions=3)
    produce_to_partitions(broker.bootstrap, topic, [10, 10, 10])
    tp0, tp1, tp2 = (KTopicPartition(topic, p) for p in range(3))

    def new_consumer() -> KafkaConsumer:
        # auto_offset_reset="none": a missing committed offset raises instead of being papered over.
        return KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="none", request_timeout_ms=30000)

    c = new_consumer()
    try:
        c.assign([tp0, tp1])
        c.commit({tp0: OffsetAndMetadata(7, "kpy-meta", -1), tp1: OffsetAndMetadata(2, "", -1)})
    finally:
        c.close()

    c = new_consumer()
    try:
        got0 = c.committed(tp0, metadata=True, timeout_ms=CLIENT_TIMEOUT_S * 1000)
        assert (got0.offset, got0.metadata) == (7, "kpy-meta"), got0
        assert c.committed(tp1, timeout_ms=CLIENT_TIMEOUT_S * 1000) == 2
        assert c.committed(tp2, timeout_ms=CLIENT_TIMEOUT_S * 1000) is None, "tp2 was never committed"

        # Resuming: the position of an assigned partition starts at its committed offset.
        c.assign([tp0])
        assert c.position(tp0, timeout_ms=CLIENT_TIMEOUT_S * 1000) == 7
        offsets = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(offsets) < 3:
            assert time.monotonic() < deadline, f"read offsets {offsets} in {CONSUME_TIMEOUT_S}s"
            for records in c.poll(timeout_ms=500).values():
                offsets.extend(r.offset for r in records)
        assert offsets == [7, 8, 9]
    finally:
        c.close()


# ============================================================================ raw wire
def test_api_versions_advertise_offset_apis(module_broker):
    with w.Connection(module_broker.bootstrap) as conn:
        keys = w.parse_api_versions_response(conn.roundtrip(w.api_versions_request(0, 1)), 0).api_keys
    for api, lo, hi in ((FIND_COORDINATOR, 0, 4), (OFFSET_COMMIT, 2, 8), (OFFSET_FETCH, 1, 8)):
        assert api in keys, f"api key {api} not advertised"
        got_lo, got_hi = keys[api]
        assert got_lo <= lo and got_hi >= hi, f"api key {api}: v{got_lo}-v{got_hi}, expected v{lo}-v{hi} covered"


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_find_coordinator_answers_this_broker(module_broker, wire, version):
    keys = [unique_topic("group-fc"), unique_topic("group-fc")] if version >= 4 else [unique_topic("group-fc")]
    coordinators = wire.find_coordinator(version, keys)
    assert [c.key for c in coordinators] == keys
    # The coordinator is this broker, exactly as Metadata advertises it.
    brokers = w.parse_metadata_response_v1(wire.conn.roundtrip(w.metadata_request_v1(999, []))).brokers
    for c in coordinators:
        assert c.error_code == w.NONE, c
        assert (c.node_id, c.port) == (module_broker.node_id, module_broker.port), c
        assert (c.node_id, c.host, c.port) in brokers, f"{c} is not a broker of Metadata {brokers}"


@pytest.mark.parametrize("version", [1, 3, 4])
def test_find_coordinator_transaction_key_names_this_broker(module_broker, wire, version):
    """A transactional id's coordinator: COORDINATOR_NOT_AVAILABLE while __transaction_state is
    created on this first need (as Kafka does), then the one broker."""
    def lookup():
        (c,) = wire.find_coordinator(version, [unique_topic("txn")], key_type=1)
        if c.error_code == COORDINATOR_NOT_AVAILABLE:
            return None
        return c
    c = wait_until(lookup, 60, "a transaction coordinator", interval_s=0.2)
    assert c.error_code == w.NONE, c
    assert (c.node_id, c.port) == (module_broker.node_id, module_broker.port), c


@pytest.mark.parametrize("commit_version,fetch_version", [(2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 6), (8, 7), (8, 8)])
def test_commit_and_fetch_round_trip_at_every_version(module_broker, wire, commit_version, fetch_version):
    topic, group = unique_topic("offsets-v"), unique_topic("group-v")
    create_topic(module_broker.bootstrap, topic, partitions=3)
    errors = wire.commit(commit_version, group, {topic: {0: (42, "meta-\u00e9"), 1: (0, None)}})
    assert errors == {(topic, 0): w.NONE, (topic, 1): w.NONE}

    got = wire.fetch_one(fetch_version, group, {topic: [0, 1, 2]})
    assert_offsets(got, {(topic, 0): (42, "meta-\u00e9"), (topic, 1): (0, ""), (topic, 2): (-1, "")})

    # A later commit replaces the earlier one.
    assert wire.commit(commit_version, group, {topic: {0: (50, "")}}) == {(topic, 0): w.NONE}
    assert_offsets(wire.fetch_one(fetch_version, group, {topic: [0]}), {(topic, 0): (50, "")})


@pytest.mark.parametrize("version", [2, 8])
def test_commit_unknown_topic_or_partition_fails_only_those(module_broker, wire, version):
    topic, group = unique_topic("offsets-unk"), unique_topic("group-unk")
    missing = unique_topic("no-such-topic")
    create_topic(module_broker.bootstrap, topic, partitions=1)
    errors = wire.commit(version, group, {topic: {0: (11, "ok"), 7: (1, None)}, missing: {0: (1, None)}})
    assert errors == {
        (topic, 0): w.NONE,
        (topic, 7): w.UNKNOWN_TOPIC_OR_PARTITION,
        (missing, 0): w.UNKNOWN_TOPIC_OR_PARTITION,
    }
    # Only the valid partition was stored.
    assert_offsets(wire.fetch_one(2, group, None), {(topic, 0): (11, "ok")})


def test_commit_metadata_too_large_fails_only_that_partition(module_broker, wire):
    topic, group, other = unique_topic("offsets-big"), unique_topic("group-big"), unique_topic("group-big")
    create_topic(module_broker.bootstrap, topic, partitions=2)
    at_limit, over_limit = "m" * MAX_METADATA_BYTES, "x" * (MAX_METADATA_BYTES + 1)

    errors = wire.commit(2, group, {topic: {0: (3, at_limit), 1: (4, over_limit)}})
    assert errors == {(topic, 0): w.NONE, (topic, 1): OFFSET_METADATA_TOO_LARGE}

    # Another group's commit on the same connection is unaffected.
    assert wire.commit(2, other, {topic: {0: (8, "a"), 1: (9, "b")}}) == {(topic, 0): w.NONE, (topic, 1): w.NONE}

    assert_offsets(wire.fetch_one(1, group, {topic: [0, 1]}), {(topic, 0): (3, at_limit), (topic, 1): (-1, "")})
    assert_offsets(wire.fetch_one(1, other, {topic: [0, 1]}), {(topic, 0): (8, "a"), (topic, 1): (9, "b")})


def test_commit_with_empty_group_id_is_invalid(module_broker, wire):
    # NOTE: Apache Kafka's group coordinator accepts OffsetCommit/OffsetFetch for the empty group
    # id "for backwards compatibility" (GroupCoordinator.isValidGroupId; 4.4.0 does). Chronik's
    # specification for this slice refuses it with INVALID_GROUP_ID, which is what this test
    # checks on Chronik; docs/conformance.md lists the difference.
    topic = unique_topic("offsets-empty")
    create_topic(module_broker.bootstrap, topic, partitions=2)
    errors = wire.commit(2, "", {topic: {0: (1, None), 1: (2, None)}})
    want = w.NONE if kafka_mode() else INVALID_GROUP_ID
    assert errors == {(topic, 0): want, (topic, 1): want}


def test_commit_with_generation_for_group_without_members_is_illegal(module_broker, wire):
    # A group that has never been seen: Kafka answers ILLEGAL_GENERATION to any generation >= 0
    # (an existing empty group would answer UNKNOWN_MEMBER_ID instead, so the group is fresh).
    topic, group = unique_topic("offsets-gen"), unique_topic("group-gen")
    create_topic(module_broker.bootstrap, topic, partitions=2)
    errors = wire.commit(2, group, {topic: {0: (1, None), 1: (2, None)}}, generation=5)
    assert errors == {(topic, 0): ILLEGAL_GENERATION, (topic, 1): ILLEGAL_GENERATION}
    assert_offsets(wire.fetch_one(1, group, {topic: [0, 1]}), {(topic, 0): (-1, ""), (topic, 1): (-1, "")})
    # The same partitions still accept a simple commit (generation -1).
    assert wire.commit(2, group, {topic: {0: (1, None)}}) == {(topic, 0): w.NONE}
    # Now the group exists, empty: a member's commit is from a member it does not know.
    errors = wire.commit(2, group, {topic: {0: (3, None)}}, generation=5, member_id="m-1")
    assert errors == {(topic, 0): UNKNOWN_MEMBER_ID}
    # A simple commit carrying a member id is still a simple commit.
    assert wire.commit(2, group, {topic: {0: (4, None)}}, member_id="m-1") == {(topic, 0): w.NONE}
    assert_offsets(wire.fetch_one(1, group, {topic: [0]}), {(topic, 0): (4, "")})


def test_offset_fetch_v8_answers_each_group(module_broker, wire):
    topic = unique_topic("offsets-multi")
    g1, g2, unknown = unique_topic("group-m1"), unique_topic("group-m2"), unique_topic("group-never")
    create_topic(module_broker.bootstrap, topic, partitions=2)
    assert wire.commit(8, g1, {topic: {0: (10, "g1-p0")}}) == {(topic, 0): w.NONE}
    assert wire.commit(8, g2, {topic: {0: (20, "g2-p0"), 1: (21, "g2-p1")}}) == {(topic, 0): w.NONE, (topic, 1): w.NONE}

    both = {topic: [0, 1]}
    got = wire.fetch(8, {g1: both, g2: both, unknown: both})
    assert set(got) == {g1, g2, unknown}, f"groups answered: {sorted(got)}"
    assert_offsets(got[g1], {(topic, 0): (10, "g1-p0"), (topic, 1): (-1, "")})
    assert_offsets(got[g2], {(topic, 0): (20, "g2-p0"), (topic, 1): (21, "g2-p1")})
    assert_offsets(got[unknown], {(topic, 0): (-1, ""), (topic, 1): (-1, "")})


@pytest.mark.parametrize("version", [2, 5, 6, 8])
def test_offset_fetch_null_topics_returns_all_committed_partitions(module_broker, wire, version):
    t1, t2 = unique_topic("offsets-all"), unique_topic("offsets-all")
    group, other, unknown = unique_topic("group-all"), unique_topic("group-all"), unique_topic("group-never")
    create_topic(module_broker.bootstrap, t1, partitions=3)
    create_topic(module_broker.bootstrap, t2, partitions=1)
    assert wire.commit(7, group, {t1: {0: (1, "a"), 2: (3, None)}, t2: {0: (5, "c")}}) == \
        {(t1, 0): w.NONE, (t1, 2): w.NONE, (t2, 0): w.NONE}
    assert wire.commit(7, other, {t1: {1: (99, None)}}) == {(t1, 1): w.NONE}

    assert_offsets(wire.fetch_one(version, group, None), {(t1, 0): (1, "a"), (t1, 2): (3, ""), (t2, 0): (5, "c")})
    # A group that never committed has nothing, and no error.
    assert_offsets(wire.fetch_one(version, unknown, None), {})


# ============================================================================ Metadata
def metadata_v1_is_internal(payload: bytes) -> dict[str, bool]:
    """topic name -> is_internal, from a Metadata v1 response."""
    r = w.Reader(payload)
    r.i32()  # correlation id
    for _ in range(r.i32()):  # brokers: node id, host, port, rack
        r.i32(), r.string(), r.i32(), r.string()
    r.i32()  # controller id
    out = {}
    for _ in range(r.i32()):
        r.i16()  # topic error
        name, internal = r.string(), bool(r.i8())
        for _ in range(r.i32()):  # partitions: error, index, leader, replicas, isr
            r.i16(), r.i32(), r.i32()
            for _ in range(2):
                for _ in range(r.i32()):
                    r.i32()
        out[name] = internal
    _expect_end(r, "Metadata v1")
    return out


def test_consumer_offsets_topic_is_internal_after_a_commit(broker):
    topic, group = unique_topic("offsets-md"), unique_topic("group-md")
    create_topic(broker.bootstrap, topic)
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        commit_sync(c, [TopicPartition(topic, 0, 1)])
    finally:
        c.close()

    a = admin(broker.bootstrap)
    wait_until(lambda: OFFSETS_TOPIC in a.list_topics(timeout=10).topics, 30,
               f"{OFFSETS_TOPIC} in the topics AdminClient lists")
    md = a.list_topics(timeout=10).topics[OFFSETS_TOPIC]
    assert md.error is None and len(md.partitions) >= 1, md

    with w.Connection(broker.bootstrap) as conn:
        internal = metadata_v1_is_internal(conn.roundtrip(w.metadata_request_v1(1, None)))
    assert internal.get(OFFSETS_TOPIC) is True, f"{OFFSETS_TOPIC}: is_internal={internal.get(OFFSETS_TOPIC)}"
    assert internal.get(topic) is False, f"{topic}: is_internal={internal.get(topic)}"
