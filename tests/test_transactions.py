"""Transactions through the coordinator (issue 20, standalone): a confluent-kafka (librdkafka)
transactional producer against the real broker, and raw requests for Kafka's error codes.

What each test proves:
- commit and abort: read_committed sees exactly the committed records, read_uncommitted every
  record written (aborted ones too), and both see the markers' offsets skipped;
- send_offsets_to_transaction: a group's offsets are committed with the output and only then
  (an aborted transaction's offsets never become the group's), also after a SIGKILL and restart
  (the offsets log's replay honours the markers);
- a second producer with the same transactional.id fences the first, whose open transaction is
  aborted (never visible to read_committed);
- bad input: EndTxn without a transaction (INVALID_TXN_STATE), AddPartitionsToTxn for an unknown
  topic (UNKNOWN_TOPIC_OR_PARTITION), a stale epoch (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH at
  old versions), TxnOffsetCommit for another generation (ILLEGAL_GENERATION), nothing applied;
  and a transactional offset is UNSTABLE_OFFSET_COMMIT to OffsetFetch's require_stable until
  its transaction commits;
- a transaction left open past transaction.timeout.ms is aborted: read_committed never sees it
  and the last stable offset moves on to the high watermark;
- three nodes: the coordinator SIGKILLed with a transaction open (a new instance's
  init_transactions completes, the open transaction is aborted and invisible to read_committed,
  markers reach partitions led by other nodes), and a partition leader SIGKILLed between
  produce and commit (the commit is whole or the abort is).

Every test also runs against Apache Kafka 4.4 (`--broker=kafka`); Kafka looks for timed-out
transactions every 10 s (transaction.abort.timed.out.transaction.cleanup.interval.ms), Chronik
every second, so the timeout test's deadline allows for Kafka's.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire as w
from helpers import consumer, create_topic, unique_topic, wait_until

ADD_PARTITIONS_TO_TXN = 24
ADD_OFFSETS_TO_TXN = 25
END_TXN = 26
TXN_OFFSET_COMMIT = 28
JOIN_GROUP = 11
OFFSET_FETCH = 9
SYNC_GROUP = 14

ILLEGAL_GENERATION = 22
INVALID_TXN_STATE = 48
UNSTABLE_OFFSET_COMMIT = 88
PRODUCER_FENCED = 90
# Retriable while the coordinator is being set up (topic creation, load).
COORDINATOR_RETRIABLE = {14, 15, 16, 51}  # LOAD_IN_PROGRESS, NOT_AVAILABLE, NOT_COORDINATOR, CONCURRENT


def txn_producer(bootstrap: str, txn_id: str, **conf) -> Producer:
    base = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 20000,
        "linger.ms": 5,
        "socket.timeout.ms": 10000,
    }
    base.update(conf)
    p = Producer(base)
    p.init_transactions(60)
    return p


def read_all(bootstrap: str, topic: str, isolation: str, expect: int, timeout_s: float = 30,
             partitions: int = 1) -> list[bytes]:
    """The values of the topic's first `partitions` partitions from the start (in arrival
    order), read until `expect` arrived (then 1 s more to catch extras) or the deadline."""
    c = consumer(bootstrap, **{"isolation.level": isolation, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        settle = None
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value())
            if len(got) >= expect:
                settle = settle or time.monotonic() + 1.0
                if time.monotonic() > settle:
                    break
        return got
    finally:
        c.close()


def latest(bootstrap: str, topic: str, isolation: str) -> int:
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    finally:
        c.close()


def test_commit_and_abort_isolation(module_broker):
    b = module_broker.bootstrap
    topic = unique_topic("txn-iso")
    create_topic(b, topic)
    p = txn_producer(b, f"{topic}-tx")
    p.begin_transaction()
    p.produce(topic, b"a1")
    p.produce(topic, b"a2")
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, b"b1")
    p.flush(30)  # written before the abort (abort_transaction drops unsent messages)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, b"c1")
    p.commit_transaction(30)
    assert read_all(b, topic, "read_committed", 3) == [b"a1", b"a2", b"c1"]
    assert read_all(b, topic, "read_uncommitted", 4) == [b"a1", b"a2", b"b1", b"c1"]
    # 4 records + 3 markers; nothing open, so the LSO is the high watermark.
    assert latest(b, topic, "read_committed") == latest(b, topic, "read_uncommitted") == 7


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def test_send_offsets_commits_with_the_output(broker):
    b = broker.bootstrap
    src, out = unique_topic("txn-src"), unique_topic("txn-out")
    create_topic(b, src)
    create_topic(b, out)
    group = f"{src}-group"
    # The group's "consumer": its metadata (no membership: generation -1) goes with the offsets.
    c = Consumer({"bootstrap.servers": b, "group.id": group, "enable.auto.commit": False})
    try:
        p = txn_producer(b, f"{src}-tx")
        p.begin_transaction()
        p.produce(out, b"x")
        p.send_offsets_to_transaction([TopicPartition(src, 0, 2)], c.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        assert committed(b, group, src) == 2
        p.begin_transaction()
        p.produce(out, b"y")
        p.send_offsets_to_transaction([TopicPartition(src, 0, 5)], c.consumer_group_metadata(), 30)
        p.abort_transaction(30)
        assert committed(b, group, src) == 2, "an aborted transaction's offsets were committed"
        assert read_all(b, out, "read_committed", 1) == [b"x"]
    finally:
        c.close()
    # The offsets log replayed on start honours the markers: the committed transaction's
    # offsets are there, the aborted one's are not.
    broker.kill()
    b = broker.restart().bootstrap
    after: list[int] = []
    wait_until(lambda: after.append(committed(b, group, src)) or after[-1] >= 0, 60, "offsets after restart")
    assert after[-1] == 2


def test_second_instance_fences_the_first(module_broker):
    b = module_broker.bootstrap
    topic = unique_topic("txn-fence")
    create_topic(b, topic)
    txn_id = f"{topic}-tx"
    first = txn_producer(b, txn_id)
    first.begin_transaction()
    first.produce(topic, b"zombie")
    first.flush(30)
    second = txn_producer(b, txn_id)  # aborts the first's open transaction, bumps the epoch
    second.begin_transaction()
    second.produce(topic, b"live")
    second.commit_transaction(30)
    with pytest.raises(KafkaException) as e:
        first.commit_transaction(30)
    err = e.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), err
    assert read_all(b, topic, "read_committed", 1) == [b"live"]


# ------------------------------------------------------------------ raw requests
class Raw:
    """A transactional producer by hand: InitProducerId v1 and the transaction APIs at
    non-flexible versions (v2 knows PRODUCER_FENCED, v1 does not)."""

    def __init__(self, bootstrap: str, txn_id: str):
        self.conn = w.Connection(bootstrap, timeout_s=40)
        self.bootstrap = bootstrap
        self.txn_id = txn_id
        self.corr = 0

    def call(self, api: int, version: int, body: bytes, flexible: bool = False) -> w.Reader:
        self.corr += 1
        r = w.Reader(self.conn.roundtrip(w.request(api, version, self.corr, body, flexible=flexible)))
        assert r.i32() == self.corr
        if flexible:
            r.skip_tags()
        return r

    def init(self) -> tuple[int, int]:
        """(producer id, epoch), retried while the coordinator is being set up. FindCoordinator
        first, as a client does: Kafka creates __transaction_state on it, not on InitProducerId."""
        wait_until(lambda: coordinator_of(self.bootstrap, self.txn_id) is not None, 60,
                   "a transaction coordinator", interval_s=0.2)

        def once():
            r = self.call(w.INIT_PRODUCER_ID, 1, w.string(self.txn_id) + w.i32(30000))
            r.i32()
            err, pid, epoch = r.i16(), r.i64(), r.i16()
            if err in COORDINATOR_RETRIABLE:
                return None
            assert err == w.NONE, err
            return pid, epoch
        return wait_until(once, 60, "InitProducerId", interval_s=0.2)

    def end_txn(self, pid: int, epoch: int, commit: bool, version: int = 2) -> int:
        r = self.call(END_TXN, version, w.string(self.txn_id) + w.i64(pid) + w.i16(epoch) + w.i8(int(commit)))
        r.i32()
        return r.i16()

    def add_partitions(self, pid: int, epoch: int, topic: str, partition: int = 0) -> list[int]:
        body = w.string(self.txn_id) + w.i64(pid) + w.i16(epoch)
        body += w.i32(1) + w.string(topic) + w.i32(1) + w.i32(partition)
        r = self.call(ADD_PARTITIONS_TO_TXN, 2, body)
        r.i32()
        codes = []
        for _ in range(r.i32()):
            r.string()
            for _ in range(r.i32()):
                r.i32()
                codes.append(r.i16())
        return codes

    def add_offsets(self, pid: int, epoch: int, group: str) -> int:
        r = self.call(ADD_OFFSETS_TO_TXN, 2, w.string(self.txn_id) + w.i64(pid) + w.i16(epoch) + w.string(group))
        r.i32()
        return r.i16()

    def txn_offset_commit(self, pid: int, epoch: int, group: str, generation: int, member: str,
                          topic: str, offset: int) -> list[int]:
        """TxnOffsetCommit v3 (flexible: generation and member, KIP-447)."""
        body = w.compact_string(self.txn_id) + w.compact_string(group) + w.i64(pid) + w.i16(epoch)
        body += w.i32(generation) + w.compact_string(member) + w.compact_string(None)
        body += w.uvarint(2) + w.compact_string(topic) + w.uvarint(2)
        body += w.i32(0) + w.i64(offset) + w.i32(-1) + w.compact_string(None) + w.EMPTY_TAGS
        body += w.EMPTY_TAGS + w.EMPTY_TAGS
        r = self.call(TXN_OFFSET_COMMIT, 3, body, flexible=True)
        r.i32()
        codes = []
        for _ in range(r.uvarint() - 1):
            r.compact_string()
            for _ in range(r.uvarint() - 1):
                r.i32()
                codes.append(r.i16())
                r.skip_tags()
            r.skip_tags()
        return codes

    def fetch_stable(self, group: str, topic: str) -> tuple[int, int]:
        """OffsetFetch v7 with require_stable (KIP-447): (error code, offset) of partition 0."""
        body = w.compact_string(group) + w.uvarint(2) + w.compact_string(topic)
        body += w.uvarint(2) + w.i32(0) + w.EMPTY_TAGS + w.i8(1) + w.EMPTY_TAGS
        r = self.call(OFFSET_FETCH, 7, body, flexible=True)
        r.i32()
        assert r.uvarint() - 1 == 1
        r.compact_string()
        assert r.uvarint() - 1 == 1
        r.i32()
        offset = r.i64()
        r.i32()
        r.compact_string()
        return r.i16(), offset

    def join(self, group: str, topic: str) -> tuple[int, str]:
        """A one-member group at a stable generation (JoinGroup v3 + SyncGroup v1):
        (generation, member id)."""
        meta = w.i16(0) + w.i32(1) + w.string(topic) + w.nbytes(b"")
        body = w.string(group) + w.i32(30000) + w.i32(30000) + w.string("") + w.string("consumer")
        body += w.i32(1) + w.string("range") + w.nbytes(meta)
        r = self.call(JOIN_GROUP, 3, body)
        r.i32()
        err, generation = r.i16(), r.i32()
        assert err == w.NONE, err
        r.string()
        r.string()
        member = r.string()
        r = self.call(SYNC_GROUP, 1, w.string(group) + w.i32(generation) + w.string(member) + w.i32(0))
        r.i32()
        assert r.i16() == w.NONE
        return generation, member


def test_bad_input_gets_kafkas_error_codes(module_broker):
    b = module_broker.bootstrap
    topic = unique_topic("txn-bad")
    create_topic(b, topic)
    raw = Raw(b, f"{topic}-tx")
    try:
        pid, epoch = raw.init()
        # No transaction yet: nothing to end.
        assert raw.end_txn(pid, epoch, commit=True) == INVALID_TXN_STATE
        # A topic that does not exist: that partition refused, nothing added.
        assert raw.add_partitions(pid, epoch, topic + "-missing") == [w.UNKNOWN_TOPIC_OR_PARTITION]
        assert raw.end_txn(pid, epoch, commit=False) == INVALID_TXN_STATE
        # A new instance bumps the epoch: the old one is fenced.
        pid2, epoch2 = raw.init()
        assert (pid2, epoch2) == (pid, epoch + 1)
        assert raw.add_partitions(pid, epoch, topic) == [PRODUCER_FENCED]
        assert raw.end_txn(pid, epoch, commit=True, version=2) == PRODUCER_FENCED
        assert raw.end_txn(pid, epoch, commit=True, version=1) == w.INVALID_PRODUCER_EPOCH
        # TxnOffsetCommit from another generation of the group.
        group = f"{topic}-group"
        generation, member = raw.join(group, topic)
        assert raw.add_offsets(pid2, epoch2, group) == w.NONE
        assert raw.txn_offset_commit(pid2, epoch2, group, generation + 1, member, topic, 7) == [ILLEGAL_GENERATION]
        assert raw.end_txn(pid2, epoch2, commit=True) == w.NONE
        assert committed(b, group, topic) < 0, "a refused transactional offset was applied"
        # The right generation: pending (unstable for require_stable) until the commit.
        assert raw.add_offsets(pid2, epoch2, group) == w.NONE
        assert raw.txn_offset_commit(pid2, epoch2, group, generation, member, topic, 7) == [w.NONE]
        assert raw.fetch_stable(group, topic) == (UNSTABLE_OFFSET_COMMIT, -1)
        assert raw.end_txn(pid2, epoch2, commit=True) == w.NONE
        wait_until(lambda: raw.fetch_stable(group, topic) == (w.NONE, 7), 20, "the committed offset")
    finally:
        raw.conn.close()


def test_a_transaction_past_its_timeout_is_aborted(module_broker):
    b = module_broker.bootstrap
    topic = unique_topic("txn-timeout")
    create_topic(b, topic)
    with_timeout = txn_producer(b, f"{topic}-tx", **{"transaction.timeout.ms": 2000, "socket.timeout.ms": 2000})
    with_timeout.begin_transaction()
    with_timeout.produce(topic, b"left-open")
    with_timeout.flush(30)
    assert latest(b, topic, "read_committed") == 0, "the open transaction holds the LSO"
    # Aborted by the coordinator (Kafka: within its 10 s cleanup interval), marker written.
    wait_until(lambda: latest(b, topic, "read_committed") == 2, 40,
               "the LSO past the aborted transaction's marker", interval_s=0.5)
    assert latest(b, topic, "read_uncommitted") == 2
    assert read_all(b, topic, "read_committed", 0, timeout_s=3) == []
    assert read_all(b, topic, "read_uncommitted", 1) == [b"left-open"]


# ------------------------------------------------------------------ three nodes
def coordinator_of(bootstrap: str, txn_id: str) -> int | None:
    """The node FindCoordinator v1 names for a transactional id (None while there is none)."""
    err, node = w.find_coordinator(bootstrap, txn_id, 1)
    return node if err == w.NONE else None


def test_coordinator_killed_with_a_transaction_open(cluster_factory):
    """3 nodes, a topic whose partitions are led by different nodes: a transaction's markers
    reach every leader; with the coordinator SIGKILLed mid-transaction, a new instance's
    init_transactions completes on the new coordinator, the open transaction is aborted and
    never visible to read_committed, and nothing hangs (the LSO reaches the high watermark)."""
    c = cluster_factory(3).start()
    topic = unique_topic("txn-failover")
    admin_rf3(c.bootstrap(1), topic)
    txn_id = f"{topic}-tx"
    first = txn_producer(c.bootstrap(1, 2, 3), txn_id)
    first.begin_transaction()
    for p in range(3):
        first.produce(topic, b"committed-%d" % p, partition=p)
    first.commit_transaction(60)
    first.begin_transaction()
    for p in range(3):
        first.produce(topic, b"open-%d" % p, partition=p)
    first.flush(30)
    coordinator = wait_until(lambda: coordinator_of(c.bootstrap(1), txn_id), 20, "the coordinator")
    # The markers of the committed transaction reached leaders other than the coordinator.
    md = AdminClient({"bootstrap.servers": c.bootstrap(1)}).list_topics(topic, timeout=10)
    leaders = {p.leader for p in md.topics[topic].partitions.values()}
    assert leaders - {coordinator}, f"every partition led by the coordinator {coordinator}"
    c.node(coordinator).kill()
    survivors = [i for i in (1, 2, 3) if i != coordinator]
    b = c.bootstrap(*survivors)
    second = txn_producer(b, txn_id)  # completes only once the open transaction is aborted
    second.begin_transaction()
    second.produce(topic, b"after", partition=0)
    second.commit_transaction(60)
    want = sorted([b"committed-0", b"committed-1", b"committed-2", b"after"])
    assert sorted(read_all(b, topic, "read_committed", len(want), partitions=3)) == want
    assert_stable(b, topic, 3)


def assert_stable(bootstrap: str, topic: str, partitions: int) -> None:
    """No transaction left hanging: every partition's LSO is its high watermark (polled: a
    new leader's high watermark may lag a moment)."""
    def lso_hw(p: int) -> tuple[int, int]:
        out = []
        for iso in ("read_committed", "read_uncommitted"):
            cons = consumer(bootstrap, **{"isolation.level": iso})
            try:
                out.append(cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1])
            finally:
                cons.close()
        return out[0], out[1]
    for p in range(partitions):
        wait_until(lambda: (lambda o: o[0] == o[1])(lso_hw(p)), 30, f"partition {p}: the LSO at the high watermark",
                   interval_s=0.5)


def admin_rf3(bootstrap: str, topic: str) -> None:
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(timeout=30)
    wait_until(lambda: len(a.list_topics(timeout=10).topics.get(topic).partitions or {}) == 3
               if a.list_topics(timeout=10).topics.get(topic) else False, 30, "the topic")


def test_partition_leader_killed_between_produce_and_commit(cluster_factory):
    """3 nodes: the leader of one of the transaction's partitions (not the coordinator) is
    SIGKILLed after the transaction's records are acknowledged and before the commit. The
    commit then either succeeds whole (its marker reaches the partition's new leader) or the
    transaction is aborted whole: read_committed sees all of it or none, and nothing hangs."""
    c = cluster_factory(3).start()
    topic = unique_topic("txn-leader-kill")
    admin_rf3(c.bootstrap(1), topic)
    txn_id = f"{topic}-tx"
    p = txn_producer(c.bootstrap(1, 2, 3), txn_id)
    coordinator = wait_until(lambda: coordinator_of(c.bootstrap(1), txn_id), 20, "the coordinator")
    md = AdminClient({"bootstrap.servers": c.bootstrap(1)}).list_topics(topic, timeout=10)
    victims = [pt.leader for pt in md.topics[topic].partitions.values() if pt.leader != coordinator]
    assert victims, "every partition led by the coordinator"
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, b"v-%d" % i, partition=i)
    p.flush(30)
    c.node(victims[0]).kill()
    try:
        p.commit_transaction(60)
        want = sorted(b"v-%d" % i for i in range(3))
    except KafkaException as e:
        assert e.args[0].txn_requires_abort(), e
        p.abort_transaction(60)
        want = []
    survivors = [i for i in (1, 2, 3) if i != victims[0]]
    b = c.bootstrap(*survivors)
    assert sorted(read_all(b, topic, "read_committed", len(want), partitions=3)) == want
    assert_stable(b, topic, 3)
