"""Acknowledged writes survive SIGKILL.

A confluent-kafka producer (acks=all, idempotence on) sends "seq-N" messages to a broker running
with `--fsync always` and records which were acknowledged. While it runs, the broker is
SIGKILLed and restarted on the same data dir and port; the producer reconnects on its own and
retries what was in flight. After each round the log must hold every acknowledged message at the
offset its acknowledgement named, in send order, without duplicates, and every message that is
missing below the highest acknowledged one must have been reported failed to the producer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from confluent_kafka import KafkaError

from helpers import consume_all, create_topic, producer, unique_topic, wait_until

PARTITIONS = 2
ROUNDS = 4
MAX_OUTSTANDING = 4000


class SeqProducer(threading.Thread):
    """Produces seq-N to partition N % PARTITIONS until stopped, then flushes."""

    def __init__(self, bootstrap: str, topic: str, first_seq: int, **conf):
        super().__init__(daemon=True, name=f"seq-producer-{first_seq}")
        self.topic = topic
        self.first_seq = first_seq
        self.next_seq = first_seq
        self.acked: dict[int, tuple[int, int]] = {}  # seq -> (partition, offset)
        self.failed: dict[int, KafkaError] = {}
        self.errors: list[KafkaError] = []
        self.double_acked: list[int] = []
        self.fatal: KafkaError | None = None
        self.unflushed: int | None = None
        self._halt = threading.Event()
        self.p = producer(bootstrap, **{
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "error_cb": self._on_error,
            **conf,
        })

    def _on_error(self, err: KafkaError) -> None:
        self.errors.append(err)
        if err.fatal():
            self.fatal = err

    def _on_delivery(self, err, msg) -> None:
        seq = int(msg.value()[4:])
        if err is None:
            if seq in self.acked:
                self.double_acked.append(seq)
            self.acked[seq] = (msg.partition(), msg.offset())
        else:
            self.failed[seq] = err

    def outstanding(self) -> int:
        return self.next_seq - self.first_seq - len(self.acked) - len(self.failed)

    def run(self) -> None:
        while not self._halt.is_set() and self.fatal is None:
            if self.outstanding() >= MAX_OUTSTANDING:
                self.p.poll(0.05)
                continue
            seq = self.next_seq
            try:
                self.p.produce(self.topic, value=b"seq-%d" % seq, key=b"%d" % seq, partition=seq % PARTITIONS,
                               on_delivery=self._on_delivery)
            except BufferError:
                self.p.poll(0.05)
                continue
            self.next_seq += 1
            self.p.poll(0)
        self.unflushed = self.p.flush(90)

    def stop(self) -> None:
        self._halt.set()


def wait_progress(pr: SeqProducer, acked: int, what: str, timeout_s: float = 90) -> None:
    try:
        wait_until(lambda: len(pr.acked) >= acked or pr.fatal or not pr.is_alive(), timeout_s, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; {len(pr.acked)} acknowledged; last producer errors: "
                             f"{[str(x) for x in pr.errors[-5:]]}; delivery failures: "
                             f"{[str(x) for x in list(pr.failed.values())[:3]]}") from None
    assert pr.fatal is None, f"{what}: producer fatal error {pr.fatal}"
    assert pr.is_alive(), f"{what}: producer thread died"


def check_log(bootstrap: str, topic: str, acked: dict, failed: dict, sent_upto: int) -> dict[int, list[int]]:
    """Asserts the durability invariants; returns the stored seqs per partition."""
    stored: dict[int, list[int]] = {}
    for part in range(PARTITIONS):
        msgs = consume_all(bootstrap, topic, part, timeout_s=90)
        seqs = [int(m.value[4:]) for m in msgs]
        stored[part] = seqs
        dups = sorted(s for s, c in Counter(seqs).items() if c > 1)
        assert not dups, f"partition {part}: {len(dups)} messages stored twice, first {dups[:10]}"
        assert all(s % PARTITIONS == part and 0 <= s < sent_upto for s in seqs), \
            f"partition {part}: foreign or never-sent messages stored"
        disorder = [(a, b) for a, b in zip(seqs, seqs[1:]) if b < a]
        assert not disorder, f"partition {part}: stored out of send order, first {disorder[:5]}"

        acked_here = {s: off for s, (p, off) in acked.items() if p == part}
        present = set(seqs)
        lost = sorted(set(acked_here) - present)
        assert not lost, f"partition {part}: {len(lost)} ACKNOWLEDGED messages lost, first {lost[:10]}"
        offset_of = {int(m.value[4:]): m.offset for m in msgs}
        moved = [(s, off, offset_of[s]) for s, off in acked_here.items() if offset_of[s] != off]
        assert not moved, f"partition {part}: acknowledged at one offset, stored at another: {moved[:10]}"

        if acked_here:
            top = max(acked_here)
            gaps = [s for s in range(part, top, PARTITIONS) if s not in present and s not in failed]
            assert not gaps, (f"partition {part}: {len(gaps)} messages below acknowledged seq-{top} are neither "
                              f"stored nor reported failed, first {gaps[:10]}")
    return stored


class Ledger:
    """What every round's producer was told, across rounds of one topic."""

    def __init__(self):
        self.acked: dict[int, tuple[int, int]] = {}
        self.failed: dict[int, KafkaError] = {}
        self.next_seq = 0


def crash_round(b, topic: str, ledger: Ledger, rnd: int, kill_after: int, outage=None, **producer_conf) -> None:
    """Produce, SIGKILL the broker mid-stream, optionally wait through `outage(producer)`, restart it on
    the same port, see the producer make progress again, then check the whole log."""
    pr = SeqProducer(b.bootstrap, topic, ledger.next_seq, **producer_conf)
    pr.start()
    try:
        wait_progress(pr, kill_after, f"round {rnd}: {kill_after} acknowledgements before the kill")
        assert not pr.failed, f"round {rnd}: delivery failures before the kill: {list(pr.failed.items())[:3]}"

        b.kill()
        acked_at_kill = len(pr.acked)
        if outage:
            outage(pr)
        b.restart(same_port=True)

        wait_progress(pr, acked_at_kill + 1000, f"round {rnd}: 1000 more acknowledgements after the restart")
    finally:
        pr.stop()
        pr.join(120)
    assert not pr.is_alive(), "producer thread did not finish"
    assert pr.unflushed == 0, f"round {rnd}: {pr.unflushed} messages never got a delivery report"
    assert not pr.double_acked, f"round {rnd}: acknowledged twice: {pr.double_acked[:10]}"

    ledger.acked.update(pr.acked)
    ledger.failed.update(pr.failed)
    ledger.next_seq = pr.next_seq
    stored = check_log(b.bootstrap, topic, ledger.acked, ledger.failed, ledger.next_seq)
    n_stored = sum(len(v) for v in stored.values())
    print(f"round {rnd}: sent seq-{pr.first_seq}..seq-{pr.next_seq - 1}, acked at kill {acked_at_kill}, "
          f"acked {len(pr.acked)}, failed {len(pr.failed)}, stored in all {n_stored} "
          f"(stored, never acked: {n_stored - len(ledger.acked)}), client errors {len(pr.errors)}")


def assert_restart_without_traffic_changes_nothing(b, topic: str, ledger: Ledger) -> None:
    before = check_log(b.bootstrap, topic, ledger.acked, ledger.failed, ledger.next_seq)
    b.kill()
    b.restart()
    after = check_log(b.bootstrap, topic, ledger.acked, ledger.failed, ledger.next_seq)
    assert after == before, "the log changed across a crash and restart without traffic"


def test_acknowledged_writes_survive_sigkill(broker_factory):
    """The broker comes back within moments; in-flight batches are retried with the same producer
    id and sequence numbers, so the broker must recognise the ones it had already stored."""
    b = broker_factory(args=["--fsync", "always"])
    topic = unique_topic("crash")
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)
    ledger = Ledger()
    for rnd in range(ROUNDS):
        crash_round(b, topic, ledger, rnd, kill_after=1000 + 700 * rnd)
    assert_restart_without_traffic_changes_nothing(b, topic, ledger)
    assert len(ledger.acked) >= ROUNDS * 2000


def test_acknowledged_writes_survive_sigkill_with_timed_out_deliveries(broker_factory):
    """The broker stays down until the producer has given up on some messages (delivery timeout):
    the producer reports them failed, bumps its epoch and carries on after the restart. Messages
    it was told failed may or may not be stored; acknowledged ones must all be."""
    b = broker_factory(args=["--fsync", "always"])
    topic = unique_topic("crash-timeout")
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)
    ledger = Ledger()

    def until_deliveries_time_out(pr: SeqProducer) -> None:
        wait_until(lambda: pr.failed, 30, "delivery timeouts while the broker is down")

    for rnd in range(2):
        crash_round(b, topic, ledger, rnd, kill_after=1500, outage=until_deliveries_time_out,
                    **{"message.timeout.ms": 2000})
    assert ledger.failed, "no delivery ever timed out"
    assert_restart_without_traffic_changes_nothing(b, topic, ledger)
