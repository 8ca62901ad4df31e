"""The admin gRPC API through the `chronik-admin` CLI, against three real nodes: describe,
seal/resume (surviving a leader restart), leader election, and refused requests."""

from __future__ import annotations

import json
import subprocess
import uuid

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

import kafkawire as w
from conftest import REPO_ROOT, clean_env
from helpers import admin, consumer, producer, wait_until

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


def make_topic(c, partitions: int = 1) -> str:
    name = f"adm-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3)],
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
