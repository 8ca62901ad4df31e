"""Log compaction (cleanup.policy=compact) end to end: a standalone broker's cleaner compacts a
topic that confluent-kafka filled with tens of keys x hundreds of versions plus tombstones; every key
ends at its latest value at its original offset, tombstones go after delete.retention.ms, and
confluent-kafka and kafka-python read the log with its gaps from 0 and from inside a gap. A SIGKILL
during a segment replacement leaves a valid log; an idempotent retry after compaction and a crash is
still deduplicated; three replicas compact on their own and a new leader serves the same keys. Bad
compaction configs get INVALID_CONFIG, keyless records INVALID_RECORD, DeleteRecords on a compact-only
topic POLICY_VIOLATION, and cleanup.policy moves with IncrementalAlterConfigs APPEND/SUBTRACT. All
but the SIGKILL test run against Apache Kafka 4.4 too (--broker=kafka; the metrics are Chronik's)."""

from __future__ import annotations

import re
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

import kafkawire as w
from helpers import (admin, admin_error, consume_range, create_topic, http_get, produce_all, producer, unique_topic,
                     wait_until, watermarks)

KEYS = 30
VERSIONS = 200
TOMBSTONED = set(range(5))  # keys whose last version is a tombstone
DELETE_RETENTION_MS = 3000
FILLER = b"filler"


def key(k: int) -> bytes:
    return b"key-%03d" % k


def value(k: int, v: int) -> bytes:
    return (b"%03d:%05d:" % (k, v)).ljust(80, b"x")


def compact_config(**extra) -> dict:
    # Small segments that roll after half a second, so data leaves the (never cleaned) active
    # segment quickly; any dirt at all makes a log cleanable.
    return {"cleanup.policy": "compact", "internal.segment.bytes": "16384", "segment.ms": "500",
            "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": str(DELETE_RETENTION_MS), **extra}


@pytest.fixture
def cleaner_broker(broker_factory):
    # The cleaner looks for dirty logs every 200 ms instead of every 15 s.
    return broker_factory(args=["--log-cleaner-backoff-ms", "200"])


def produce_versions(bootstrap: str, topic: str) -> dict[bytes, tuple[int, bytes | None]]:
    """Produces every version of every key, interleaved; the latest (offset, value) of each key."""
    items = [(key(k), None if (v == VERSIONS - 1 and k in TOMBSTONED) else value(k, v))
             for v in range(VERSIONS) for k in range(KEYS)]
    # Small batches, so that the versions span tens of segments.
    log = produce_all(producer(bootstrap, **{"batch.num.messages": 50}), topic, items)
    assert not log.failed, log.failed[:3]
    latest = {}
    for _, offset, k, val in sorted(log.ok, key=lambda r: r[1]):
        latest[k] = (offset, val)
    return latest


def nudge(bootstrap: str, topic: str) -> None:
    """One record of a key of its own: the active segment rolls (segment.ms) on an append only, so
    this lets what came before become cleanable, and gives the cleaner fresh dirt (Kafka cleans a log,
    and so drops expired tombstones, only when it is dirty enough)."""
    log = produce_all(producer(bootstrap), topic, [(FILLER, b"f" * 2000)])
    assert not log.failed, log.failed


def read_log(bootstrap: str, topic: str, start: int = 0):
    low, high = watermarks(bootstrap, topic, 0)
    return consume_range(bootstrap, topic, 0, max(start, low), high)


def by_key(msgs) -> dict[bytes, list]:
    out: dict[bytes, list] = {}
    for m in msgs:
        out.setdefault(m.key, []).append(m)
    return out


def compacted(bootstrap: str, topic: str, latest, tombstones_gone: bool):
    nudge(bootstrap, topic)
    msgs = read_log(bootstrap, topic)
    keys = by_key(msgs)
    for k in range(KEYS):
        kept = keys.get(key(k), [])
        # A tombstone may already be gone (delete.retention.ms is short) unless it must be.
        if len(kept) > 1 or (not kept and k not in TOMBSTONED) or (kept and k in TOMBSTONED and tombstones_gone):
            return None
    return msgs


def assert_latest(msgs, latest) -> None:
    """Each key's one record is its latest version at its original offset (a tombstone's may be gone)."""
    for k, kept in by_key(msgs).items():
        if k != FILLER:
            assert [(m.offset, m.value) for m in kept] == [latest[k]], (k, kept)
    assert {key(k) for k in range(KEYS)} - set(by_key(msgs)) <= {key(k) for k in TOMBSTONED}


def test_compaction_keeps_latest_values_at_their_offsets(cleaner_broker, broker_kind):
    b = cleaner_broker
    topic = unique_topic("compacted")
    create_topic(b.bootstrap, topic, config=compact_config())
    latest = produce_versions(b.bootstrap, topic)
    produced = KEYS * VERSIONS

    msgs = wait_until(lambda: compacted(b.bootstrap, topic, latest, False), 120,
                      "the cleaner to leave one record per key", interval_s=0.5)
    assert_latest(msgs, latest)
    assert len(msgs) < produced / 50, len(msgs)
    low, _ = watermarks(b.bootstrap, topic, 0)
    assert low == 0  # compaction never moves the log start

    # Tombstones vanish once delete.retention.ms has passed since the clean that kept them.
    msgs = wait_until(lambda: compacted(b.bootstrap, topic, latest, True), 120,
                      f"tombstones to vanish after delete.retention.ms={DELETE_RETENTION_MS}", interval_s=0.5)
    assert_latest(msgs, latest)

    # From inside a gap: the first record at or after it.
    surviving = sorted(m.offset for m in msgs)
    gap = next(o for o in range(surviving[0] + 1, surviving[-1]) if o not in surviving)
    expected = [m for m in msgs if m.offset >= gap]
    got = read_log(b.bootstrap, topic, gap)
    assert [(m.offset, m.key, m.value) for m in got if m.key != FILLER] == \
        [(m.offset, m.key, m.value) for m in expected if m.key != FILLER]
    assert_kafka_python_reads(b.bootstrap, topic, 0, msgs)
    assert_kafka_python_reads(b.bootstrap, topic, gap, expected)

    if broker_kind == "chronik":
        _, text = http_get(b.http, "/metrics")
        read = re.search(r"^chronik_log_cleaner_bytes_read_total (\d+)", text, re.M)
        assert read and int(read.group(1)) > 0, text[:2000]
        for gauge in ("chronik_log_cleaner_dirty_ratio", "chronik_log_cleaner_last_clean_timestamp_seconds"):
            assert re.search(r'^%s\{[^}]*topic="%s"[^}]*\} [0-9.e+-]+$' % (gauge, topic), text, re.M), gauge


@pytest.mark.chronik_only("watches Chronik's WAL files for a segment replacement under way")
def test_sigkill_or_sigterm_during_a_clean_leaves_a_valid_log(broker_factory):
    # A slow cleaner (200 KB/s of I/O), so a replacement file is on disk for a while.
    b = broker_factory(args=["--log-cleaner-backoff-ms", "200", "--log-cleaner-io-max-bytes-per-second", "200000"])
    topic = unique_topic("compact-kill")
    create_topic(b.bootstrap, topic, config=compact_config())
    produced = {}
    items = [(key(k), value(k, v)) for v in range(VERSIONS) for k in range(KEYS)]
    log = produce_all(producer(b.bootstrap, **{"batch.num.messages": 50}), topic, items)
    assert not log.failed, log.failed[:3]
    for _, offset, k, val in log.ok:
        produced[offset] = (k, val)
    latest = {}
    for offset in sorted(produced):
        latest[produced[offset][0]] = (offset, produced[offset][1])
    nudge(b.bootstrap, topic)
    part = b.data_dir / "wal" / topic / "0"
    wait_until(lambda: list(part.glob("*.cleaned")), 60, "a cleaned segment being written")
    b.kill()
    b.start()
    # Nothing lost that was not superseded, nothing duplicated, every offset as produced.
    msgs = read_log(b.bootstrap, topic)
    for m in msgs:
        if m.key != FILLER:
            assert produced[m.offset] == (m.key, m.value), m
    present = {m.key for m in msgs}
    for k, (offset, val) in latest.items():
        assert k in present, k
        assert any((m.offset, m.value) == (offset, val) for m in msgs), k
    # A graceful stop during the next clean stops the cleaner at its next segment group and
    # closes the logs after it: prompt, and the log as valid as after the crash.
    wait_until(lambda: list(part.glob("*.cleaned")), 60, "a cleaned segment being written again")
    started = time.monotonic()
    b.terminate(timeout_s=20)
    assert time.monotonic() - started < 15
    assert "log clean stopped for the shutdown" in b.stderr_tail(lines=2000, max_bytes=1 << 20), b.stderr_tail()
    b.start()
    # And the cleaner finishes the job after the restart.
    msgs = wait_until(lambda: compacted(b.bootstrap, topic, latest, False), 120,
                      "the cleaner to compact after the restart", interval_s=0.5)
    assert_latest(msgs, latest)


def test_an_idempotent_retry_after_compaction_and_a_crash_is_deduplicated(cleaner_broker):
    """The cleaner keeps a producer's last batch as an empty header when its records are
    superseded, so the producer state rebuilt after a SIGKILL still knows the sequence: a retry of
    that batch is answered as a duplicate at its original offset, not written again."""
    b = cleaner_broker
    topic = unique_topic("compact-idem")
    create_topic(b.bootstrap, topic, config=compact_config())
    with w.Connection(b.bootstrap) as conn:
        _, _, pid, epoch = w.parse_init_producer_id_response_v0(conn.roundtrip(w.init_producer_id_request_v0(9)))
        batch = w.record_batch([(b"a", b"first")], producer_id=pid, producer_epoch=epoch, base_sequence=0)
        _, (sent,) = w.parse_produce_response(conn.roundtrip(w.produce_request(7, 10, topic, 0, batch)), 7)
        assert (sent.error_code, sent.base_offset) == (w.NONE, 0), sent
    log = produce_all(producer(b.bootstrap), topic, [(b"a", b"v%d" % i) for i in range(50)])
    assert not log.failed, log.failed

    def superseded():
        nudge(b.bootstrap, topic)
        return all(m.offset > 0 for m in read_log(b.bootstrap, topic))

    wait_until(superseded, 60, "the cleaner to remove the first record", interval_s=0.5)
    b.kill()
    b.start()
    _, high = watermarks(b.bootstrap, topic, 0)
    with w.Connection(b.bootstrap) as conn:
        _, (retry,) = w.parse_produce_response(conn.roundtrip(w.produce_request(7, 11, topic, 0, batch)), 7)
    assert (retry.error_code, retry.base_offset) == (w.NONE, 0), retry
    assert watermarks(b.bootstrap, topic, 0)[1] == high
    assert all(m.value != b"first" for m in read_log(b.bootstrap, topic))


def assert_kafka_python_reads(bootstrap: str, topic: str, start: int, expected) -> None:
    """kafka-python, from `start` to the end of the log, reads the records of `expected` (the
    filler records are left out: the cleaner keeps removing them)."""
    want = [(m.offset, m.key, m.value) for m in expected if m.key != FILLER]
    _, high = watermarks(bootstrap, topic, 0)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = KTopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, start)
        got = []

        def read_to_end():
            for recs in c.poll(timeout_ms=500).values():
                got.extend((r.offset, r.key, r.value) for r in recs if r.key != FILLER)
            return c.position(tp) >= high

        wait_until(read_to_end, 30, f"kafka-python to read from {start} to {high}", interval_s=0)
        assert got == want
    finally:
        c.close()


def test_keyless_record_to_a_compacted_topic_is_refused(broker):
    topic = unique_topic("compact-nokey")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    p = producer(broker.bootstrap, **{"enable.idempotence": False, "retries": 0})
    log = produce_all(p, topic, [(None, b"no key")])
    assert len(log.failed) == 1, log.ok
    assert log.failed[0][1].code() == KafkaError.INVALID_RECORD, log.failed[0][1]
    ok = produce_all(p, topic, [(b"k", b"keyed")])
    assert not ok.failed, ok.failed


def test_delete_records_on_a_compact_only_topic_is_a_policy_violation(broker):
    a = admin(broker.bootstrap)
    for policy, refused in (("compact", True), ("compact,delete", False)):
        topic = unique_topic("compact-delrec")
        create_topic(broker.bootstrap, topic, config={"cleanup.policy": policy})
        log = produce_all(producer(broker.bootstrap), topic, [(b"k%d" % i, b"v") for i in range(5)])
        assert not log.failed, log.failed
        fs = a.delete_records([TopicPartition(topic, 0, 2)], request_timeout=40, operation_timeout=30)
        err = admin_error(list(fs.values())[0])
        if refused:
            assert err is not None and err.code() == KafkaError.POLICY_VIOLATION, (policy, err)
        else:
            assert err is None, (policy, err)


BAD = [
    ({"cleanup.policy": "shred"}, "cleanup.policy"),
    ({"cleanup.policy": "compact,shred"}, "cleanup.policy"),
    ({"min.compaction.lag.ms": "-1"}, "min.compaction.lag.ms"),
    ({"max.compaction.lag.ms": "0"}, "max.compaction.lag.ms"),
    ({"min.cleanable.dirty.ratio": "1.5"}, "min.cleanable.dirty.ratio"),
    ({"min.cleanable.dirty.ratio": "-0.1"}, "min.cleanable.dirty.ratio"),
    ({"delete.retention.ms": "-5"}, "delete.retention.ms"),
    ({"min.compaction.lag.ms": "2000", "max.compaction.lag.ms": "1000"}, "min.compaction.lag.ms"),
]


def test_bad_compaction_configs_are_invalid_config(broker, broker_kind):
    a = admin(broker.bootstrap)
    for config, named in BAD:
        t = unique_topic("badcompact")
        err = admin_error(a.create_topics([NewTopic(t, 1, 1, config=config)], operation_timeout=30)[t])
        assert err is not None and err.code() == KafkaError.INVALID_CONFIG, (config, err)
        assert named in err.str(), (config, err.str())
    # The same through AlterConfigs on an existing topic.
    t = unique_topic("altercompact")
    create_topic(broker.bootstrap, t, config={"cleanup.policy": "compact"})
    res = ConfigResource(ResourceType.TOPIC, t, set_config={"min.cleanable.dirty.ratio": "2"})
    err = admin_error(a.alter_configs([res])[res])
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
    for good in ("delete,compact", "compact, delete", "compact"):
        res = ConfigResource(ResourceType.TOPIC, t, set_config={"cleanup.policy": good})
        assert admin_error(a.alter_configs([res])[res]) is None, good


def policy(a, topic: str) -> set[str]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = a.describe_configs([res])[res].result(timeout=30)
    return {p.strip() for p in entries["cleanup.policy"].value.split(",") if p.strip()}


def test_cleanup_policy_append_and_subtract(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("policy")
    create_topic(broker.bootstrap, topic)

    def incremental(value: str, op) -> None:
        res = ConfigResource(ResourceType.TOPIC, topic,
                             incremental_configs=[ConfigEntry("cleanup.policy", value, incremental_operation=op)])
        assert admin_error(a.incremental_alter_configs([res])[res]) is None, (value, op)

    incremental("compact", AlterConfigOpType.APPEND)
    assert policy(a, topic) == {"compact", "delete"}
    incremental("delete", AlterConfigOpType.SUBTRACT)
    assert policy(a, topic) == {"compact"}
    # Compacted now: keyless records are refused.
    p = producer(broker.bootstrap, **{"enable.idempotence": False, "retries": 0})
    log = wait_until(lambda: (lambda l: l if l.failed else None)(produce_all(p, topic, [(None, b"x")])), 30,
                     "the policy change to reach the partition", interval_s=0.2)
    assert log.failed[0][1].code() == KafkaError.INVALID_RECORD


def leader_and_isr(bootstrap: str, topic: str) -> tuple[int, tuple[int, ...]]:
    """Partition 0's leader and ISR; (-1, ()) while the metadata does not have it yet."""
    t = admin(bootstrap).list_topics(topic, timeout=10).topics.get(topic)
    p = t.partitions.get(0) if t is not None and t.error is None else None
    return (p.leader, tuple(sorted(p.isrs))) if p is not None else (-1, ())


def batches_on_disk(data_dir, topic: str) -> int:
    """Chronik's WAL files of partition 0: their total size (a compacted replica's is small)."""
    return sum(f.stat().st_size for f in (data_dir / "wal" / topic / "0").glob("wal_0_*.log"))


def test_three_replicas_compact_and_a_new_leader_serves_the_same_keys(cluster_factory, broker_kind):
    c = cluster_factory(3, args=["--log-cleaner-backoff-ms", "200", "--broker-session-timeout-ms", "2000",
                                 "--replica-lag-time-max-ms", "3000"]).start()
    topic = unique_topic("compacted3")
    a = admin(c.bootstrap(1))
    fs = a.create_topics([NewTopic(topic, 1, 3, config=compact_config())], operation_timeout=30)
    fs[topic].result(timeout=30)
    leader, _ = wait_until(lambda: (lambda li: li if li[0] > 0 and len(li[1]) == 3 else None)(
        leader_and_isr(c.bootstrap(1), topic)), 30, "a leader and a full ISR")
    # One follower is down while the data is written and compacted: it later copies a log with gaps.
    behind = next(i for i in (1, 2, 3) if i != leader)
    c.node(behind).kill()
    alive = [i for i in (1, 2, 3) if i != behind]
    latest = produce_versions(c.bootstrap(*alive), topic)
    wait_until(lambda: compacted(c.bootstrap(*alive), topic, latest, False), 120,
               "the leader to compact", interval_s=0.5)
    c.node(behind).start()
    wait_until(lambda: len(leader_and_isr(c.bootstrap(*alive), topic)[1]) == 3, 60,
               f"node {behind} back in the ISR", interval_s=0.2)
    if broker_kind == "chronik":
        # Every replica cleans its own log (and the one that was behind copied a compacted log).
        wait_until(lambda: all(batches_on_disk(c.node(i).data_dir, topic) < 64 * 1024 for i in (1, 2, 3)), 60,
                   "every replica's log to be compacted", interval_s=0.5)

    c.node(leader).kill()
    rest = [i for i in (1, 2, 3) if i != leader]
    wait_until(lambda: leader_and_isr(c.bootstrap(*rest), topic)[0] in rest, 60, "a new leader", interval_s=0.2)
    msgs = wait_until(lambda: compacted(c.bootstrap(*rest), topic, latest, False), 120,
                      "the new leader to serve one record per key", interval_s=0.5)
    assert_latest(msgs, latest)
