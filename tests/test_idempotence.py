"""Idempotent-producer sequence checks, driven batch by batch over a raw connection so that
retries and gaps are exact (tests/kafkawire.py), and across a SIGKILL: producer state must be
rebuilt from the log, or a retry after a crash would be written twice."""

from __future__ import annotations

import kafkawire as w
from helpers import consume_all, create_topic, produce_all, producer, unique_topic, watermarks

VERSION = 7  # Produce v7: non-flexible, what many clients still send


def init_producer_id(conn: w.Connection) -> tuple[int, int]:
    corr, err, pid, epoch = w.parse_init_producer_id_response_v0(conn.roundtrip(w.init_producer_id_request_v0(9)))
    assert (corr, err) == (9, w.NONE), (corr, err)
    assert pid >= 0 and epoch >= 0, (pid, epoch)
    return pid, epoch


class Seq:
    """Sends batches of one producer id to one partition and returns (error_code, base_offset)."""

    def __init__(self, conn: w.Connection, topic: str, pid: int, epoch: int):
        self.conn, self.topic, self.pid, self.epoch = conn, topic, pid, epoch
        self.corr = 100

    def send(self, base_sequence: int, values: list[bytes], epoch: int | None = None) -> tuple[int, int]:
        self.corr += 1
        batch = w.record_batch([(None, v) for v in values], producer_id=self.pid,
                               producer_epoch=self.epoch if epoch is None else epoch, base_sequence=base_sequence)
        corr, parts = w.parse_produce_response(
            self.conn.roundtrip(w.produce_request(VERSION, self.corr, self.topic, 0, batch)), VERSION)
        assert corr == self.corr and len(parts) == 1, parts
        return parts[0].error_code, parts[0].base_offset


def values(lo: int, hi: int) -> list[bytes]:
    return [b"v%d" % i for i in range(lo, hi)]


def test_not_exactly_one_batch_per_partition_is_refused_whole(broker):
    """Kafka's ProduceRequest.validateRecords (v3+): a partition's records must be exactly one
    batch, else INVALID_RECORD for that partition and nothing of it is written. Three batches of
    one producer used to be refused with OUT_OF_ORDER_SEQUENCE_NUMBER (the third checked against
    the first); a real idempotent client, one batch per partition per request, keeps working."""
    for version in (7, 9):
        topic = unique_topic(f"onebatch-v{version}")
        create_topic(broker.bootstrap, topic)
        with w.Connection(broker.bootstrap) as conn:
            pid, epoch = init_producer_id(conn)

            def batch(seq: int, lo: int, hi: int) -> bytes:
                return w.record_batch([(None, v) for v in values(lo, hi)], producer_id=pid,
                                      producer_epoch=epoch, base_sequence=seq)

            refused = {
                "three batches of one producer": batch(0, 0, 2) + batch(2, 2, 4) + batch(4, 4, 6),
                "two plain batches": w.record_batch([(None, b"a")]) + w.record_batch([(None, b"b")]),
                "no batch": b"",
            }
            for corr, (what, records) in enumerate(refused.items(), start=1):
                got, parts = w.parse_produce_response(
                    conn.roundtrip(w.produce_request(version, corr, topic, 0, records)), version)
                assert got == corr and len(parts) == 1, parts
                assert parts[0].error_code == w.INVALID_RECORD, \
                    f"v{version} {what}: error {parts[0].error_code}, want INVALID_RECORD"
            assert watermarks(broker.bootstrap, topic, 0) == (0, 0), f"v{version}: refused data was stored"
            # Nothing of the refused request reached the producer state either: its first batch,
            # sent alone, is new (not a duplicate) and lands at offset 0.
            s = Seq(conn, topic, pid, epoch)
            assert s.send(0, values(0, 2)) == (w.NONE, 0)
            assert s.send(2, values(2, 4)) == (w.NONE, 2)
        assert [m.value for m in consume_all(broker.bootstrap, topic, 0)] == values(0, 4)

    topic = unique_topic("onebatch-client")
    create_topic(broker.bootstrap, topic, partitions=2)
    items = [(b"k%d" % i, b"m%d" % i) for i in range(200)]
    log = produce_all(producer(broker.bootstrap), topic, items, timeout_s=60)
    assert not log.failed, log.failed
    stored = sorted(m.value for p in (0, 1) for m in consume_all(broker.bootstrap, topic, p))
    assert stored == sorted(v for _, v in items)


def test_duplicates_gaps_and_fencing_survive_a_crash(broker_factory):
    b = broker_factory(args=["--fsync", "always"])
    topic = unique_topic("idem")
    create_topic(b.bootstrap, topic)

    with w.Connection(b.bootstrap) as conn:
        pid, epoch = init_producer_id(conn)
        s = Seq(conn, topic, pid, epoch)
        assert s.send(0, values(0, 3)) == (w.NONE, 0)
        # A retry of the same batch is acknowledged with its original offset and not written again.
        assert s.send(0, values(0, 3)) == (w.NONE, 0)
        # A gap is refused.
        assert s.send(5, values(5, 6))[0] == w.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert s.send(3, values(3, 6)) == (w.NONE, 3)
        # The retry of an older (but still remembered) batch is a duplicate too.
        assert s.send(0, values(0, 3)) == (w.NONE, 0)
        # An older epoch is fenced once a newer one has written.
        if epoch > 0:
            assert s.send(6, values(6, 7), epoch=epoch - 1)[0] == w.INVALID_PRODUCER_EPOCH
    assert watermarks(b.bootstrap, topic, 0) == (0, 6)

    b.kill()
    b.restart()

    with w.Connection(b.bootstrap) as conn:
        s = Seq(conn, topic, pid, epoch)
        # After the crash, the retry of the last acknowledged batch is still recognised.
        assert s.send(3, values(3, 6)) == (w.NONE, 3)
        assert s.send(7, values(7, 8))[0] == w.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert s.send(6, values(6, 9)) == (w.NONE, 6)
        # A new epoch starts over at sequence 0; then the old epoch is fenced.
        s2 = Seq(conn, topic, pid, epoch + 1)
        assert s2.send(0, values(9, 10)) == (w.NONE, 9)
        assert s.send(9, values(10, 11))[0] == w.INVALID_PRODUCER_EPOCH

    assert watermarks(b.bootstrap, topic, 0) == (0, 10)
    assert [m.value for m in consume_all(b.bootstrap, topic, 0)] == values(0, 10)


def test_new_producer_ids_are_unique_across_restarts(broker_factory):
    b = broker_factory()
    seen = set()
    for _ in range(2):
        with w.Connection(b.bootstrap) as conn:
            for _ in range(3):
                pid, _ = init_producer_id(conn)
                assert pid not in seen, f"producer id {pid} handed out twice"
                seen.add(pid)
        b.kill()
        b.restart()
