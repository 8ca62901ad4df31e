"""The partition side of transactions (issue 20): transactional batches, commit and abort markers
written with WriteTxnMarkers, the last stable offset, the aborted-transaction index, and what
read_committed and read_uncommitted consumers (librdkafka) and ListOffsets see, before and after
a SIGKILL + restart (the state must be rebuilt from the log).

The test plays the transaction coordinator's part that writes markers: its producer comes from
the real coordinator (InitProducerId with the transactional id, partition 0 added with
AddPartitionsToTxn, so KIP-890's verification admits its batches), transactional batches are
sent over a raw connection (tests/kafkawire.py), and the test writes the markers a coordinator
would write. What the answers should be was checked against Apache Kafka
4.4 with a real transaction (librdkafka's fetch log): read_uncommitted Fetch answers carry the
LSO too, and ListOffsets latest is the LSO for read_committed and the high watermark otherwise.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

import kafkawire as w
from helpers import admin, consumer, create_topic, unique_topic, wait_until

pytestmark = pytest.mark.chronik_only(
    "plays the transaction coordinator itself (markers for an idempotent producer id), which "
    "Apache Kafka's own coordinator and KIP-890 verification refuse")

VERSION = 9  # Produce v9: flexible
TXN_ID = "txn-partition-test"


class Txn:
    """One producer id writing transactional batches to partition 0 and playing its coordinator."""

    def __init__(self, conn: w.Connection, topic: str):
        self.conn, self.topic = conn, topic
        self.corr = 10
        # Its producer id from the transaction coordinator, and partition 0 added to its
        # transaction there, so that the partition's KIP-890 check lets its first batches in;
        # from then on the test writes the markers itself (the coordinator's transaction stays
        # open, with a timeout longer than any test here).
        # Right after the cluster starts the coordinator may still move (NOT_COORDINATOR):
        # then it is looked up again.
        def init():
            with w.Connection(self._coordinator()) as c:
                r = w.Reader(c.roundtrip(w.request(
                    w.INIT_PRODUCER_ID, 1, self._next(), w.string(TXN_ID) + w.i32(300_000))))
            r.i32()
            r.i32()
            err, pid, epoch = r.i16(), r.i64(), r.i16()
            if err in (14, 15, 16, 51):  # coordinator being set up, moved or busy: retried
                return None
            assert err == w.NONE and pid >= 0, (err, pid)
            return pid, epoch
        self.pid, self.epoch = wait_until(init, 60, "InitProducerId", interval_s=0.2)
        with w.Connection(self._coordinator()) as coord:
            body = w.string(TXN_ID) + w.i64(self.pid) + w.i16(self.epoch)
            body += w.i32(1) + w.string(topic) + w.i32(1) + w.i32(0)
            r = w.Reader(coord.roundtrip(w.request(24, 2, self._next(), body)))  # AddPartitionsToTxn v2
            r.i32()
            r.i32()
            assert r.i32() == 1 and r.string() == topic and r.i32() == 1
            assert (r.i32(), r.i16()) == (0, w.NONE)
        self.seq = 0

    def _coordinator(self) -> str:
        """host:port of TXN_ID's coordinator (FindCoordinator v1, retried while it is set up)."""
        def find():
            r = w.Reader(self.conn.roundtrip(w.request(10, 1, self._next(), w.string(TXN_ID) + w.i8(1))))
            r.i32()
            r.i32()
            err = r.i16()
            r.string()
            r.i32()
            host, port = r.string(), r.i32()
            return f"{host}:{port}" if err == w.NONE else None
        return wait_until(find, 60, "the transaction coordinator", interval_s=0.2)

    def on(self, conn: w.Connection) -> "Txn":
        """The same producer (id, epoch, next sequence) over another connection."""
        other = Txn.__new__(Txn)
        other.__dict__.update(self.__dict__)
        other.conn = conn
        return other

    def _next(self) -> int:
        self.corr += 1
        return self.corr

    def produce(self, values: list[bytes], transactional_id: str | None = TXN_ID) -> tuple[int, int]:
        """(error code, base offset) of one transactional batch."""
        batch = w.record_batch([(None, v) for v in values], producer_id=self.pid, producer_epoch=self.epoch,
                               base_sequence=self.seq, attributes=w.TRANSACTIONAL)
        corr = self._next()
        req = w.produce_request(VERSION, corr, self.topic, 0, batch, transactional_id=transactional_id)
        got, parts = w.parse_produce_response(self.conn.roundtrip(req), VERSION)
        assert got == corr and len(parts) == 1, parts
        if parts[0].error_code == w.NONE:
            self.seq += len(values)
        return parts[0].error_code, parts[0].base_offset

    def marker(self, committed: bool, coordinator_epoch: int = 0,
               partitions: tuple[int, ...] = (0,)) -> list[int]:
        """Error code per partition of one WriteTxnMarkers marker."""
        corr = self._next()
        m = w.TxnMarker(self.pid, self.epoch, committed, coordinator_epoch, [(self.topic, list(partitions))])
        got, results = w.parse_write_txn_markers_response(
            self.conn.roundtrip(w.write_txn_markers_request(corr, [m]), timeout_s=40))
        assert got == corr, results
        return [err for _, _, _, err in results]


def latest(bootstrap: str, topic: str, isolation: str) -> int:
    """ListOffsets latest as a consumer of that isolation level asks it (librdkafka sends its
    isolation.level in ListOffsets)."""
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    finally:
        c.close()


def read(bootstrap: str, topic: str, isolation: str, end: int, timeout_s: float = 30) -> list[bytes]:
    """The values a consumer of that isolation level reads from offset 0 until its position is
    `end`; then it must stay there with nothing more for a second (read_committed: it stops at
    the LSO although more data is in the log)."""
    c = consumer(bootstrap, **{"isolation.level": isolation, "enable.partition.eof": True})
    tp = TopicPartition(topic, 0, 0)
    out: list[bytes] = []
    try:
        c.assign([tp])
        deadline = time.monotonic() + timeout_s
        settle_until = None
        while settle_until is None or time.monotonic() < settle_until:
            assert time.monotonic() < deadline, f"{isolation}: read {out}, position never reached {end}"
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m.value())
            elif m is not None and m.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"{isolation}: consumer error {m.error()!r}")
            # Before its first fetch answer, the position is unset (negative): still offset 0.
            pos = max(c.position([TopicPartition(topic, 0)])[0].offset, 0)
            assert pos <= end, f"{isolation}: position {pos} past {end}, read {out}"
            if pos == end and settle_until is None:
                settle_until = time.monotonic() + 1.0
    finally:
        c.close()
    return out


def check(bootstrap: str, topic: str, lso: int, hw: int, committed: list[bytes], everything: list[bytes]):
    # Polled: right after a leader change the new leader's high watermark may lag a moment.
    wait_until(lambda: (latest(bootstrap, topic, "read_committed"), latest(bootstrap, topic, "read_uncommitted"))
               == (lso, hw), 20, f"ListOffsets latest: read_committed {lso}, read_uncommitted {hw}")
    assert read(bootstrap, topic, "read_committed", lso) == committed
    assert read(bootstrap, topic, "read_uncommitted", hw) == everything


def test_markers_lso_and_isolation_survive_a_restart(broker_factory):
    b = broker_factory()
    topic = unique_topic("txnpart")
    create_topic(b.bootstrap, topic)
    with w.Connection(b.bootstrap) as conn:
        t = Txn(conn, topic)
        # Kafka: transactional records need the request's transactional id.
        assert t.produce([b"x"], transactional_id=None)[0] == w.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        assert t.produce([b"a0", b"a1"]) == (w.NONE, 0)
        plain = w.record_batch([(None, b"p0")])
        got, parts = w.parse_produce_response(conn.roundtrip(w.produce_request(VERSION, 2, topic, 0, plain)), VERSION)
        assert parts[0].error_code == w.NONE and parts[0].base_offset == 2, parts
        # The open transaction (from offset 0) holds read_committed consumers at offset 0.
        check(b.bootstrap, topic, 0, 3, [], [b"a0", b"a1", b"p0"])
        assert t.marker(committed=False) == [w.NONE]  # abort marker at 3
        assert t.produce([b"b0", b"b1"]) == (w.NONE, 4)
        # Aborted a0, a1 are dropped; the new transaction (from 4) holds them at 4.
        check(b.bootstrap, topic, 4, 6, [b"p0"], [b"a0", b"a1", b"p0", b"b0", b"b1"])
        assert t.marker(committed=True, coordinator_epoch=5, partitions=(0, 9)) == \
            [w.NONE, w.UNKNOWN_TOPIC_OR_PARTITION]  # commit marker at 6
        # A marker from an older coordinator is fenced and not written.
        assert t.marker(committed=True, coordinator_epoch=4) == [w.TRANSACTION_COORDINATOR_FENCED]
        assert t.produce([b"c0"]) == (w.NONE, 7)
    everything = [b"a0", b"a1", b"p0", b"b0", b"b1", b"c0"]
    check(b.bootstrap, topic, 7, 8, [b"p0", b"b0", b"b1"], everything)

    b.kill()
    b.restart()
    # Rebuilt from the log: the open transaction, the aborted one, the producer's sequence and
    # its coordinator epoch.
    check(b.bootstrap, topic, 7, 8, [b"p0", b"b0", b"b1"], everything)
    with w.Connection(b.bootstrap) as conn:
        t2 = t.on(conn)
        assert t2.marker(committed=True, coordinator_epoch=4) == [w.TRANSACTION_COORDINATOR_FENCED]
        assert t2.marker(committed=True, coordinator_epoch=5) == [w.NONE]  # commit c0 at 8
    check(b.bootstrap, topic, 9, 9, [b"p0", b"b0", b"b1", b"c0"], everything)


def leader_of(bootstrap: str, topic: str) -> int:
    return admin(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions[0].leader


def test_a_new_leader_rebuilds_transactions_from_what_it_replicated(cluster_factory):
    """Markers replicate like any batch; followers keep no transaction state while they follow,
    and a follower that becomes leader rebuilds it from its own log (with the producer state):
    the same LSO, aborted transactions and open transaction as the old leader had."""
    c = cluster_factory(3).start()
    topic = unique_topic("txnfail")
    a = admin(c.bootstrap(1))
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic].result(timeout=30)
    wait_until(lambda: leader_of(c.bootstrap(1), topic) in (1, 2, 3), 20, "a leader")
    old = leader_of(c.bootstrap(1), topic)
    with w.Connection(c.node(old).bootstrap) as conn:
        t = Txn(conn, topic)
        # Every append is acks=all, the markers too: on every ISR replica when answered.
        assert t.produce([b"a0", b"a1"]) == (w.NONE, 0)
        assert t.marker(committed=False) == [w.NONE]
        assert t.produce([b"b0"]) == (w.NONE, 3)
    everything = [b"a0", b"a1", b"b0"]
    check(c.node(old).bootstrap, topic, 3, 4, [], everything)

    c.node(old).kill()
    survivors = [i for i in (1, 2, 3) if i != old]
    wait_until(lambda: leader_of(c.bootstrap(*survivors), topic) in survivors, 30, "a new leader")
    new = leader_of(c.bootstrap(*survivors), topic)
    check(c.bootstrap(*survivors), topic, 3, 4, [], everything)
    with w.Connection(c.node(new).bootstrap) as conn:
        assert t.on(conn).marker(committed=True) == [w.NONE]  # commit b0 at 4
    check(c.bootstrap(*survivors), topic, 5, 5, [b"b0"], everything)
