"""Kafka's reference client, the Java kafka-clients (4.4.0, pinned in tests/java/pom.xml),
against Chronik with one node and with three: the JUnit module in tests/java (idempotent
producer with every codec, classic consumer groups with the cooperative-sticky assignor and
static membership, AdminClient) run by Maven against brokers started here.

`make deps` (deps-java) resolves the module's dependencies and compiles it once, so Maven runs
offline (-o) here. The same module runs against Apache Kafka (-Dbootstrap=... -Dbrokers=N).
Tests of APIs Chronik does not advertise are skipped by the module with their reason (printed
below); a failure shows Maven's verdict and the client log of each failing test class.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO_ROOT

JAVA_DIR = REPO_ROOT / "tests" / "java"
REPORTS = JAVA_DIR / "target" / "surefire-reports"
# Whole Maven run: JVM start, up-to-date checks, the tests (~30 s on a quiet 2-core machine).
MAVEN_TIMEOUT_S = 200
# Kafka's group.initial.rebalance.delay.ms=0, as in the other group tests: groups form at once.
CHRONIK_ARGS = ["--group-initial-rebalance-delay-ms", "0"]


def maven_env() -> dict[str, str]:
    env = dict(os.environ)
    # Maven's own JVM: a bounded heap and quick start (C1 only); the tests' JVM is bounded by
    # surefire's argLine in the pom.
    env["MAVEN_OPTS"] = "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
    return env


def read_reports() -> dict[str, list[tuple[str, str]]]:
    """Surefire's XML reports: test ids by outcome, skipped ones with their reason."""
    out: dict[str, list[tuple[str, str]]] = {"passed": [], "failed": [], "skipped": []}
    for f in sorted(REPORTS.glob("TEST-*.xml")):
        for case in ET.parse(f).getroot().iter("testcase"):
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
            skipped = case.find("skipped")
            if case.find("failure") is not None or case.find("error") is not None:
                out["failed"].append((name, ""))
            elif skipped is not None:
                # @Disabled: the reason is the message; an aborted assumption: the first line of
                # the exception text.
                text = skipped.get("message") or ((skipped.text or "").strip().splitlines() or [""])[0]
                out["skipped"].append((name, text.removeprefix("org.opentest4j.TestAbortedException: ")))
            else:
                out["passed"].append((name, ""))
    return out


def client_logs(max_chars: int = 20_000) -> str:
    """The Kafka client's WARN/ERROR log of each test class (surefire's *-output.txt)."""
    parts = []
    for f in sorted(REPORTS.glob("*-output.txt")):
        text = f.read_text(errors="replace")
        parts.append(f"--- {f.name} (last {max_chars} chars)\n{text[-max_chars:]}")
    return "\n".join(parts) or "(no client output)"


def run_module(bootstrap: str, brokers: int) -> dict[str, list[tuple[str, str]]]:
    mvn = shutil.which("mvn")
    assert mvn, "mvn not found: run `make deps` (it installs Maven and a JDK)"
    if REPORTS.exists():
        shutil.rmtree(REPORTS)
    cmd = [mvn, "-B", "-q", "-o", "-Dstyle.color=never", "test",
           f"-Dbootstrap={bootstrap}", f"-Dbrokers={brokers}"]
    # Its own process group, so a timeout kills surefire's forked test JVM along with Maven.
    proc = subprocess.Popen(cmd, cwd=JAVA_DIR, env=maven_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=MAVEN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"`{' '.join(cmd)}` ran over {MAVEN_TIMEOUT_S}s and was killed; finished so far: "
                    f"{read_reports()}\n--- maven stdout\n{stdout[-30_000:]}\n{client_logs()}", pytrace=False)
    reports = read_reports()
    for name, reason in reports["skipped"]:
        print(f"skipped {name}: {reason}")
    print(f"java client: {len(reports['passed'])} passed, {len(reports['failed'])} failed, "
          f"{len(reports['skipped'])} skipped")
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {proc.returncode} (it runs offline: `make deps-java` "
                    f"resolves the module)\n--- maven stdout\n{stdout[-30_000:]}\n--- maven stderr\n{stderr[-10_000:]}\n"
                    f"{client_logs()}", pytrace=False)
    assert not reports["failed"], reports["failed"]
    # A run that tested nothing (no bootstrap reached the tests, no report) must not pass.
    assert len(reports["passed"]) >= 10, f"too few Java tests ran: {reports}"
    return reports


def test_java_client_one_node(broker_factory):
    b = broker_factory(name="java1", args=CHRONIK_ARGS)
    run_module(b.bootstrap, 1)


def test_java_client_three_nodes(cluster_factory):
    c = cluster_factory(3, args=CHRONIK_ARGS).start()
    run_module(c.bootstrap(), 3)
