"""Recovery after a network partition heals: three nodes, each in its own network namespace
(tests/netns.py), cut apart with iptables DROP rules, which black-hole TCP instead of failing
it: a connection that carried data during the cut sits in retransmission backoff for up to
~13 s after the heal unless something (HTTP/2 keepalive, a per-fetch deadline) drops it and
connects afresh. Each test cuts for long enough that the cut replicas leave the ISR and TCP
backs off, heals, and measures the seconds until every ISR is full again: at most 3 (8 when
the cut node led a partition and must first learn through Raft that it no longer does).

Meanwhile an acks=all producer (min.insync.replicas=2) writes to every partition: each keeps
two connected in-sync replicas, so every one of its messages must be acknowledged.
"""

from __future__ import annotations

import re
import threading
import time

from confluent_kafka.admin import NewTopic

from helpers import admin, http_get, producer, unique_topic, wait_until
from netns import netns_cluster_factory  # noqa: F401  (the fixture)

LAG_MS = 2000
# Long enough for TCP to back off: retransmissions at ~0.2, 0.6, 1.4, 3, 6.2, 12.6 s, the next
# ~13 s later. Without keepalives and deadlines a stream from before the cut recovers only then.
CUT_S = 15
HEAL_BUDGET_S = 3.0
# When the cut node led a partition (see the second test): a Raft election after the heal.
RAFT_REJOIN_BUDGET_S = 8.0
PARTITIONS = 3


def raft_leader(c) -> int:
    """The node whose /metrics says it leads the metadata Raft group."""
    def find():
        for i, n in c.nodes.items():
            status, body = http_get(f"{n.ip}:9644", "/metrics")
            if status == 200 and re.search(r"^chronik_raft_is_leader(\{[^}]*\})? 1(\.0)?$", body, re.M):
                return i
        return None
    return wait_until(find, 30, "a metadata leader", 0.2)


def isr(bootstrap: str, name: str) -> dict[int, tuple[int, tuple[int, ...]]]:
    """partition -> (leader, sorted ISR), as the node at `bootstrap` sees it."""
    t = admin(bootstrap).list_topics(name, timeout=5).topics[name]
    return {p.id: (p.leader, tuple(sorted(p.isrs))) for p in t.partitions.values()}


def full(view: dict, n: int = 3) -> bool:
    return len(view) == PARTITIONS and all(len(v[1]) == n for v in view.values())


class Writer:
    """acks=all produces to every partition, one message per partition every 20 ms, from a
    thread; remembers when each partition's acknowledgements arrived and every failure."""

    def __init__(self, bootstrap: str, name: str):
        self.p = producer(bootstrap, **{"message.timeout.ms": 60000, "linger.ms": 0,
                                        "topic.metadata.refresh.interval.ms": 1000})
        self.name = name
        self.acks: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, err, msg):
        if err is not None:
            self.failures.append(str(err))
        else:
            self.acks[msg.partition()].append(time.monotonic())

    def _run(self):
        i = 0
        while not self.stop.is_set():
            for p in range(PARTITIONS):
                self.p.produce(self.name, value=f"m{i}".encode(), partition=p, on_delivery=self._delivered)
            i += 1
            self.p.poll(0.02)

    def start(self) -> "Writer":
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        left = self.p.flush(90)
        self.p = None  # destroyed now: no reconnect attempts to the nodes after the cleanup
        assert left == 0, "messages still unacknowledged"

    def longest_gap(self, p: int, start: float, end: float) -> float:
        """Longest stretch within [start, end] without an acknowledgement on partition p."""
        times = [start] + [t for t in self.acks[p] if start < t < end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))


def make_cluster(factory):
    c = factory(3, args=["--replica-lag-time-max-ms", str(LAG_MS)]).start()
    controller = raft_leader(c)
    name = unique_topic("heal")
    a = admin(c.bootstrap(controller))
    fs = a.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=3,
                                   config={"min.insync.replicas": "2"})],
                         operation_timeout=30, request_timeout=30)
    fs[name].result(timeout=30)
    wait_until(lambda: full(isr(c.bootstrap(controller), name)), 30, "a full ISR at the start", 0.2)
    return c, controller, name


def seconds_to_full_isr(c, watcher: int, name: str, healed_at: float) -> float:
    wait_until(lambda: full(isr(c.bootstrap(watcher), name)), 60, "a full ISR after the heal", 0.05)
    return time.monotonic() - healed_at


def test_replicas_cut_from_their_leader_rejoin_the_isr_within_3s_of_the_heal(netns_cluster_factory):
    """The two nodes that are not the metadata controller lose each other (both still reach
    the controller, so Raft and broker heartbeats carry on): each one's followers of the other's
    partitions leave the ISR, then must come back within 3 s of the heal."""
    c, controller, name = make_cluster(netns_cluster_factory)
    a, b = [i for i in c.nodes if i != controller]
    leaders = {p: v[0] for p, v in isr(c.bootstrap(controller), name).items()}
    assert {a, b} & set(leaders.values()), f"no partition led by {a} or {b}: {leaders}"
    w = Writer(c.bootstrap(), name).start()
    try:
        wait_until(lambda: all(w.acks[p] for p in range(PARTITIONS)), 20, "first acknowledgements")
        cut_at = time.monotonic()
        c.partition(a, b)
        cut = {p: (b if leaders[p] == a else a) for p in leaders if leaders[p] in (a, b)}
        wait_until(lambda: all(cut[p] not in v[1] for p, v in isr(c.bootstrap(controller), name).items()
                               if p in cut), 20, f"nodes {a} and {b} out of each other's ISRs", 0.2)
        shrunk_at = time.monotonic()
        time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
        c.heal()
        healed_at = time.monotonic()
        print(f"healed at {time.strftime('%H:%M:%S', time.gmtime())} UTC (for the nodes' logs)")
        took = seconds_to_full_isr(c, controller, name, healed_at)
        print(f"ISR shrank {shrunk_at - cut_at:.1f}s after the cut; full again {took:.2f}s after the heal")
        time.sleep(2)
        end = time.monotonic()
        gaps = {p: round(w.longest_gap(p, shrunk_at, end), 2) for p in range(PARTITIONS)}
        print(f"longest stretch without an acknowledgement per partition after the shrink: {gaps}")
    finally:
        w.finish()
    assert w.failures == [], w.failures[:5]
    assert took <= HEAL_BUDGET_S, f"ISR full only {took:.2f}s after the heal"
    # Two connected in-sync replicas all along (after the shrink): never unwritable.
    assert all(g <= HEAL_BUDGET_S for g in gaps.values()), gaps


def test_an_isolated_leader_rejoins_every_isr_after_the_heal(netns_cluster_factory):
    """A partition leader that is not the controller is cut from both other nodes: the
    controller fences it and moves its partition; after the heal it must learn that through
    Raft, fetch from the new leader and be back in every ISR.

    Budget: 8 s, not 3, though it is usually met (1.2-3.3 s measured, up to 5.7 s with the
    machine's load average near 20; main before keepalives and deadlines: 12-13 s): besides the
    fetch stream's reconnect, the cut node must first learn from Raft that it no longer leads
    (a metadata round trip after the heal) before it fetches from the new leader. Pre-vote
    (chronik-cluster's elector) keeps the cut node's Raft term where it was, so its return no
    longer deposes the controller (before it did, costing a re-election of 0.6-2 s).
    """
    c, controller, name = make_cluster(netns_cluster_factory)
    leaders = {p: v[0] for p, v in isr(c.bootstrap(controller), name).items()}
    victim = next(i for i in c.nodes if i != controller and i in leaders.values())
    others = [i for i in c.nodes if i != victim]
    print(f"victim {victim} controller {controller}")
    cut_at = time.monotonic()
    c.isolate(victim)
    wait_until(lambda: all(victim not in v[1] and v[0] != victim
                           for v in isr(c.bootstrap(controller), name).values()),
               30, f"node {victim} out of every ISR and leading nothing", 0.2)
    moved_at = time.monotonic()
    # Written on the two connected nodes while the victim is away, so it has to catch up.
    w = Writer(c.bootstrap(*others), name).start()
    try:
        wait_until(lambda: all(w.acks[p] for p in range(PARTITIONS)), 20, "acknowledgements without the victim")
        time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
        c.heal()
        healed_at = time.monotonic()
        print(f"healed at {time.strftime('%H:%M:%S', time.gmtime())} UTC (for the nodes' logs)")
        took = seconds_to_full_isr(c, controller, name, healed_at)
        print(f"leadership moved {moved_at - cut_at:.1f}s after the cut; ISR full again {took:.2f}s after the heal")
        time.sleep(2)
        end = time.monotonic()
        gaps = {p: round(w.longest_gap(p, healed_at, end), 2) for p in range(PARTITIONS)}
        print(f"longest stretch without an acknowledgement per partition after the heal: {gaps}")
    finally:
        w.finish()
    assert w.failures == [], w.failures[:5]
    assert took <= RAFT_REJOIN_BUDGET_S, f"ISR full only {took:.2f}s after the heal"
    # The two connected replicas kept every partition writable, through the leader moving back.
    assert all(g <= HEAL_BUDGET_S for g in gaps.values()), gaps
