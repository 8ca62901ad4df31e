"""Apache Kafka 4.4.0 for the side-by-side benchmark, started by tests/reference/kafka.py (KRaft,
combined broker+controller nodes, jars from `make deps-kafka`), but with the JVM settings of
Kafka's own start script instead of the test suite's quick-start ones: a 1 GiB heap
(`kafka-server-start.sh`'s KAFKA_HEAP_OPTS) and G1 with both JIT compilers
(`kafka-run-class.sh`'s KAFKA_JVM_PERFORMANCE_OPTS). BENCH_KAFKA_JVM_OPTS replaces them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO

sys.path.insert(0, str(REPO / "tests"))

from reference import kafka as reference  # noqa: E402

KAFKA_JVM_OPTS = os.environ.get(
    "BENCH_KAFKA_JVM_OPTS",
    "-Xms1g -Xmx1g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
    "-XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true").split()

LIB = reference.LIB
# How long Kafka nodes get to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0
JAVA = reference.JAVA


def unavailable() -> str | None:
    """Why Apache Kafka cannot run here (no java, no jars), or None."""
    if shutil.which(JAVA) is None:
        return f"no `{JAVA}` on PATH (make deps installs a JDK)"
    if not list(LIB.glob("kafka_2.13-*.jar")) or not list(LIB.glob("kafka-tools-*.jar")):
        return f"{LIB} has no Apache Kafka broker and tools jars (make deps-kafka)"
    return None


class KafkaBrokers:
    """One Kafka node, or a KRaft cluster of `nodes`, each with a fresh data dir under
    `workdir` (on the same filesystem as Chronik's). Killed with this process (PDEATHSIG)."""

    def __init__(self, workdir: Path, nodes: int, properties: dict[str, str] | None = None):
        # kafka.py reads its JVM options at call time: the benchmark's replace the test suite's.
        reference.JVM_OPTS = KAFKA_JVM_OPTS
        props = dict(properties or {})
        if nodes == 1:
            self.nodes = [reference.KafkaNode(workdir / "node1", properties=props)]
            self._cluster = None
        else:
            self._cluster = reference.KafkaCluster(workdir, nodes, properties=props)
            self.nodes = list(self._cluster.nodes.values())

    def start(self) -> "KafkaBrokers":
        try:
            if self._cluster is None:
                self.nodes[0].start()
            else:
                self._cluster.start()
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    def log_tail(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.stderr_tail(30)}" for n in self.nodes)

    def stop(self) -> None:
        """SIGTERM to every node at once, SIGKILL to those still running after STOP_GRACE_S:
        the data is deleted next, so nothing needs a clean shutdown, and the last nodes of a
        cluster stopping together can wait long for a quorum that is gone."""
        for n in self.nodes:
            if n.alive():
                n.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for n in self.nodes:
            try:
                if n.proc is not None:
                    n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.kill()

    def kill(self) -> None:
        for n in self.nodes:
            n.cleanup()
