"""The metadata quorum as seen from outside, on real 3-node clusters:

- a restarted node reports ready (and answers Metadata) only once it has applied everything the
  leader had committed when it came back, so it never shows a cluster without the topics
  created while it was down (the read-index barrier);
- /health/ready says 503 while no leader that a quorum answered recently is reachable, and 200
  again once one is;
- a node cut off from the others does not raise its Raft term, so when it returns it does not
  depose a healthy leader (pre-vote); a leader that is really gone is still replaced.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin import NewTopic

import kafkawire as kw
from helpers import admin, http_get, wait_until
from netns import netns_cluster_factory  # noqa: F401  (fixture)
from test_operations import scrape

pytestmark = pytest.mark.chronik_only("Chronik's Raft metadata quorum, seen through /metrics and /health")

# Bound for readiness to notice a lost quorum: "recently" is 1.6 s (lease + longest election
# timeout with the 100 ms heartbeat); the rest is slack for a loaded machine.
NOTICE_S = 10.0


def raft(node) -> tuple[int, bool]:
    """(Raft term, whether it leads) from the node's /metrics."""
    m = scrape(node.http)
    return int(m["chronik_raft_term"]), m["chronik_raft_is_leader"] == 1.0


def ready(node) -> tuple[int, str]:
    return http_get(node.http, "/health/ready")


def the_leader(c, ids, timeout_s: float = 30.0) -> int:
    """Waits until exactly one of `ids` leads and all of them agree on the term; returns it."""
    found: list[int] = []

    def one():
        views = {i: raft(c.node(i)) for i in ids}
        leaders = [i for i, (_, leads) in views.items() if leads]
        if len(leaders) == 1 and len({t for t, _ in views.values()}) == 1:
            found[:] = leaders
            return True
        return False

    wait_until(one, timeout_s, f"one leader among nodes {ids}", interval_s=0.2)
    return found[0]


def metadata_topics(bootstrap: str, names: list[str]) -> dict[str, tuple[int, list[int]]]:
    with kw.Connection(bootstrap) as conn:
        return kw.parse_metadata_response_v1(conn.roundtrip(kw.metadata_request_v1(1, names))).topics


def test_restarted_node_serves_only_after_catching_up(cluster_factory):
    c = cluster_factory(3).start()
    a = admin(c.bootstrap(1))
    for round_ in range(2):
        c.node(3).kill()
        names = [f"while-down-{round_}-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
        fs = a.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names],
                             operation_timeout=30, request_timeout=30)
        for f in fs.values():
            f.result(timeout=30)
        c.node(3).start()
        # Asked the moment the ready line appears: every topic the cluster had must be there.
        topics = metadata_topics(c.node(3).bootstrap, names)
        missing = [n for n in names if topics.get(n, (-1,))[0] != 0]
        assert not missing, f"round {round_}: node 3 was ready but did not know {missing}: {topics}"


def test_ready_only_while_a_quorum_answers(cluster_factory):
    c = cluster_factory(3).start()
    leader = the_leader(c, [1, 2, 3])
    others = [i for i in (1, 2, 3) if i != leader]
    assert ready(c.node(leader))[0] == 200
    for i in others:
        c.node(i).kill()
    # The leader keeps leading (nobody can depose it), but it can no longer commit anything.
    wait_until(lambda: ready(c.node(leader))[0] == 503, NOTICE_S,
               f"leader {leader} reporting not ready without a quorum")
    status, body = ready(c.node(leader))
    assert status == 503 and "quorum" in body, body
    for i in others:
        c.node(i).launch()
    for i in others:
        c.node(i).wait_ready()
    wait_until(lambda: ready(c.node(leader))[0] == 200, 30, f"node {leader} ready again")


def test_isolated_node_does_not_disturb_the_leader(netns_cluster_factory):
    c = netns_cluster_factory(3).start()
    nodes = [1, 2, 3]
    leader = the_leader(c, nodes)
    term, _ = raft(c.node(leader))
    follower = next(i for i in nodes if i != leader)

    c.isolate(follower)
    wait_until(lambda: ready(c.node(follower))[0] == 503, NOTICE_S,
               f"isolated node {follower} reporting not ready")
    assert "leader" in ready(c.node(follower))[1]
    time.sleep(8)  # many election timeouts (0.4-0.8 s) alone
    isolated_term, _ = raft(c.node(follower))
    c.heal()
    wait_until(lambda: ready(c.node(follower))[0] == 200, 30, f"node {follower} ready after the heal")
    time.sleep(2)  # a disturbance would show by now: the old term is refused within a heartbeat
    after = {i: raft(c.node(i)) for i in nodes}
    assert isolated_term == term, f"the isolated node raised its term from {term} to {isolated_term}"
    assert after[leader] == (term, True), f"leader {leader} disturbed: term {term} -> {after}"
    assert all(t == term for t, _ in after.values()), after

    # Pre-vote must not stop a real failover: cut the leader off, the other two elect one.
    c.isolate(leader)
    rest = [i for i in nodes if i != leader]
    new_leader = the_leader(c, rest, timeout_s=NOTICE_S)
    assert raft(c.node(new_leader))[0] > term
    wait_until(lambda: ready(c.node(leader))[0] == 503, NOTICE_S,
               f"cut-off leader {leader} reporting not ready")
    c.heal()
    wait_until(lambda: not raft(c.node(leader))[1], 30, f"old leader {leader} stepping down")
    assert the_leader(c, nodes) == new_leader
    wait_until(lambda: ready(c.node(leader))[0] == 200, 30, f"node {leader} ready after the heal")
