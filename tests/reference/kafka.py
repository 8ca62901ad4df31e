"""The reference broker: Apache Kafka 4.4.0 in KRaft mode, from the jars `make deps` put in
tests/reference/lib (resolved by Maven from tests/reference/pom.xml).

From pytest (tests/conftest.py, `--broker=kafka`):

    node = KafkaNode(tmp_path / "kafka").start()      # one combined broker+controller
    node.bootstrap                                     # "127.0.0.1:PORT", a port the OS picked
    cluster = KafkaCluster(tmp_path / "kraft", 3).start()  # three combined nodes, one quorum
    cluster.bootstrap()

From the shell (the processes outlive the command; `stop` ends exactly the ones `start` recorded):

    python3 tests/reference/kafka.py start [--nodes 3] [--dir DIR] [--set key=value ...]
    python3 tests/reference/kafka.py stop --dir DIR

Each node gets a fresh data directory, formatted with kafka.tools.StorageTool, a client listener
on port 0 (the OS picks; the bound port is read back from the process's listening sockets) and a
controller listener on a port the OS picked just before (the quorum's voter list must name it
before the process starts). `start` returns once Metadata answers with every broker of the
cluster registered.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/kafkawire.py

import kafkawire  # noqa: E402
from procs import Stoppable  # noqa: E402

LIB = Path(os.environ.get("KAFKA_REFERENCE_LIB", HERE / "lib"))
LOG4J_CONFIG = HERE / "log4j2.properties"
JAVA = os.environ.get("JAVA", "java")
# A bounded heap for the shared 2-core machine, the serial collector (no GC threads competing
# with the broker under test) and the client JIT only (C1): tests are short, so compiling for
# peak speed costs more CPU than it saves. Measured at load 19 on 2 cores: start to Metadata
# 9-10 s with C1 only, 17 s with both compilers. KAFKA_REFERENCE_JVM_OPTS replaces the list.
JVM_OPTS = os.environ.get("KAFKA_REFERENCE_JVM_OPTS",
                          "-Xms256m -Xmx768m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "
                          "-Djava.awt.headless=true").split()
# Class-data sharing archive of the classes a broker loads, made by `kafka.py cds` (`make deps`):
# start to Metadata 3-6 s instead of 9-10 s. Without it (or if this JVM cannot map it) the JVM
# just loads classes from the jars.
CDS_ARCHIVE = LIB / "kafka.jsa"
# From exec to Metadata answering with every broker: 5-15 s measured on an idle 2-core machine;
# a loaded one (a Rust build beside it) takes longer.
READY_TIMEOUT_S = 90.0
# Kafka's controlled shutdown of a combined node.
SHUTDOWN_TIMEOUT_S = 30.0

# Kafka's documented settings for a node on one host (config/server.properties of the
# distribution), plus two timings shortened for tests (below).
BASE_PROPERTIES = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "group.initial.rebalance.delay.ms": "0",
    # Preferred leaders come back within a second instead of Kafka's 300 s check interval:
    # Chronik gives leadership back as soon as the preferred replica is in the ISR again.
    "leader.imbalance.check.interval.seconds": "1",
}
# Replication factors of the internal topics; on a single node they must be 1.
SINGLE_NODE_PROPERTIES = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
}


class KafkaError(AssertionError):
    pass


def random_cluster_id() -> str:
    """What `kafka-storage.sh random-uuid` prints (a Kafka Uuid in URL-safe base64, no padding),
    without starting a JVM for it. Kafka rejects ids that start with '-'."""
    while True:
        raw = os.urandom(16)
        text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        if not text.startswith("-") and raw not in (bytes(16), bytes(15) + b"\x01"):
            return text


def os_picked_port() -> int:
    """A port the OS picks for a listener that must be named before its process starts
    (the controller listener: the voter list of every node names it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_lib() -> None:
    if not list(LIB.glob("kafka_2.13-*.jar")):
        raise KafkaError(f"{LIB} has no resolved Apache Kafka jars: run `make deps`")


def _die_with_parent() -> None:
    """Runs in the child before exec (pytest mode): SIGKILL the JVM if the test process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def listening_ports(pid: int) -> set[int]:
    """TCP ports process `pid` listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and f[9] in inodes:  # 0A = TCP_LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def coordinators_ready(bootstrap: str, timeout_s: float = 5.0) -> str | None:
    """None once the group coordinator (FindCoordinator v0) and the producer id manager
    (InitProducerId v0) answer without error, else what they answered. Kafka creates
    __consumer_offsets on the first FindCoordinator and answers COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS until it is loaded; tests start on a broker
    whose coordinators work, as they do on Chronik once it printed its ready line."""
    with kafkawire.Connection(bootstrap, timeout_s=timeout_s) as c:
        r = kafkawire.Reader(c.roundtrip(kafkawire.request(10, 0, 7, kafkawire.string("reference-warmup"))))
        r.i32()  # correlation id
        err = r.i16()
        if err != 0:
            return f"FindCoordinator error {err}"
        _, err, _, _ = kafkawire.parse_init_producer_id_response_v0(
            c.roundtrip(kafkawire.init_producer_id_request_v0(8)))
        return f"InitProducerId error {err}" if err != 0 else None


def quorum_leader(bootstrap: str, timeout_s: float = 5.0) -> int | None:
    """The KRaft quorum's leader (the active controller) by DescribeQuorum v0, which a broker
    forwards to the controllers; None while there is none or on any error."""
    body = (kafkawire.uvarint(2) + kafkawire.compact_string("__cluster_metadata")
            + kafkawire.uvarint(2) + kafkawire.i32(0) + kafkawire.EMPTY_TAGS  # partition 0
            + kafkawire.EMPTY_TAGS + kafkawire.EMPTY_TAGS)
    try:
        with kafkawire.Connection(bootstrap, timeout_s=timeout_s) as c:
            r = kafkawire.Reader(c.roundtrip(kafkawire.request(55, 0, 3, body, flexible=True)))
        r.i32()  # correlation id
        r.skip_tags()
        if r.i16() != 0 or r.uvarint() < 2:
            return None
        r.compact_string()
        r.uvarint()  # partitions
        r.i32()  # partition index
        if r.i16() != 0:
            return None
        leader = r.i32()
        return leader if leader >= 0 else None
    except (OSError, kafkawire.Closed, TimeoutError, ValueError, IndexError):
        return None


def metadata_brokers(bootstrap: str, timeout_s: float = 5.0) -> list[tuple[int, str, int]]:
    with kafkawire.Connection(bootstrap, timeout_s=timeout_s) as c:
        return kafkawire.parse_metadata_response_v1(c.roundtrip(kafkawire.metadata_request_v1(1, []))).brokers


class KafkaNode(Stoppable):
    """One Apache Kafka process (combined broker+controller) over the lifetime of one data dir.

    It exposes what tests use of conftest.Broker: bootstrap, host, port, pid, data_dir, alive(),
    start(), kill(), terminate(), restart(), cleanup(), stderr_tail(), rss_bytes().
    """

    error = KafkaError
    # The JVM exits 143 (128+SIGTERM) after Kafka's controlled shutdown ran: a clean exit.
    clean_exits = (0, 143)
    shutdown_timeout_s = SHUTDOWN_TIMEOUT_S
    _all: list["KafkaNode"] = []

    def __init__(self, workdir: Path, *, node_id: int = 1, name: str | None = None,
                 voters: str | None = None, controller_port: int | None = None,
                 cluster_id: str | None = None, properties: dict[str, str] | None = None,
                 detach: bool = False, keep_port: bool = False):
        self.name = name or f"kafka{node_id}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.node_id = node_id
        self.cluster_node_id = node_id  # as conftest.ClusterNode names it
        self.controller_port = controller_port or os_picked_port()
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.cluster_id = cluster_id or random_cluster_id()
        single = "," not in self.voters
        self.properties = {**BASE_PROPERTIES, **(SINGLE_NODE_PROPERTIES if single else {}),
                           **(properties or {})}
        self.detach = detach  # shell mode: the JVM outlives this Python process
        # A cluster node restarts on the client port it had (as conftest.ClusterNode): clients
        # and tests keep the bootstrap they know.
        self.keep_port = keep_port
        self.proc: subprocess.Popen | None = None
        self._pid: int | None = None  # shell `stop` knows only the pid
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.starts = 0
        self.formatted = False
        self.ready_line: str | None = None  # set once Metadata answered (conftest.Broker's name)
        self.stdout_path = self.workdir / "kafka.stdout"
        self.stderr_path = self.stdout_path  # one log: Kafka writes its log4j output to stdout
        KafkaNode._all.append(self)

    # ------------------------------------------------------------------ config
    @property
    def bootstrap(self) -> str:
        assert self.port is not None, "kafka not started"
        return f"{self.host}:{self.port}"

    @property
    def kafka_port(self) -> int | None:
        """The client port (conftest.ClusterNode's name for it)."""
        return self.port

    @property
    def pid(self) -> int:
        assert self.proc is not None or self._pid is not None
        return self.proc.pid if self.proc is not None else self._pid

    def config_path(self) -> Path:
        return self.workdir / "server.properties"

    def write_config(self, client_port: int) -> Path:
        props = {
            **self.properties,
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{client_port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data_dir),
        }
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        self.config_path().write_text(text)
        return self.config_path()

    def java(self, main: str, *args: str, cds_dump: Path | None = None) -> list[str]:
        if cds_dump is not None:
            cds = [f"-XX:ArchiveClassesAtExit={cds_dump}"]
        elif CDS_ARCHIVE.exists():
            cds = [f"-XX:SharedArchiveFile={CDS_ARCHIVE}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        else:
            cds = []
        return [JAVA, *JVM_OPTS, *cds, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp", f"{LIB}/*", main, *args]

    def format(self) -> subprocess.Popen:
        """Starts kafka.tools.StorageTool format on this node's data dir (returns the process:
        the nodes of a cluster format in parallel)."""
        check_lib()
        self.write_config(0)
        log = open(self.workdir / "format.log", "wb")
        return subprocess.Popen(self.java("kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                                          "-c", str(self.config_path())),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def wait_formatted(self, proc: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> None:
        code = proc.wait(timeout=timeout_s)
        if code != 0:
            tail = "\n".join((self.workdir / "format.log").read_text(errors="replace").splitlines()[-12:])
            raise KafkaError(f"{self.name}: StorageTool format exited {code}:\n{tail}")
        self.formatted = True

    # ------------------------------------------------------------------ lifecycle
    def launch(self, client_port: int = 0, cds_dump: Path | None = None) -> "KafkaNode":
        """Starts the JVM (formatting first on the first start) without waiting for it."""
        assert not self.alive(), f"{self.name} already running"
        if not self.formatted:
            self.wait_formatted(self.format())
        if client_port == 0 and self.keep_port and self.port:
            client_port = self.port
        self.write_config(client_port)
        self.starts += 1
        self.ready_line = None
        self.port = client_port or None
        with open(self.stdout_path, "ab") as out:
            out.write(f"---- start {self.starts}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.java("kafka.Kafka", str(self.config_path()), cds_dump=cds_dump), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                start_new_session=self.detach, preexec_fn=None if self.detach else _die_with_parent)
        return self

    def wait_listening(self, deadline: float) -> None:
        """Until the client listener is bound (its port read back when it was 0)."""
        while True:
            if not self.alive():
                raise KafkaError(f"{self.name} exited with {self.proc.returncode} while starting:\n"
                                 f"{self.stderr_tail()}")
            ports = listening_ports(self.pid) - {self.controller_port}
            if self.port in ports or (self.port is None and len(ports) == 1):
                self.port = self.port or ports.pop()
                return
            if time.monotonic() > deadline:
                self.kill()
                raise KafkaError(f"{self.name}: no client listener within the deadline:\n{self.stderr_tail()}")
            time.sleep(0.1)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S, brokers: int = 1,
                   coordinators: bool | None = None) -> "KafkaNode":
        """Until Metadata on this node answers, listing this node and at least `brokers` brokers
        (Metadata lists the registered, unfenced ones), and (coordinators=True, the default for a
        standalone node) the group coordinator and producer ids work (coordinators_ready). A
        node of a cluster does not wait for them: with peers down, __consumer_offsets cannot be
        created at its replication factor (KafkaCluster.start waits for them once)."""
        if coordinators is None:
            coordinators = not self.keep_port
        deadline = time.monotonic() + timeout_s
        self.wait_listening(deadline)
        last = None
        while True:
            try:
                got = metadata_brokers(self.bootstrap)
                if len(got) >= brokers and self.node_id in [b[0] for b in got]:
                    last = coordinators_ready(self.bootstrap) if coordinators else None
                    if last is None:
                        self.ready_line = f"kafka ready {self.bootstrap} brokers={got}"
                        return self
                else:
                    last = f"brokers registered: {got}"
            except (OSError, kafkawire.Closed, TimeoutError, ValueError) as e:
                last = repr(e)
            if not self.alive():
                raise KafkaError(f"{self.name} exited with {self.proc.returncode}:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise KafkaError(f"{self.name}: Metadata did not answer within {timeout_s}s ({last}):\n"
                                 f"{self.stderr_tail()}")
            time.sleep(0.2)

    def start(self, client_port: int = 0, timeout_s: float = READY_TIMEOUT_S, brokers: int = 1) -> "KafkaNode":
        self.launch(client_port)
        return self.wait_ready(timeout_s, brokers)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self._pid is not None:
            try:
                os.kill(self._pid, 0)
                return True
            except OSError:
                return False
        return False

    def kill(self) -> int | None:
        """SIGKILL: no controlled shutdown. A detached node (started from the shell) has no
        Popen here, only its pid."""
        if self.proc is None and self._pid is not None and self.alive():
            os.kill(self._pid, signal.SIGKILL)
            return None
        return super().kill()

    def restart(self, *, same_port: bool = False, timeout_s: float = READY_TIMEOUT_S) -> "KafkaNode":
        if self.alive():
            self.terminate()
        return self.start(self.port if same_port and self.port else 0, timeout_s)

    def cleanup(self) -> None:
        if self.alive():
            self.kill()

    # ------------------------------------------------------------------ diagnostics
    def stderr_tail(self, lines: int = 60, max_bytes: int = 64 * 1024) -> str:
        if not self.stdout_path.exists():
            return "(no log file)"
        with open(self.stdout_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            data = f.read().decode(errors="replace")
        return "\n".join(data.splitlines()[-lines:]) or "(empty)"

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<KafkaNode {self.name} {self.bootstrap if self.port else '-'} {state} data={self.data_dir}>"


class KafkaCluster:
    """n combined broker+controller nodes on one host forming one KRaft quorum (static voters)."""

    def __init__(self, base: Path, n: int = 3, properties: dict[str, str] | None = None,
                 detach: bool = False):
        self.base = Path(base)
        cports = {i: os_picked_port() for i in range(1, n + 1)}
        self.voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in cports.items())
        self.cluster_id = random_cluster_id()
        self.nodes = {i: KafkaNode(self.base / f"node{i}", node_id=i, name=f"kafka{i}", voters=self.voters,
                                   controller_port=p, cluster_id=self.cluster_id, properties=properties,
                                   detach=detach, keep_port=True)
                      for i, p in cports.items()}

    def start(self, timeout_s: float = READY_TIMEOUT_S * 2) -> "KafkaCluster":
        formats = {i: n.format() for i, n in self.nodes.items() if not n.formatted}
        for i, p in formats.items():
            self.nodes[i].wait_formatted(p, timeout_s)
        for n in self.nodes.values():
            n.launch()
        for n in self.nodes.values():
            n.wait_ready(timeout_s, brokers=len(self.nodes))
        first = next(iter(self.nodes.values()))
        first.wait_ready(timeout_s, brokers=len(self.nodes), coordinators=True)
        return self

    def node(self, i: int) -> KafkaNode:
        return self.nodes[i]

    def bootstrap(self, *ids: int) -> str:
        return ",".join(self.nodes[i].bootstrap for i in (ids or self.nodes))

    def alive(self) -> list[KafkaNode]:
        return [n for n in self.nodes.values() if n.alive()]

    def cleanup(self) -> None:
        for n in self.nodes.values():
            n.cleanup()


# ---------------------------------------------------------------------- shell
STATE_FILE = "kafka-reference.json"


def _cmd_start(args: argparse.Namespace) -> int:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kafka-reference-"))
    if (base / STATE_FILE).exists():
        print(f"{base / STATE_FILE} exists: stop that one first", file=sys.stderr)
        return 2
    props = dict(kv.split("=", 1) for kv in args.set)
    for old in base.glob("node*"):  # a fresh data directory every start
        shutil.rmtree(old)
    t0 = time.monotonic()
    if args.nodes == 1:
        nodes = [KafkaNode(base / "node1", properties=props, detach=True)]
        nodes[0].start()
    else:
        nodes = list(KafkaCluster(base, args.nodes, properties=props, detach=True).start().nodes.values())
    state = {"nodes": [{"node_id": n.node_id, "pid": n.pid, "bootstrap": n.bootstrap,
                        "log": str(n.stdout_path)} for n in nodes]}
    (base / STATE_FILE).write_text(json.dumps(state, indent=1))
    print(f"started {len(nodes)} Apache Kafka node(s) in {time.monotonic() - t0:.1f}s; dir={base}",
          file=sys.stderr)
    print(",".join(n.bootstrap for n in nodes))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state_path = Path(args.dir) / STATE_FILE
    state = json.loads(state_path.read_text())
    for entry in state["nodes"]:
        try:
            os.kill(entry["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    for entry in state["nodes"]:
        while time.monotonic() < deadline:
            try:
                os.kill(entry["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(entry["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    state_path.unlink()
    print(f"stopped {len(state['nodes'])} node(s)", file=sys.stderr)
    return 0


def _cmd_cds(args: argparse.Namespace) -> int:
    """Writes CDS_ARCHIVE: one node started with -XX:ArchiveClassesAtExit, made to create a topic
    and take a produce, then stopped (the JVM writes the archive as it exits)."""
    t0 = time.monotonic()
    tmp = CDS_ARCHIVE.with_suffix(".jsa.tmp")
    tmp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="kafka-cds-") as d:
        node = KafkaNode(Path(d), detach=False)
        node.launch(cds_dump=tmp)
        try:
            node.wait_ready()
            with kafkawire.Connection(node.bootstrap, timeout_s=30) as c:
                deadline = time.monotonic() + 30
                while True:  # Metadata auto-creates the topic; retry until it has a leader
                    c.roundtrip(kafkawire.metadata_request_v1(1, ["cds"]))
                    _, parts = kafkawire.parse_produce_response(c.roundtrip(kafkawire.produce_request(
                        7, 2, "cds", 0, kafkawire.record_batch([(b"k", b"v")]))), 7)
                    if parts[0].error_code == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
            node.terminate(timeout_s=120)
        finally:
            node.cleanup()
    if not tmp.exists():
        print("cds: the JVM wrote no archive; brokers start without one", file=sys.stderr)
        return 1
    tmp.rename(CDS_ARCHIVE)
    print(f"cds: wrote {CDS_ARCHIVE} ({CDS_ARCHIVE.stat().st_size >> 20} MiB) in {time.monotonic() - t0:.1f}s",
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="format and start; prints the bootstrap servers")
    s.add_argument("--nodes", type=int, default=1, help="1: one combined node; 3: a KRaft cluster")
    s.add_argument("--dir", help="work dir (default: a new temporary dir)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra server property")
    s.set_defaults(fn=_cmd_start)
    t = sub.add_parser("stop", help="stop the nodes that `start --dir DIR` started")
    t.add_argument("--dir", required=True)
    t.set_defaults(fn=_cmd_stop)
    c = sub.add_parser("cds", help=f"write the class-data sharing archive {CDS_ARCHIVE} (make deps does)")
    c.set_defaults(fn=_cmd_cds)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
