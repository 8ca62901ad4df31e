"""Kafka Streams exactly-once against a three-node cluster (issue 25, scenario 1 and the Streams
part of scenario 4), the same test against Chronik and against Apache Kafka (`--broker=kafka`).

The application (tests/ecosystem/EosAggregateApp.java, compiled here with javac against
kafka-streams 4.4.0 in tests/reference/lib) runs with processing.guarantee=exactly_once_v2:
input -> groupBy (repartition topic) -> aggregate "count:sum" per group (store + changelog)
-> join with a KTable of labels -> output. Each input record makes exactly one update of its
group, so a read_committed reader of the output must see each group's count go c0, c0+1, ...
up to the number of records of that group, each once (a repeat is a duplicate, a gap a lost
update), and the last value must hold the exact sum.

Two instances run as their own JVMs. Input arrives in waves; after each fault the test waits
until the read_committed output reflects every record produced so far and records that time:
  1. SIGKILL one instance of two (the other takes its tasks over);
  2. SIGKILL the broker leading partition 0 of the aggregate's changelog (restarted after);
  3. SIGKILL the transaction coordinator of the live instance's transactional id (FindCoordinator
     key type 1; restarted after);
  4. restart the killed instance with its state dir deleted: it restores its stores from the
     compacted changelog (the restore listener's RESTORED lines), and the totals continue exact;
  5. SIGSTOP the other instance past max.poll.interval.ms (and session.timeout.ms) while it is
     inside a transaction, then SIGCONT it: it must be fenced (Streams logs that the thread is
     being fenced) and its late transactional writes never appear in read_committed output.
The figures (records in and out, each fault's recovery time, aborted records a read_uncommitted
reader sees) are printed at the end (`-s` shows them).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire
from conftest import REPO_ROOT, _die_with_parent, kafka_mode

pytestmark = pytest.mark.ecosystem

ECOSYSTEM = REPO_ROOT / "tests" / "ecosystem"
LIB = REPO_ROOT / "tests" / "reference" / "lib"
APP_CLASS = "EosAggregateApp"
JVM_OPTS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

PARTITIONS = 3
GROUPS = 12
WAVE = 300
# The app's max.poll.interval.ms and session.timeout.ms: a paused or killed instance leaves the
# group after this long (the broker's group.min.session.timeout.ms is 6 s).
MAX_POLL_MS = 10_000
# Transactions of 1 s: a pause lands inside an open transaction with records written.
COMMIT_MS = 1_000
# From a fault to the output reflecting every record produced so far. Generous: a loaded 2-core
# machine, session timeouts (10 s), Kafka's broker session timeout (9 s) and its sweep of timed
# out transactions (every 10 s) add up.
CATCH_UP_TIMEOUT_S = 120.0
APP_START_TIMEOUT_S = 90.0


class StreamsInstance:
    """One JVM running the app; its stdout (event lines) and stderr (Streams' WARN log) in files."""

    def __init__(self, name: str, workdir: Path, classes: Path, args: list[str]):
        self.name = name
        self.workdir = workdir
        self.state_dir = workdir / f"{name}-state"
        self.classes = classes
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.err"

    def start(self, fresh_state: bool = False) -> "StreamsInstance":
        assert not self.alive()
        if fresh_state and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.starts += 1
        cmd = ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={ECOSYSTEM / 'log4j2-streams.properties'}",
               "-cp", f"{self.classes}:{LIB}/*", APP_CLASS, self.args[0], self.args[1], str(self.state_dir),
               *self.args[2:]]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         preexec_fn=_die_with_parent)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def events(self, kind: str) -> list[str]:
        """The arguments of this run's event lines of one kind (STATE, TXNID, RESTORED, ...)."""
        if not self.stdout_path.exists():
            return []
        out = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            if line.startswith(kind + " "):
                out.append(line[len(kind) + 1:])
        return out

    def wait_running(self, timeout_s: float = APP_START_TIMEOUT_S) -> float:
        t0 = time.monotonic()
        while "RUNNING" not in self.events("STATE"):
            assert self.alive(), f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            assert time.monotonic() - t0 < timeout_s, f"{self.name} not RUNNING within {timeout_s}s:\n{self.log_tail()}"
            time.sleep(0.2)
        return time.monotonic() - t0

    def signal(self, sig: int) -> None:
        assert self.alive(), f"{self.name} is not running:\n{self.log_tail()}"
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM: Streams closes (commits, leaves the group)."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def stderr_all(self) -> str:
        """Streams' log of every run of this instance."""
        return "".join(self.workdir.joinpath(f"{self.name}-{i}.err").read_text(errors="replace")
                       for i in range(1, self.starts + 1))

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for p in (self.stdout_path, self.stderr_path):
            text = p.read_text(errors="replace") if p.exists() else "(none)"
            parts.append(f"--- {p.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)


class Output:
    """The output topic read from the beginning with one isolation level: per group, each
    update's (count, sum, label) in log order (a group's updates are all in one partition)."""

    def __init__(self, bootstrap: str, topic: str, isolation: str):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}",
                                  "enable.auto.commit": False, "isolation.level": isolation,
                                  "enable.partition.eof": False})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.updates: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self.records = 0
        self.last: dict[int, int] = {}  # partition -> offset of the last data record read

    def poll(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            for m in self.consumer.consume(500, timeout=0.2):
                if m.error():
                    assert m.error().code() != KafkaError.TOPIC_AUTHORIZATION_FAILED, m.error()
                    continue
                label, total = m.value().decode().split("|")
                count, total_sum = (int(x) for x in total.split(":"))
                self.updates[m.key().decode()].append((count, total_sum, label))
                self.records += 1
                self.last[m.partition()] = max(self.last.get(m.partition(), -1), m.offset())

    def latest(self, group: str) -> int:
        return max((c for c, _, _ in self.updates.get(group, [])), default=0)

    def close(self) -> None:
        self.consumer.close()


class Input:
    """Keyed input with known totals: record i goes to group i*7 % GROUPS with amount 1..9."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5})
        self.sent = 0
        self.expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # group -> [count, sum]
        self.rng = random.Random(25)

    def wave(self, n: int = WAVE, over_s: float = 0.0) -> None:
        """n records, spread over `over_s` seconds (so a fault lands while they flow), then flush."""
        for k in range(n):
            i = self.sent
            group, amount = f"g{i * 7 % GROUPS}", self.rng.randint(1, 9)
            self.producer.produce(self.topic, key=f"src{i}".encode(), value=f"{group}:{amount}".encode())
            self.expected[group][0] += 1
            self.expected[group][1] += amount
            self.sent += 1
            if over_s and k % 10 == 9:
                self.producer.poll(0)
                time.sleep(over_s * 10 / n)
        assert self.producer.flush(60) == 0, "input not acknowledged within 60 s"

    def wave_during(self, fault, n: int = WAVE, over_s: float = 4.0, after_s: float = 2.0) -> float:
        """A wave spread over `over_s` s with `fault()` called `after_s` s into it (the app is then
        inside transactions); returns the monotonic time of the fault."""
        at: list[float] = []
        def inject():
            time.sleep(after_s)
            fault()
            at.append(time.monotonic())
        t = threading.Thread(target=inject)
        t.start()
        try:
            self.wave(n, over_s)
        finally:
            t.join()
        return at[0]


def stop_inside_output_txn(app: StreamsInstance, out: Output, raw: Output, timeout_s: float = 20.0) -> bool:
    """SIGSTOPs `app` as soon as an output partition its task writes (task 1_p writes partition
    p) holds records of a transaction not yet committed (read_uncommitted ahead of
    read_committed); after `timeout_s` without seeing one, SIGSTOPs it anyway. True if seen."""
    tasks = app.events("TASKS")
    owned = {int(t.split("_")[1]) for t in (tasks[-1].split() if tasks else []) if t.startswith("1_")}
    base = dict(raw.last)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw.poll(0.05)
        out.poll(0.05)
        if any(raw.last.get(p, -1) > max(out.last.get(p, -1), base.get(p, -1)) for p in owned):
            app.signal(signal.SIGSTOP)
            return True
    app.signal(signal.SIGSTOP)
    return False


def find_txn_coordinator(bootstrap: str, transactional_id: str, timeout_s: float = 60.0) -> int:
    """FindCoordinator v1 with key type 1 (transaction): the node id of the coordinator."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        for addr in bootstrap.split(","):
            try:
                err, node = kafkawire.find_coordinator(addr, transactional_id, 1, timeout_s=5)
                if err == 0:
                    return node
                last = f"error {err} from {addr}"
            except (OSError, kafkawire.Closed, TimeoutError) as e:
                last = repr(e)
        time.sleep(0.5)
    raise AssertionError(f"no transaction coordinator for {transactional_id}: {last}")


def partition_leader(admin: AdminClient, topic: str, partition: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and partition in md.partitions and md.partitions[partition].leader >= 0:
            return md.partitions[partition].leader
        time.sleep(0.5)
    raise AssertionError(f"no leader for {topic}-{partition}")


def compile_app(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    javac = shutil.which("javac")
    assert javac, "javac not found (a JDK 17 is needed)"
    r = subprocess.run([javac, "-cp", f"{LIB}/*", "-d", str(dest), str(ECOSYSTEM / f"{APP_CLASS}.java")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"javac failed:\n{r.stdout}\n{r.stderr}"
    return dest


def wait_caught_up(out: Output, inp: Input, what: str, apps: list[StreamsInstance], since: float,
                   also: Output | None = None, timeout_s: float = CATCH_UP_TIMEOUT_S) -> float:
    """Polls the output until every group's latest count reaches what was produced; returns the
    seconds since `since` (a fault). `also` (the read_uncommitted reader) is polled alongside."""
    deadline = time.monotonic() + timeout_s
    while True:
        out.poll(0.5)
        if also is not None:
            also.poll(0.1)
        behind = {g: (out.latest(g), e[0]) for g, e in inp.expected.items() if out.latest(g) < e[0]}
        if not behind:
            return round(time.monotonic() - since, 1)
        if time.monotonic() > deadline:
            logs = "\n".join(a.log_tail() for a in apps)
            raise AssertionError(f"{what}: output behind after {timeout_s}s (group: (seen, expected)) {behind}\n{logs}")


def check_exact(out: Output, inp: Input) -> dict[str, int]:
    """Per group: the counts seen are c0..n each once, and the last update holds the exact sum."""
    first_counts = {}
    for group, (n, total) in inp.expected.items():
        ups = out.updates[group]
        counts = [c for c, _, _ in ups]
        assert counts, f"{group}: no output"
        c0 = counts[0]
        assert counts == list(range(c0, n + 1)), (
            f"{group}: counts not each once from {c0} to {n} (duplicates or lost updates): {counts}")
        assert ups[-1][1] == total, f"{group}: final sum {ups[-1][1]}, expected {total}"
        assert ups[-1][2] == f"label-{group}", f"{group}: joined label {ups[-1][2]}"
        first_counts[group] = c0
    return first_counts


def restart_broker(node) -> float:
    t0 = time.monotonic()
    node.restart(same_port=True)
    return round(time.monotonic() - t0, 1)


@pytest.mark.timeout(600)
def test_streams_exactly_once_survives_kills_and_fences_a_paused_instance(cluster_factory, tmp_path):
    t_start = time.monotonic()
    classes = compile_app(tmp_path / "classes")
    cluster = cluster_factory(3).start()
    bootstrap = cluster.bootstrap()
    app_id = f"eos-agg-{uuid.uuid4().hex[:8]}"
    t_in, t_ref, t_out = f"{app_id}-in", f"{app_id}-ref", f"{app_id}-out"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(t, PARTITIONS, 3, config={"min.insync.replicas": "2"})
                              for t in (t_in, t_ref, t_out)])
    for f in fs.values():
        try:
            f.result(timeout=60)
        except KafkaException as e:
            # librdkafka retries a CreateTopics whose answer it did not get in time (a loaded
            # machine, a controller election): the retry finds the topic the first one made.
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    # The labels first (timestamps before any input record): the join has its right side. The
    # Java client's partitioner (murmur2), as Streams uses for the repartition topic: the join
    # needs both sides of a key in the same partition.
    ref = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                    "partitioner": "murmur2_random"})
    for g in range(GROUPS):
        ref.produce(t_ref, key=f"g{g}".encode(), value=f"label-g{g}".encode())
    assert ref.flush(60) == 0

    args = [bootstrap, app_id, t_in, t_ref, t_out, str(MAX_POLL_MS), str(COMMIT_MS)]
    a = StreamsInstance("app-a", tmp_path, classes, args)
    b = StreamsInstance("app-b", tmp_path, classes, args)
    apps = [a, b]
    inp = Input(bootstrap, t_in)
    out = Output(bootstrap, t_out, "read_committed")
    raw = Output(bootstrap, t_out, "read_uncommitted")
    figures: dict[str, object] = {}
    aborted_before = 0

    def phase(name: str, since: float, live: list[StreamsInstance]) -> None:
        """Waits for the output to catch up; records the recovery time and the output records
        of aborted transactions (seen by read_uncommitted only) since the previous phase."""
        nonlocal aborted_before
        figures[f"{name}: recovery (s)"] = wait_caught_up(out, inp, name, live, since, raw)
        raw.poll(1.0)
        aborted = raw.records - out.records
        figures[f"{name}: aborted output records"] = aborted - aborted_before
        aborted_before = aborted

    try:
        t0 = time.monotonic()
        a.start()
        b.start()
        a.wait_running()
        b.wait_running()
        figures["app start to RUNNING (s)"] = round(time.monotonic() - t0, 1)
        inp.wave()
        phase("wave 1, no fault", time.monotonic(), apps)

        # 1. SIGKILL one instance of two while input flows: the other takes its tasks over
        # after session.timeout.ms and aborts nothing of its own; a's open transaction is
        # aborted by the coordinator (a's transactional id is not reused: fenced by timeout).
        phase("SIGKILL app instance a", inp.wave_during(a.kill), [b])

        # 2. SIGKILL the leader of the aggregate changelog's partition 0 (restarted after).
        changelog = f"{app_id}-totals-changelog"
        leader = partition_leader(admin, changelog, 0)
        phase(f"SIGKILL changelog leader node {leader}", inp.wave_during(cluster.node(leader).kill), [b])
        figures[f"restart node {leader} (s)"] = restart_broker(cluster.node(leader))

        # 3. SIGKILL the transaction coordinator of the live instance's producer.
        txn_id = b.events("TXNID")[-1]
        coordinator = find_txn_coordinator(bootstrap, txn_id)
        phase(f"SIGKILL txn coordinator node {coordinator}", inp.wave_during(cluster.node(coordinator).kill), [b])
        figures[f"restart node {coordinator} (s)"] = restart_broker(cluster.node(coordinator))

        # 4. Restart instance a with its state dir deleted: it restores from the changelog.
        t0 = time.monotonic()
        a.start(fresh_state=True)
        a.wait_running()
        figures["restart a with empty state dir to RUNNING (s)"] = round(time.monotonic() - t0, 1)
        inp.wave()
        phase("wave after restart of a", time.monotonic(), apps)
        restored = [line.split() for line in a.events("RESTORED")]
        totals_restored = sum(int(r[2]) for r in restored if r[1] == "totals")
        assert totals_restored > 0, f"a restored nothing of the totals store: {restored}\n{a.log_tail()}"
        figures["records a restored into 'totals' from the changelog"] = totals_restored

        # 5. SIGSTOP b while input flows (inside a transaction), past max.poll.interval.ms and
        # session.timeout.ms; a takes its tasks over once b's transaction is aborted. Then
        # SIGCONT: b must find itself fenced, and nothing it sends late may be committed.
        inside: list[bool] = []
        paused = inp.wave_during(lambda: inside.append(stop_inside_output_txn(b, out, raw)),
                                 over_s=8.0, after_s=1.0)
        figures["b stopped inside its open output transaction"] = inside[0]
        phase("SIGSTOP app instance b", paused, [a])
        time.sleep(max(0.0, paused + MAX_POLL_MS / 1000 + 3 - time.monotonic()))
        figures["b paused for (s)"] = round(time.monotonic() - paused, 1)
        logged_before = len(b.stderr_path.read_text(errors="replace"))
        b.signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while "fenced" not in (late := b.stderr_path.read_text(errors="replace")[logged_before:]):
            assert time.monotonic() < deadline, f"b did not report being fenced after SIGCONT:\n{b.log_tail()}"
            time.sleep(0.5)
        fenced = [line for line in late.splitlines() if "fenced" in line]
        figures["b after SIGCONT"] = fenced[0][:200]
        inp.wave()
        phase("wave after b resumed", time.monotonic(), apps)
        out.poll(COMMIT_MS / 1000 * 3)  # late writes, had any been committed

        first_counts = check_exact(out, inp)
        raw.poll(3)
        figures["records in"] = inp.sent
        figures["records out (read_committed)"] = out.records
        figures["records out (read_uncommitted, incl. aborted)"] = raw.records
        figures["groups whose first output count > 1"] = sum(1 for c in first_counts.values() if c > 1)
        figures["uncaught thread errors"] = a.events("THREAD_ERROR") + b.events("THREAD_ERROR")
        # A producer's batch refused as out of sequence after the batches before it were
        # acknowledged (fatal to a transactional producer, which Streams answers by aborting
        # and rejoining): the broker lost or reordered an acknowledged batch. Retried
        # OUT_OF_ORDER_SEQUENCE_NUMBER answers (behind a failed earlier batch) are WARN only.
        gaps = [line for app in apps for line in app.stderr_all().splitlines()
                if line.startswith("org.apache.kafka.common.errors.OutOfOrderSequenceException")]
        figures["fatal OutOfOrderSequenceException in the apps"] = len(gaps)
        figures["broker"] = "kafka" if kafka_mode() else "chronik"
        figures["total test time (s)"] = round(time.monotonic() - t_start, 1)
        assert out.records == sum(n - first_counts[g] + 1 for g, (n, _) in inp.expected.items())
        assert not gaps, f"producers saw sequence gaps: {gaps[:3]}\n{a.log_tail()}\n{b.log_tail()}"
        print("\nstreams EOS figures:")
        for k, v in figures.items():
            print(f"  {k}: {v}")
    finally:
        out.close()
        raw.close()
        for app in apps:
            app.stop()
