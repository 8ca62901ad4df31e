#!/usr/bin/env python3
"""`make bench`: the standard scenarios against a freshly started release broker.

Measures the raw disk first (`chronik-bench disk`), then runs each scenario with
`chronik-bench --json` against its own fresh broker (fsync=always, every message verified
stored), and writes docs/benchmarks.md: machine, commit, date, the disk limits, and each
scenario's figures with ratios to those limits, all taken in this one run.

Standard library only, so it runs before any venv exists. Options: --seconds N shortens
every scenario (the standard is 30), --out FILE writes elsewhere, --only NAME runs one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import select
import re
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER = Path(os.environ.get("BENCH_SERVER_BIN", REPO / "target" / "release" / "chronik-server"))
BENCH = REPO / "target" / "release" / "chronik-bench"
READY_RE = re.compile(r"^chronik-server ready kafka=(\S+) ")
READY_TIMEOUT_S = 60


@dataclass
class Scenario:
    name: str
    what: str
    args: list[str]
    # Targets from the issue, checked and shown in the table.
    target: str = ""
    # (report, disk, reports by scenario name) -> met?; None when the scenario has no target.
    check: object = None
    broker_args: list[str] = field(default_factory=list)
    # 1: a standalone broker; 3: a three-node cluster started from one peer list.
    nodes: int = 1
    # A scenario of several steps: (scenario, brokers, seconds, workdir) -> (exit code, report);
    # None runs `args` once.
    run: object = None


def scenarios(seconds: int) -> list[Scenario]:
    d = ["--duration", str(seconds), "--warmup", "2"]
    return [
        Scenario("reference", "c=128, 256 B, acks=1, 3 partitions",
                 [*d, "--concurrency", "128", "--message-size", "256", "--acks", "1", "--partitions", "3"],
                 target="≥ 150,000 msg/s, p99 ≤ 2 ms",
                 check=lambda r, d, _: r["msgs_per_s"] >= 150_000 and r["latency_us"]["p99"] <= 2_000),
        Scenario("durable", "c=128, 256 B, acks=all, 3 partitions",
                 [*d, "--concurrency", "128", "--message-size", "256", "--acks", "all", "--partitions", "3"]),
        Scenario("throughput", "c=8192, 1 KiB, linger 5 ms, batch 128 KiB, acks=all, 16 partitions",
                 [*d, "--concurrency", "8192", "--message-size", "1024", "--linger-ms", "5",
                  "--batch-size", "131072", "--acks", "all", "--partitions", "16"],
                 target="≥ 70% of the fsync'd sequential disk bandwidth",
                 check=lambda r, d, _: r["mb_per_s"] >= 0.7 * float(d["seq_fsync_mb_per_s"])),
        Scenario("e2e-latency", "produce → consumer fetch at 10k msg/s, 256 B, acks=all, 3 partitions",
                 [*d, "--mode", "roundtrip", "--rate-limit", "10000", "--concurrency", "64",
                  "--message-size", "256", "--acks", "all", "--partitions", "3"],
                 target="p99 ≤ 3 ms",
                 check=lambda r, d, _: r["latency_us"]["p99"] <= 3_000),
        Scenario("cluster", "3 nodes, RF=3, c=128, 256 B, acks=all, 3 partitions",
                 [*d, "--concurrency", "128", "--message-size", "256", "--acks", "all", "--partitions", "3",
                  "--replication-factor", "3"],
                 target="≥ 40% of durable's msg/s",
                 check=lambda r, d, all_: "durable" in all_
                 and r["msgs_per_s"] >= 0.4 * all_["durable"]["msgs_per_s"],
                 nodes=3),
        Scenario("cold-read", "acks=all at 10k msg/s, 256 B, 3 partitions: p99 alone, then with a consumer "
                 "reading the same topic from offset 0, out of the page cache",
                 [*d, "--mode", "produce", "--rate-limit", "10000", "--concurrency", "64",
                  "--message-size", "256", "--acks", "all", "--partitions", "3"],
                 target="p99 with the consumer ≤ 1.5 × p99 alone",
                 check=lambda r, d, _: r.get("cold_read", {}).get("ratio", 99) <= 1.5,
                 run=run_cold_read),
    ]


# Bytes the cold-read scenario writes before it measures. The consumer reads them from offset 0
# again and again (the cache dropped before each pass), so it reads old data for the whole
# measurement however fast it is.
COLD_READ_FILL_BYTES = 1_000_000_000


def drop_page_cache(data_dir: Path, topic: str) -> str:
    """Drops the topic's segment files from the page cache with posix_fadvise(DONTNEED): the
    data is synced (--fsync always), so its pages are clean and go at once. Needs no root and
    leaves the rest of the machine's cache alone. Returns fincore's count of what is still
    cached, when fincore (util-linux) is installed."""
    files = sorted((data_dir / "wal" / topic).rglob("*.log"))
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if not files or shutil.which("fincore") is None:
        return f"{len(files)} segment files"
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES,SIZE", *map(str, files)],
                       capture_output=True, text=True)
    cached = size = 0
    for line in r.stdout.splitlines():
        res, sz = line.split()
        cached, size = cached + int(res), size + int(sz)
    return f"{len(files)} segment files, {cached / 1e6:.1f} of {size / 1e6:.0f} MB still cached"


def consume_passes(base: list[str], data_dir: Path, topic: str, until: float) -> dict:
    """Reads the topic from offset 0 with chronik-bench's consumer, pass after pass until the
    monotonic deadline `until`, dropping the topic from the page cache before each pass."""
    passes, mb, secs, errors = 0, 0.0, 0.0, []
    while (left := until - time.monotonic()) > 1:
        drop_page_cache(data_dir, topic)
        r = subprocess.run([*base, "--mode", "consume", "--duration", str(int(left)),
                            "--request-timeout-ms", "60000"], capture_output=True, text=True, timeout=left + 120)
        try:
            read = json.loads(r.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            errors.append(r.stderr[-2000:])
            break
        passes += 1
        mb += float(read.get("mb_per_s", 0)) * float(read.get("duration_s", 0))
        secs += float(read.get("duration_s", 0))
    return {"passes": passes, "mb": mb, "seconds": secs, "errors": errors}


def run_cold_read(s: Scenario, brokers: list, seconds: int, workdir: Path) -> tuple[int, dict | None, str]:
    """Fills the topic, drops it from the page cache, measures acks=all produce p99 alone, then
    measures it again while a consumer reads the topic from offset 0, pass after pass, each
    pass out of the page cache. The report is the second producer run's, with a `cold_read`
    section: both p99s, their ratio, and how much and how long the consumer read."""
    boot = ",".join(b.addr for b in brokers)
    topic = f"bench-{s.name}"
    base = [str(BENCH), "--bootstrap-servers", boot, "--topic", topic, "--json"]
    fill = [*base, "--partitions", "3", "--acks", "1", "--message-size", "16384", "--batch-size", "524288",
            "--linger-ms", "5", "--concurrency", "256", "--messages", str(COLD_READ_FILL_BYTES // 16384),
            "--verify", "none"]
    print(f"bench: {s.name}: fill: {' '.join(fill[1:])}", flush=True)
    rc, fill_report, err = run_json(fill, 600)
    if rc != 0 or fill_report is None or fill_report.get("failed"):
        return rc or 1, None, f"{err}\nfill: {json.dumps(fill_report)}"
    data_dir = brokers[0].workdir / "data"
    produce = [*base, "--verify", "count", *s.args]
    settle()
    print(f"bench: {s.name}: page cache dropped ({drop_page_cache(data_dir, topic)})", flush=True)
    print(f"bench: {s.name}: alone: {' '.join(produce[1:])}", flush=True)
    rc, alone, err = run_json(produce, seconds * 4 + 120)
    if rc != 0 or alone is None:
        return rc or 1, alone, err
    settle()
    print(f"bench: {s.name}: again, with a consumer reading from offset 0 (--mode consume), "
          "the page cache dropped before each pass", flush=True)
    # The consumer reads through the producer's warm-up and measured seconds, and a little more.
    read: dict = {}
    reader = threading.Thread(target=lambda: read.update(
        consume_passes(base, data_dir, topic, time.monotonic() + seconds + 4)))
    reader.start()
    try:
        rc, loaded, err = run_json(produce, seconds * 4 + 120)
    finally:
        reader.join()
    if read.get("errors"):
        return 1, None, "\n".join(read["errors"])
    if rc != 0 or loaded is None:
        return rc or 1, loaded, err
    p99_alone, p99_loaded = alone["latency_us"]["p99"], loaded["latency_us"]["p99"]
    loaded["cold_read"] = {
        "p99_alone_us": p99_alone,
        "p99_with_consumer_us": p99_loaded,
        "ratio": p99_loaded / max(p99_alone, 1),
        "consumer_passes": read["passes"],
        "consumer_mb": read["mb"],
        "consumer_mb_per_s": read["mb"] / max(read["seconds"], 1e-3),
        "consumer_s": read["seconds"],
        "fill_mb": COLD_READ_FILL_BYTES / 1e6,
    }
    print(f"bench: {s.name}: {json.dumps(loaded['cold_read'])}", flush=True)
    return rc, loaded, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """A release chronik-server: standalone, or node `node_id` of `peers` (cluster mode) with
    a fixed Kafka port. `wait=False` starts it without waiting for its ready line (cluster
    nodes wait for a quorum, so they must all be started first)."""

    def __init__(self, workdir: Path, extra: list[str], cluster: tuple[int, str, int] | None = None,
                 wait: bool = True):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr = open(workdir / "broker.stderr", "wb")
        if cluster is None:
            cmd = [str(SERVER), "standalone", "--kafka-addr", "127.0.0.1:0"]
        else:
            node_id, peers, kafka_port = cluster
            cmd = [str(SERVER), "--node-id", str(node_id), "--cluster", peers,
                   "--kafka-addr", f"127.0.0.1:{kafka_port}"]
        self.proc = subprocess.Popen(
            [*cmd, "--data-dir", str(workdir / "data"), "--fsync", "always", *extra],
            stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL,
            # The HTTP endpoint on a free port (three nodes on one machine would collide on the
            # default one); an environment variable, so older binaries still run for A/B.
            env={**{k: v for k, v in os.environ.items() if not k.startswith("CHRONIK_")},
                 "CHRONIK_HTTP_ADDR": "127.0.0.1:0"},
        )
        self.addr = ""
        if wait:
            self.wait()

    def wait(self) -> None:
        try:
            self.addr = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> str:
        """Polls stdout (select with a short timeout) for the ready line, until the deadline."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 4096)
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    m = READY_RE.match(line)
                    if m:
                        return m.group(1)
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: broker exited with {self.proc.returncode} before it was ready")
        self.stop()
        raise SystemExit("bench: broker printed no ready line in time")

    def stop(self) -> None:
        if self.stderr.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def settle(max_wait_s: float = 60.0) -> None:
    """Waits (polling, with a deadline) until the disk is quiet: less than 5% of each of two
    consecutive half seconds stalled on I/O (/proc/pressure/io). The disk probe's deletes
    (ext4 here is mounted with `discard`) and the previous scenario's writeback otherwise slow
    the next scenario down."""
    path = Path("/proc/pressure/io")
    if not path.exists():
        return

    def stalled_us() -> int:
        line = path.read_text().splitlines()[0]  # "some avg10=.. avg60=.. avg300=.. total=N"
        return int(line.rsplit("total=", 1)[1])

    start = time.monotonic()
    quiet, prev = 0, stalled_us()
    while time.monotonic() - start < max_wait_s and quiet < 2:
        time.sleep(0.5)
        cur = stalled_us()
        quiet = quiet + 1 if cur - prev < 25_000 else 0
        prev = cur
    waited = time.monotonic() - start
    print(f"bench: disk {'quiet' if quiet >= 2 else 'still busy'} after {waited:.1f} s", flush=True)


def run_json(cmd: list[str], timeout_s: float) -> tuple[int, dict | None, str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    try:
        report = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    return r.returncode, report, r.stderr


def start_brokers(workdir: Path, s: Scenario) -> list[BrokerProcess]:
    """One standalone broker, or `s.nodes` cluster nodes started together."""
    if s.nodes == 1:
        return [BrokerProcess(workdir, s.broker_args)]
    rpc = {i: free_port() for i in range(1, s.nodes + 1)}
    peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in rpc.items())
    nodes = [BrokerProcess(workdir / f"node{i}", s.broker_args, (i, peers, free_port()), wait=False)
             for i in rpc]
    try:
        for n in nodes:
            n.wait()
    except BaseException:
        for n in nodes:
            n.stop()
        raise
    return nodes


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30, help="measured seconds per scenario (standard: 30)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    args = ap.parse_args()
    if args.seconds < 1:
        ap.error("--seconds must be at least 1")
    for b in (SERVER, BENCH):
        if not b.exists():
            ap.error(f"{b} is missing: run `cargo build --release --workspace --bins` first")
    chosen = [s for s in scenarios(args.seconds) if not args.only or s.name in args.only]
    if not chosen:
        ap.error(f"no scenario named {args.only}")

    base = Path(tempfile.mkdtemp(prefix="chronik-bench-", dir=REPO / "target"))
    try:
        print("bench: measuring the raw disk", flush=True)
        rc, disk, err = run_json([str(BENCH), "disk", "--dir", str(base), "--seconds", "5", "--json"], 120)
        if rc != 0 or disk is None:
            print(err, file=sys.stderr)
            raise SystemExit(f"bench: disk probe failed with {rc}")
        print(f"bench: disk {json.dumps(disk)}", flush=True)

        # A scenario can write as fast as the disk takes it: refuse to start one that would
        # fill the disk (a full disk fails the broker's appends, and everything else here).
        # Warm-up and measured seconds at the disk's own bandwidth (no scenario beats it), plus
        # 10% and 2 GB of slack; each scenario's data is deleted before the next.
        need = float(disk["seq_fsync_mb_per_s"]) * 1e6 * (args.seconds + 2) * 1.1 + 2e9
        free = shutil.disk_usage(base).free
        if free < need:
            raise SystemExit(f"bench: {base} has {free / 1e9:.1f} GB free; a {args.seconds} s scenario "
                             f"at the disk's {float(disk['seq_fsync_mb_per_s']):.0f} MB/s may write "
                             f"{need / 1e9:.1f} GB (use --seconds to shorten it)")

        results = []
        for s in chosen:
            workdir = base / s.name
            workdir.mkdir()
            settle()
            brokers = start_brokers(workdir, s)
            try:
                if s.run is not None:
                    rc, report, err = s.run(s, brokers, args.seconds, workdir)
                else:
                    cmd = [str(BENCH), "--bootstrap-servers", ",".join(b.addr for b in brokers),
                           "--topic", f"bench-{s.name}", "--verify", "count", "--json", *s.args]
                    print(f"bench: {s.name}: {' '.join(cmd[1:])}", flush=True)
                    rc, report, err = run_json(cmd, args.seconds * 4 + 120)
            finally:
                for b in brokers:
                    b.stop()
            if rc != 0 or report is None:
                # Keep the brokers' logs of a failed scenario: the work dir is deleted below.
                keep = REPO / "target" / "bench-logs" / s.name
                shutil.rmtree(keep, ignore_errors=True)
                keep.mkdir(parents=True)
                for log in workdir.rglob("broker.stderr"):
                    shutil.copy(log, keep / f"{log.parent.name}.stderr")
                print(f"bench: {s.name}: broker logs kept in {keep}", file=sys.stderr)
            if report is None:
                print(err[-4000:], file=sys.stderr)
                raise SystemExit(f"bench: scenario {s.name} produced no report (exit {rc})")
            print(f"bench: {s.name}: exit {rc} {json.dumps(report)}", flush=True)
            results.append((s, rc, report))
            # The throughput scenario alone writes ~20 GB: free it before the next one.
            shutil.rmtree(workdir, ignore_errors=True)
        write_report(args.out, disk, results, args.seconds)
        print(f"bench: wrote {args.out}")
        failed = [s.name for s, rc, _ in results if rc != 0]
        if failed:
            print(f"bench: scenarios that failed or did not verify: {failed}", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


METHOD = """
## Method

- **Client: chronik-bench, our own async client over the `kafka-protocol` crate** (the codec the
  broker uses too), not librdkafka. On a 2-core machine the load generator competes with the
  broker for the same cores, so it has to be cheap and predictable: it runs on one tokio worker
  thread by default (`--threads`), builds no C code, and has no internal queues or threads of its
  own beyond one pipelined connection per broker. librdkafka (through rdkafka or
  confluent-kafka) brings its own thread per broker plus a main and a timer thread, buffers
  messages in queues we do not control, and would need cmake and a C++ build in CI. The
  compatibility suite (`make test`) already checks that kcat, confluent-kafka and kafka-python
  work against the broker; the benchmark measures the broker, not a client.
- **Coalescing.** `--concurrency C` is C producers ("slots") with one message in flight each,
  all driven by one task: a slot's next message is made the moment its previous one is
  answered, like an application thread that sends and waits, with no task wake-up, channel or
  oneshot per message (1.4 µs of client CPU per 1 KiB message). Messages to one broker go out
  together, as from a Kafka producer shared by many threads: one request holds at most one
  batch per partition (`--batch-size` value bytes), up to `--max-in-flight` (default 5)
  requests are pipelined on a connection, and a request leaves when a batch is full, when
  `--linger-ms` has passed, or at once with linger 0.
- **Honest counts.** `--verify count` (used here) compares how far the high watermarks moved
  with the number of acknowledged messages; a broker that acknowledges without storing fails the
  scenario with exit code 3. `--verify full` reads every message back and checks its CRC and its
  (task, sequence) stamp. Latency samples go to HDR histograms that keep every sample (1 µs to
  10 min, 3 significant digits).
- **cold-read: a consumer far behind must not slow the others down.** The scenario first writes
  1 GB to its 3-partition topic (16 KiB messages, acks=1) and drops the topic's segment files
  from the page cache with `posix_fadvise(POSIX_FADV_DONTNEED)` (no root needed, the rest of the
  machine's cache is untouched; the data is fdatasync'd, so its pages are clean and go at once;
  `fincore`'s count of what is left is printed). It runs acks=all produce at a fixed 10,000 msg/s
  (c=64, 256 B) alone, then the same producer while `chronik-bench --mode consume` reads the
  topic from offset 0 (4 MiB per partition per fetch, as fast as it decodes), pass after pass
  with the cache dropped before each, so old data is read throughout the measurement. Target:
  p99 with the consumer ≤ 1.5 × p99 alone. The line under the table gives both p99s and what the
  consumer read.
- **Ratios, not absolutes.** This machine is a shared VM: its fsync latency and bandwidth move by
  2x within minutes. Each run measures the disk first and shows the broker against it, in the
  same run. Compare columns within one report.
"""


def met(s: Scenario, r: dict, disk: dict, rc: int, by_name: dict) -> str:
    if s.check is None:
        return "-"
    ok = rc == 0 and r.get("verify", {}).get("ok") and s.check(r, disk, by_name)
    return "yes" if ok else "**no**"


def write_report(out: Path, disk: dict, results: list, seconds: int) -> None:
    seq_mb_s = float(disk["seq_fsync_mb_per_s"])
    fsync_p50 = float(disk["fsync_4k_p50_us"])
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (scripts/bench.py); do not edit by hand. Every figure below comes from",
        "one run on one machine: compare them as ratios, not with figures from other runs.",
        "",
        "| | |",
        "|---|---|",
        f"| date | {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} |",
        f"| commit | {commit()} |",
        f"| machine | {os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()} |",
        f"| broker | release build, standalone (cluster: three nodes on this machine), `--fsync always` (acknowledged = fdatasync'd) |",
        f"| seconds per scenario | {seconds} measured, after 2 s of warm-up |",
        "",
        "## The disk's limits (chronik-bench disk)",
        "",
        "| 4 KiB append + fdatasync p50 | p99 | p99.9 | rate, one writer | sequential write, fdatasync per MiB |",
        "|---|---|---|---|---|",
        f"| {fsync_p50:.0f} µs | {float(disk['fsync_4k_p99_us']):.0f} µs | {float(disk['fsync_4k_p999_us']):.0f} µs "
        f"| {float(disk['fsync_4k_per_s']):,.0f}/s | {seq_mb_s:,.1f} MB/s |",
        "",
        "## Scenarios",
        "",
        "| scenario | settings | msg/s | MB/s | MB/s ÷ disk seq. | p50 ms | p99 ms | p99.9 ms | max ms "
        "| p99 ÷ fsync p50 | acked | failed | verified | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_name = {s.name: r for s, _, r in results}
    for s, rc, r in results:
        lat = r.get("latency_us", {})
        v = r.get("verify", {})
        verified = ("yes" if v.get("ok") else "**NO**") + f" ({v.get('mode', '?')})"
        mb = float(r.get("mb_per_s", 0))
        p99 = lat.get("p99")
        lines.append(
            f"| {s.name} | {s.what} | {float(r.get('msgs_per_s', 0)):,.0f} | {mb:,.1f} | {mb / seq_mb_s:.0%} "
            f"| {ms(lat.get('p50'))} | {ms(p99)} | {ms(lat.get('p999'))} | {ms(lat.get('max'))} "
            f"| {'-' if p99 is None else f'{p99 / fsync_p50:.1f}×'} | {r.get('acked', 0):,} | {r.get('failed', 0):,} "
            f"| {verified}{'' if rc == 0 else f', exit {rc}'} | {s.target or '-'} | {met(s, r, disk, rc, by_name)} |")
    for s, rc, r in results:
        c = r.get("cold_read")
        if c:
            lines += [
                "",
                f"{s.name}: acks=all p99 {ms(c['p99_alone_us'])} ms alone, {ms(c['p99_with_consumer_us'])} ms while a "
                f"consumer read the topic from offset 0 ({c['consumer_passes']} passes over the {c['fill_mb']:,.0f} MB "
                f"written before, each out of the page cache: {c['consumer_mb']:,.0f} MB in {c['consumer_s']:.1f} s, "
                f"{c['consumer_mb_per_s']:,.0f} MB/s): ratio {c['ratio']:.2f} (target ≤ 1.5).",
            ]
    lines += [
        "",
        "Latency is per message, from the producer task's send to its acknowledgement (for e2e-latency: to",
        "the consumer's fetch returning it), from an HDR histogram of every sample. `--concurrency C` is C",
        "tasks with one message in flight each, sharing one connection per broker like threads sharing a",
        "producer. The exact command lines are printed by `make bench`.",
        "",
    ]
    lines += METHOD.strip("\n").splitlines() + [""]
    lines += ["Where the time goes, what was tried and what it changed: [performance.md](performance.md).", ""]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
