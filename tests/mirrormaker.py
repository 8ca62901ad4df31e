"""Apache Kafka's MirrorMaker 2 in dedicated mode (org.apache.kafka.connect.mirror.MirrorMaker,
connect-mirror 4.3.1 with the clients and Connect runtime of its release, resolved from
tests/reference/mm2/pom.xml into tests/reference/mm2/lib) for the migration test
(tests/test_mirrormaker.py) and docs/migration.md. tests/reference/lib cannot run it: see the pom.

    mm2 = MirrorMaker(workdir, properties(source="127.0.0.1:9092", target="127.0.0.1:9093",
                                          topics=["orders"], groups=["billing"]))
    mm2.start()          # returns at once; the JVM logs to workdir/mm2.log
    ...
    mm2.terminate()      # SIGTERM: the worker commits its offsets and stops its tasks

The flow is one way, `kafka->chronik`, with IdentityReplicationPolicy: topics keep their names on
Chronik (what an operator moving applications wants: they change bootstrap.servers, nothing else).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import _die_with_parent
from procs import Stoppable
from reference import kafka as reference

MAIN = "org.apache.kafka.connect.mirror.MirrorMaker"
HERE = Path(__file__).resolve().parent
POM = HERE / "reference" / "mm2" / "pom.xml"
LIB = Path(os.environ.get("MM2_LIB", HERE / "reference" / "mm2" / "lib"))
RESOLVE = (f"mvn -B -q -f {POM} dependency:copy-dependencies -DincludeScope=runtime "
           f"-DoutputDirectory={LIB}")
# A bounded heap, the serial collector and the client JIT only, as the reference broker
# (tests/reference/kafka.py): the machine the tests run on has two cores.
JVM_OPTS = os.environ.get("MM2_JVM_OPTS",
                          "-Xms128m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "
                          "-Djava.awt.headless=true").split()
# The reference broker's logging (INFO to stdout, which goes to workdir/mm2.log); MM2_LOG4J_CONFIG
# names another, e.g. with org.apache.kafka.connect.mirror at DEBUG to see each offset translation.
LOG4J_CONFIG = os.environ.get("MM2_LOG4J_CONFIG", str(reference.LOG4J_CONFIG))
# MirrorMaker's tasks stop within task.shutdown.graceful.timeout.ms (5 s by default) each.
SHUTDOWN_TIMEOUT_S = 60.0


def properties(*, source: str, target: str, topics: list[str], groups: list[str],
               target_rf: int = 3, source_rf: int = 1, offset_lag_max: int = 10,
               interval_s: int = 1) -> dict[str, str]:
    """The mm2.properties of docs/migration.md: clusters `kafka` (source) and `chronik` (target).

    offset_lag_max: how many records the translated offset of a consumer group may trail the
    record it stands for before MirrorMaker writes a new offset sync (Kafka's default 100). The
    smaller, the closer a migrated group resumes to where it stopped on Kafka, at the cost of one
    offset-sync record every offset_lag_max + 1 records.
    interval_s: checkpoints, group offset syncs, heartbeats and topic/group discovery every so
    many seconds (Kafka's defaults: 60, 60, 1, 600, 600 s), so that a test sees them quickly.
    """
    return {
        "clusters": "kafka, chronik",
        "kafka.bootstrap.servers": source,
        "chronik.bootstrap.servers": target,
        "kafka->chronik.enabled": "true",
        "chronik->kafka.enabled": "false",
        # No heartbeats back to Kafka either: otherwise MirrorMaker still runs a Connect worker
        # for the chronik->kafka direction, with its own internal topics on Kafka.
        "chronik->kafka.emit.heartbeats.enabled": "false",
        "kafka->chronik.topics": ", ".join(topics),
        "kafka->chronik.groups": ", ".join(groups),
        # Same topic names on Chronik (the default policy would name them kafka.orders, ...).
        "replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        # Mirrored topics, and MirrorMaker's own topics on Chronik, with three replicas.
        "replication.factor": str(target_rf),
        "checkpoints.topic.replication.factor": str(target_rf),
        "heartbeats.topic.replication.factor": str(target_rf),
        "chronik.config.storage.replication.factor": str(target_rf),
        "chronik.offset.storage.replication.factor": str(target_rf),
        "chronik.status.storage.replication.factor": str(target_rf),
        # The offset syncs topic lives on the source cluster (offset-syncs.topic.location=source).
        "offset-syncs.topic.replication.factor": str(source_rf),
        # Topic configs (cleanup.policy=compact, ...) copied at creation and re-synced; ACLs not
        # (the source has no authorizer, so there are none to copy).
        "sync.topic.configs.enabled": "true",
        "sync.topic.acls.enabled": "false",
        "sync.group.offsets.enabled": "true",
        "sync.group.offsets.interval.seconds": str(interval_s),
        "emit.checkpoints.interval.seconds": str(interval_s),
        "emit.heartbeats.interval.seconds": str(interval_s),
        "refresh.topics.interval.seconds": str(max(interval_s, 5)),
        "refresh.groups.interval.seconds": str(max(interval_s, 5)),
        "offset.lag.max": str(offset_lag_max),
        # The Connect worker writing to Chronik commits its source offsets (and sends the offset
        # syncs held back until then) every second instead of every 60 s: after a crash of
        # MirrorMaker, it copies again what it copied since its last commit. A worker setting
        # takes the target cluster's prefix (MirrorMaker ignores it at the top level).
        "chronik.offset.flush.interval.ms": "1000",
    }


def missing() -> str | None:
    """Why MirrorMaker cannot run here, or None."""
    if not list(LIB.glob("connect-mirror-*.jar")):
        return f"no MirrorMaker jars in {LIB}: `{RESOLVE}`"
    return None


def write_properties(path: Path, props: dict[str, str]) -> Path:
    path.write_text("".join(f"{k} = {v}\n" for k, v in props.items()))
    return path


class MirrorMakerError(AssertionError):
    pass


class MirrorMaker(Stoppable):
    """One dedicated-mode MirrorMaker process (it may be started again on the same properties)."""

    error = MirrorMakerError
    # The JVM exits 143 (128+SIGTERM) after its shutdown hook stopped the workers.
    clean_exits = (0, 130, 143)
    shutdown_timeout_s = SHUTDOWN_TIMEOUT_S
    _all: list["MirrorMaker"] = []

    def __init__(self, workdir: Path, props: dict[str, str], name: str = "mm2"):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = write_properties(self.workdir / "mm2.properties", props)
        self.log_path = self.workdir / "mm2.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        MirrorMaker._all.append(self)

    def command(self) -> list[str]:
        return [reference.JAVA, *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp", f"{LIB}/*", MAIN, str(self.config)]

    def start(self) -> "MirrorMaker":
        assert not self.alive(), f"{self.name} already running"
        if missing():
            raise MirrorMakerError(missing())
        self.starts += 1
        with open(self.log_path, "ab") as out:
            out.write(f"---- start {self.starts}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.workdir,
                                         preexec_fn=_die_with_parent)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stderr_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty)"

    def current_log(self) -> str:
        """The log of the latest start only."""
        text = self.log_text()
        return text[text.rfind(f"---- start {self.starts}\n"):]

    def source_task_committed(self) -> bool:
        """True once the MirrorSourceConnector task of the latest start committed source offsets
        (it has copied, and resumed from where the previous start left off)."""
        return "WorkerSourceTask{id=MirrorSourceConnector-0} Committing offsets" in self.current_log()

    def log_lines(self, *needles: str) -> list[str]:
        """The log lines holding every one of `needles` (for reports and failure messages)."""
        return [line for line in self.log_text().splitlines() if all(n in line for n in needles)]
