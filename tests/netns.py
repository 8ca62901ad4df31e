"""A cluster whose nodes each live in their own network namespace, for network-fault tests.

Layout (all made here, all removed by `cleanup()`):

    root namespace (pytest, clients)  10.77.S.254 ── veth ──┐
                                                             br0 in namespace {p}sw
    namespace {p}n1: eth0 10.77.S.1 ──────────── veth ──────┤
    namespace {p}n2: eth0 10.77.S.2 ──────────── veth ──────┤
    ...

S is a subnet number chosen per cluster (free among the namespaces that exist), so two test
processes never share addresses. Every node binds Kafka on 10.77.S.i:9092, RPC on :7000 and
HTTP on :9644 inside its own namespace, so ports never collide and restarts keep addresses.

Faults are iptables rules inside a node's namespace (nothing outside it is touched):
`partition(a, b)` drops traffic between nodes a and b both ways, `isolate(a)` from every other
node (the client keeps reaching it unless `clients=True`), `heal()` removes every rule.

Needs root, iproute2 and iptables (`make deps` installs iptables). `available()` says whether
this machine can run it; tests skip with the reason otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SERVER_BIN, ClusterNode, kafka_mode

KAFKA_PORT = 9092
RPC_PORT = 7000
HTTP_PORT = 9644


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def available() -> str | None:
    """None when namespaces and iptables work here; otherwise why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make deps installs it)"
    return None


def _existing_namespaces() -> set[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class NetnsNode(ClusterNode):
    """A cluster node run inside namespace `ns`, bound to `ip`."""

    def __init__(self, workdir: Path, *, ns: str, ip: str, **kw):
        super().__init__(workdir, **kw)
        self.ns = ns
        self.ip = ip
        self.env.setdefault("CHRONIK_HTTP_ADDR", f"{ip}:{HTTP_PORT}")

    def command(self, kafka_addr: str | None) -> list[str]:
        return ["ip", "netns", "exec", self.ns, str(SERVER_BIN), "--node-id", str(self.cluster_node_id),
                "--cluster", self.peers, "--data-dir", str(self.data_dir),
                "--kafka-addr", f"{self.ip}:{KAFKA_PORT}",
                # The RPC port binds the namespace's address without TLS: tests only.
                "--rpc-insecure", *self.args]

    def launch(self, kafka_addr: str | None = None):
        # clean_env would put HTTP on 127.0.0.1:0 inside the namespace, out of the test's reach.
        self.env["CHRONIK_HTTP_ADDR"] = f"{self.ip}:{HTTP_PORT}"
        return super().launch(None)

    @property
    def http_url(self) -> str:
        return f"http://{self.ip}:{HTTP_PORT}"


class NetnsCluster:
    """N chronik-server nodes, one per namespace, on one bridge."""

    def __init__(self, base: Path, n: int = 3, args: list[str] | None = None):
        self.n = n
        used = _existing_namespaces()
        choices = [s for s in range(1, 250) if f"chk{s}sw" not in used]
        self.subnet = random.choice(choices)
        self.prefix = f"chk{self.subnet}"
        self.sw = f"{self.prefix}sw"
        self.host_ip = f"10.77.{self.subnet}.254"
        self.ips = {i: f"10.77.{self.subnet}.{i}" for i in range(1, n + 1)}
        self._made_net = False
        self._build_network()
        self.peers = ",".join(f"{i}@{ip}:{RPC_PORT}" for i, ip in self.ips.items())
        self.nodes = {i: NetnsNode(base / f"node{i}", ns=self.ns(i), ip=ip, node_id=i, peers=self.peers,
                                   kafka_port=KAFKA_PORT, args=args)
                      for i, ip in self.ips.items()}

    # ------------------------------------------------------------------ network
    def ns(self, i: int) -> str:
        return f"{self.prefix}n{i}"

    def _build_network(self) -> None:
        self._made_net = True
        try:
            _run("ip", "netns", "add", self.sw)
            _run("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.sw, "link", "set", "br0", "up")
            # The host's leg: a veth from the root namespace into the bridge.
            host_if = f"{self.prefix}h"
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "vh", "netns", self.sw)
            _run("ip", "-n", self.sw, "link", "set", "vh", "master", "br0")
            _run("ip", "-n", self.sw, "link", "set", "vh", "up")
            _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            for i, ip in self.ips.items():
                ns = self.ns(i)
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", self.sw, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0",
                     "netns", ns)
                _run("ip", "-n", self.sw, "link", "set", f"v{i}", "master", "br0")
                _run("ip", "-n", self.sw, "link", "set", f"v{i}", "up")
                _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
        except Exception:
            self._teardown_network()
            raise

    def _teardown_network(self) -> None:
        if not self._made_net:
            return
        self._made_net = False
        _run("ip", "link", "del", f"{self.prefix}h", check=False)
        for i in self.ips:
            _run("ip", "netns", "del", self.ns(i), check=False)
        _run("ip", "netns", "del", self.sw, check=False)

    def _iptables(self, i: int, *rule: str) -> None:
        _run("ip", "netns", "exec", self.ns(i), "iptables", "-w", *rule)

    def _drop_between(self, a: int, b: int) -> None:
        self._iptables(a, "-A", "INPUT", "-s", self.ips[b], "-j", "DROP")
        self._iptables(a, "-A", "OUTPUT", "-d", self.ips[b], "-j", "DROP")

    def partition(self, a: int, b: int) -> None:
        """Black-hole all traffic between nodes a and b (both directions, both namespaces)."""
        self._drop_between(a, b)
        self._drop_between(b, a)

    def isolate(self, a: int, clients: bool = False) -> None:
        """Cut node a from every other node (and from the test's clients when clients=True)."""
        for b in self.ips:
            if b != a:
                self.partition(a, b)
        if clients:
            self._drop_between_host(a)

    def _drop_between_host(self, a: int) -> None:
        self._iptables(a, "-A", "INPUT", "-s", self.host_ip, "-j", "DROP")
        self._iptables(a, "-A", "OUTPUT", "-d", self.host_ip, "-j", "DROP")

    def split(self, side: list[int]) -> None:
        """Partition the nodes in `side` from all the others."""
        for a in side:
            for b in self.ips:
                if b not in side:
                    self.partition(a, b)

    def heal(self) -> None:
        for i in self.ips:
            self._iptables(i, "-F", "INPUT")
            self._iptables(i, "-F", "OUTPUT")

    # ------------------------------------------------------------------ processes
    def start(self, timeout_s: float = 60.0) -> "NetnsCluster":
        for n in self.nodes.values():
            n.launch()
        for n in self.nodes.values():
            n.wait_ready(timeout_s)
        return self

    def node(self, i: int) -> NetnsNode:
        return self.nodes[i]

    def bootstrap(self, *ids: int) -> str:
        return ",".join(f"{self.ips[i]}:{KAFKA_PORT}" for i in (ids or self.ips))

    def cleanup(self) -> None:
        for n in self.nodes.values():
            n.cleanup()
        self._teardown_network()



@pytest.fixture
def netns_cluster_factory(tmp_path):
    """Call it to make an unstarted namespaced cluster: netns_cluster_factory(3, args=[...]).
    Skips the test when this machine cannot make namespaces; removes every namespace after."""
    why = available()
    if why:
        pytest.skip(why)
    if kafka_mode():
        # It starts chronik-server nodes: under --broker=kafka the test would not test Kafka.
        pytest.skip("network-namespace clusters start Chronik nodes only; no Apache Kafka variant yet")
    made: list[NetnsCluster] = []

    def make(n: int = 3, args: list[str] | None = None) -> NetnsCluster:
        c = NetnsCluster(tmp_path / f"netns{len(made)}", n, args)
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()
