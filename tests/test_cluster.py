"""The Raft metadata cluster, with three real chronik-server processes on 127.0.0.1.

Forming from one peer list and routing Kafka clients to partition leaders; controller
failover after SIGKILL; a full restart keeping the state; no metadata writes without a
quorum; bad peer lists refused with exit code 2.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

import kafkawire as w
from conftest import ANSI_ESCAPE_RE, SERVER_BIN, clean_env, kafka_mode
from helpers import admin, consumer, producer, wait_until
from reference.kafka import quorum_leader

# Chronik's failover budget; Apache Kafka's KRaft election (and the test's DescribeQuorum polls
# through brokers that still forward to the dead controller) gets twice that on a loaded machine.
FAILOVER_S = 20.0 if kafka_mode() else 10.0


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(bootstrap: str, name: str, partitions: int, rf: int, timeout_s: float = 30) -> None:
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                         operation_timeout=timeout_s, request_timeout=timeout_s)
    fs[name].result(timeout=timeout_s)


def layout(bootstrap: str, name: str) -> dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """partition -> (leader, replicas, isr) as one node reports it in Metadata."""
    md = admin(bootstrap).list_topics(name, timeout=10)
    t = md.topics[name]
    if t.error is not None:
        return {}
    return {p.id: (p.leader, tuple(p.replicas), tuple(sorted(p.isrs))) for p in t.partitions.values()}


ROLE_RE = re.compile(r"raft role changed.*node=(\d+).*role=(\w+).*term=(\d+)")


def raft_leader(nodes) -> int | None:
    """The Raft leader as the nodes' own logs tell it: the newest term in which a running
    node logged that it became leader, if no running node has logged a later term since.
    On Apache Kafka: the KRaft quorum leader that DescribeQuorum names, if it is running."""
    if kafka_mode():
        alive = {n.node_id for n in nodes if n.alive()}
        for n in nodes:
            if n.alive():
                leader = quorum_leader(n.bootstrap)
                return leader if leader in alive else None
        return None
    best = None  # (term, node, role)
    for n in nodes:
        if not n.alive() or not n.stderr_path.exists():
            continue
        text = ANSI_ESCAPE_RE.sub("", n.stderr_path.read_text(errors="replace"))
        roles = ROLE_RE.findall(text)
        if roles:
            node, role, term = roles[-1]
            cand = (int(term), int(node), role)
            if best is None or cand[0] > best[0] or (cand[0] == best[0] and role == "Leader"):
                best = cand
    return best[1] if best and best[2] == "Leader" else None


def test_three_nodes_form_agree_and_route_clients(cluster_factory):
    c = cluster_factory(3).start()
    ids = {n.cluster_id for n in c.nodes.values()}
    assert len(ids) == 1, f"nodes report different cluster ids: {ids}"

    name = topic_name("routed")
    create(c.bootstrap(1), name, 6, 3)
    # Every node's Metadata agrees, once each has applied the change.
    wait_until(lambda: all(len(layout(n.bootstrap, name)) == 6 for n in c.nodes.values()), 15,
               "all three nodes list the topic's 6 partitions")
    views = [layout(n.bootstrap, name) for n in c.nodes.values()]
    assert views[0] == views[1] == views[2], views
    leaders = {leader for leader, _, _ in views[0].values()}
    assert len(leaders) >= 2, f"leaders not spread: {views[0]}"
    for leader, replicas, isr in views[0].values():
        assert sorted(replicas) == [1, 2, 3] and leader == replicas[0], views[0]
    # Every node lists every broker.
    md = admin(c.bootstrap(2)).list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    assert {b.port for b in md.brokers.values()} == {n.kafka_port for n in c.nodes.values()}

    # A producer and a consumer that each know only one node.
    p = producer(c.bootstrap(2))
    errors = []
    for i in range(600):
        p.produce(name, value=f"m{i}".encode(), partition=i % 6,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(60) == 0
    assert errors == []
    cons = consumer(c.bootstrap(3))
    cons.assign([TopicPartition(name, i, 0) for i in range(6)])
    got = set()
    deadline = time.monotonic() + 60
    while len(got) < 600 and time.monotonic() < deadline:
        m = cons.poll(0.5)
        if m is not None and m.error() is None:
            got.add(m.value())
    cons.close()
    assert got == {f"m{i}".encode() for i in range(600)}

    # A broker that does not lead the partition says so.
    part, (leader, _, _) = next(iter(views[0].items()))
    other = next(n for i, n in c.nodes.items() if i != leader)
    batch = w.record_batch([(None, b"x")])
    with w.Connection(other.bootstrap) as conn:
        _, resp = w.parse_produce_response(conn.roundtrip(w.produce_request(8, 1, name, part, batch)), 8)
    assert resp[0].error_code == 6, resp  # NOT_LEADER_OR_FOLLOWER


def test_controller_failover_after_sigkill(cluster_factory):
    c = cluster_factory(3).start()
    wait_until(lambda: raft_leader(c.alive()) is not None, 10, "a Raft leader")
    old = raft_leader(c.alive())
    c.node(old).kill()
    t0 = time.monotonic()
    survivors = [i for i in c.nodes if i != old]
    wait_until(lambda: raft_leader(c.alive()) in survivors, FAILOVER_S, "a new Raft leader among the survivors")
    name = topic_name("after-failover")
    if kafka_mode():
        # Kafka names a random unfenced broker as the controller in Metadata, and librdkafka's
        # admin client waits for the one it was told about: until the session timeout fences
        # the killed broker, a create may wait on it. Operators see the same.
        wait_until(lambda: old not in {b.id for b in admin(c.node(survivors[0]).bootstrap)
                                       .list_topics(timeout=10).brokers.values()},
                   FAILOVER_S, "the killed broker fenced")
    create(c.node(survivors[0]).bootstrap, name, 2, 2, timeout_s=FAILOVER_S)
    elapsed = time.monotonic() - t0
    assert elapsed < FAILOVER_S + 5, f"failover plus create took {elapsed:.1f}s"
    wait_until(lambda: len(layout(c.node(survivors[1]).bootstrap, name)) == 2, 10, "topic on the other survivor")


def test_full_restart_keeps_topics_assignments_and_cluster_id(cluster_factory):
    c = cluster_factory(3).start()
    cluster_id = c.node(1).cluster_id
    names = [topic_name("kept") for _ in range(3)]
    for i, n in enumerate(names):
        create(c.bootstrap(1 + i), n, 3 + i, 3)
    wait_until(lambda: all(len(layout(c.bootstrap(3), n)) == 3 + i for i, n in enumerate(names)), 15,
               "topics everywhere")
    before = {n: layout(c.bootstrap(3), n) for n in names}
    for node in c.nodes.values():
        if kafka_mode():
            # Kafka's last brokers wait for a controlled shutdown that no quorum is left to
            # acknowledge (measured: the third did not exit within 30 s of SIGTERM).
            node.kill()
        else:
            node.terminate()
    c.start()
    assert {n.cluster_id for n in c.nodes.values()} == {cluster_id}
    for node in c.nodes.values():
        wait_until(lambda: all(layout(node.bootstrap, n) == before[n] for n in names), 15,
                   f"{node.name} reports the same layout after restart")


def test_no_metadata_write_without_a_quorum_and_no_divergence(cluster_factory):
    c = cluster_factory(3, args=["--metadata-timeout-ms", "3000"]).start()
    name = topic_name("before")
    create(c.bootstrap(1), name, 1, 3)
    # Keep the leader alive when it can be told, so the survivor believes it still leads for a
    # while; either way it has no quorum.
    wait_until(lambda: raft_leader(c.alive()) is not None, 10, "a Raft leader")
    keep = raft_leader(c.alive())
    down = [i for i in c.nodes if i != keep]
    for i in down:
        c.node(i).kill()
    lonely = topic_name("lonely")
    t0 = time.monotonic()
    a = admin(c.bootstrap(keep))
    fs = a.create_topics([NewTopic(lonely, num_partitions=1, replication_factor=1)],
                         operation_timeout=20, request_timeout=20)
    with pytest.raises(Exception) as failure:
        fs[lonely].result(timeout=20)
    elapsed = time.monotonic() - t0
    if not kafka_mode():
        # Chronik's --metadata-timeout-ms (3 s here) bounds the wait; Kafka has no such setting
        # (measured: its refusal comes after 10 s).
        assert elapsed < 10, f"the refusal took {elapsed:.1f}s"
        text = str(failure.value)
        assert "quorum" in text or "REQUEST_TIMED_OUT" in text, text

    for i in down:
        c.node(i).start()
    # Whatever happened to the write that timed out, every node agrees on it.
    def agree():
        views = [(layout(n.bootstrap, name), layout(n.bootstrap, lonely)) for n in c.nodes.values()]
        return all(v == views[0] for v in views) and views[0][0] != {}
    wait_until(agree, 20, "all three nodes agree on the metadata")
    create(c.bootstrap(down[0]), topic_name("after"), 1, 3)


@pytest.mark.chronik_only("chronik-server's --cluster flag")
@pytest.mark.parametrize("peers, why", [
    ("1@127.0.0.1:1,1@127.0.0.1:2", "listed twice"),
    ("1@127.0.0.1", "no :PORT"),
    ("x@127.0.0.1:5", "not a number"),
    ("2@127.0.0.1:5,3@127.0.0.1:6", "not in --cluster"),
    ("", "empty"),
])
def test_bad_peer_list_is_refused_with_exit_2(tmp_path, peers, why):
    proc = subprocess.run([str(SERVER_BIN), "--node-id", "1", "--cluster", peers, "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=30, env=clean_env())
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert why in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) <= 3, proc.stderr  # clap adds a usage hint line


@pytest.mark.chronik_only("chronik-server's command line")
def test_no_cluster_and_no_standalone_is_refused(tmp_path):
    proc = subprocess.run([str(SERVER_BIN), "--data-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=30, env=clean_env())
    assert proc.returncode == 2, proc.stderr
    assert "standalone" in proc.stderr and "--cluster" in proc.stderr


@pytest.mark.chronik_only("chronik-server's --cluster flag against its data dir")
def test_peer_list_conflicting_with_the_data_dir_is_refused(cluster_factory):
    c = cluster_factory(1).start()
    node = c.node(1)
    node.terminate()
    node.peers = node.peers + ",2@127.0.0.1:1"
    proc = subprocess.run(node.command(None), capture_output=True, text=True, timeout=30, env=clean_env())
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "started as node 1 with --cluster" in proc.stderr, proc.stderr[-2000:]


def test_groups_find_their_coordinator_on_the_offsets_partition_leader(cluster_factory):
    c = cluster_factory(3).start()
    # The offsets partitions are spread over the three nodes (the topic is created once all
    # three have registered, possibly just after the ready lines).
    # offsets.topic.num.partitions: Chronik's default is 16, Kafka's 50.
    partitions = 50 if kafka_mode() else 16
    wait_until(lambda: len(layout(c.bootstrap(1), "__consumer_offsets")) == partitions, 20, "the offsets topic")
    offsets = layout(c.bootstrap(1), "__consumer_offsets")
    assert {leader for leader, _, _ in offsets.values()} == {1, 2, 3}, offsets

    name = topic_name("grouped")
    create(c.bootstrap(1), name, 6, 3)
    p = producer(c.bootstrap(1))
    for i in range(300):
        p.produce(name, value=f"a{i}".encode(), partition=i % 6)
    assert p.flush(60) == 0

    def run_group(bootstrap: str, expect: int) -> set[bytes]:
        cons = consumer(bootstrap, **{"group.id": "g-" + name, "enable.auto.commit": False,
                                      "enable.auto.offset.store": True,
                                      "auto.offset.reset": "earliest"})
        cons.subscribe([name])
        got = set()
        deadline = time.monotonic() + 60
        while len(got) < expect and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and m.error() is None:
                got.add(m.value())
        cons.commit(asynchronous=False)
        cons.close()
        return got

    assert run_group(c.bootstrap(2), 300) == {f"a{i}".encode() for i in range(300)}
    for i in range(20):
        p.produce(name, value=f"b{i}".encode(), partition=i % 6)
    assert p.flush(60) == 0
    # The same group through another node resumes from the committed offsets.
    assert run_group(c.bootstrap(3), 20) == {f"b{i}".encode() for i in range(20)}

    # Every node names the same coordinator for the group.
    coordinators = set()
    for n in c.nodes.values():
        with w.Connection(n.bootstrap) as conn:
            # FindCoordinator v0 (api key 10): the answer after the correlation id is
            # error code, node id, host, port.
            coordinators.add(conn.roundtrip(w.request(10, 0, 7, w.string("g-" + name)))[4:])
    assert len(coordinators) == 1
    r = w.Reader(coordinators.pop())
    assert r.i16() == 0 and r.i32() in (1, 2, 3)


def test_a_silent_broker_is_fenced_and_unfenced_when_it_returns(cluster_factory):
    c = cluster_factory(3, args=["--broker-session-timeout-ms", "1500"]).start()

    def listed(via: int) -> set[int]:
        return set(admin(c.bootstrap(via)).list_topics(timeout=10).brokers)

    wait_until(lambda: raft_leader(c.alive()) is not None, 10, "a Raft leader")
    leader = raft_leader(c.alive())
    quiet = next(i for i in c.nodes if i != leader)
    other = next(i for i in c.nodes if i not in (leader, quiet))
    assert listed(other) == {1, 2, 3}
    c.node(quiet).proc.send_signal(signal.SIGSTOP)  # alive but silent
    try:
        t0 = time.monotonic()
        wait_until(lambda: listed(other) == {1, 2, 3} - {quiet}, 10, f"broker {quiet} fenced")
        fenced_after = time.monotonic() - t0
        assert fenced_after >= 1.0, f"fenced after {fenced_after:.2f}s, before its session timeout"
        # New topics avoid the fenced broker.
        name = topic_name("while-fenced")
        create(c.bootstrap(other), name, 4, 2)
        assert all(quiet not in replicas for _, replicas, _ in layout(c.bootstrap(other), name).values())
    finally:
        c.node(quiet).proc.send_signal(signal.SIGCONT)
    wait_until(lambda: listed(other) == {1, 2, 3}, 10, f"broker {quiet} unfenced")


def test_nodes_started_one_by_one_in_any_order_form_one_cluster(cluster_factory):
    c = cluster_factory(3)
    # Node 3 alone cannot form a quorum: it waits, without a ready line, until a peer comes.
    c.node(3).launch()
    time.sleep(1.0)  # a deliberate gap between starts, not a wait for a condition
    assert c.node(3).alive() and c.node(3).ready_line is None
    c.node(1).launch()
    c.node(3).wait_ready()
    c.node(1).wait_ready()
    c.node(2).start()
    assert len({n.cluster_id for n in c.nodes.values()}) == 1
    name = topic_name("staggered")
    create(c.bootstrap(2), name, 3, 3)
    wait_until(lambda: all(len(layout(n.bootstrap, name)) == 3 for n in c.nodes.values()), 15,
               "the topic on every node")


@pytest.mark.chronik_only("finds the controller with chronik-admin")
def test_a_paused_controller_does_not_fence_live_brokers_when_it_resumes(cluster_factory):
    """SIGSTOP the controller past the session timeout: on resume every broker looks silent to
    it. Its decisions must not be committed by its successor (they were forwarded once)."""
    from test_admin import ok
    c = cluster_factory(3, args=["--broker-session-timeout-ms", "1500"]).start()
    paused = ok(c.node(1).rpc, "cluster", "describe")["controller"]
    others = [i for i in (1, 2, 3) if i != paused]
    c.node(paused).proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: ok(c.node(others[0]).rpc, "cluster", "describe")["controller"] in others, 30,
                   "a new controller")
        # The paused node is fenced by the new controller after its session ran out.
        wait_until(lambda: any(b["node_id"] == paused and b["state"] == "fenced"
                               for b in ok(c.node(others[0]).rpc, "cluster", "describe")["brokers"]),
                   30, f"node {paused} fenced")
    finally:
        c.node(paused).proc.send_signal(signal.SIGCONT)
    # It comes back: unfenced, following the new controller.
    wait_until(lambda: {b["state"] for b in ok(c.node(others[0]).rpc, "cluster", "describe")["brokers"]}
               == {"alive"}, 30, "every broker alive again", interval_s=0.1)
    log = ANSI_ESCAPE_RE.sub("", c.node(paused).stderr_path.read_text())
    fenced_by_it = [line for line in log.splitlines()
                    if "controller changed broker state" in line and "state=Fenced" in line]
    assert not fenced_by_it, fenced_by_it[:3]
