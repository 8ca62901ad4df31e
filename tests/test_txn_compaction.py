"""Compaction of a transactional topic (issue 20: "markers and aborted data are cleaned as Kafka
cleans them"): confluent-kafka writes committed and aborted transactions interleaved with plain
writes to a compacted topic with small segments and a short delete.retention.ms.

What the test proves, once the cleaner ran (and again after a SIGKILL and restart, on Chronik):
- a read_committed consumer sees exactly the latest committed value of each key (a committed
  transactional record superseded plain ones and was superseded by them; aborted records never
  superseded anything);
- a read_uncommitted consumer no longer sees any aborted record;
- the transaction markers are gone from the log (a raw Fetch shows its control batches), except
  the last commit marker, whose transaction's records are the latest of their keys, and the
  marker of the producer's last transaction, which Kafka keeps with the producer's last batch
  (emptied) so its sequence and epoch survive; read_committed fetches report no aborted
  transaction but that one;
- after the restart the rebuilt transaction state holds no open transaction (the last stable
  offset is the high watermark) and the transactional.id commits a new transaction.

Three replicas: each follower cleans its own log by the same rules (a Chronik follower keeps no
transaction state while it follows; its cleaner reads the transactions from its log), so the new
leader after the old one is SIGKILLed serves the same.

Runs against Apache Kafka 4.4 too (--broker=kafka; the restart part is Chronik's).
"""

from __future__ import annotations

import re
import struct
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

import kafkawire as w
from helpers import admin, consumer, create_topic, http_get, producer, unique_topic, wait_until
from confluent_kafka.admin import NewTopic
from test_compaction import FILLER, compact_config, leader_and_isr, nudge
from test_transactions import latest, txn_producer

KEYS = [b"key-%02d" % k for k in range(12)]
ROUNDS = 4
FETCH = 1
FETCH_V = 4
ATTR_CONTROL = 0x20


@pytest.fixture
def cleaner_broker(broker_factory):
    # The cleaner looks for dirty logs every 200 ms instead of every 15 s.
    return broker_factory(args=["--log-cleaner-backoff-ms", "200"])


def leader_address(bootstrap: str, topic: str) -> str:
    """host:port of partition 0's leader (a raw Fetch must go there)."""
    md = admin(bootstrap).list_topics(topic, timeout=10)
    b = md.brokers[md.topics[topic].partitions[0].leader]
    return f"{b.host}:{b.port}"


def fetch_v4(bootstrap: str, topic: str, offset: int, read_committed: bool):
    """One raw Fetch v4 of partition 0: (high watermark, last stable offset, aborted
    transactions as (producer id, first offset), the batches' headers as dicts)."""
    body = (w.i32(-1) + w.i32(0) + w.i32(0) + w.i32(8 << 20) + w.i8(1 if read_committed else 0)
            + w.i32(1) + w.string(topic) + w.i32(1) + w.i32(0) + w.i64(offset) + w.i32(8 << 20))
    with w.Connection(leader_address(bootstrap, topic)) as conn:
        r = w.Reader(conn.roundtrip(w.request(FETCH, FETCH_V, 3, body)))
    r.i32()  # correlation id
    r.i32()  # throttle
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    assert r.i32() == 0
    error = r.i16()
    assert error == 0, error
    hw, lso = r.i64(), r.i64()
    aborted = [(r.i64(), r.i64()) for _ in range(max(r.i32(), 0))]
    n = r.i32()
    records = r._take(n) if n > 0 else b""
    batches = []
    pos = 0
    while pos + 61 <= len(records):
        (length,) = struct.unpack_from(">i", records, pos + 8)
        if pos + 12 + length > len(records):
            break
        base, = struct.unpack_from(">q", records, pos)
        attributes, delta = struct.unpack_from(">hi", records, pos + 21)
        pid, = struct.unpack_from(">q", records, pos + 43)
        count, = struct.unpack_from(">i", records, pos + 57)
        batches.append({"base": base, "last": base + delta, "control": bool(attributes & ATTR_CONTROL),
                        "producer_id": pid, "count": count})
        pos += 12 + length
    return hw, lso, aborted, batches


def log_batches(bootstrap: str, topic: str, read_committed: bool = False):
    """Every batch header of the log up to the high watermark, and the aborted transactions
    read_committed fetches from 0 reported."""
    offset, out, aborted = 0, [], []
    while True:
        hw, lso, ab, batches = fetch_v4(bootstrap, topic, offset, read_committed)
        aborted += ab
        out += batches
        if not batches or batches[-1]["last"] + 1 >= (lso if read_committed else hw):
            return out, aborted
        offset = batches[-1]["last"] + 1


def read(bootstrap: str, topic: str, isolation: str):
    """(key, value) of every record to the end the isolation level sees (partition EOF)."""
    c = consumer(bootstrap, **{"isolation.level": isolation, "auto.offset.reset": "earliest",
                               "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return got
                continue
            got.append((m.key(), m.value()))
        raise AssertionError(f"no end of partition within 30 s ({len(got)} records read)")
    finally:
        c.close()


def write(bootstrap: str, topic: str, txn_id: str) -> tuple[dict, int]:
    """Plain writes, committed and aborted transactions, interleaved; ends with an aborted one.
    The latest committed value of each key, and the number of transactions."""
    p = txn_producer(bootstrap, txn_id)
    plain = producer(bootstrap)
    expected: dict[bytes, bytes] = {}
    for r in range(ROUNDS):
        for k in KEYS:
            plain.produce(topic, key=k, value=b"plain-%d" % r)
            expected[k] = b"plain-%d" % r
        assert plain.flush(30) == 0
        p.begin_transaction()
        for k in KEYS[::2]:
            p.produce(topic, key=k, value=b"committed-%d" % r)
            expected[k] = b"committed-%d" % r
        p.commit_transaction(30)
        p.begin_transaction()
        for k in KEYS:
            p.produce(topic, key=k, value=b"aborted-%d" % r)
        p.flush(30)  # written before the abort
        p.abort_transaction(30)
    return expected, 2 * ROUNDS


def cleaned(bootstrap: str, topic: str, expected: dict, kept: list):
    """None until the log is cleaned as Kafka cleans it (its markers are `kept`); else they."""
    nudge(bootstrap, topic)
    committed = [(k, v) for k, v in read(bootstrap, topic, "read_committed") if k != FILLER]
    if sorted(committed) != sorted(expected.items()):
        return None
    if any(v.startswith(b"aborted") for _, v in read(bootstrap, topic, "read_uncommitted")):
        return None
    batches, _ = log_batches(bootstrap, topic)
    markers = [b for b in batches if b["control"]]
    return markers if markers == kept else None


def check(bootstrap: str, topic: str, expected: dict, kept: list) -> None:
    committed = [(k, v) for k, v in read(bootstrap, topic, "read_committed") if k != FILLER]
    assert sorted(committed) == sorted(expected.items())
    uncommitted = read(bootstrap, topic, "read_uncommitted")
    assert not [v for _, v in uncommitted if v.startswith(b"aborted")]
    batches, _ = log_batches(bootstrap, topic)
    assert [b for b in batches if b["control"]] == kept
    last_marker = kept[-1]
    # The producer's last batch (its last aborted transaction's) stays, emptied.
    theirs = [b for b in batches if b["producer_id"] == last_marker["producer_id"] and not b["control"]]
    assert theirs and theirs[-1]["count"] == 0 and theirs[-1]["last"] < last_marker["base"], theirs
    _, aborted = log_batches(bootstrap, topic, read_committed=True)
    assert {pid for pid, _ in aborted} <= {last_marker["producer_id"]}, aborted
    assert latest(bootstrap, topic, "read_committed") == latest(bootstrap, topic, "read_uncommitted")


def test_markers_and_aborted_data_are_cleaned(cleaner_broker, broker_kind):
    b = cleaner_broker
    topic = unique_topic("txn-compact")
    create_topic(b.bootstrap, topic, config=compact_config())
    txn_id = f"{topic}-tx"
    expected, txns = write(b.bootstrap, topic, txn_id)
    # EndTxn answers before every marker is written (as in Kafka): wait for the last one.
    markers = wait_until(lambda: (m := [x for x in log_batches(b.bootstrap, topic)[0] if x["control"]])
                         and len(m) == txns and m, 30, "every transaction's marker", interval_s=0.2)
    # What stays: the last commit marker (its records are the latest of their keys) and the
    # last abort marker (the producer's last batch, emptied, is in that transaction).
    kept = markers[-2:]
    wait_until(lambda: cleaned(b.bootstrap, topic, expected, kept), 90,
               "the cleaner to drop aborted records and the markers of transactions gone", interval_s=0.5)
    check(b.bootstrap, topic, expected, kept)

    if broker_kind != "chronik":
        return
    b.kill()
    b.start()
    check(b.bootstrap, topic, expected, kept)
    # The rebuilt state lets the transactional.id go on: a new transaction commits and shows.
    p = txn_producer(b.bootstrap, txn_id)
    p.begin_transaction()
    p.produce(topic, key=KEYS[1], value=b"after-restart")
    p.commit_transaction(30)
    expected[KEYS[1]] = b"after-restart"
    committed = [(k, v) for k, v in read(b.bootstrap, topic, "read_committed") if k != FILLER]
    assert dict(committed)[KEYS[1]] == b"after-restart"
    assert latest(b.bootstrap, topic, "read_committed") == latest(b.bootstrap, topic, "read_uncommitted")


def last_clean(http: str, topic: str) -> float:
    """When this Chronik node last cleaned the topic's partition 0 (0: never)."""
    _, text = http_get(http, "/metrics")
    m = re.search(r'^chronik_log_cleaner_last_clean_timestamp_seconds\{[^}]*topic="%s"[^}]*\} ([0-9.e+-]+)$'
                  % re.escape(topic), text, re.M)
    return float(m.group(1)) if m else 0.0


def test_followers_clean_transactions_and_a_new_leader_serves_the_same(cluster_factory, broker_kind):
    c = cluster_factory(3, args=["--log-cleaner-backoff-ms", "200", "--broker-session-timeout-ms", "2000",
                                 "--replica-lag-time-max-ms", "3000"]).start()
    topic = unique_topic("txn-compact3")
    a = admin(c.bootstrap(1))
    a.create_topics([NewTopic(topic, 1, 3, config=compact_config())], operation_timeout=30)[topic].result(timeout=30)
    leader, _ = wait_until(lambda: (lambda li: li if li[0] > 0 and len(li[1]) == 3 else None)(
        leader_and_isr(c.bootstrap(1), topic)), 30, "a leader and a full ISR")
    expected, txns = write(c.bootstrap(1, 2, 3), topic, f"{topic}-tx")
    markers = wait_until(lambda: (m := [x for x in log_batches(c.bootstrap(1, 2, 3), topic)[0] if x["control"]])
                         and len(m) == txns and m, 30, "every transaction's marker", interval_s=0.2)
    kept = markers[-2:]
    wait_until(lambda: cleaned(c.bootstrap(1, 2, 3), topic, expected, kept), 90,
               "the leader to clean", interval_s=0.5)
    followers = [i for i in (1, 2, 3) if i != leader]
    if broker_kind == "chronik":
        # Each follower cleaned its own log after all of it was there.
        done = time.time()
        wait_until(lambda: nudge(c.bootstrap(1, 2, 3), topic) or all(
            last_clean(c.node(i).http, topic) > done + 1 for i in followers), 60,
            "the followers to clean", interval_s=0.5)
    c.node(leader).kill()
    wait_until(lambda: leader_and_isr(c.bootstrap(*followers), topic)[0] in followers, 60, "a new leader",
               interval_s=0.2)
    wait_until(lambda: cleaned(c.bootstrap(*followers), topic, expected, kept), 90,
               "the new leader to serve the cleaned log", interval_s=0.5)
    check(c.bootstrap(*followers), topic, expected, kept)
