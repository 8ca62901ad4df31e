"""`make bench`'s Chronik-only scenarios, in miniature, so that they keep running: each through
scripts/bench.py for one measured second against the binaries under test, checking that the
report has the scenario's row and its own lines with figures. The figures mean nothing here
(debug binaries, a loaded machine): `make bench` measures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SERVER_BIN, clean_env

BENCH_BIN = Path(os.environ.get("CHRONIK_BENCH_BIN", REPO_ROOT / "target" / "debug" / "chronik-bench"))
# The disk probe (5 s), one broker, three producer runs of 1 + 2 s each, read back.
RUN_TIMEOUT_S = 180


@pytest.mark.chronik_only("runs the benchmark script against Chronik's binaries")
def test_transactions_scenario_reports_every_mode(tmp_path):
    for b in (SERVER_BIN, BENCH_BIN):
        assert b.exists(), f"{b} does not exist: run `cargo build --bins`"
    out = tmp_path / "benchmarks.md"
    env = clean_env({"BENCH_SERVER_BIN": str(SERVER_BIN), "BENCH_CLIENT_BIN": str(BENCH_BIN)})
    r = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--only", "transactions",
                        "--seconds", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=REPO_ROOT)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
    text = out.read_text()
    assert re.search(r"^\| transactions \| .* \| yes \(full\) \|", text, re.M), text
    number = r"[\d,]+(\.\d+)?"
    for run in ("idempotent", "txn-100", "txn-1000"):
        row = re.search(rf"^\| {run} \| ({number}) \| ({number}) \| ({number}) \|.*\| yes \|$", text, re.M)
        assert row, f"no complete row for {run}:\n{text}"
        assert float(row.group(1).replace(",", "")) > 0, row.group(0)
    assert re.search(r"^\| txn-1000 \| .* \| [\d,]+ committed, 0 aborted \|", text, re.M), text
