"""chronik-bench against a real broker, briefly: it works, its numbers add up, and its verification
reads back what it produced. (That verification catches a broker which drops acknowledged data is
tested in crates/chronik-bench/tests/lossy_broker.rs, against a test double that does exactly that.)
Performance is measured by `make bench`, not here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, clean_env
from helpers import unique_topic, watermarks

BENCH_BIN = Path(os.environ.get("CHRONIK_BENCH_BIN", REPO_ROOT / "target" / "debug" / "chronik-bench"))
RUN_TIMEOUT_S = 120

def bench(*args: str, timeout_s: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    if not BENCH_BIN.exists():
        pytest.fail(f"{BENCH_BIN} does not exist: run `cargo build --bin chronik-bench`")
    return subprocess.run([str(BENCH_BIN), *args], capture_output=True, text=True, timeout=timeout_s,
                          env=clean_env())


def bench_json(*args: str) -> dict:
    r = bench(*args, "--json")
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}"
    return json.loads(r.stdout)


def test_produce_full_verification_reads_back_every_message(module_broker):
    topic = unique_topic("bench-full")
    rep = bench_json("-b", module_broker.bootstrap, "--topic", topic, "--partitions", "3",
                     "--messages", "6000", "--concurrency", "32", "--message-size", "200",
                     "--acks", "all", "--verify", "full")
    assert rep["sent"] == rep["acked"] == 6000 and rep["failed"] == 0, rep
    assert rep["partitions"] == 3
    v = rep["verify"]
    assert v["ok"] and v["mode"] == "full" and v["stored"] == 6000, v
    assert v["missing"] == v["duplicates"] == v["corrupt"] == 0, v
    lat = rep["latency_us"]
    assert lat["count"] == 6000
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    assert rep["msgs_per_s"] > 0 and rep["mb_per_s"] > 0 and rep["duration_s"] > 0
    # The stored data is what a real client sees too.
    assert sum(watermarks(module_broker.bootstrap, topic, p)[1] for p in range(3)) == 6000


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_idempotent_compressed_produce_verifies(module_broker, codec):
    topic = unique_topic(f"bench-idem-{codec}")
    rep = bench_json("-b", module_broker.bootstrap, "--topic", topic, "--partitions", "2",
                     "--messages", "4000", "--concurrency", "64", "--idempotence", "--compression", codec,
                     "--linger-ms", "2", "--verify", "full")
    assert rep["acked"] == 4000 and rep["failed"] == 0, rep
    assert rep["verify"]["ok"] and rep["verify"]["duplicates"] == 0, rep["verify"]


def test_transactional_produce_commits_and_verifies(module_broker):
    """--transactional-id: 1,200 messages in transactions of 100 (a slot count below and above
    one transaction's worth), every one committed and read back with read_committed; the high
    watermarks moved by the messages plus one marker per partition per transaction."""
    for concurrency in ("32", "256"):
        topic = unique_topic("bench-txn")
        rep = bench_json("-b", module_broker.bootstrap, "--topic", topic, "--partitions", "3",
                         "--messages", "1200", "--concurrency", concurrency, "--acks", "all",
                         "--transactional-id", f"{topic}-tx", "--messages-per-transaction", "100",
                         "--verify", "full")
        assert rep["sent"] == rep["acked"] == 1200 and rep["failed"] == 0, rep
        t = rep["transactions"]
        assert t["committed"] == 12 and t["aborted"] == t["end_failed"] == 0, t
        assert t["partitions_per_transaction"] == 3 and t["end_txn_us"]["count"] == 12, t
        v = rep["verify"]
        assert v["ok"] and v["mode"] == "full" and v["stored"] == 1200 + 12 * 3, v
        assert v["missing"] == v["duplicates"] == v["corrupt"] == 0, v
        assert rep["latency_us"]["count"] == 1200, rep["latency_us"]


def test_transactional_flags_need_acks_all(module_broker):
    r = bench("-b", module_broker.bootstrap, "--topic", unique_topic("bench-txn-acks"), "--messages", "1",
              "--transactional-id", "t", "--acks", "1")
    assert r.returncode == 1 and "--acks all" in r.stderr, r


def test_duration_mode_counts_and_reports_text(module_broker):
    topic = unique_topic("bench-text")
    r = bench("-b", module_broker.bootstrap, "--topic", topic, "--partitions", "1",
              "--duration", "2", "--warmup", "1", "--concurrency", "8")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for needle in ("msg/s", "MB/s", "p99.9", "acknowledged", "verification (count): OK"):
        assert needle in out, out
    # Warm-up is produced (and verified) but not measured.
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("measured"))
    assert " in 2." in line or " in 1.9" in line, line


def test_consume_mode_reads_what_is_there(module_broker):
    topic = unique_topic("bench-consume")
    bench_json("-b", module_broker.bootstrap, "--topic", topic, "--partitions", "2", "--messages", "3000")
    rep = bench_json("-b", module_broker.bootstrap, "--topic", topic, "--mode", "consume", "--duration", "30")
    assert rep["mode"] == "consume" and rep["measured"] == 3000, rep
    assert rep["mb_per_s"] > 0


def test_roundtrip_mode_times_produce_to_fetch(module_broker):
    topic = unique_topic("bench-rt")
    rep = bench_json("-b", module_broker.bootstrap, "--topic", topic, "--partitions", "2",
                     "--mode", "roundtrip", "--duration", "2", "--rate-limit", "500", "--concurrency", "8",
                     "--acks", "all")
    assert rep["mode"] == "roundtrip" and rep["acked"] > 0, rep
    # A fixed rate of 500/s for 2 s: about 1000 messages, never more than the schedule allows.
    assert 700 <= rep["acked"] <= 1001, rep
    assert rep["latency_us"]["count"] > 0 and rep["ack_latency_us"]["count"] > 0, rep
    assert rep["verify"]["ok"], rep["verify"]


def test_consume_of_an_unknown_topic_is_a_clear_error(module_broker):
    r = bench("-b", module_broker.bootstrap, "--topic", unique_topic("bench-none"), "--mode", "consume")
    assert r.returncode == 1, r
    assert "does not exist" in r.stderr, r.stderr


def test_unreachable_broker_is_a_clear_error():
    r = bench("-b", "127.0.0.1:1", "--topic", "x", "--messages", "1", timeout_s=30)
    assert r.returncode == 1, r
    assert "127.0.0.1:1" in r.stderr, r.stderr


@pytest.mark.parametrize("args,names", [
    (["--message-size", "10"], ["--message-size", "24"]),
    (["--acks", "2"], ["--acks"]),
    (["--concurrency", "0"], ["--concurrency"]),
    (["--compression", "brotli"], ["--compression"]),
    (["--mode", "roundtrip", "--acks", "0"], ["roundtrip", "acks"]),
    (["--duration", "x"], ["--duration"]),
])
def test_bad_flags_are_refused_by_name(args, names):
    r = bench("-b", "127.0.0.1:1", *args, timeout_s=30)
    assert r.returncode in (1, 2), r
    assert any(n in r.stderr for n in names), r.stderr
    if args[0] != "--mode":
        assert r.returncode == 2, r


def test_disk_probe_reports_its_limits(tmp_path):
    r = bench("disk", "--dir", str(tmp_path), "--seconds", "1", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["fsync_4k_samples"] >= 100
    assert 0 < d["fsync_4k_p50_us"] <= d["fsync_4k_p99_us"] <= d["fsync_4k_p999_us"] <= d["fsync_4k_max_us"]
    assert d["fsync_4k_per_s"] > 0 and d["seq_fsync_mb_per_s"] > 0
    assert not list(tmp_path.iterdir()), "probe files left behind"
