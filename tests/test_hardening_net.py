"""Hostile connection patterns against a real broker (issue 15, items 2-4): partial requests
that pin memory, idle and slow-drip connections that take every slot, and malformed requests
that flood the log.

New settings are given through CHRONIK_* environment variables, which an older binary ignores:
pointed at one (CHRONIK_SERVER_BIN) these tests fail on the behaviour, not on an unknown flag.
"""

from __future__ import annotations

import re
import resource
import select
import socket
import struct
import threading
import time

import pytest

import kafkawire as w
from conftest import ANSI_ESCAPE_RE
from helpers import http_get, produce_all, producer, unique_topic, wait_until

MIB = 1024 * 1024


def metric(broker, name: str, **labels: str) -> float:
    """One series from /metrics (0 when absent)."""
    status, text = http_get(broker.http, "/metrics")
    assert status == 200, text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", line)
        if m and m[1] == name and ",".join(sorted((m[2] or "").split(","))) == want:
            return float(m[3])
    return 0.0


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def connect_from(source_ip: str, broker) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source_ip, 0))
    s.settimeout(5)
    s.connect((broker.host, broker.port))
    s.setblocking(False)
    return s


def closed_by_peer(s: socket.socket) -> bool:
    """True once the broker has closed `s` (EOF or reset); never blocks."""
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def produce_one(broker, topic: str, timeout_s: float) -> None:
    log = produce_all(producer(broker.bootstrap, **{"message.timeout.ms": int(timeout_s * 1000)}),
                      topic, [(b"k", b"real client")], timeout_s=timeout_s + 5)
    assert not log.failed, f"a real client could not produce: {log.failed}"


@pytest.mark.chronik_only("Chronik's request budget, seen in /metrics")
def test_stalled_partial_requests_cannot_pin_memory(broker_factory):
    """12 connections each announce a 100 MiB request, send 60 MiB and stall. Unbudgeted, the
    broker buffers all of it (measured on main: +720 MB held); here the request budget (default
    256 MiB) bounds what it takes, stalled requests are closed after the read timeout, and a real
    client keeps producing meanwhile."""
    b = broker_factory(env={"CHRONIK_REQUEST_READ_TIMEOUT_MS": "4000"})
    baseline = b.rss_bytes()
    attackers, stop = 12, threading.Event()
    sent = [0] * attackers
    body = b"\x00" * MIB

    def attack(i: int) -> None:
        with socket.create_connection((b.host, b.port)) as s:
            s.settimeout(0.5)
            try:
                s.sendall(struct.pack(">i", 100 * MIB))
                while sent[i] < 60 * MIB and not stop.is_set():
                    try:
                        sent[i] += s.send(body)
                    except socket.timeout:
                        continue  # the broker paused reading: it is over budget
                stop.wait()  # stall with the request incomplete
            except OSError:
                pass  # closed by the broker

    threads = [threading.Thread(target=attack, args=(i,), daemon=True) for i in range(attackers)]
    for t in threads:
        t.start()
    try:
        # While the attack runs, a real client still produces (its small requests fit beside
        # the stalled ones), and stalled requests are closed after the read timeout.
        produce_one(b, unique_topic("beside-stalled"), timeout_s=30)

        def stalled_closed_within_budget() -> bool:
            peak = peak_rss(b.pid)
            # The budget (256 MiB) plus slack for the broker's own working set.
            assert peak - baseline <= 256 * MIB + 64 * MIB, \
                f"peak RSS {peak / MIB:.0f} MiB from {baseline / MIB:.0f} MiB: over the request budget"
            return metric(b, "chronik_connections_closed_total", reason="request_read_timeout") >= 4

        wait_until(stalled_closed_within_budget, timeout_s=60,
                   what="stalled requests closed by the read timeout", interval_s=0.2)
        print(f"RSS baseline {baseline / MIB:.0f} MiB, peak {peak_rss(b.pid) / MIB:.0f} MiB, "
              f"sent {sum(sent) / MIB:.0f} MiB")
        assert sum(sent) >= 200 * MIB, "the attack did not get going"
        assert b.alive()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    produce_one(b, unique_topic("after-stalled"), timeout_s=30)


@pytest.mark.chronik_only("Chronik's connection limits, seen in /metrics")
def test_idle_and_slow_connections_do_not_lock_out_clients(broker_factory):
    """Thousands of idle sockets (from one address) and slow-drip requests (from another) try
    to take every one of --max-connections. The per-address limit keeps room for a real client,
    which produces while they are open; idle ones are closed after connections.max.idle.ms and
    slow-drip ones after the request read timeout, although they keep sending bytes.
    On a broker without these limits, the real client is refused."""
    idle_n, slow_n, per_ip = 1200, 1000, 800
    raise_fd_limit(idle_n + slow_n + 1000)
    b = broker_factory(env={
        "CHRONIK_MAX_CONNECTIONS": "2000",
        "CHRONIK_MAX_CONNECTIONS_PER_IP": str(per_ip),
        # Longer than opening them all takes here (10 s on a busy machine: the listen
        # backlog overflows and some SYNs wait for their retransmission).
        "CHRONIK_CONNECTIONS_MAX_IDLE_MS": "15000",
        "CHRONIK_REQUEST_READ_TIMEOUT_MS": "15000",
    })
    t0 = time.monotonic()
    idle = [connect_from("127.0.0.2", b) for _ in range(idle_n)]
    slow = [connect_from("127.0.0.3", b) for _ in range(slow_n)]
    print(f"opened in {time.monotonic() - t0:.1f}s")
    stop = threading.Event()
    slow_closed: set[int] = set()

    def drip() -> None:
        """A 1000-byte request announced, then one byte per second on every slow socket."""
        payload = struct.pack(">i", 1000)
        for i, s in enumerate(slow):
            try:
                s.send(payload)
            except OSError:
                slow_closed.add(i)
        while not stop.wait(1.0):
            for i, s in enumerate(slow):
                if i not in slow_closed:
                    try:
                        s.send(b"\x00")
                    except OSError:
                        slow_closed.add(i)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        # A real client, from 127.0.0.1, while all of them are open.
        with w.Connection(b.bootstrap) as conn:
            resp = w.parse_api_versions_response(conn.roundtrip(w.api_versions_request(0, 77)), 0)
            assert resp.correlation_id == 77
        produce_one(b, unique_topic("beside-idle"), timeout_s=15)
        print(f"produced at {time.monotonic() - t0:.1f}s")
        refused = metric(b, "chronik_connections_refused_total", reason="max_connections_per_ip")
        assert refused >= 100, f"only {refused} connections refused by the per-address limit"

        def all_closed() -> bool:
            for i, s in enumerate(slow):
                if i not in slow_closed and closed_by_peer(s):
                    slow_closed.add(i)
            return all(closed_by_peer(s) for s in idle) and len(slow_closed) == slow_n

        wait_until(all_closed, timeout_s=60, what="idle and slow-drip connections closed",
                   interval_s=0.5)
        assert metric(b, "chronik_connections_closed_total", reason="idle") >= per_ip - 1
        assert metric(b, "chronik_connections_closed_total",
                      reason="request_read_timeout") >= per_ip - 1
        produce_one(b, unique_topic("after-idle"), timeout_s=20)
    finally:
        stop.set()
        dripper.join(10)
        for s in idle + slow:
            s.close()


@pytest.mark.chronik_only("Chronik's log lines and /metrics")
def test_malformed_request_warnings_are_rate_limited(broker_factory):
    """300 malformed requests log at most a window's worth of WARN lines per kind (main logged
    one line each); the rest are counted, and the next line says how many were suppressed."""
    b = broker_factory()
    n = 300

    def flood() -> None:
        for i in range(n):
            with w.Connection(b.bootstrap) as conn:
                # Alternately a negative frame size and a frame that does not decode.
                conn.send(w.i32(-1) if i % 2 else w.i32(6) + w.i16(0) + w.i16(9) + b"\xff\xff")
                conn.wait_closed(10)

    t0 = time.monotonic()
    flood()
    # Two call sites, each at most 10 lines per 10 s window the flood touched.
    windows = int((time.monotonic() - t0) // 10) + 2
    lines = sum(1 for line in b.stderr_path.read_text(errors="replace").splitlines()
                if "WARN" in line and "closing connection" in line)
    assert lines <= 2 * 10 * windows, f"{lines} warning lines for {n} bad requests"
    wait_until(lambda: metric(b, "chronik_bad_requests_total", kind="frame_size") >= n // 2
               and metric(b, "chronik_bad_requests_total", kind="decode") >= n // 2,
               timeout_s=10, what="bad requests counted")
    suppressed = metric(b, "chronik_log_suppressed_total", site="bad_frame") \
        + metric(b, "chronik_log_suppressed_total", site="decode")
    assert suppressed >= n - lines, (suppressed, lines)
    # After the window, the next warning reports how many were held back.
    time.sleep(10.5)
    with w.Connection(b.bootstrap) as conn:
        conn.send(w.i32(-1))
        conn.wait_closed(10)

    def reported() -> bool:
        text = ANSI_ESCAPE_RE.sub("", b.stderr_path.read_text(errors="replace"))
        return re.search(r"WARN.*suppressed=\d+", text) is not None

    wait_until(reported, timeout_s=10, what="a warning saying how many were suppressed")


@pytest.mark.chronik_only("Apache Kafka 4.4.0 closes the connection (EOF) while its long poll waits past connections.max.idle.ms; Chronik counts a connection with work in flight as busy")
def test_a_long_poll_is_not_idle(broker_factory):
    """A connection waiting on its own long-poll fetch has work in flight: it outlives
    connections.max.idle.ms until the answer, and only then becomes idle."""
    b = broker_factory(env={"CHRONIK_CONNECTIONS_MAX_IDLE_MS": "1500"})
    topic = unique_topic("long-poll")
    produce_one(b, topic, timeout_s=20)
    max_wait_ms = 4000
    # Fetch v4 at the log end (offset 1): nothing to return, so the broker holds it max_wait.
    body = (w.i32(-1) + w.i32(max_wait_ms) + w.i32(1) + w.i32(1 << 20) + w.i8(0)
            + w.i32(1) + w.string(topic) + w.i32(1) + w.i32(0) + w.i64(1) + w.i32(1 << 20))
    with w.Connection(b.bootstrap) as conn:
        t0 = time.monotonic()
        conn.send(w.request(1, 4, 99, body))
        # Past the idle timeout, with the fetch still waiting: the connection still reads.
        time.sleep(2.5)
        conn.send(w.api_versions_request(0, 100))
        assert w.Reader(conn.recv_frame(20)).i32() == 99
        waited = time.monotonic() - t0
        assert waited >= max_wait_ms / 1000 - 0.5, f"answered after {waited:.1f}s, not a long poll"
        assert w.Reader(conn.recv_frame(20)).i32() == 100
        # Idle from now on: closed about 1.5 s later.
        assert conn.wait_closed(15) == b"", "an idle connection must be closed"
