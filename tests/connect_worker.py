"""A Kafka Connect worker in distributed mode (connect-runtime 4.4.0 from tests/reference/lib),
started as its own JVM with a REST listener on a port the OS picked, for the ecosystem tests.

    w = ConnectWorker(tmp_path / "w1", bootstrap, group="connect", props={...}).start()
    w.put_connector("src", {...}); w.status("src")

Each worker logs to <workdir>/worker.N.log (tests/reference/log4j2.properties: INFO to stdout).
The worker is killed at teardown (`cleanup`) and if pytest dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import _die_with_parent
from procs import Stoppable

HERE = Path(__file__).resolve().parent
LIB = Path(os.environ.get("KAFKA_REFERENCE_LIB", HERE / "reference" / "lib"))
LOG4J_CONFIG = HERE / "reference" / "log4j2.properties"
# A bounded heap and the client JIT only (a worker is short-lived here; see reference/kafka.py).
JVM_OPTS = ["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
# From exec to the REST API answering with the herder started: 5-10 s on an idle 2-core machine.
READY_TIMEOUT_S = 90.0


class ConnectError(AssertionError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def classpath(plugins: Path | None) -> str:
    """The jars of tests/reference/lib, plus the test connectors' classes (`plugins`). Any
    connect-file or connect-mirror 4.3.1 jar (an older tests/reference/pom.xml resolved them) is
    left out: they do not load in connect-runtime 4.4.0 (NoClassDefFoundError
    org/apache/kafka/common/utils/AppInfoParser, which 4.4.0 moved to .internals)."""
    jars = [str(j) for j in sorted(LIB.glob("*.jar")) if not j.name.startswith(("connect-file-", "connect-mirror"))]
    return ":".join(jars + ([str(plugins)] if plugins else []))


def compile_plugins(out: Path) -> Path:
    """javac the minimal source and sink connectors of tests/ecosystem/connect into `out`, with
    their ServiceLoader manifests (plugin.discovery=service_load finds them on the classpath)."""
    src = HERE / "ecosystem" / "connect"
    out.mkdir(parents=True, exist_ok=True)
    files = [str(f) for f in sorted((src / "src").rglob("*.java"))]
    proc = subprocess.run(["javac", "-d", str(out), "-cp", classpath(None), *files],
                          capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise ConnectError(f"javac failed:\n{proc.stdout}{proc.stderr}")
    shutil.copytree(src / "resources", out, dirs_exist_ok=True)
    return out


def worker_properties(bootstrap: str, group: str, rest_port: int, replication: int) -> dict[str, str]:
    """Connect's distributed-mode settings (config/connect-distributed.properties of the Kafka
    distribution) with the timings a test can afford."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "listeners": f"http://127.0.0.1:{rest_port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(rest_port),
        "config.storage.topic": f"{group}-configs",
        "offset.storage.topic": f"{group}-offsets",
        "status.storage.topic": f"{group}-status",
        "config.storage.replication.factor": str(replication),
        "offset.storage.replication.factor": str(replication),
        "status.storage.replication.factor": str(replication),
        "offset.storage.partitions": "5",
        "status.storage.partitions": "3",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        # The connectors are on the worker's classpath (connect-file's ServiceLoader manifests).
        "plugin.discovery": "service_load",
        # Source offsets and sink consumer offsets committed every second (default 60 s).
        "offset.flush.interval.ms": "1000",
        # A lost worker's tasks are handed out again after this delay (default 5 minutes).
        "scheduled.rebalance.max.delay.ms": "5000",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "2000",
        # The sink tasks' consumers: a consumer whose worker died (or whose LeaveGroup never reached
        # a broker that was down) holds its partitions until its session expires; 10 s instead of
        # the default 45 s keeps the tests short. Both brokers measured: ~45 s with the default.
        "consumer.session.timeout.ms": "10000",
        "consumer.heartbeat.interval.ms": "3000",
    }


class ConnectWorker(Stoppable):
    error = ConnectError
    # A JVM ended by SIGTERM exits 143 (128 + 15) once its shutdown hook (Connect's stop) is done.
    clean_exits = (0, 143)
    shutdown_timeout_s = 60.0

    def __init__(self, workdir: Path, bootstrap: str, *, group: str = "connect", replication: int = 3,
                 props: dict[str, str] | None = None, name: str | None = None,
                 plugins: Path | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name or self.workdir.name
        self.rest_port = _free_port()
        self.props = worker_properties(bootstrap, group, self.rest_port, replication)
        self.props.update(props or {})
        self.plugins = plugins
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def worker_id(self) -> str:
        """How Connect names this worker in /status (the advertised REST host:port)."""
        return f"127.0.0.1:{self.rest_port}"

    def launch(self) -> "ConnectWorker":
        assert not self.alive(), f"{self.name} already running"
        self.starts += 1
        cfg = self.workdir / "worker.properties"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in self.props.items()))
        self.log_path = self.workdir / f"worker.{self.starts}.log"
        cmd = ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", classpath(self.plugins),
               "org.apache.kafka.connect.cli.ConnectDistributed", str(cfg)]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, preexec_fn=_die_with_parent)
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> "ConnectWorker":
        """Until GET /connectors answers 200: the REST server is up and the herder has read the
        config topic (before that it answers 503 or refuses the connection)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            if not self.alive():
                raise ConnectError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.get("/connectors", timeout_s=5)
                return self
            except (OSError, ConnectError) as e:
                last = e
            if time.monotonic() > deadline:
                raise ConnectError(f"{self.name}: REST not ready within {timeout_s}s ({last}):\n{self.log_tail()}")
            time.sleep(0.5)

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> "ConnectWorker":
        return self.launch().wait_ready(timeout_s)

    # ------------------------------------------------------------------ REST
    def request(self, method: str, path: str, body: dict | None = None, timeout_s: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise ConnectError(f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')}") from None
        return json.loads(text) if text else None

    def get(self, path: str, timeout_s: float = 30):
        return self.request("GET", path, timeout_s=timeout_s)

    def put_connector(self, name: str, config: dict[str, str], timeout_s: float = 60) -> None:
        """PUT /connectors/NAME/config, retried while the group rebalances (409) or the request
        cannot be forwarded to the leader yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.request("PUT", f"/connectors/{name}/config", config)
                return
            except (OSError, ConnectError) as e:
                if time.monotonic() > deadline:
                    raise ConnectError(f"{self.name}: PUT connector {name}: {e}\n{self.log_tail()}")
            time.sleep(1)

    def status(self, name: str) -> dict:
        return self.get(f"/connectors/{name}/status")

    def task_workers(self, name: str) -> dict[int, tuple[str, str]]:
        """Task id -> (state, worker_id) from /connectors/NAME/status."""
        return {t["id"]: (t["state"], t["worker_id"]) for t in self.status(name).get("tasks", [])}

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stderr_tail(self, lines: int = 60, max_bytes: int = 0) -> str:
        return self.log_tail(lines)

    def __repr__(self) -> str:
        return f"<ConnectWorker {self.name} {self.url} {'running' if self.alive() else 'stopped'}>"
