"""Kafka Connect (connect-runtime 4.4.0, distributed mode) against a 3-node cluster (issue 25,
scenario 2 and the Connect parts of scenario 4).

Two workers share one group; Connect creates its config, offset and status topics itself
(cleanup.policy=compact, replication factor 3). The pipeline: a source connector tails a file
of lines into a 2-partition topic, a sink connector (tasks.max=2) appends them to another file.
connect-file 4.3.1 (FileStreamSource/Sink; 4.4.0 is not served here) does not load in
connect-runtime 4.4.0 (NoClassDefFoundError org/apache/kafka/common/utils/AppInfoParser), so
the connectors are minimal ones in tests/ecosystem/connect, compiled with javac at test time.
The sink writes "PARTITION OFFSET VALUE" per record, so the sink file alone shows the topic's
contents and the order the sink saw them in.

Connect's at-least-once contract, as checked here:
  * sink: after a crash a task resumes from the group's committed offset of each partition, so
    records are written again only from the last committed offset (committed every
    offset.flush.interval.ms = 1 s) on; never a record skipped, never one before the commit
    replayed. After a graceful stop (SIGTERM) the final commit covers everything written: no
    record is written twice.
  * source: after a crash the task re-reads the file from the last committed source offset, so
    the topic holds again only lines from that offset on. A graceful stop commits the offset of
    every line acknowledged: nothing is sent twice.

Test-time settings (connect_worker.py): offsets flushed every 1 s, a lost worker's tasks handed
out again after 5 s (scheduled.rebalance.max.delay.ms, default 5 min), worker session 6 s, sink
consumer session 10 s (default 45 s: a dead sink consumer otherwise holds its partitions 45 s).

Runtime on the 2-core machine (each worker and each Kafka node is a JVM): Chronik 2.5-4.5 min
(155 s idle, 255 s loaded), Apache Kafka 4.4 about 5 min.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

import helpers
from connect_worker import ConnectWorker, compile_plugins

# Minutes, so `make ecosystem` runs it and `make test` does not (the marker is in main's pytest.ini).
pytestmark = pytest.mark.ecosystem

SOURCE = "chronik.connect.LineSourceConnector"
SINK = "chronik.connect.LineSinkConnector"
TOPIC = "lines"
PARTITIONS = 2
# Lines appended to the source file per second while the pipeline runs.
RATE = 200


# helpers.wait_until, polling every 0.5 s: most predicates here call Connect's REST API.
wait_until = functools.partial(helpers.wait_until, interval_s=0.5)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> Path:
    return compile_plugins(tmp_path_factory.mktemp("connect-plugins"))


class LineWriter:
    """Appends "line-NNNNNN" lines to the source file at RATE per second from a thread."""

    def __init__(self, path: Path):
        self.path = path
        self.written = 0
        self.thread: threading.Thread | None = None

    def write(self, n: int) -> "LineWriter":
        def run():
            with open(self.path, "a") as f:
                for _ in range(n):
                    f.write(f"line-{self.written:06d}\n")
                    f.flush()
                    self.written += 1
                    time.sleep(1.0 / RATE)
        self.join()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def join(self) -> None:
        if self.thread:
            self.thread.join(timeout=300)


class SinkFile:
    """The sink's output: per partition, the (offset, line index) pairs in the order written."""

    def __init__(self, path: Path):
        self.path = path

    def records(self) -> list[tuple[int, int, int]]:
        if not self.path.exists():
            return []
        out = []
        for row in self.path.read_text().splitlines():
            p, o, v = row.split(" ")
            out.append((int(p), int(o), int(v.removeprefix("line-"))))
        return out

    def lines(self) -> set[int]:
        return {v for _, _, v in self.records()}

    def wait_complete(self, n: int, timeout_s: float) -> None:
        wait_until(lambda: len(self.lines()) >= n, timeout_s, f"{n} distinct lines in {self.path}")


def analyse(records: list[tuple[int, int, int]], total: int) -> dict:
    """Checks the sink output against the contract's invariants and returns what repeats.

    - every line 0..total-1 is in the topic and in the sink file;
    - one value per (partition, offset): the sink saw one topic;
    - per partition, the sink wrote offsets 0, 1, 2, ... and only ever jumped back (a replay
      from a committed offset), never forward (no record skipped);
    - per partition, in offset order, the source's lines increase except where the source
      task replayed from its committed offset.
    Returns sink replays [(partition, resumed_at_offset)], the line indexes the source sent
    twice, and the number of sink rows written twice."""
    value: dict[tuple[int, int], int] = {}
    seqs: dict[int, list[int]] = {}
    for p, o, v in records:
        assert value.setdefault((p, o), v) == v, f"offset {p}/{o} holds line {value[(p, o)]} and {v}"
        seqs.setdefault(p, []).append(o)
    assert {v for v in value.values()} >= set(range(total)), \
        f"missing lines: {sorted(set(range(total)) - set(value.values()))[:20]}"
    sink_replays = []
    for p, seq in seqs.items():
        assert seq[0] == 0, f"partition {p}: sink started at offset {seq[0]}"
        for prev, cur in zip(seq, seq[1:]):
            assert cur <= prev + 1, f"partition {p}: sink skipped from offset {prev} to {cur}"
            if cur <= prev:
                sink_replays.append((p, cur))
    source_seen: dict[int, int] = {}
    for (p, o), v in value.items():
        source_seen[v] = source_seen.get(v, 0) + 1
    source_dups = sorted(v for v, c in source_seen.items() if c > 1)
    for p in seqs:
        in_order = [value[(p, o)] for o in range(max(seqs[p]) + 1)]
        for prev, cur in zip(in_order, in_order[1:]):
            assert cur > prev or cur in source_dups, f"partition {p}: line {cur} after {prev}, not a replay"
    return {"sink_replays": sink_replays, "source_dups": source_dups,
            "sink_dup_rows": len(records) - len(value)}


def sink_committed(bootstrap: str, connector: str) -> dict[int, int]:
    """The sink connector's consumer group (connect-NAME) committed offsets per partition."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    req = ConsumerGroupTopicPartitions(f"connect-{connector}",
                                       [TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    got = a.list_consumer_group_offsets([req], request_timeout=10)[f"connect-{connector}"].result(timeout=15)
    return {tp.partition: tp.offset for tp in got.topic_partitions if tp.offset >= 0}


def source_committed_offsets_topic(bootstrap: str, offsets_topic: str, connector: str) -> int:
    """The source connector's last committed line, read from the worker group's offsets topic
    (while no worker runs, the REST API is not there to ask)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        md = c.list_topics(offsets_topic, timeout=10).topics[offsets_topic]
        tps = [TopicPartition(offsets_topic, p) for p in md.partitions]
        ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        c.assign(tps)
        line, done = 0, {p for p, e in ends.items() if e == 0}
        deadline = time.monotonic() + 30
        while len(done) < len(ends) and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            key = json.loads(m.key())
            if key[0] == connector and m.value():
                line = max(line, json.loads(m.value())["line"])
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
        assert len(done) == len(ends), f"offsets topic not read to its end: {done} of {ends}"
        return line
    finally:
        c.close()


class Pipeline:
    """The cluster, two workers, the source and sink connectors and their files."""

    def __init__(self, cluster, tmp: Path, plugins: Path, worker_props: dict[str, str] | None = None):
        self.cluster = cluster
        self.bootstrap = cluster.bootstrap()
        a = AdminClient({"bootstrap.servers": self.bootstrap})
        a.create_topics([NewTopic(TOPIC, PARTITIONS, 3)], operation_timeout=30)[TOPIC].result(timeout=30)
        self.workers = [ConnectWorker(tmp / f"worker{i}", self.bootstrap, plugins=plugins, props=worker_props)
                        for i in (1, 2)]
        t0 = time.monotonic()
        for w in self.workers:
            w.launch()
        for w in self.workers:
            w.wait_ready()
        self.workers_ready_s = time.monotonic() - t0
        self.writer = LineWriter(tmp / "in.txt")
        self.sink = SinkFile(tmp / "out.txt")
        self.workers[0].put_connector("src", {"connector.class": SOURCE, "tasks.max": "1",
                                              "file": str(self.writer.path), "topic": TOPIC})
        self.workers[0].put_connector("sink", {"connector.class": SINK, "tasks.max": str(PARTITIONS),
                                               "file": str(self.sink.path), "topics": TOPIC})

    def alive(self) -> list[ConnectWorker]:
        return [w for w in self.workers if w.alive()]

    def placement(self, via: ConnectWorker | None = None) -> dict[str, tuple[str, str]]:
        """"src/0" -> (state, worker_id) for every task of both connectors."""
        via = via or self.alive()[0]
        out = {}
        for name in ("src", "sink"):
            for tid, st in via.task_workers(name).items():
                out[f"{name}/{tid}"] = st
        return out

    def running_on(self, workers: list[ConnectWorker], via: ConnectWorker | None = None):
        """The placement once all 3 tasks run, each on one of `workers`; else None."""
        ids = {w.worker_id for w in workers}
        try:
            pl = self.placement(via)
        except (OSError, AssertionError):
            return None
        ok = len(pl) == 1 + PARTITIONS and all(s == "RUNNING" and wid in ids for s, wid in pl.values())
        return pl if ok else None

    def worker_of(self, worker_id: str) -> ConnectWorker:
        return next(w for w in self.workers if w.worker_id == worker_id)


def describe_topic(bootstrap: str, topic: str) -> dict[str, str]:
    """DescribeConfigs of a topic, retried while a just-created topic is not known to the
    broker asked yet (Kafka answers UNKNOWN_TOPIC_OR_PARTITION until its metadata arrives)."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)

    def attempt():
        try:
            return {k: e.value for k, e in a.describe_configs([res])[res].result(timeout=30).items()}
        except KafkaException:
            return None
    return wait_until(attempt, 30, f"DescribeConfigs of {topic}")


def kill_worker(pipe: Pipeline, victim: ConnectWorker, lines: int, before: dict) -> dict:
    """SIGKILLs `victim` while `lines` more lines are written, waits until all tasks run on the
    other worker and the sink holds every line, and checks the contract: the sink replays, and
    the source resends, only from the offsets committed before the kill (watched for the 3 s
    of writing before it). `before` is the previous analysis: only the replays and resends since count."""
    survivor = next(w for w in pipe.alive() if w is not victim)
    moved = sorted(t for t, (_, wid) in pipe.placement(survivor).items() if wid == victim.worker_id)
    src_line = 0
    sink_at: dict[int, int] = {}
    pipe.writer.write(lines)  # the kill lands mid-stream, with records in flight
    for _ in range(6):
        src_line = max([src_line] + [o["offset"]["line"] for o in
                                     survivor.get("/connectors/src/offsets")["offsets"]])
        sink_at = sink_committed(pipe.bootstrap, "sink")
        time.sleep(0.5)
    victim.kill()
    t_kill = time.monotonic()
    wait_until(lambda: pipe.running_on([survivor], survivor), 120, f"tasks {moved} moved to the survivor")
    move_s = time.monotonic() - t_kill
    pipe.writer.join()
    pipe.sink.wait_complete(pipe.writer.written, 120)
    complete_s = time.monotonic() - t_kill
    a = analyse(pipe.sink.records(), pipe.writer.written)
    new_replays = list((Counter(a["sink_replays"]) - Counter(before.get("sink_replays", []))).elements())
    for p, at in new_replays:
        assert at >= sink_at.get(p, 0), \
            f"partition {p}: sink replayed from {at}, before the offset {sink_at.get(p)} committed before the kill"
    new_dups = sorted(set(a["source_dups"]) - set(before.get("source_dups", [])))
    assert all(v >= src_line for v in new_dups), \
        f"source resent lines before its committed line {src_line}: {new_dups[:10]}"
    a["report"] = (f"SIGKILL of {victim.name} running {moved}: tasks moved in {move_s:.1f}s, sink complete "
                   f"{complete_s:.1f}s after the kill; committed before it: sink {sink_at}, source line "
                   f"{src_line}; since: sink replays {new_replays}, {len(new_dups)} lines resent")
    return a


def test_connect_pipeline_worker_kill_and_restart(cluster_factory, tmp_path, plugins):
    """(a) A worker SIGKILLed mid-run, twice (first the one with the most tasks, then, once it is
    back, the one running the source task): its tasks move to the other worker, the sink file
    ends with every line, in offset order per partition, and only records after the last
    committed offsets are written twice. (b) Both workers stopped (SIGTERM) and started again:
    they resume exactly at the committed offsets, nothing written twice."""
    t_start = time.monotonic()
    c = cluster_factory(3).start()
    pipe = Pipeline(c, tmp_path, plugins)
    for t in ("connect-configs", "connect-offsets", "connect-status"):
        cfg = describe_topic(pipe.bootstrap, t)
        assert cfg["cleanup.policy"] == "compact", f"{t}: {cfg['cleanup.policy']}"

    pipe.writer.write(1200)
    placement = wait_until(lambda: pipe.running_on(pipe.workers), 90, "src and sink tasks running")
    pipe.sink.wait_complete(300, 60)
    load = {w.worker_id: sum(wid == w.worker_id for _, wid in placement.values()) for w in pipe.workers}
    victim = pipe.worker_of(max(load, key=lambda wid: (load[wid], wid == placement["src/0"][1])))
    a = kill_worker(pipe, victim, 1200, {})
    victim.start()
    placement = wait_until(lambda: pipe.running_on(pipe.workers), 120, "tasks running with both workers")
    a2 = kill_worker(pipe, pipe.worker_of(placement["src/0"][1]), 1200, a)
    next(w for w in pipe.workers if not w.alive()).start()
    wait_until(lambda: pipe.running_on(pipe.workers), 120, "tasks running with both workers")

    # (b) both stop gracefully and start again.
    time.sleep(2)  # at least one offset flush after the last line
    for w in pipe.workers:
        w.terminate()
    total = pipe.writer.written
    rows_before = len(pipe.sink.records())
    sink_at_stop = sink_committed(pipe.bootstrap, "sink")
    src_at_stop = source_committed_offsets_topic(pipe.bootstrap, "connect-offsets", "src")
    assert src_at_stop == total, f"source committed line {src_at_stop} at a graceful stop, wrote {total}"
    pipe.writer.write(800)  # written while no worker runs
    pipe.writer.join()
    t_restart = time.monotonic()
    for w in pipe.workers:
        w.launch()
    for w in pipe.workers:
        w.wait_ready()
    total = pipe.writer.written
    pipe.sink.wait_complete(total, 120)
    restart_s = time.monotonic() - t_restart
    records = pipe.sink.records()
    b = analyse(records, total)
    after = records[rows_before:]
    for p in range(PARTITIONS):
        first = next(o for q, o, _ in after if q == p)
        assert first == sink_at_stop[p], f"partition {p}: sink resumed at {first}, committed {sink_at_stop[p]}"
    assert b["sink_dup_rows"] == a2["sink_dup_rows"], "rows written twice across a graceful restart"
    assert b["source_dups"] == a2["source_dups"], "lines sent twice across a graceful restart"
    print(f"\nconnect pipeline: lines in {total}, sink rows out {len(records)} ({b['sink_dup_rows']} rows "
          f"twice), lines in the topic twice {len(b['source_dups'])}; workers ready {pipe.workers_ready_s:.1f}s; "
          f"1) {a['report']}; 2) {a2['report']}; graceful restart of both: complete in {restart_s:.1f}s, "
          f"resumed at {sink_at_stop} / line {src_at_stop}; test {time.monotonic() - t_start:.0f}s")


def test_connect_refuses_config_topic_with_delete_policy(cluster_factory, tmp_path, plugins):
    """A config topic with cleanup.policy=delete: the worker refuses to start with Connect's own
    ConfigException, which it can only raise if DescribeConfigs reports the policy truthfully."""
    c = cluster_factory(3).start()
    bs = c.bootstrap()
    a = AdminClient({"bootstrap.servers": bs})
    a.create_topics([NewTopic("bad-configs", 1, 3, config={"cleanup.policy": "delete"})],
                    operation_timeout=30)["bad-configs"].result(timeout=30)
    assert describe_topic(bs, "bad-configs")["cleanup.policy"] == "delete"
    w = ConnectWorker(tmp_path / "worker", bs, group="bad", plugins=plugins,
                      props={"config.storage.topic": "bad-configs"}).launch()
    needle = "required to have 'cleanup.policy=compact'"
    wait_until(lambda: needle in w.log_path.read_text(errors="replace") or not w.alive(), 120,
               "the worker's refusal")
    log = w.log_path.read_text(errors="replace")
    assert needle in log and "ConfigException" in log, w.log_tail()
    assert "found the topic currently has 'cleanup.policy=delete'" in log, w.log_tail()
    # The herder thread ends; the JVM then exits 1, but only after Connect waits ~45 s for an
    # executor to shut down (measured on both brokers), so the test does not wait for that.
    assert "Uncaught exception in herder work thread, exiting" in log, w.log_tail()


def test_connect_survives_30s_broker_outage(cluster_factory, tmp_path, plugins):
    """All three brokers SIGKILLed, restarted 30 s later on the same ports: the workers carry
    on without any REST call or restart, and the sink ends with every line, in order."""
    c = cluster_factory(3).start()
    pipe = Pipeline(c, tmp_path, plugins)
    pipe.writer.write(1000)
    wait_until(lambda: pipe.running_on(pipe.workers), 90, "src and sink tasks running")
    pipe.sink.wait_complete(300, 60)
    sink_before = sink_committed(pipe.bootstrap, "sink")
    src_line_before = max(o["offset"]["line"] for o in pipe.workers[0].get("/connectors/src/offsets")["offsets"])
    for n in c.nodes.values():
        n.kill()
    t_down = time.monotonic()
    pipe.writer.write(1000)  # lines keep coming while the brokers are gone
    time.sleep(30)
    rows_at_restart = len(pipe.sink.records())
    t_launch = time.monotonic()
    c.start()
    t_up = time.monotonic()
    pipe.writer.join()
    total = 2000
    first_row_s = wait_until(lambda: len(pipe.sink.records()) > rows_at_restart and time.monotonic() - t_up,
                             180, "the sink writing again")
    pipe.sink.wait_complete(total, 180)
    complete_s = time.monotonic() - t_up
    wait_until(lambda: pipe.running_on(pipe.workers), 60, "all tasks running")
    assert all(w.alive() for w in pipe.workers)
    a = analyse(pipe.sink.records(), total)
    for p, at in a["sink_replays"]:
        assert at >= sink_before.get(p, 0), f"partition {p}: replayed from {at} < committed {sink_before}"
    assert all(v >= src_line_before for v in a["source_dups"]), \
        f"source resent lines before its committed line {src_line_before}: {a['source_dups'][:10]}"
    print(f"\nbroker outage: all 3 nodes SIGKILLed, relaunched after {t_launch - t_down:.1f}s, serving again "
          f"{t_up - t_launch:.1f}s later; sink writing again {first_row_s:.1f}s and complete "
          f"{complete_s:.1f}s after the brokers were back; lines in {total}, rows out "
          f"{len(pipe.sink.records())}, replays {a['sink_replays']}, source lines twice {len(a['source_dups'])}")
