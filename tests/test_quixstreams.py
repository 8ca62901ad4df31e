"""A real compacted-topic user (issue 19): a quixstreams app (tests/quix_count_app.py, in
.venv-quix from `make deps`) counts records per key in its RocksDB state, which quixstreams backs
with a changelog topic it creates itself with cleanup.policy=compact. The app's local state is
deleted and the broker restarted, the broker's cleaner compacts the changelog, and a restarted app
restores its counts from the compacted changelog alone: new records continue the counts (N_k + M_k),
they do not start again from zero (M_k). Runs against Apache Kafka 4.4 too (--broker=kafka; the
cleaner metric and WAL files are Chronik's)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from conftest import REPO_ROOT, _die_with_parent
from helpers import (admin, admin_error, consume_range, consumer, http_get, produce_all, producer, unique_topic,
                     wait_until, watermarks)
from procs import Stoppable

QUIX_PYTHON = REPO_ROOT / ".venv-quix" / "bin" / "python"
APP = REPO_ROOT / "tests" / "quix_count_app.py"

KEYS = 10
# The app commits, and so writes the count of each key it touched since the last commit to the
# changelog, every 50 records (and every 0.3 s): the 2000 records before the restarts give the
# changelog about 300 records, of which 10 are live.
COMMIT_EVERY = 50
# Small changelog segments, so it has several sealed (cleanable) ones; nothing is cleanable while
# the app counts (min.compaction.lag.ms of an hour): the log is seen whole before the cleaner runs.
SEGMENT_CONFIG = {"internal.segment.bytes": "4096", "min.compaction.lag.ms": "3600000"}
CLEAN_CONFIG = {"min.compaction.lag.ms": "0", "min.cleanable.dirty.ratio": "0.01"}


class QuixApp(Stoppable):
    """tests/quix_count_app.py as a process of its own, on one state dir (it may be restarted)."""

    error = AssertionError
    shutdown_timeout_s = 30.0

    def __init__(self, workdir: Path, group: str, input_topic: str, output_topic: str):
        self.name = "quix-app"
        self.workdir = workdir
        self.group = group
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.state_dir = workdir / "state"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None

    @property
    def changelog_topic(self) -> str:
        return f"changelog__{self.group}--{self.input_topic}--default"

    def start(self, bootstrap: str) -> None:
        assert not self.alive()
        self.starts += 1
        self.log_path = self.workdir / f"app.{self.starts}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(QUIX_PYTHON), str(APP), bootstrap, self.group, self.input_topic, self.output_topic,
                 str(self.state_dir), str(COMMIT_EVERY)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"the quixstreams app exited with {self.proc.returncode}:\n{self.stderr_tail()}")


@pytest.fixture
def quix_app(tmp_path):
    if not QUIX_PYTHON.exists():
        pytest.fail(f"{QUIX_PYTHON} is missing: run `make deps` (tests/requirements-quix.txt)", pytrace=False)
    made: list[QuixApp] = []

    def make(*args) -> QuixApp:
        made.append(QuixApp(tmp_path / "app", *args))
        made[-1].workdir.mkdir(exist_ok=True)
        return made[-1]

    yield make
    for app in made:
        app.kill()


def seq_items(start: int, n: int, keys: int) -> list[tuple[bytes, bytes]]:
    """Records start..start+n-1, key k<seq % keys>, value {"seq": seq}."""
    return [(b"k%d" % (s % keys), json.dumps({"seq": s}).encode()) for s in range(start, start + n)]


def last_seqs(items) -> dict[str, int]:
    """Each key's last seq among the produced items."""
    return {k.decode(): json.loads(v)["seq"] for k, v in items}


def expected_counts(items) -> dict[str, int]:
    return dict(Counter(k.decode() for k, _ in items))


class OutputReader:
    """Follows the app's output topic from offset 0: the latest {"count", "seq"} of each key."""

    def __init__(self, bootstrap: str, topic: str):
        self.c = consumer(bootstrap, **{"auto.offset.reset": "earliest"})
        self.c.assign([TopicPartition(topic, 0, 0)])
        self.latest: dict[str, dict] = {}

    def read(self) -> dict[str, dict]:
        while (m := self.c.poll(0.2)) is not None:
            assert not m.error(), m.error()
            self.latest[m.key().decode()] = json.loads(m.value())
        return self.latest

    def wait_for(self, items, app: QuixApp, timeout_s: float = 60) -> dict[str, int]:
        """Waits until every key's latest output comes from its last record among `items`;
        returns the counts then."""
        want = last_seqs(items)

        def done():
            app.check_alive()
            latest = self.read()
            return all(latest.get(k, {}).get("seq") == s for k, s in want.items())

        wait_until(done, timeout_s, f"the app's output for the last record of each key {want}", interval_s=0.1)
        return {k: v["count"] for k, v in self.latest.items()}

    def close(self) -> None:
        self.c.close()


def alter(bootstrap: str, topic: str, config: dict[str, str]) -> None:
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()])
    assert admin_error(a.incremental_alter_configs([res])[res]) is None, config

    def applied():
        entries = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
        got = list(entries.values())[0].result(timeout=30)
        # internal.segment.bytes is not described (an internal config, as in Kafka).
        return all(got[k].value == v for k, v in config.items() if not k.startswith("internal."))

    wait_until(applied, 30, f"{config} on {topic}", interval_s=0.2)


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    a, res = admin(bootstrap), ConfigResource(ResourceType.TOPIC, topic)
    return {k: e.value for k, e in a.describe_configs([res])[res].result(timeout=30).items()}


def topic_exists(bootstrap: str, topic: str) -> bool:
    # Metadata for all topics: asking for this one would create it (auto.create.topics.enable).
    t = admin(bootstrap).list_topics(timeout=10).topics.get(topic)
    return t is not None and t.error is None and len(t.partitions) == 1


def read_changelog(bootstrap: str, topic: str):
    """(high watermark, offsets present) of the changelog's partition 0, read from offset 0."""
    low, high = watermarks(bootstrap, topic, 0)
    assert low == 0, low  # compaction never moves the log start
    return high, [m.offset for m in consume_range(bootstrap, topic, 0, 0, high)]


def wal_segments(wal: Path) -> tuple[int, int]:
    """Chronik's WAL segment files of a partition: (count, total bytes)."""
    files = list(wal.glob("wal_*.log"))
    return len(files), sum(f.stat().st_size for f in files)


def test_quixstreams_restores_counts_from_a_compacted_changelog(broker_factory, broker_kind, quix_app):
    started = time.monotonic()
    # The cleaner looks for dirty logs every 200 ms instead of every 15 s.
    b = broker_factory(args=["--log-cleaner-backoff-ms", "200"])
    app = quix_app(unique_topic("counter"), unique_topic("events"), unique_topic("counts"))

    # quixstreams creates the input, output and changelog topics, the changelog as compacted.
    app.start(b.bootstrap)
    wait_until(lambda: app.check_alive() or topic_exists(b.bootstrap, app.changelog_topic), 60,
               f"quixstreams to create {app.changelog_topic}", interval_s=0.2)
    assert topic_config(b.bootstrap, app.changelog_topic)["cleanup.policy"] == "compact"
    alter(b.bootstrap, app.changelog_topic, SEGMENT_CONFIG)

    # 1000 records over the 10 keys, then 1000 over k0..k4 only: the last counts of k5..k9 sit in
    # early changelog segments, so compaction leaves them between removed records.
    before = seq_items(0, 1000, KEYS) + seq_items(1000, 1000, KEYS // 2)
    log = produce_all(producer(b.bootstrap), app.input_topic, before)
    assert not log.failed, log.failed[:3]
    out = OutputReader(b.bootstrap, app.output_topic)
    counts = out.wait_for(before, app)
    out.close()
    assert counts == expected_counts(before)
    # SIGTERM: quixstreams commits its last checkpoint and leaves the group.
    app.terminate()

    written, offsets = read_changelog(b.bootstrap, app.changelog_topic)
    assert offsets == list(range(written)), "the changelog was cleaned before the cleaner was let run"
    assert written >= 10 * KEYS, written  # many versions of each key

    # Nothing local is left: only the changelog can bring the counts back.
    shutil.rmtree(app.state_dir)
    b.kill()
    b.start()

    wal = b.data_dir / "wal" / app.changelog_topic / "0"
    segments_before = wal_segments(wal) if broker_kind == "chronik" else None
    alter(b.bootstrap, app.changelog_topic, CLEAN_CONFIG)

    def compacted():
        high, offsets = read_changelog(b.bootstrap, app.changelog_topic)
        assert high == written, (high, written)
        if broker_kind == "chronik" and wal_segments(wal)[1] > segments_before[1] // 2:
            return None
        return offsets if len(offsets) <= written // 4 else None

    offsets = wait_until(compacted, 60, "the cleaner to compact the changelog", interval_s=0.5)
    # Removed records between kept ones (k5..k9's last counts), and the newest record kept.
    gaps = sum(1 for a, c in zip(offsets, offsets[1:]) if c != a + 1)
    assert gaps > 0 and offsets[-1] == written - 1, offsets
    print(f"changelog: {written} records written, {len(offsets)} left after compaction ({gaps} gaps "
          f"between kept records)")
    if broker_kind == "chronik":
        _, text = http_get(b.http, "/metrics")
        read = re.search(r"^chronik_log_cleaner_bytes_read_total (\d+)", text, re.M)
        assert read and int(read.group(1)) > 0, text[:2000]
        print(f"changelog segment files (count, bytes): {segments_before} before, {wal_segments(wal)} after")

    # A fresh app process restores its counts from the compacted changelog, then counts on.
    app.start(b.bootstrap)
    after = seq_items(len(before), 300, KEYS)
    log = produce_all(producer(b.bootstrap), app.input_topic, after)
    assert not log.failed, log.failed[:3]
    out = OutputReader(b.bootstrap, app.output_topic)
    counts = out.wait_for(before + after, app)
    out.close()
    # N_k + M_k: counted on from the restored state (M_k alone if it started again from zero).
    assert counts == expected_counts(before + after), (counts, expected_counts(before + after))
    recovered = re.search(r"Recovery successful for .*%s" % re.escape(app.changelog_topic), app.log())
    assert recovered, f"the app logged no recovery from {app.changelog_topic}:\n{app.stderr_tail()}"
    app.terminate()
    print(f"run time {time.monotonic() - started:.1f}s")
