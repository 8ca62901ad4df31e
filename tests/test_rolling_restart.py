"""Rolling restart of a 3-node cluster under load, the way an operator upgrades it: each node
in turn is stopped with SIGTERM and started again on its ports, once
`chronik-admin cluster rolling-restart-check --wait` says the next node may go. Meanwhile an
idempotent acks=all producer sends sequenced messages and a two-member consumer group reads.

The clients must not notice beyond their own retries: no produce error reaches the
application, every acknowledged message is consumed by the group, and each partition's log
holds exactly what was acknowledged, in order, once.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import NewTopic

from conftest import clean_env
from helpers import admin, consume_range, producer, wait_until
from test_admin import ADMIN_BIN, leader_of
from test_replication import EosLog, high_watermarks

pytestmark = pytest.mark.chronik_only("chronik-admin cluster rolling-restart-check")

PARTITIONS = 3
RATE_PER_S = 1000  # the producer's pace
# After each restart, produce and consume must go on: this many more acknowledged (and
# consumed) messages in every partition before the next node's turn.
PROGRESS_PER_PARTITION = 300
CHECK_WAIT_S = 120
CLUSTER_ARGS = ["--replica-lag-time-max-ms", "1500", "--broker-session-timeout-ms", "2000",
                "--group-initial-rebalance-delay-ms", "0"]


def check(server: str, wait_s: int = 0) -> tuple[int, dict | None, str]:
    """`chronik-admin cluster rolling-restart-check --wait S`: (exit code, its JSON, stderr)."""
    cmd = [str(ADMIN_BIN), "--server", server, "--output", "json", "cluster", "rolling-restart-check",
           "--wait", str(wait_s)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=wait_s + 30, env=clean_env())
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else None), r.stderr


def wait_safe(server: str) -> None:
    """Waits (the CLI's own --wait) until the next node may restart; fails if it never may."""
    code, out, err = check(server, CHECK_WAIT_S)
    assert code == 0 and out["safe"] is True, f"not safe to restart after {CHECK_WAIT_S}s (exit {code}): {out} {err}"


def noticed(server: str, topic: str, node: int) -> bool:
    """The check says not safe: `node` is fenced and out of the ISR of every partition of `topic`."""
    code, out, _ = check(server)
    if code != 1 or not out:
        return False
    out_of = {u["partition"] for u in out["under_replicated"] if u["topic"] == topic and node in u["out_of_isr"]}
    return node in out["fenced"] and out_of == set(range(PARTITIONS))


class Producing:
    """An idempotent acks=all producer in a thread: value = its sequence number, partition =
    seq % PARTITIONS, RATE_PER_S messages a second until stopped, then flushed."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap, self.topic = bootstrap, topic
        self.acked: list[tuple[int, int, int]] = []  # (partition, offset, seq) in delivery order
        self.failed: list[tuple[int, KafkaError]] = []  # delivery reports with an error
        self.client_errors: list[KafkaError] = []  # error_cb: logged, fatal ones fail the test
        self.sent = 0
        self.unflushed: int | None = None
        self.crashed: BaseException | None = None
        self.eos = EosLog()
        self.stop = threading.Event()
        self.abort = threading.Event()  # the test failed: no point flushing
        self.thread = threading.Thread(target=self._run, name="producer", daemon=True)
        self.thread.start()

    def acked_in(self, partition: int) -> int:
        return sum(1 for p, _, _ in list(self.acked) if p == partition)

    def _done(self, err, msg):
        if err is None:
            self.acked.append((msg.partition(), msg.offset(), int(msg.value())))
        else:
            self.failed.append((int(msg.value()), err))

    def _run(self):
        try:
            p = producer(self.bootstrap, logger=self.eos.logger,
                         **{"message.timeout.ms": 120000, "linger.ms": 5, "debug": "eos",
                            "error_cb": self.client_errors.append})
            t0 = time.monotonic()
            while not self.stop.is_set():
                seq = self.sent
                try:
                    p.produce(self.topic, value=str(seq).encode(), partition=seq % PARTITIONS, on_delivery=self._done)
                except BufferError:
                    p.poll(0.05)
                    continue
                self.sent += 1
                if self.sent % 20 == 0:
                    p.poll(0)
                    ahead = t0 + self.sent / RATE_PER_S - time.monotonic()
                    if ahead > 0:
                        self.stop.wait(ahead)
            deadline = time.monotonic() + 180
            while (left := p.flush(0.5)) and not self.abort.is_set() and time.monotonic() < deadline:
                pass
            self.unflushed = left
        except BaseException as e:  # reported by finish()
            self.crashed = e

    def finish(self) -> None:
        """Stop producing and wait until every message has its delivery report."""
        self.stop.set()
        self.thread.join(240)
        assert not self.thread.is_alive(), "the producer did not finish flushing"
        assert self.crashed is None, f"producer thread crashed: {self.crashed!r}"

    def cancel(self) -> None:
        self.abort.set()
        self.stop.set()


class Member:
    """One consumer of the group in a thread, polling until stopped; auto-commit (at least
    once), so a rebalance may deliver a message again."""

    def __init__(self, bootstrap: str, topic: str, group: str, name: str):
        self.bootstrap, self.topic, self.group, self.name = bootstrap, topic, group, name
        self.got: list[tuple[int, int, int]] = []  # (partition, offset, seq), append-only
        self.errors: list[KafkaError] = []  # non-fatal, from poll() or error_cb: logged
        self.fatal: list[KafkaError] = []
        self.assignment: list[int] = []
        self.assigns = 0
        # Where this member went back to an offset it had read already: (partition, last read, now).
        self.rewinds: list[tuple[int, int, int]] = []
        self.last: dict[int, int] = {}
        self.crashed: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _error(self, err: KafkaError):
        (self.fatal if err.fatal() else self.errors).append(err)

    def _assigned(self, _c, parts):
        self.assigns += 1
        self.assignment = sorted(p.partition for p in parts)

    def _run(self):
        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                          "client.id": self.name, "auto.offset.reset": "earliest",
                          "enable.auto.commit": True, "auto.commit.interval.ms": 500,
                          "session.timeout.ms": 10000, "socket.timeout.ms": 10000,
                          "error_cb": self._error})
            try:
                c.subscribe([self.topic], on_assign=self._assigned,
                            on_revoke=lambda _c, _p: setattr(self, "assignment", []))
                while not self.stop.is_set():
                    m = c.poll(0.2)
                    if m is None:
                        continue
                    if m.error() is not None:
                        self._error(m.error())
                        continue
                    p, off = m.partition(), m.offset()
                    if off <= self.last.get(p, -1):
                        self.rewinds.append((p, self.last[p], off))
                    self.last[p] = off
                    self.got.append((p, off, int(m.value())))
            finally:
                c.close()
        except BaseException as e:
            self.crashed = e

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), f"{self.name} did not close"
        assert self.crashed is None, f"{self.name} crashed: {self.crashed!r}"


class Consumed:
    """What the group's members read, folded into offset -> seq per partition; the same
    offset read twice (a redelivery) must carry the same value."""

    def __init__(self, members: list[Member]):
        self.members = members
        self.cursor = {m.name: 0 for m in members}
        self.by_offset: dict[int, dict[int, int]] = {p: {} for p in range(PARTITIONS)}
        self.conflicts: list[tuple[int, int, int, int]] = []

    def update(self) -> "Consumed":
        for m in self.members:
            end = len(m.got)
            for p, off, seq in m.got[self.cursor[m.name]:end]:
                prev = self.by_offset[p].setdefault(off, seq)
                if prev != seq:
                    self.conflicts.append((p, off, prev, seq))
            self.cursor[m.name] = end
        return self

    def total(self) -> int:
        return sum(len(v) for v in self.by_offset.values())

    def count(self, partition: int) -> int:
        return len(self.by_offset[partition])

    def missing(self, acked: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        return [a for a in acked if a[1] not in self.by_offset[a[0]]]


@pytest.mark.parametrize("downtime", ["back-at-once", "back-after-failover"])
def test_rolling_restart_under_produce_and_group_consume(cluster_factory, downtime):
    """back-at-once: each node starts again as soon as it stopped, usually before its peers
    noticed. back-after-failover: it stays down until the check reports it fenced and out of
    every ISR of the topic (its partitions led elsewhere) and produce has gone on without it,
    as in an upgrade that takes a while; the check then has to wait for it to catch up."""
    t_start = time.monotonic()
    c = cluster_factory(3, args=CLUSTER_ARGS).start()
    name = f"roll-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))  # kept referenced until the future resolves
    a.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=3,
                              config={"min.insync.replicas": "2"})],
                    operation_timeout=30, request_timeout=30)[name].result(timeout=30)
    wait_until(lambda: all(leader_of(n.bootstrap, name, p) > 0 for n in c.nodes.values() for p in range(PARTITIONS)),
               30, "the topic's leaders known on every node", interval_s=0.2)

    group = f"roll-group-{uuid.uuid4().hex[:8]}"
    prod = Producing(c.bootstrap(), name)
    members = [Member(c.bootstrap(), name, group, f"member{i}") for i in (1, 2)]
    consumed = Consumed(members)
    phases: list[str] = []

    def progress(what: str, timeout_s: float = 60):
        """Produce and consume go on, in every partition, from now."""
        acked = {p: prod.acked_in(p) for p in range(PARTITIONS)}
        seen = {p: consumed.update().count(p) for p in range(PARTITIONS)}
        wait_until(lambda: all(prod.acked_in(p) >= acked[p] + PROGRESS_PER_PARTITION for p in range(PARTITIONS)),
                   timeout_s, f"acknowledged messages in every partition {what}", interval_s=0.2)
        wait_until(lambda: all(consumed.update().count(p) >= seen[p] + PROGRESS_PER_PARTITION
                               for p in range(PARTITIONS)),
                   timeout_s, f"the group consuming every partition {what}", interval_s=0.2)

    try:
        # The group is stable (both members hold partitions: the join of the second one is
        # over) and both clients are moving before the first node goes.
        wait_until(lambda: all(m.assignment for m in members)
                   and sorted(p for m in members for p in m.assignment) == list(range(PARTITIONS)),
                   60, "the group's partitions shared by its two members", interval_s=0.2)
        progress("before the first restart")

        wait_safe(c.node(1).rpc)
        for victim in (1, 2, 3):
            acked_before = len(prod.acked)
            t0 = time.monotonic()
            c.node(victim).terminate()
            down_at = time.monotonic()
            other = c.node(victim % 3 + 1)  # asked while the victim is away: the next to go
            if downtime == "back-after-failover":
                wait_until(lambda: noticed(other.rpc, name, victim), 30,
                           f"the check to report node {victim} fenced and out of the ISRs", interval_s=0.2)
                progress(f"while node {victim} is down")
            c.node(victim).start()
            up_at = time.monotonic()
            # The operator's step: wait on the check before the next node goes.
            wait_safe(other.rpc)
            phases.append(f"node {victim}: SIGTERM took {down_at - t0:.1f}s, down {up_at - down_at:.1f}s "
                          f"(start included), {len(prod.acked) - acked_before} acknowledged meanwhile; "
                          f"node {other.cluster_node_id} said safe {time.monotonic() - up_at:.1f}s after the start")
            progress(f"after restarting node {victim}")

        prod.finish()
        print(f"sent {prod.sent}, acknowledged {len(prod.acked)}; producer client errors: "
              f"{[e.name() for e in prod.client_errors][:20]}")
        prod.eos.report()
        assert prod.unflushed == 0, f"{prod.unflushed} messages still unacknowledged after the flush"
        assert prod.failed == [], f"{len(prod.failed)} produce errors reached the application, e.g. {prod.failed[:10]}"
        assert [e for e in prod.client_errors if e.fatal()] == [], "the producer hit a fatal error"
        assert len(prod.acked) == prod.sent

        # The group reads every acknowledged message, those sent after the last restart too.
        def drained():
            return not consumed.update().missing(prod.acked)
        try:
            wait_until(drained, 60, "the group to consume every acknowledged message", interval_s=0.5)
        except AssertionError:
            missing = consumed.missing(prod.acked)
            raise AssertionError(f"{len(missing)} acknowledged messages never consumed by the group, "
                                 f"e.g. {sorted(missing)[:10]}; assignments {[m.assignment for m in members]}")
        for m in members:
            m.finish()
    finally:
        prod.cancel()
        for m in members:
            m.stop.set()
        print("\n".join(phases))

    for m in members:
        print(f"{m.name}: read {len(m.got)}, assigned {m.assigns} times, went back (partition, from, to) "
              f"{m.rewinds[:10]}, errors {[e.name() for e in m.errors][:20]}")
    print(f"group: {consumed.total()} offsets consumed, "
          f"{sum(len(m.got) for m in members) - consumed.total()} re-deliveries")
    assert [e for m in members for e in m.fatal] == [], "a consumer hit a fatal error"
    assert consumed.conflicts == [], f"one offset consumed with two values (partition, offset, a, b): " \
                                     f"{consumed.conflicts[:5]}"

    # Per partition, the acknowledged offsets are distinct and follow the send order, and the
    # group read exactly the acknowledged value at each offset (nothing else, e.g. nothing
    # that was later truncated).
    acked_log = {p: sorted((off, seq) for q, off, seq in prod.acked if q == p) for p in range(PARTITIONS)}
    for p, rows in acked_log.items():
        acked_at = dict(rows)
        assert len(acked_at) == len(rows), f"partition {p}: two messages acknowledged at one offset"
        seqs = [s for _, s in rows]
        assert seqs == sorted(seqs), f"partition {p}: acknowledged out of order"
        wrong = [(o, acked_at.get(o), s) for o, s in sorted(consumed.by_offset[p].items()) if acked_at.get(o) != s]
        assert not wrong, f"partition {p}: the group read what was not acknowledged (offset, acked, read): {wrong[:5]}"

    # Each log holds exactly the acknowledged messages, once each, in order.
    hws = high_watermarks(c.bootstrap(), name, PARTITIONS)
    for p in range(PARTITIONS):
        log = [(m.offset, int(m.value)) for m in consume_range(c.bootstrap(), name, p, 0, hws[p])]
        dup = len(log) - len({s for _, s in log})
        assert dup == 0, f"partition {p}: the broker stored {dup} messages twice"
        assert log == acked_log[p], (f"partition {p}: the log ({len(log)} messages below {hws[p]}) is not the "
                                     f"{len(acked_log[p])} acknowledged ones")
    print(f"whole test {time.monotonic() - t_start:.1f}s")
