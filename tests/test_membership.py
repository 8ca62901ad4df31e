"""Cluster membership with real node processes: a fourth node joins a running cluster with
--join (as a learner, then a voter on request), takes over a partition by reassignment while an
acks=all producer runs, and a broker is decommissioned: its replicas move away and it leaves the
Raft voters, while the cluster keeps serving."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from confluent_kafka.admin import NewTopic

from conftest import SERVER_BIN, clean_env, free_port
from helpers import admin, producer, wait_until
from test_admin import Load, cli, ok, read_all, wait_reassigned

pytestmark = pytest.mark.chronik_only("Raft membership through chronik-admin (--join, broker add/decommission)")


def make_topic(c, partitions: int, rf: int) -> str:
    name = f"mem-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))  # kept referenced until the future resolves
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                    operation_timeout=30)[name].result(timeout=30)
    wait_until(lambda: all(name in admin(n.bootstrap).list_topics(timeout=10).topics for n in c.alive()),
               15, "topic everywhere")
    return name


def replicas(c, name: str) -> list[list[int]]:
    return [p["replicas"] for p in ok(c.node(1).rpc, "topic", "describe", name)[0]["partitions"]]


def test_a_joined_node_becomes_a_voter_and_takes_a_partition_under_load(cluster_factory):
    c = cluster_factory(3).start()
    name = make_topic(c, 1, 3)
    assert sorted(replicas(c, name)[0]) == [1, 2, 3]
    c.join(4, via=2)
    d = ok(c.node(3).rpc, "cluster", "describe")
    assert d["learners"] == [4] and sorted(d["voters"]) == [1, 2, 3]
    wait_until(lambda: any(b["node_id"] == 4 and b["state"] == "alive"
                           for b in ok(c.node(1).rpc, "cluster", "describe")["brokers"]), 15, "node 4 registered")
    d = ok(c.node(1).rpc, "broker", "add", "--node-id", "4")
    assert sorted(d["voters"]) == [1, 2, 3, 4] and d["learners"] == []
    load = Load(c.bootstrap(), name)
    try:
        wait_until(lambda: len(load.acked) >= 2000, 30, "load running")
        ok(c.node(4).rpc, "partition", "reassign", "--topic", name, "--partition", "0", "--replicas", "2,3,4")
        p = wait_reassigned(c.node(4).rpc, name, [2, 3, 4])
        assert sorted(p["isr"]) == [2, 3, 4]
        after = len(load.acked)
        wait_until(lambda: len(load.acked) >= after + 1000, 30, "produce goes on after the move")
    finally:
        acked = load.finish()
    print(f"{len(acked)} messages acknowledged while partition 0 moved from {{1,2,3}} to {{2,3,4}}")
    wait_until(lambda: not (c.node(1).data_dir / "wal" / name / "0").exists(), 15, "node 1's copy deleted")
    assert (c.node(4).data_dir / "wal" / name / "0").exists()
    read_all(c.bootstrap(), name, acked)
    # A restarted joined node comes back as the member it is (no second join).
    c.node(4).kill()
    c.node(4).start()
    assert sorted(ok(c.node(4).rpc, "cluster", "describe")["voters"]) == [1, 2, 3, 4]


def test_decommission_moves_every_replica_and_removes_the_voter(cluster_factory):
    c = cluster_factory(3).start()
    c.join(4, via=1)
    ok(c.node(1).rpc, "broker", "add", "--node-id", "4")
    name = make_topic(c, 4, 3)
    on_two = [i for i, r in enumerate(replicas(c, name)) if 2 in r]
    assert on_two, replicas(c, name)
    p = producer(c.bootstrap())
    for i in range(400):
        p.produce(name, value=f"d{i}".encode(), partition=i % 4)
    assert p.flush(30) == 0
    d = ok(c.node(1).rpc, "broker", "decommission", "--node-id", "2")
    assert any(b["node_id"] == 2 and b["state"] == "decommissioning" for b in d["brokers"])

    def drained():
        r = replicas(c, name)
        d = ok(c.node(1).rpc, "cluster", "describe")
        return all(2 not in x for x in r) and 2 not in d["voters"] and 2 not in d["learners"] and (r, d)
    r, d = wait_until(drained, 90, "node 2 drained and out of the voters", interval_s=0.2)
    print(f"after decommissioning node 2: replicas {r}, voters {d['voters']}")
    assert sorted(d["voters"]) == [1, 3, 4]
    assert all(len(x) == 3 for x in r)
    # The cluster keeps serving, and all data is there.
    c.node(2).kill()
    survivors = [1, 3, 4]
    p = producer(c.bootstrap(*survivors))
    for i in range(400, 800):
        p.produce(name, value=f"d{i}".encode(), partition=i % 4)
    assert p.flush(30) == 0
    read_all(c.bootstrap(*survivors), name, [f"d{i}".encode() for i in range(800)], partitions=4, exact=True)


def test_membership_refusals_name_the_problem(cluster_factory, tmp_path):
    c = cluster_factory(3).start()
    # 3 nodes, RF=3: decommissioning one would leave partitions nowhere to go.
    make_topic(c, 1, 3)
    r = cli(c.node(1).rpc, "broker", "decommission", "--node-id", "3")
    assert r.returncode == 1 and "no alive broker to move to" in r.stderr, r.stderr
    r = cli(c.node(1).rpc, "broker", "decommission", "--node-id", "9")
    assert r.returncode == 1 and "not part of the cluster" in r.stderr, r.stderr
    r = cli(c.node(1).rpc, "broker", "add", "--node-id", "9")
    assert r.returncode == 1 and "not a learner" in r.stderr, r.stderr
    r = cli(c.node(1).rpc, "broker", "remove-voter", "--node-id", "9")
    assert r.returncode == 1 and "not a member" in r.stderr, r.stderr
    d = ok(c.node(1).rpc, "cluster", "describe")
    assert sorted(d["voters"]) == [1, 2, 3] and {b["state"] for b in d["brokers"]} == {"alive"}
    # Joining with an id the cluster already uses is refused, with the reason.
    taken = subprocess.run(
        [str(SERVER_BIN), "--node-id", "2", "--join", c.node(1).rpc, "--rpc-addr", f"127.0.0.1:{free_port()}",
         "--data-dir", str(tmp_path / "dup"), "--kafka-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, env=clean_env())
    assert taken.returncode != 0 and "already" in taken.stderr, taken.stderr[-2000:]
    # --join without --rpc-addr or together with --cluster: usage errors.
    bad = subprocess.run([str(SERVER_BIN), "--node-id", "5", "--join", c.node(1).rpc,
                          "--data-dir", str(tmp_path / "x")], capture_output=True, text=True, timeout=30,
                         env=clean_env())
    assert bad.returncode == 2 and "--rpc-addr" in bad.stderr, bad.stderr
    bad = subprocess.run([str(SERVER_BIN), "--node-id", "1", "--join", c.node(1).rpc, "--cluster", c.peers,
                          "--rpc-addr", "127.0.0.1:1", "--data-dir", str(tmp_path / "y")],
                         capture_output=True, text=True, timeout=30, env=clean_env())
    assert bad.returncode == 2 and "not both" in bad.stderr, bad.stderr


def test_the_last_voter_is_never_removed(broker_factory):
    b = broker_factory(args=["--rpc-addr", f"127.0.0.1:{free_port()}"])
    r = cli(b.rpc, "broker", "remove-voter", "--node-id", "1")
    assert r.returncode == 1 and "last voter" in r.stderr, r.stderr


def test_remove_voter_drops_a_node_lost_for_good(cluster_factory):
    c = cluster_factory(3).start()
    c.join(4, via=3)
    ok(c.node(1).rpc, "broker", "add", "--node-id", "4")
    c.node(4).kill()  # lost for good
    d = ok(c.node(2).rpc, "broker", "remove-voter", "--node-id", "4")
    assert sorted(d["voters"]) == [1, 2, 3] and d["learners"] == []
    # Lost for good: it takes no new replicas.
    assert any(b["node_id"] == 4 and b["state"] == "decommissioning" for b in d["brokers"]), d["brokers"]
    # The three left still commit metadata changes.
    name = make_topic(c, 1, 3)
    assert sorted(replicas(c, name)[0]) == [1, 2, 3]
