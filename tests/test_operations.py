"""Operations endpoints on real nodes: Prometheus metrics that move with the work done, and
health endpoints that say when a node can take traffic."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from conftest import free_port
from helpers import admin, consume_range, consumer, http_get, producer, wait_until

pytestmark = pytest.mark.chronik_only("Chronik's /metrics, /health endpoints and JSON logs")




def scrape(addr: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels as printed)."""
    status, text = http_get(addr, "/metrics")
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def total(m: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's series whose labels include `labels`."""
    s = 0.0
    for key, v in m.items():
        base = key.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{val}"' in key for k, val in labels.items()):
            s += v
    return s


def test_metrics_move_with_produce_and_show_under_replication(cluster_factory):
    c = cluster_factory(3, args=["--replica-lag-time-max-ms", "2000"]).start()
    name = f"ops-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))  # kept referenced until the future resolves
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)], operation_timeout=30)[name].result(30)
    wait_until(lambda: all(name in admin(n.bootstrap).list_topics(timeout=10).topics for n in c.nodes.values()),
               15, "topic everywhere")
    leader = admin(c.bootstrap()).list_topics(name, timeout=10).topics[name].partitions[0].leader
    before = {i: scrape(n.http) for i, n in c.nodes.items()}
    p = producer(c.bootstrap())
    for i in range(10_000):
        p.produce(name, value=f"m{i}".encode(), partition=0)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0

    def moved():
        after = {i: scrape(n.http) for i, n in c.nodes.items()}
        ok = total(after[leader], "chronik_produce_messages_total", topic=name) \
            - total(before[leader], "chronik_produce_messages_total", topic=name) >= 10_000
        ok &= total(after[leader], "chronik_requests_total", api="Produce") > \
            total(before[leader], "chronik_requests_total", api="Produce")
        for i in c.nodes:
            ok &= total(after[i], "chronik_partition_log_end_offset", topic=name, partition="0") == 10_000
            ok &= total(after[i], "chronik_wal_fsync_seconds_count") > total(before[i], "chronik_wal_fsync_seconds_count")
        return ok and after
    after = wait_until(moved, 30, "produce, log end and fsync metrics moved on every node", interval_s=0.2)
    assert total(after[leader], "chronik_under_replicated_partitions") == 0
    assert total(after[leader], "chronik_raft_voters") == 3
    assert total(after[leader], "chronik_connections") >= 1
    assert total(after[leader], "chronik_raft_commit_index") >= 1
    # A consumer reads all 10,000: fetch bytes and messages rise on the leader.
    assert len(consume_range(c.bootstrap(), name, 0, 0, 10_000, timeout_s=60)) == 10_000
    m = scrape(c.node(leader).http)
    assert total(m, "chronik_fetch_messages_total", topic=name) >= 10_000
    assert total(m, "chronik_fetch_bytes_total", topic=name) > 10_000
    # Caught-up followers: no lag in messages on the leader.
    assert total(after[leader], "chronik_replica_lag_messages", topic=name, partition="0") == 0
    # A group committed offset 4,000 of 10,000: its coordinator reports a lag of 6,000.
    group = f"g-{uuid.uuid4().hex[:6]}"
    cons = consumer(c.bootstrap(), **{"group.id": group})
    cons.commit(offsets=[TopicPartition(name, 0, 4_000)], asynchronous=False)
    cons.close()
    wait_until(lambda: sum(total(scrape(n.http), "chronik_consumer_group_lag", group=group, topic=name,
                                 partition="0") for n in c.nodes.values()) == 6_000,
               15, "group lag 6000 on the coordinator", interval_s=0.2)
    # A follower dies: the leader reports the partition under-replicated within
    # replica.lag.time.max.ms plus a margin, and the follower's lag grows in messages and time.
    follower = next(i for i in c.nodes if i != leader)
    c.node(follower).kill()
    wait_until(lambda: total(scrape(c.node(leader).http), "chronik_partition_under_replicated",
                             topic=name, partition="0") == 1, 2 + 10, "under-replicated gauge on the leader",
               interval_s=0.2)
    m = scrape(c.node(leader).http)
    assert total(m, "chronik_under_replicated_partitions") >= 1
    assert total(m, "chronik_replica_lag_seconds", topic=name, partition="0", replica=str(follower)) >= 2
    for i in range(100):
        p.produce(name, value=f"late{i}".encode(), partition=0)
    assert p.flush(60) == 0
    m = scrape(c.node(leader).http)
    assert total(m, "chronik_replica_lag_messages", topic=name, partition="0", replica=str(follower)) >= 100
    other = next(i for i in c.nodes if i not in (leader, follower))
    assert total(m, "chronik_replica_lag_messages", topic=name, partition="0", replica=str(other)) == 0


def test_json_logs_carry_node_topic_and_partition_spans(broker_factory):
    b = broker_factory(args=["--log-format", "json", "--node-id", "7"])
    name = f"json-{uuid.uuid4().hex[:8]}"
    p = producer(b.bootstrap)
    p.produce(name, value=b"x")
    assert p.flush(30) == 0

    def lines():
        out = []
        for raw in b.stderr_path.read_text().splitlines():
            out.append(json.loads(raw))  # every line is one JSON object
        return out
    def partition_span(ls):
        return [l for l in ls if any(s.get("name") == "partition" and s.get("topic") == name
                                     and s.get("partition") == 0 for s in l.get("spans", []))]
    events = wait_until(lambda: partition_span(lines()), 15, "an event inside the topic's partition span")
    for e in lines():
        assert {"timestamp", "level", "fields", "target"} <= e.keys(), e
        assert {"name": "node", "node_id": 7} in e.get("spans", []), e
    assert events[0]["spans"][0] == {"name": "node", "node_id": 7}


def test_readiness_follows_wal_recovery_and_the_metadata_leader(cluster_factory):
    ports = {i: free_port() for i in (1, 2, 3)}
    c = cluster_factory(3)
    for i, n in c.nodes.items():
        n.args = [*n.args, "--http-addr", f"127.0.0.1:{ports[i]}"]
    addr = {i: f"127.0.0.1:{p}" for i, p in ports.items()}
    # Node 1 alone: it is up (live) but waits for its cluster, so it is not ready.
    c.node(1).launch()
    wait_until(lambda: http_get(addr[1], "/health/live")[0] == 200, 30, "node 1 live")
    status, body = http_get(addr[1], "/health/ready")
    assert status == 503 and "not ready" in body, (status, body)
    # The others come: every node becomes ready.
    c.node(2).launch()
    c.node(3).launch()
    for n in c.nodes.values():
        n.wait_ready(60)
    for i in c.nodes:
        wait_until(lambda i=i: http_get(addr[i], "/health/ready")[0] == 200, 30, f"node {i} ready")
    # Two of three gone: the survivor has no metadata leader, so it is not ready.
    c.node(2).kill()
    c.node(3).kill()
    wait_until(lambda: http_get(addr[1], "/health/ready")[0] == 503, 30, "node 1 not ready without a leader")
    assert "leader" in http_get(addr[1], "/health/ready")[1]
    assert http_get(addr[1], "/health/live")[0] == 200
    c.node(2).start()
    wait_until(lambda: http_get(addr[1], "/health/ready")[0] == 200, 30, "node 1 ready again")
    m = scrape(addr[1])
    assert total(m, "chronik_raft_leader_changes_total") >= 1
    assert re.search(r"chronik_raft_term \d", http_get(addr[1], "/metrics")[1])


def test_readiness_is_false_while_the_wal_recovers(broker_factory):
    """A node restarted over many partitions answers 503 naming WAL recovery until every log
    is recovered, then 200."""
    port = free_port()
    b = broker_factory(args=["--http-addr", f"127.0.0.1:{port}"])
    name = f"recover-{uuid.uuid4().hex[:8]}"
    partitions = 300
    a = admin(b.bootstrap)
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                    operation_timeout=30)[name].result(60)
    p = producer(b.bootstrap)
    for i in range(partitions):
        p.produce(name, value=b"x" * 100, partition=i)
    assert p.flush(60) == 0
    b.terminate()
    b.launch()
    seen = []

    def ready_line_printed():
        status, body = http_get(f"127.0.0.1:{port}", "/health/ready")
        if status:
            seen.append((status, body.strip()))
        return b.stdout_path.read_text().startswith("chronik-server ready")
    wait_until(ready_line_printed, 60, "the ready line", interval_s=0.005)
    b.wait_ready()
    recovering = [s for s in seen if s[0] == 503 and "recovering the WAL" in s[1]]
    assert recovering, f"no 503 naming WAL recovery among {len(seen)} answers: {seen[:3]} ... {seen[-3:]}"
    assert all(s[0] == 503 for s in seen[:seen.index(recovering[0])]), seen
    wait_until(lambda: http_get(f"127.0.0.1:{port}", "/health/ready")[0] == 200, 30, "ready after recovery")
