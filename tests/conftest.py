"""Fixtures for the client-compatibility suite: a real chronik-server process per test (or module).

`Broker` starts `target/debug/chronik-server standalone` (or $CHRONIK_SERVER_BIN) on
`--kafka-addr 127.0.0.1:0` with a data dir under pytest's tmp_path, waits for the one ready
line on stdout (`chronik-server ready kafka=HOST:PORT node_id=N cluster_id=ID`) with a deadline,
and exposes the address it printed as `bootstrap`. Everything it starts is killed at fixture
teardown, at interpreter exit, and (through PR_SET_PDEATHSIG) if pytest itself dies.

On a test failure, the tail of the stderr log of every broker the test used is attached to the
report.

`pytest --broker=kafka` runs the same tests against Apache Kafka 4.4.0 (tests/reference/kafka.py,
jars from `make deps`): `broker`, `module_broker`, `broker_factory` and `cluster_factory` then
give Kafka nodes with the same `bootstrap`, start/kill/restart methods, Chronik flags become the
Kafka properties they are named after (tests/reference/flags.py), and tests marked
`chronik_only("reason")` are skipped.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from reference import flags as kafka_flags  # noqa: E402
from procs import Stoppable  # noqa: E402
from reference.kafka import KafkaCluster, KafkaNode  # noqa: E402

# "chronik" or "kafka", from --broker (set in pytest_configure).
BROKER_KIND = "chronik"


def kafka_mode() -> bool:
    """True when the suite runs against Apache Kafka (`--broker=kafka`)."""
    return BROKER_KIND == "kafka"
SERVER_BIN = Path(os.environ.get("CHRONIK_SERVER_BIN", REPO_ROOT / "target" / "debug" / "chronik-server"))

READY_RE = re.compile(
    r"^chronik-server ready kafka=(?P<host>[^\s:]+|\[[^\]]+\]):(?P<port>\d+) node_id=(?P<node_id>\d+) cluster_id=(?P<cluster_id>\S+)(?: rpc=(?P<rpc>\S+))?(?: http=(?P<http>\S+))?(?: listeners=(?P<listeners>\S+))?$"
)

ANSI_ESCAPE_RE = re.compile(r"\x1b\[[0-9;]*m")

# How long a broker may take from exec to its ready line (debug build, busy 2-core machine).
READY_TIMEOUT_S = 30.0
# How long a graceful shutdown may take after SIGTERM/SIGINT.
SHUTDOWN_TIMEOUT_S = 20.0


def clean_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment minus any CHRONIK_* variable, plus `overrides`.

    A developer's shell exporting CHRONIK_FSYNC must not change what a test measures.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONIK_")}
    env.setdefault("RUST_BACKTRACE", "1")
    # Each broker's HTTP endpoint on a port the OS picks (its ready line names it), so brokers
    # never collide on the default 127.0.0.1:9644.
    env["CHRONIK_HTTP_ADDR"] = "127.0.0.1:0"
    env.update(overrides or {})
    return env


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL the broker if the pytest process dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class BrokerError(AssertionError):
    pass


class Broker(Stoppable):
    """One chronik-server process over the lifetime of one data dir (it may be restarted)."""

    error = BrokerError
    shutdown_timeout_s = SHUTDOWN_TIMEOUT_S

    _all: list["Broker"] = []

    def __init__(self, workdir: Path, *, name: str = "broker", args: list[str] | None = None,
                 env: dict[str, str] | None = None, data_dir: Path | None = None, data_dir_flag: bool = True):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        # False: no --data-dir flag, so the broker takes it from CHRONIK_DATA_DIR, --config or its default.
        self.data_dir_flag = data_dir_flag
        self.args = list(args or [])
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.host: str | None = None
        self.port: int | None = None
        self.node_id: int | None = None
        self.cluster_id: str | None = None
        self.rpc: str | None = None  # the RPC listener (admin API), when it has one
        self.http: str | None = None  # the HTTP endpoint (metrics, health), when it has one
        # Listener name -> bound HOST:PORT (the ready line lists them when there are several).
        self.listeners: dict[str, str] = {}
        self.ready_line: str | None = None
        self.stdout_path: Path | None = None
        self.stderr_path: Path | None = None
        self.started_by_test: str | None = None
        Broker._all.append(self)

    # ------------------------------------------------------------------ lifecycle
    @property
    def bootstrap(self) -> str:
        assert self.port is not None, "broker not started"
        return f"{self.host}:{self.port}"

    def command(self, kafka_addr: str | None) -> list[str]:
        cmd = [str(SERVER_BIN), "standalone"]
        if self.data_dir_flag:
            cmd += ["--data-dir", str(self.data_dir)]
        if kafka_addr is not None:
            cmd += ["--kafka-addr", kafka_addr]
        return cmd + self.args

    def start(self, kafka_addr: str | None = "127.0.0.1:0", timeout_s: float = READY_TIMEOUT_S) -> "Broker":
        """Start and wait for the ready line. kafka_addr=None passes no --kafka-addr flag."""
        self.launch(kafka_addr)
        self._wait_ready(timeout_s)
        return self

    def launch(self, kafka_addr: str | None = "127.0.0.1:0") -> "Broker":
        """Start the process without waiting for its ready line (see `wait_ready`)."""
        assert not self.alive(), "broker already running"
        if not SERVER_BIN.exists():
            raise BrokerError(f"{SERVER_BIN} does not exist: run `cargo build --bin chronik-server` "
                              "or set CHRONIK_SERVER_BIN")
        self.starts += 1
        self.started_by_test = os.environ.get("PYTEST_CURRENT_TEST")
        self.stdout_path = self.workdir / f"{self.name}.{self.starts}.stdout"
        self.stderr_path = self.workdir / f"{self.name}.{self.starts}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.command(kafka_addr), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=clean_env(self.env), cwd=self.workdir, preexec_fn=_die_with_parent,
            )
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> "Broker":
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.stdout_path.read_text(errors="replace")
            for line in text.splitlines():
                m = READY_RE.match(line.strip())
                if m:
                    self.ready_line = line.strip()
                    self.host = m["host"]
                    self.port = int(m["port"])
                    self.node_id = int(m["node_id"])
                    self.cluster_id = m["cluster_id"]
                    self.rpc = m["rpc"]
                    self.http = m["http"]
                    self.listeners = dict(e.split("://", 1) for e in m["listeners"].split(",")) \
                        if m["listeners"] else {}
                    if self.port == 0:
                        raise BrokerError(f"ready line reports port 0: {line!r}")
                    return
            code = self.proc.poll()
            if code is not None:
                raise BrokerError(f"{self.name} exited with code {code} before its ready line; "
                                  f"stdout={text!r}\nstderr tail:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(f"{self.name} printed no ready line within {timeout_s}s; stdout={text!r}\n"
                                  f"stderr tail:\n{self.stderr_tail()}")
            time.sleep(0.02)

    def restart(self, *, same_port: bool = False, timeout_s: float = READY_TIMEOUT_S) -> "Broker":
        """Start again on the same data dir. A running broker is first stopped with SIGTERM.

        same_port=True binds the port of the previous run, so clients that are still running
        reconnect to the restarted broker on their own.
        """
        if self.alive():
            self.terminate()
        addr = f"127.0.0.1:{self.port}" if same_port and self.port else "127.0.0.1:0"
        return self.start(kafka_addr=addr, timeout_s=timeout_s)

    # ------------------------------------------------------------------ diagnostics
    def stderr_tail(self, lines: int = 60, max_bytes: int = 64 * 1024) -> str:
        if not self.stderr_path or not self.stderr_path.exists():
            return "(no stderr file)"
        with open(self.stderr_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode(errors="replace")
        data = ANSI_ESCAPE_RE.sub("", data)
        return "\n".join(data.splitlines()[-lines:]) or "(empty)"

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited({self.proc and self.proc.returncode})"
        return f"<Broker {self.name} {self.bootstrap if self.port else '-'} {state} data={self.data_dir}>"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+ here), so no outgoing
    connection takes it while a node that owns it is down for a restart. Never one handed out
    before in this session: a cluster's ports are picked before any node binds them, so two
    random picks could otherwise collide (it happened: '2@...:21637' listed twice)."""
    import random
    import socket
    if len(_HANDED_OUT) > 8000:
        _HANDED_OUT.clear()
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port in 20000-32000")


class ClusterNode(Broker):
    """One node of a multi-node cluster: `chronik-server --node-id N --cluster ...` with fixed
    Kafka and RPC ports, so restarts keep the addresses its peers and clients know."""

    def __init__(self, workdir: Path, *, node_id: int, peers: str, kafka_port: int,
                 listener: str = "PLAINTEXT", **kw):
        super().__init__(workdir, name=f"node{node_id}", **kw)
        self.cluster_node_id = node_id
        self.peers = peers
        self.kafka_port = kafka_port
        self.listener = listener

    def kafka_flags(self) -> list[str]:
        """The one Kafka listener, on the fixed port: PLAINTEXT by --kafka-addr, others by
        --listeners (e.g. SASL_PLAINTEXT)."""
        if self.listener == "PLAINTEXT":
            return ["--kafka-addr", f"127.0.0.1:{self.kafka_port}"]
        return ["--listeners", f"{self.listener}://127.0.0.1:{self.kafka_port}"]

    def command(self, kafka_addr: str | None) -> list[str]:
        return [str(SERVER_BIN), "--node-id", str(self.cluster_node_id), "--cluster", self.peers,
                "--data-dir", str(self.data_dir), *self.kafka_flags(), *self.args]

    def launch(self, kafka_addr: str | None = None) -> "Broker":
        return super().launch(None)

    def start(self, kafka_addr: str | None = None, timeout_s: float = READY_TIMEOUT_S) -> "Broker":
        return super().start(None, timeout_s)


class JoiningNode(ClusterNode):
    """A node started with `--join` (not in the original peer list): it asks a member to add it
    as a learner. Fixed Kafka and RPC ports, like any cluster node."""

    def __init__(self, workdir: Path, *, node_id: int, via: str, kafka_port: int, rpc_port: int, **kw):
        super().__init__(workdir, node_id=node_id, peers="", kafka_port=kafka_port, **kw)
        self.via = via
        self.rpc_port = rpc_port

    def command(self, kafka_addr: str | None) -> list[str]:
        return [str(SERVER_BIN), "--node-id", str(self.cluster_node_id), "--join", self.via,
                "--rpc-addr", f"127.0.0.1:{self.rpc_port}", "--data-dir", str(self.data_dir),
                *self.kafka_flags(), *self.args]


class Cluster:
    """N nodes formed from one peer list. `start()` launches them all at once and waits for
    every ready line."""

    def __init__(self, base: Path, n: int, args: list[str] | None = None, listener: str = "PLAINTEXT"):
        rpc = {i: free_port() for i in range(1, n + 1)}
        self.peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in rpc.items())
        self.nodes = {i: ClusterNode(base / f"node{i}", node_id=i, peers=self.peers,
                                     kafka_port=free_port(), args=args, listener=listener)
                      for i in rpc}

    def start(self, timeout_s: float = READY_TIMEOUT_S * 2) -> "Cluster":
        for n in self.nodes.values():
            n.launch()
        for n in self.nodes.values():
            n.wait_ready(timeout_s)
        return self

    def join(self, node_id: int, via: int = 1, args: list[str] | None = None) -> JoiningNode:
        """Starts node `node_id` with --join through node `via`'s RPC address, and adds it."""
        base = self.node(via).workdir.parent
        n = JoiningNode(base / f"node{node_id}", node_id=node_id, via=self.node(via).rpc,
                        kafka_port=free_port(), rpc_port=free_port(), args=args)
        self.nodes[node_id] = n
        n.start()
        return n

    def node(self, i: int) -> ClusterNode:
        return self.nodes[i]

    def bootstrap(self, *ids: int) -> str:
        return ",".join(self.nodes[i].bootstrap if self.nodes[i].port else
                        f"127.0.0.1:{self.nodes[i].kafka_port}" for i in (ids or self.nodes))

    def alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.alive()]

    def cleanup(self) -> None:
        for n in self.nodes.values():
            n.cleanup()


@pytest.fixture
def cluster_factory(tmp_path):
    """Call it to make an unstarted cluster of n nodes: cluster_factory(3, args=[...])."""
    made: list[Cluster] = []

    def make(n: int = 3, args: list[str] | None = None, listener: str = "PLAINTEXT") -> Cluster:
        if kafka_mode():
            c = KafkaCluster(tmp_path / f"kraft{len(made)}", n, properties=_kafka_properties(args, None))
        else:
            c = Cluster(tmp_path / f"cluster{len(made)}", n, args, listener)
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()


@atexit.register
def _kill_all_brokers() -> None:
    for b in [*Broker._all, *KafkaNode._all]:
        try:
            b.cleanup()
        except Exception:
            pass


# ---------------------------------------------------------------------- fixtures
def _kafka_properties(args: list[str] | None, env: dict[str, str] | None) -> dict[str, str]:
    try:
        return kafka_flags.kafka_properties(args, env)
    except kafka_flags.ChronikOnlyFlag as e:
        pytest.fail(f"--broker=kafka: {e}", pytrace=False)


class BrokerFactory:
    def __init__(self, base: Path):
        self.base = base
        self.brokers: list[Broker] = []

    def __call__(self, *, name: str | None = None, args: list[str] | None = None,
                 env: dict[str, str] | None = None, start: bool = True, **kw) -> Broker:
        name = name or f"broker{len(self.brokers)}"
        if kafka_mode():
            b = KafkaNode(self.base / name, name=name, properties=_kafka_properties(args, env))
        else:
            b = Broker(self.base / name, name=name, args=args, env=env, **kw)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def cleanup(self) -> None:
        for b in self.brokers:
            b.cleanup()


@pytest.fixture
def broker_factory(tmp_path):
    """Call it to start a broker with its own data dir: broker_factory(args=[...], env={...})."""
    f = BrokerFactory(tmp_path)
    yield f
    f.cleanup()


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A fresh standalone broker with default settings and its own data dir."""
    return broker_factory(name="broker")


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory) -> Broker:
    """One broker shared by a module whose tests use distinct topic names."""
    f = BrokerFactory(tmp_path_factory.mktemp("module-broker"))
    b = f(name="shared")
    yield b
    f.cleanup()


# ---------------------------------------------------------------------- broker selection
def pytest_addoption(parser):
    parser.addoption("--broker", choices=("chronik", "kafka"), default="chronik",
                     help="the broker the fixtures start: chronik (default) or Apache Kafka 4.4.0 "
                          "from tests/reference (`make deps`); kafka skips tests marked chronik_only")


def pytest_configure(config):
    global BROKER_KIND
    BROKER_KIND = config.getoption("--broker")


def pytest_collection_modifyitems(config, items):
    if not kafka_mode():
        return
    for item in items:
        m = item.get_closest_marker("chronik_only")
        if m is not None:
            reason = m.args[0] if m.args else m.kwargs.get("reason", "about Chronik alone")
            item.add_marker(pytest.mark.skip(reason=f"chronik_only: {reason}"))


def pytest_report_header(config):
    return f"broker: {config.getoption('--broker')}"


@pytest.fixture
def broker_kind() -> str:
    """"chronik" or "kafka": for a test whose expectation is stricter on Chronik than what Kafka
    guarantees (a Chronik-only property, asserted only there)."""
    return BROKER_KIND


# ---------------------------------------------------------------------- failure reports
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if not rep.failed:
        return rep
    for b in Broker._all:
        used_here = (b.started_by_test or "").split(" ")[0] == item.nodeid
        if not (used_here or b.alive()):
            continue
        state = "running" if b.alive() else f"exit code {b.proc.returncode if b.proc else None}"
        rep.sections.append((f"chronik-server {b.name} ({state}) stderr tail: {b.stderr_path}", b.stderr_tail()))
    for k in KafkaNode._all:
        if k.alive():
            rep.sections.append((f"kafka {k.name} log tail: {k.stdout_path}", k.stderr_tail(30)))
    return rep
