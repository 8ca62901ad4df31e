"""Release chronik-server processes for the benchmark: one standalone broker, or a cluster of
nodes on this machine started from one peer list. Every node fsyncs per its default policy
(`--fsync always`: a message is acknowledged once fdatasync'd)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from .common import SERVER, free_port

READY_RE = re.compile(r"^chronik-server ready kafka=(\S+) ")
READY_TIMEOUT_S = 60


class BrokerProcess:
    """A release chronik-server: standalone, or node `node_id` of `peers` (cluster mode) with
    a fixed Kafka port. `wait=False` starts it without waiting for its ready line (cluster
    nodes wait for a quorum, so they must all be started first)."""

    def __init__(self, workdir: Path, extra: list[str], cluster: tuple[int, str, int] | None = None,
                 wait: bool = True):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr = open(workdir / "broker.stderr", "wb")
        # A scenario naming its own listeners gives no --kafka-addr (the two exclude each other).
        kafka_addr = [] if "--listeners" in extra else ["--kafka-addr", "127.0.0.1:0"]
        if cluster is None:
            cmd = [str(SERVER), "standalone", *kafka_addr]
        else:
            node_id, peers, kafka_port = cluster
            cmd = [str(SERVER), "--node-id", str(node_id), "--cluster", peers,
                   "--kafka-addr", f"127.0.0.1:{kafka_port}"]
        self.proc = subprocess.Popen(
            [*cmd, "--data-dir", str(workdir / "data"), "--fsync", "always", *extra],
            stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL,
            # The HTTP endpoint on a free port (three nodes on one machine would collide on the
            # default one); an environment variable, so older binaries still run for A/B.
            env={**{k: v for k, v in os.environ.items() if not k.startswith("CHRONIK_")},
                 "CHRONIK_HTTP_ADDR": "127.0.0.1:0"},
        )
        self.addr = ""
        # The HTTP endpoint (metrics), from the ready line's ` http=`.
        self.http = ""
        # Every listener by name, when the broker has several (` listeners=` on its ready line).
        self.listeners: dict[str, str] = {}
        if wait:
            self.wait()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self) -> None:
        try:
            self.addr = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> str:
        """Polls stdout (select with a short timeout) for the ready line, until the deadline."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 4096)
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    m = READY_RE.match(line)
                    if m:
                        http = re.search(r" http=(\S+)", line)
                        self.http = http.group(1) if http else ""
                        named = re.search(r" listeners=(\S+)", line)
                        if named:
                            self.listeners = dict(e.split("://", 1) for e in named.group(1).split(","))
                        return m.group(1)
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: broker exited with {self.proc.returncode} before it was ready")
        self.stop()
        raise SystemExit("bench: broker printed no ready line in time")

    def stop(self) -> None:
        if self.stderr.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def start_chronik(workdir: Path, nodes: int, extra: list[str] | None = None) -> list[BrokerProcess]:
    """One standalone broker, or `nodes` cluster nodes started together."""
    extra = list(extra or [])
    if nodes == 1:
        return [BrokerProcess(workdir, extra)]
    rpc = {i: free_port() for i in range(1, nodes + 1)}
    peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in rpc.items())
    procs = [BrokerProcess(workdir / f"node{i}", extra, (i, peers, free_port()), wait=False) for i in rpc]
    try:
        for n in procs:
            n.wait()
    except BaseException:
        for n in procs:
            n.stop()
        raise
    return procs
