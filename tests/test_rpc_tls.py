"""Mutual TLS on the RPC port (Raft, replication, admin API; docs/security.md): a three-node cluster
whose nodes authenticate each other with CA-signed node-N certificates replicates end to end;
chronik-admin needs a certificate from the cluster CA (and an allowed name when the nodes set
--rpc-admin-allowed-names); without TLS a node refuses a non-loopback RPC address unless given
--rpc-insecure. The forged Raft and replication calls are in
crates/chronik-server/tests/rpc_forged.rs (they need the gRPC client types)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from confluent_kafka.admin import NewTopic

from conftest import REPO_ROOT, SERVER_BIN, JoiningNode, clean_env, free_port
from helpers import admin, consume_range, http_get, producer, produce_all, wait_until
from rpc_certs import make_pki

pytestmark = pytest.mark.chronik_only("mutual TLS on Chronik's RPC port")

ADMIN_BIN = REPO_ROOT / "target" / "debug" / "chronik-admin"


def admin_cli(server: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ADMIN_BIN), "--server", server, "--output", "json", "--timeout", "20", *args],
                          capture_output=True, text=True, timeout=60, env=clean_env())


def isrs(doc) -> list[list[int]]:
    """Every `isr` list in a chronik-admin JSON answer, each sorted."""
    if isinstance(doc, dict):
        return [sorted(v) for k, v in doc.items() if k == "isr"] + [i for v in doc.values() for i in isrs(v)]
    if isinstance(doc, list):
        return [i for v in doc for i in isrs(v)]
    return []


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki", nodes=4)


def tls_cluster(cluster_factory, pki, extra: list[str] | None = None):
    c = cluster_factory(3)
    for i, n in c.nodes.items():
        n.args = [*pki[f"node-{i}"].server_args(), *(extra or [])]
    return c.start()


def test_tls_cluster_replicates_and_admin_needs_a_cluster_certificate(cluster_factory, pki):
    c = tls_cluster(cluster_factory, pki, ["--rpc-admin-allowed-names", "admin"])
    # RF 3, acks=all: replication fetches and Raft both go over mutual TLS.
    name = f"tls-{uuid.uuid4().hex[:8]}"
    a = admin(c.bootstrap(1))
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)],
                    operation_timeout=30)[name].result(timeout=30)
    p = producer(c.bootstrap(), acks="all")
    log = produce_all(p, name, ((None, f"m{i}".encode()) for i in range(50)))
    assert not log.failed, log.failed[:3]
    got = consume_range(c.bootstrap(2), name, 0, 0, 50)
    assert [m.value for m in got] == [f"m{i}".encode() for i in range(50)]

    # The operator's certificate lists the cluster, and the topic with every replica in the ISR.
    for i in (1, 3):
        r = admin_cli(c.node(i).rpc, *pki["admin"].admin_args(), "cluster", "describe")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert sorted(d["voters"]) == [1, 2, 3]
    def isr_full():
        r = admin_cli(c.node(2).rpc, *pki["admin"].admin_args(), "topic", "describe", name)
        return r.returncode == 0 and sorted(isrs(json.loads(r.stdout))) == [[1, 2, 3]]
    wait_until(isr_full, 20, "ISR [1, 2, 3] through chronik-admin over TLS")

    refused = {
        "no certificate": [],
        "a foreign CA's certificate": pki["foreign-admin"].admin_args(),
        "a certificate not in --rpc-admin-allowed-names": pki["other-admin"].admin_args(),
    }
    for what, args in refused.items():
        r = admin_cli(c.node(1).rpc, *args, "cluster", "describe")
        assert r.returncode != 0 and not r.stdout.strip(), (what, r.stdout)
    r = admin_cli(c.node(1).rpc, *pki["other-admin"].admin_args(), "cluster", "describe")
    assert "PermissionDenied" in r.stderr or "rpc-admin-allowed-names" in r.stderr, r.stderr
    # Refusals are counted by RPC.
    status, body = http_get(c.node(1).http, "/metrics")
    denied = [l for l in body.splitlines() if l.startswith('chronik_rpc_denied_total{rpc="admin"}')]
    assert status == 200 and denied and float(denied[0].split()[-1]) >= 1, denied
    # A refused operator changed nothing: a seal from a disallowed name is refused too.
    r = admin_cli(c.node(1).rpc, *pki["other-admin"].admin_args(), "partition", "seal", "--topic", name, "--partition", "0")
    assert r.returncode != 0
    assert len(consume_range(c.bootstrap(3), name, 0, 0, 50)) == 50


def test_join_needs_a_node_certificate_from_the_cluster_ca(cluster_factory, pki):
    """A node whose certificate the cluster CA did not sign never becomes a member; one whose
    certificate it signed joins as a learner (--join over TLS)."""
    c = tls_cluster(cluster_factory, pki)
    base = c.node(1).workdir.parent
    intruder = JoiningNode(base / "node4", node_id=4, via=c.node(1).rpc, kafka_port=free_port(),
                           rpc_port=free_port(), args=pki["foreign-node-2"].server_args())
    intruder.launch()
    try:
        with pytest.raises(Exception):
            intruder.wait_ready(timeout_s=8)
    finally:
        intruder.cleanup()
    r = admin_cli(c.node(1).rpc, *pki["admin"].admin_args(), "cluster", "describe")
    d = json.loads(r.stdout)
    assert sorted(d["voters"]) == [1, 2, 3] and not d["learners"], d
    shutil.rmtree(intruder.workdir)
    c.join(4, via=2, args=pki["node-4"].server_args())
    r = admin_cli(c.node(3).rpc, *pki["admin"].admin_args(), "cluster", "describe")
    assert json.loads(r.stdout)["learners"] == [4], r.stdout


@pytest.mark.parametrize("addr", ["0.0.0.0", "[::]"])
def test_unauthenticated_rpc_on_a_non_loopback_address_needs_rpc_insecure(tmp_path, addr):
    port = free_port()
    cmd = [str(SERVER_BIN), "--node-id", "1", "--cluster", f"1@127.0.0.1:{port}", "--rpc-addr", f"{addr}:{port}",
           "--kafka-addr", "127.0.0.1:0", "--data-dir", str(tmp_path / "d")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=clean_env())
    assert r.returncode == 2, r.stderr[-2000:]
    assert "refusing to bind the unauthenticated RPC port" in r.stderr and "--rpc-insecure" in r.stderr, r.stderr


def test_loopback_without_tls_starts_with_a_warning(broker_factory):
    b = broker_factory(args=["--rpc-addr", f"127.0.0.1:{free_port()}"])
    wait_until(lambda: "RPC port (Raft, replication, admin API) is unauthenticated" in b.stderr_tail(200), 10,
               "the unauthenticated-RPC warning")


def test_rpc_insecure_allows_a_non_loopback_address(broker_factory):
    b = broker_factory(args=["--rpc-addr", f"0.0.0.0:{free_port()}", "--rpc-insecure"])
    assert b.rpc and b.rpc.startswith("0.0.0.0:")


def test_a_node_refuses_to_start_with_another_nodes_certificate(tmp_path, pki):
    port = free_port()
    for wrong in ("node-2", "admin"):
        cmd = [str(SERVER_BIN), "--node-id", "1", "--cluster", f"1@127.0.0.1:{port}", "--kafka-addr", "127.0.0.1:0",
               "--data-dir", str(tmp_path / "d"), *pki[wrong].server_args()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=clean_env())
        assert r.returncode == 2 and "its subject CN must be node-1" in r.stderr, (wrong, r.stderr[-2000:])
