"""The admin gRPC API through the `chronik-admin` CLI, against three real nodes: describe,
seal/resume (surviving a leader restart), leader election, and refused requests."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

import kafkawire as w
from conftest import REPO_ROOT, clean_env
from helpers import admin, consumer, producer, wait_until

pytestmark = pytest.mark.chronik_only("chronik-admin, Chronik's gRPC admin API")

ADMIN_BIN = REPO_ROOT / "target" / "debug" / "chronik-admin"


def cli(server: str, *args: str, json_out: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(ADMIN_BIN), "--server", server, *(["--output", "json"] if json_out else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=clean_env())


def ok(server: str, *args: str):
    r = cli(server, *args)
    assert r.returncode == 0, (r.returncode, r.stderr)
    return json.loads(r.stdout)


def raw_produce(bootstrap: str, topic: str, partition: int) -> int:
    batch = w.record_batch([(None, b"raw")])
    with w.Connection(bootstrap) as conn:
        _, resp = w.parse_produce_response(conn.roundtrip(w.produce_request(8, 1, topic, partition, batch, acks=1)), 8)
    return resp[0].error_code


def leader_of(bootstrap: str, topic: str, partition: int = 0) -> int:
    return admin(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions[partition].leader


def make_topic(c, partitions: int = 1, config: dict | None = None) -> str:
    name = f"adm-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3, config=config or {})],
                    operation_timeout=30)[name].result(timeout=30)
    wait_until(lambda: all(leader_of(n.bootstrap, name) > 0 for n in c.nodes.values()), 15, "topic everywhere")
    return name


def test_describe_cluster_and_topics(cluster_factory):
    c = cluster_factory(3).start()
    name = make_topic(c, 2)
    d = ok(c.node(2).rpc, "cluster", "describe")
    assert d["cluster_id"] == c.node(1).cluster_id
    assert sorted(d["voters"]) == [1, 2, 3] and d["controller"] in (1, 2, 3)
    assert sorted(b["node_id"] for b in d["brokers"]) == [1, 2, 3]
    assert {b["state"] for b in d["brokers"]} == {"alive"}
    # Every node's Raft log position, asked from each.
    assert sorted(n["node_id"] for n in d["raft_log"]) == [1, 2, 3]
    assert all(n["reachable"] and n["last_applied_index"] > 0 for n in d["raft_log"]), d["raft_log"]
    t = ok(c.node(3).rpc, "topic", "describe", name)
    assert [p["partition"] for p in t[0]["partitions"]] == [0, 1]
    for p in t[0]["partitions"]:
        assert sorted(p["replicas"]) == [1, 2, 3] and p["sealed"] is False
        assert p["local"]["segments"] >= 1  # node 3 holds a replica of each
    table = cli(c.node(1).rpc, "topic", "describe", json_out=False)
    assert table.returncode == 0 and name in table.stdout


def test_seal_refuses_produce_keeps_fetch_survives_restart_and_resumes(cluster_factory):
    c = cluster_factory(3).start()
    name = make_topic(c)
    p = producer(c.bootstrap())
    for i in range(20):
        p.produce(name, value=f"before{i}".encode(), partition=0)
    assert p.flush(30) == 0
    sealed = ok(c.node(1).rpc, "partition", "seal", "--topic", name, "--partition", "0")
    assert sealed["sealed"] is True
    leader = leader_of(c.bootstrap(), name)
    wait_until(lambda: raw_produce(c.node(leader).bootstrap, name, 0) == 6, 10, "produce refused while sealed")
    # Reads go on.
    cons = consumer(c.bootstrap())
    cons.assign([TopicPartition(name, 0, 0)])
    got = []
    while len(got) < 20:
        m = cons.poll(5)
        assert m is not None, f"read {len(got)} of 20 from a sealed partition"
        if m.error() is None:
            got.append(m.value())
    cons.close()
    # The seal lives in Raft: a restarted leader still refuses.
    c.node(leader).terminate()
    c.node(leader).start()
    wait_until(lambda: leader_of(c.bootstrap(), name) > 0, 15, "a leader after the restart")
    now = leader_of(c.bootstrap(), name)
    wait_until(lambda: raw_produce(c.node(now).bootstrap, name, 0) == 6, 15, "still sealed after the restart")
    resumed = ok(c.node(3).rpc, "partition", "resume", "--topic", name, "--partition", "0")
    assert resumed["sealed"] is False
    wait_until(lambda: raw_produce(c.node(leader_of(c.bootstrap(), name)).bootstrap, name, 0) == 0, 15,
               "produce accepted after resume")


def test_leader_elect_named_and_preferred(cluster_factory):
    c = cluster_factory(3, args=["--auto-leader-rebalance", "false"]).start()
    name = make_topic(c)
    replicas = ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"][0]["replicas"]
    other = replicas[1]
    r = ok(c.node(2).rpc, "leader", "elect", "--topic", name, "--partition", "0", "--replica", str(other))
    assert r["leader"] == other
    wait_until(lambda: leader_of(c.bootstrap(), name) == other, 10, "clients see the new leader")
    p = producer(c.bootstrap())
    p.produce(name, value=b"after-move", partition=0)
    assert p.flush(30) == 0
    r = ok(c.node(3).rpc, "leader", "elect", "--topic", name, "--partition", "0")
    assert r["leader"] == replicas[0]


def test_bad_requests_are_refused_and_change_nothing(cluster_factory):
    c = cluster_factory(3).start()
    name = make_topic(c)
    before = ok(c.node(1).rpc, "topic", "describe", name)
    r = cli(c.node(1).rpc, "partition", "seal", "--topic", name, "--partition", "7")
    assert r.returncode == 1 and "partition 7" in r.stderr and "does not exist" in r.stderr, r.stderr
    r = cli(c.node(1).rpc, "partition", "seal", "--topic", "no-such-topic", "--partition", "0")
    assert r.returncode == 1 and "no-such-topic" in r.stderr, r.stderr
    r = cli(c.node(1).rpc, "leader", "elect", "--topic", name, "--partition", "0", "--replica", "9")
    assert r.returncode == 1 and "cannot lead" in r.stderr and "not a replica" in r.stderr, r.stderr
    r = cli(c.node(1).rpc, "partition", "seal", "--topic", name)  # no --partition
    assert r.returncode == 2, r.stderr
    r = cli("127.0.0.1:1", "cluster", "describe")
    assert r.returncode == 1 and "cannot reach" in r.stderr, r.stderr
    assert ok(c.node(2).rpc, "topic", "describe", name) == before or \
        [p["sealed"] for p in ok(c.node(2).rpc, "topic", "describe", name)[0]["partitions"]] == [False]


# ---------------------------------------------------------------- reassignment
import signal
import threading



def rf2_topic(c) -> tuple[str, list[int]]:
    """A one-partition RF=2 topic; returns it and its replicas (preferred leader first)."""
    name = f"mv-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=2)],
                    operation_timeout=30)[name].result(timeout=30)
    wait_until(lambda: all(leader_of(n.bootstrap, name) > 0 for n in c.nodes.values()), 15, "topic everywhere")
    p = ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"][0]
    return name, p["replicas"]


class Load:
    """An idempotent acks=all producer running until stopped; remembers what was acknowledged."""

    def __init__(self, bootstrap: str, topic: str):
        self.acked: list[bytes] = []
        self.errors: list = []
        self.stop = threading.Event()
        self.topic = topic
        self.bootstrap = bootstrap
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        p = producer(self.bootstrap, **{"message.timeout.ms": 120000, "linger.ms": 2})

        def done(err, msg):
            (self.errors.append(err) if err else self.acked.append(msg.value()))
        n = 0
        while not self.stop.is_set():
            try:
                p.produce(self.topic, value=f"m{n}".encode(), partition=0, on_delivery=done)
                n += 1
            except BufferError:
                p.poll(0.05)
                continue
            if n % 50 == 0:
                p.poll(0.01)
                self.stop.wait(0.01)
        assert p.flush(120) == 0

    def finish(self) -> list[bytes]:
        self.stop.set()
        self.thread.join(180)
        assert not self.thread.is_alive()
        assert self.errors == [], self.errors[:5]
        return self.acked


def read_all(bootstrap: str, topic: str, want: list[bytes], partitions: int = 1, exact: bool = False) -> None:
    """Reads the topic's partitions from the start until every `want` value was seen (60 s
    at most); fails on a missing value or a value read twice, and with `exact` on any value
    that is not wanted."""
    cons = consumer(bootstrap)
    cons.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    missing = set(want)
    seen = []
    deadline = time.monotonic() + 60
    while missing and time.monotonic() < deadline:
        m = cons.poll(0.5)
        if m is not None and m.error() is None:
            missing.discard(m.value())
            seen.append(m.value())
    cons.close()
    assert not missing, f"{len(missing)} acknowledged messages not read, e.g. {sorted(missing)[:3]}"
    assert len(seen) == len(set(seen)), "duplicates"
    if exact:
        extra = set(seen) - set(want)
        assert not extra, f"{len(extra)} unexpected values, e.g. {sorted(extra)[:3]}"


def wait_reassigned(server: str, name: str, target: list[int], timeout_s: float = 60) -> dict:
    def done():
        if any(r["topic"] == name for r in ok(server, "reassignment", "list")):
            return None
        p = ok(server, "topic", "describe", name)[0]["partitions"][0]
        return p if p["replicas"] == target else None
    return wait_until(done, timeout_s, f"reassignment of {name} to {target}", interval_s=0.2)


def test_reassignment_under_load_moves_data_and_deletes_the_old_copy(cluster_factory):
    c = cluster_factory(3).start()
    name, old = rf2_topic(c)
    gone = old[0]  # the preferred leader leaves
    new = next(i for i in (1, 2, 3) if i not in old)
    target = [old[1], new]
    load = Load(c.bootstrap(), name)
    try:
        wait_until(lambda: len(load.acked) >= 2000, 30, "load running")
        started = ok(c.node(new).rpc, "partition", "reassign", "--topic", name, "--partition", "0",
                     "--replicas", ",".join(map(str, target)))
        assert started[0]["adding"] == [new] and started[0]["removing"] == [gone]
        p = wait_reassigned(c.node(new).rpc, name, target)
        assert p["leader"] in target and sorted(p["isr"]) == sorted(target)
        wait_until(lambda: leader_of(c.bootstrap(), name) in target, 15, "clients see the new leader")
        after = len(load.acked)
        wait_until(lambda: len(load.acked) >= after + 1000, 30, "produce goes on after the move")
    finally:
        acked = load.finish()
    print(f"{len(acked)} messages acknowledged during the move {old} -> {target}")
    # The old replica's data is gone; the new one holds the partition.
    wal = lambda n: c.node(n).data_dir / "wal" / name / "0"  # noqa: E731
    wait_until(lambda: not wal(gone).exists(), 15, f"node {gone}'s copy deleted")
    assert wal(new).exists()
    read_all(c.bootstrap(), name, acked)


def test_reassignment_completes_across_a_controller_failover(cluster_factory):
    c = cluster_factory(3, args=["--broker-session-timeout-ms", "2000"]).start()
    name, old = rf2_topic(c)
    new = next(i for i in (1, 2, 3) if i not in old)
    target = [new, old[0]]
    p = producer(c.bootstrap())
    for i in range(500):
        p.produce(name, value=f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0
    # Hold the new replica back, so the move is still running when the controller dies.
    c.node(new).proc.send_signal(signal.SIGSTOP)
    try:
        ok(c.node(old[0]).rpc, "partition", "reassign", "--topic", name, "--partition", "0",
           "--replicas", ",".join(map(str, target)))
        listed = ok(c.node(old[0]).rpc, "reassignment", "list")
        assert [r["target"] for r in listed if r["topic"] == name] == [target]
        controller = wait_until(
            lambda: (x := ok(c.node(old[0]).rpc, "cluster", "describe")["controller"]) in old and x,
            30, "a controller among the running nodes")
        survivor = old[1] if controller == old[0] else old[0]
        print(f"killing controller {controller} mid-reassignment {old} -> {target}")
        c.node(controller).kill()
    finally:
        c.node(new).proc.send_signal(signal.SIGCONT)
    c.node(controller).start()
    wait_reassigned(c.node(survivor).rpc, name, target)
    read_all(c.bootstrap(), name, [f"v{i}".encode() for i in range(500)])


def test_reassignment_refusals_name_the_problem_and_change_nothing(cluster_factory):
    c = cluster_factory(3).start()
    name, old = rf2_topic(c)
    before = ok(c.node(1).rpc, "topic", "describe", name)
    for replicas, why in [("1,9", "broker 9 is not part of the cluster"), ("1,1", "repeated")]:
        r = cli(c.node(1).rpc, "partition", "reassign", "--topic", name, "--partition", "0", "--replicas", replicas)
        assert r.returncode == 1 and why in r.stderr, (r.returncode, r.stderr)
    r = cli(c.node(1).rpc, "partition", "reassign", "--topic", name, "--partition", "7", "--replicas", "1,2")
    assert r.returncode == 1 and "partition 7" in r.stderr, r.stderr
    r = cli(c.node(1).rpc, "partition", "reassign", "--topic", name, "--partition", "0")
    assert r.returncode == 2, "missing --replicas is a usage error"
    r = cli(c.node(1).rpc, "reassignment", "cancel", "--topic", name, "--partition", "0")
    assert r.returncode == 1 and "no reassignment" in r.stderr, r.stderr
    # min.insync: an RF=3 topic with min.insync.replicas=2 cannot go to one replica.
    three = make_topic(c, config={"min.insync.replicas": "2"})
    r = cli(c.node(1).rpc, "partition", "reassign", "--topic", three, "--partition", "0", "--replicas", "1")
    assert r.returncode == 1 and "min.insync.replicas=2" in r.stderr, r.stderr
    assert ok(c.node(1).rpc, "topic", "describe", name) == before
    # Cancel: back to the old replicas, the added one leaves.
    new = next(i for i in (1, 2, 3) if i not in old)
    c.node(new).proc.send_signal(signal.SIGSTOP)  # it cannot catch up: the move stays open
    try:
        ok(c.node(old[0]).rpc, "partition", "reassign", "--topic", name, "--partition", "0",
           "--replicas", f"{old[0]},{new}")
        r = cli(c.node(old[0]).rpc, "partition", "reassign", "--topic", name, "--partition", "0",
                "--replicas", f"{old[1]},{new}")
        assert r.returncode == 1 and "already in progress" in r.stderr, r.stderr
        back = ok(c.node(old[0]).rpc, "reassignment", "cancel", "--topic", name, "--partition", "0")
        assert sorted(back["replicas"]) == sorted(old) and "adding" not in back
    finally:
        c.node(new).proc.send_signal(signal.SIGCONT)
    assert ok(c.node(old[0]).rpc, "reassignment", "list") == []


def test_describe_shows_every_replica_from_its_own_node(cluster_factory):
    c = cluster_factory(3).start()
    name = make_topic(c)
    p = producer(c.bootstrap())
    for i in range(250):
        p.produce(name, value=f"s{i}".encode(), partition=0)
    assert p.flush(30) == 0

    def settled():
        part = ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"][0]
        rows = part["replica_stats"]
        return (sorted(r["node_id"] for r in rows) == [1, 2, 3]
                and all(r["reachable"] and r["log_end"] == 250 and r["lag"] == 0 and r["high_watermark"] == 250
                        and r["size_bytes"] > 0 and r["segments"] >= 1 for r in rows)) and part
    part = wait_until(settled, 15, "every replica at 250 with its size", interval_s=0.1)
    follower = next(r for r in part["replicas"] if r != part["leader"] and r != 1)
    c.node(follower).kill()
    rows = ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"][0]["replica_stats"]
    down = next(r for r in rows if r["node_id"] == follower)
    assert down["reachable"] is False and down["error"], down
    assert all(r["reachable"] for r in rows if r["node_id"] != follower)
    table = cli(c.node(1).rpc, "topic", "describe", name, json_out=False)
    assert table.returncode == 0 and "unreachable" in table.stdout and "lag 0" in table.stdout, table.stdout
    assert "LOG END" in table.stdout.splitlines()[-len(rows) - 1], table.stdout


def test_rolling_restart_check_says_when_the_next_node_may_restart(cluster_factory):
    c = cluster_factory(3, args=["--replica-lag-time-max-ms", "1500"]).start()
    name = make_topic(c)
    p = producer(c.bootstrap())
    for i in range(50):
        p.produce(name, value=f"r{i}".encode(), partition=0)
    assert p.flush(30) == 0
    r = ok(c.node(1).rpc, "cluster", "rolling-restart-check", "--wait", "30")
    assert r["safe"] is True and r["under_replicated"] == []
    c.node(3).kill()
    # Once the leaders dropped node 3 from their ISRs, restarting another node is not safe.
    def unsafe():
        r = cli(c.node(1).rpc, "cluster", "rolling-restart-check")
        got = r.returncode == 1 and json.loads(r.stdout)
        return got and any(u["topic"] == name and u["out_of_isr"] == [3] for u in got["under_replicated"]) and got
    r = wait_until(unsafe, 30, f"the check names {name}-0 without node 3", interval_s=0.2)
    assert r["safe"] is False
    table = cli(c.node(1).rpc, "cluster", "rolling-restart-check", json_out=False)
    assert table.returncode == 1 and "not in the ISR" in table.stdout, table.stdout
    c.node(3).start()
    r = ok(c.node(2).rpc, "cluster", "rolling-restart-check", "--wait", "60")
    assert r["safe"] is True
