"""The chaos checker's self-test: histories with one kind of damage each must be reported as
exactly that violation, and a clean history as none. No broker needed."""

from __future__ import annotations

import pytest

from chaos import availability, checker, walread
from chaos.history import ACKED, UNKNOWN, Attempt, Fault, encode_value


def clean_history():
    """2 producers x 6 messages over 2 partitions, all acked, stored in order; plus one unknown
    message that was stored and one that was not (both are fine)."""
    attempts, log = [], {0: [], 1: []}
    t = 0.0
    for seq in range(6):
        for producer in (0, 1):
            p = seq % 2
            t += 0.1
            a = Attempt(producer, seq, p, t, ACKED, len(log[p]), t + 0.05)
            attempts.append(a)
            log[p].append((a.offset, encode_value(producer, seq)))
    attempts.append(Attempt(0, 6, 0, t, UNKNOWN, error="_MSG_TIMED_OUT"))
    log[0].append((len(log[0]), encode_value(0, 6)))
    attempts.append(Attempt(1, 6, 0, t, UNKNOWN, error="_MSG_TIMED_OUT"))
    replicas = {n: {p: list(recs) for p, recs in log.items()} for n in (1, 2, 3)}
    hw = {p: len(recs) for p, recs in log.items()}
    return attempts, log, replicas, hw


def kinds(found):
    return sorted({v.kind for v in found}), len(found)


def test_a_clean_history_has_no_violations():
    assert checker.check(*clean_history()) == []


def test_an_acknowledged_message_missing_is_lost():
    attempts, log, replicas, hw = clean_history()
    del log[1][2]  # offset 2 of partition 1: acked, now gone (later offsets keep theirs)
    for n in replicas:
        replicas[n][1] = list(log[1])
    assert kinds(checker.check(attempts, log, replicas, hw)) == (["lost"], 1)


def test_the_same_message_twice_is_a_duplicate():
    attempts, log, replicas, hw = clean_history()
    log[0].append((len(log[0]), log[0][1][1]))
    hw[0] += 1
    for n in replicas:
        replicas[n][0] = list(log[0])
    assert kinds(checker.check(attempts, log, replicas, hw)) == (["duplicate"], 1)


def test_an_unknown_message_stored_twice_is_a_duplicate_too():
    attempts, log, replicas, hw = clean_history()
    log[0].append((len(log[0]), encode_value(0, 6)))
    hw[0] += 1
    for n in replicas:
        replicas[n][0] = list(log[0])
    assert kinds(checker.check(attempts, log, replicas, hw)) == (["duplicate"], 1)


def test_two_messages_of_one_producer_swapped_is_reordering():
    attempts, log, replicas, hw = clean_history()
    # Producer 0's seqs 0 and 2 (offsets 0 and 2 of partition 0) swap places; their acks say
    # where they were acknowledged, so swapped offsets are also offset moves: keep the acks
    # consistent with the log to isolate the reordering.
    (o0, v0), (o2, v2) = log[0][0], log[0][2]
    log[0][0], log[0][2] = (o0, v2), (o2, v0)
    for a in attempts:
        if a.id in ((0, 0), (0, 2)):
            a.offset = o2 if a.offset == o0 else o0
    for n in replicas:
        replicas[n][0] = list(log[0])
    assert kinds(checker.check(attempts, log, replicas, hw)) == (["reordered"], 1)


def test_an_acknowledged_offset_holding_another_message_is_an_offset_move():
    attempts, log, replicas, hw = clean_history()
    a = next(a for a in attempts if a.id == (1, 3))
    a.offset += 1  # acked at an offset the message is not at (the broker reported a wrong offset)
    assert kinds(checker.check(attempts, log, replicas, hw)) == (["offset-moved"], 1)


def test_an_acknowledgement_without_an_offset_only_needs_the_message_present():
    attempts, log, replicas, hw = clean_history()
    a = next(a for a in attempts if a.id == (1, 3))
    a.offset = None  # librdkafka's "persisted" without an offset
    assert checker.check(attempts, log, replicas, hw) == []
    where = next(i for i, (_, v) in enumerate(log[a.partition]) if v == encode_value(1, 3))
    del log[a.partition][where]
    for n in replicas:
        replicas[n][a.partition] = list(log[a.partition])
    assert "lost" in kinds(checker.check(attempts, log, replicas, hw))[0]


def test_a_replica_with_a_different_record_diverges():
    attempts, log, replicas, hw = clean_history()
    replicas[2][1][1] = (replicas[2][1][1][0], encode_value(9, 9))
    found = checker.check(attempts, log, replicas, hw)
    assert kinds(found) == (["divergence"], 1)
    assert "node 2" in found[0].detail and found[0].partition == 1


def test_a_replica_missing_the_tail_diverges():
    attempts, log, replicas, hw = clean_history()
    replicas[3][0] = replicas[3][0][:-2]
    found = checker.check(attempts, log, replicas, hw)
    assert kinds(found) == (["divergence"], 1)
    assert "node 3" in found[0].detail


def test_records_above_the_high_watermark_are_not_divergence():
    attempts, log, replicas, hw = clean_history()
    replicas[1][0].append((hw[0], encode_value(0, 7)))  # an uncommitted tail, not yet truncated
    assert checker.check(attempts, log, replicas, hw) == []


def test_a_record_nobody_sent_is_a_phantom():
    attempts, log, replicas, hw = clean_history()
    log[1].append((len(log[1]), b"garbage"))
    hw[1] += 1
    for n in replicas:
        replicas[n][1] = list(log[1])
    assert kinds(checker.check(attempts, log, replicas, hw)) == (["phantom"], 1)


def test_unavailability_is_the_longest_gap_between_acks_in_the_window():
    # Partition 0 acks every 0.1 s except between 2.0 and 5.0; partition 1 every 0.1 s.
    attempts = []
    for i in range(100):
        t = i * 0.1
        if not 2.0 < t < 5.0:
            attempts.append(Attempt(0, i, 0, t, ACKED, i, t))
        attempts.append(Attempt(1, i, 1, t, ACKED, i, t))
    faults = [Fault("kill", "node 1", 1.5, t_heal=4.0), Fault("pause", "node 2", 7.0, t_heal=8.0)]
    w = availability.measure(faults, attempts, 2, 9.9)
    assert w[0].partition_gap == pytest.approx(3.0, abs=0.11)
    assert w[0].cluster_gap == pytest.approx(0.1, abs=0.01)
    assert w[0].heal_to_ack == pytest.approx(1.0, abs=0.11)  # partition 0 acks again at 5.0
    assert w[1].partition_gap == pytest.approx(0.1, abs=0.01)


def test_the_wal_reader_decodes_records():
    # One uncommitted v2 batch with two records built by hand: base offset 7, values b"a:1", b"a:2".
    def zz(n):  # zigzag varint
        n = (n << 1) ^ (n >> 63)
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def record(delta, value):
        body = b"\x00" + zz(0) + zz(delta) + zz(-1) + zz(len(value)) + value + zz(0)
        return zz(len(body)) + body
    import struct
    records = record(0, b"a:1") + record(1, b"a:2")
    header = struct.pack(">qiibIhiqqqhii", 7, 0, 0, 2, 0, 0, 1, 0, 0, -1, -1, -1, 2)
    batch = header + records
    assert walread.batch_records(batch) == [(7, b"a:1"), (8, b"a:2")]


def test_a_short_replica_out_of_the_isr_is_under_replicated_not_divergent():
    attempts, log, replicas, hw = clean_history()
    replicas[3][0] = replicas[3][0][:-2]
    in_sync = {0: {1, 2}, 1: {1, 2, 3}}
    assert checker.check(attempts, log, replicas, hw, in_sync) == []
    # ...but what it does hold must match.
    replicas[3][0][0] = (0, encode_value(9, 9))
    assert kinds(checker.check(attempts, log, replicas, hw, in_sync)) == (["divergence"], 1)
