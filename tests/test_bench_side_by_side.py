"""`make bench`'s side-by-side mode, in miniature: one scenario, one round of a few seconds,
against Chronik and Apache Kafka (with its defaults and with flush.messages=1), with chronik-bench
and Kafka's ProducerPerformance as clients. It checks the report has every broker's and every
client's row with figures, and the ratios. The figures themselves mean nothing here (debug
binaries, a loaded machine): `make bench` measures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SERVER_BIN, clean_env
from reference import kafka as reference

BENCH_BIN = Path(os.environ.get("CHRONIK_BENCH_BIN", REPO_ROOT / "target" / "debug" / "chronik-bench"))
# Three broker starts (two of them JVMs), two clients each, 2 s per client run.
RUN_TIMEOUT_S = 170


def kafka_missing() -> str | None:
    if shutil.which(reference.JAVA) is None:
        return "no java on PATH (make deps)"
    if not list(reference.LIB.glob("kafka_2.13-*.jar")) or not list(reference.LIB.glob("kafka-tools-*.jar")):
        return f"no Apache Kafka jars in {reference.LIB} (make deps)"
    return None


@pytest.mark.chronik_only("runs Chronik and Apache Kafka itself, side by side")
def test_side_by_side_report_has_every_broker_and_client(tmp_path):
    missing = kafka_missing()
    if missing:
        pytest.skip(missing)
    for b in (SERVER_BIN, BENCH_BIN):
        assert b.exists(), f"{b} does not exist: run `cargo build --bins`"
    out = tmp_path / "benchmarks.md"
    env = clean_env({"BENCH_SERVER_BIN": str(SERVER_BIN), "BENCH_CLIENT_BIN": str(BENCH_BIN)})
    r = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--side-by-side",
         "--compare-only", "produce-256b-acks-1", "--rounds", "1", "--compare-seconds", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=REPO_ROOT)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
    text = out.read_text()
    assert "## Chronik and Apache Kafka side by side" in text, text
    assert "### produce-256b-acks-1" in text, text
    number = r"[\d,]+(\.\d+)?"
    for client in ("chronik-bench", "kafka-producer-perf-test"):
        for broker in ("chronik", "kafka-default", "kafka-flush"):
            # msg/s, MB/s, p50, p99 and peak RSS all filled in.
            row = re.search(rf"^\| {client} \| {broker} \| ({number}) \| ({number}) \| ({number}) \| ({number}) "
                            rf"\| ({number}) \| 1: 1 round \|$", text, re.M)
            assert row, f"no complete row for {client} against {broker}:\n{text}"
            assert float(row.group(1).replace(",", "")) > 0, row.group(0)
        for kafka in ("kafka-default", "kafka-flush"):
            assert re.search(rf"^\| {client} \| {kafka} \| {number}× \|", text, re.M), text
    # Every client and Kafka setup gets its sentence: behind (and by how much) or not.
    assert len(re.findall(r"^- With .*, against Kafka with", text, re.M)) == 4, text
    assert "### Method of the side-by-side scenarios" in text
