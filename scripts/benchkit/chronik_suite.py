"""The Chronik-only scenarios of `make bench`, each against its own fresh release broker
(fsync=always, every message verified stored), with the targets of their issues checked against
the raw disk measured in the same run (`chronik-bench disk`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import compaction, many_partitions, transactions
from .chronik_broker import start_chronik
from .common import BENCH, REPO, ms, run_json, settle


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
    # (workdir) -> more broker flags, made before the broker starts (certificates); None: none.
    prepare: object = None


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
        Scenario("tls-scram", "durable's producer (c=128, 256 B, acks=all, 3 partitions) over SASL_SSL with "
                 "SCRAM-SHA-512 ÷ the same over PLAINTEXT, one broker with both listeners",
                 [*d, "--concurrency", "128", "--message-size", "256", "--acks", "all", "--partitions", "3"],
                 target="≥ 80% of plaintext msg/s",
                 check=lambda r, d, _: r.get("tls_scram", {}).get("ratio", 0) >= 0.8,
                 prepare=tls_scram_broker_args, run=run_tls_scram),
        Scenario("recompress", "c=128, 1 KiB, acks=1, 3 partitions, producer lz4: msg/s into a topic with "
                 "compression.type=zstd (the broker recompresses every batch) ÷ msg/s into one with "
                 "compression.type=producer (stored as sent)",
                 [*d, "--concurrency", "128", "--message-size", "1024", "--acks", "1", "--partitions", "3",
                  "--compression", "lz4"],
                 run=run_recompress),
        Scenario("cleaner", f"a compacted topic, 3 partitions, {compaction.KEYS:,} keys, 1 KiB values: "
                 f"{compaction.FILL_BYTES // 1_000_000} MB written at acks=1 (c=256, linger 5 ms); the unthrottled "
                 "cleaner's MB/s (bytes it read ÷ time it spent cleaning)", [],
                 broker_args=["--log-cleaner-backoff-ms", "1000"], run=compaction.run_cleaner_throughput),
        Scenario("cleaner-p99", "acks=all at 10k msg/s, 256 B, 3 partitions: p99 right after "
                 f"{compaction.FILL_BYTES // 1_000_000} MB went into a compacted topic the cleaner may not clean yet, "
                 "then right after the same went into one it cleans (--log-cleaner-io-max-bytes-per-second "
                 f"{compaction.P99_IO_BUDGET:,})",
                 [*d, "--mode", "produce", "--rate-limit", "10000", "--concurrency", "64",
                  "--message-size", "256", "--acks", "all", "--partitions", "3"],
                 target="p99 with the cleaner ≤ 1.3 × p99 alone",
                 check=lambda r, d, _: r.get("cleaner_p99", {}).get("ratio", 99) <= 1.3,
                 broker_args=["--log-cleaner-io-max-bytes-per-second", str(compaction.P99_IO_BUDGET),
                              "--log-cleaner-backoff-ms", "1000"],
                 run=compaction.run_cleaner_p99),
        Scenario("transactions", transactions.WHAT, transactions.args(d), run=transactions.run),
        Scenario("many-partitions", f"{many_partitions.PARTITIONS:,} partitions on one node, "
                 f"{many_partitions.CLUSTER_PARTITIONS:,} at RF=3 on three: create, write, idle, restart, failover; "
                 "the table's msg/s is keyed acks=all (c=2048, 256 B) over all partitions", [],
                 target="issue 21's table (below)",
                 check=lambda r, d, _: many_partitions.met_all(r),
                 run=many_partitions.run_many_partitions),
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


def consume_passes(base: list[str], data_dir: Path, topic: str, until: float, drop: bool = True) -> dict:
    """Reads the topic from offset 0 with chronik-bench's consumer, pass after pass until the
    monotonic deadline `until`, dropping the topic from the page cache before each pass."""
    passes, mb, secs, errors = 0, 0.0, 0.0, []
    while (left := until - time.monotonic()) > 1:
        if drop:
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


def run_cold_read(s: Scenario, brokers: list, seconds: int, workdir: Path,
                  drop: bool = True) -> tuple[int, dict | None, str]:
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
    if drop:
        print(f"bench: {s.name}: page cache dropped ({drop_page_cache(data_dir, topic)})", flush=True)
    print(f"bench: {s.name}: alone: {' '.join(produce[1:])}", flush=True)
    rc, alone, err = run_json(produce, seconds * 4 + 120)
    if rc != 0 or alone is None:
        return rc or 1, alone, err
    settle()
    print(f"bench: {s.name}: again, with a consumer reading from offset 0 (--mode consume), "
          + ("the page cache dropped before each pass" if drop else "the topic left in the page cache"),
          flush=True)
    # The consumer reads through the producer's warm-up and measured seconds, and a little more.
    read: dict = {}
    reader = threading.Thread(target=lambda: read.update(
        consume_passes(base, data_dir, topic, time.monotonic() + seconds + 4, drop)))
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


def run_recompress(s: Scenario, brokers: list, seconds: int, workdir: Path) -> tuple[int, dict | None, str]:
    """The same lz4 producer against two topics of one broker, first one with
    compression.type=producer, then one with compression.type=zstd. The report is the zstd run's,
    with a `recompress` section: both msg/s and their ratio (the cost of recompression)."""
    from .topics import create_topic
    boot = ",".join(b.addr for b in brokers)
    runs = {}
    for codec in ("producer", "zstd"):
        topic = f"bench-{s.name}-{codec}"
        create_topic(boot, topic, 3, -1, {"compression.type": codec})
        cmd = [str(BENCH), "--bootstrap-servers", boot, "--topic", topic, "--verify", "count", "--json", *s.args]
        settle()
        print(f"bench: {s.name}: compression.type={codec}: {' '.join(cmd[1:])}", flush=True)
        rc, report, err = run_json(cmd, seconds * 4 + 120)
        if rc != 0 or report is None:
            return rc or 1, report, err
        runs[codec] = report
    report = runs["zstd"]
    report["recompress"] = {
        "producer_msgs_per_s": runs["producer"]["msgs_per_s"],
        "zstd_msgs_per_s": runs["zstd"]["msgs_per_s"],
        "ratio": runs["zstd"]["msgs_per_s"] / max(runs["producer"]["msgs_per_s"], 1e-9),
        "producer_p99_us": runs["producer"]["latency_us"]["p99"],
        "zstd_p99_us": runs["zstd"]["latency_us"]["p99"],
    }
    print(f"bench: {s.name}: {json.dumps(report['recompress'])}", flush=True)
    return rc, report, err


BENCH_USER = ("bench", "bench-secret")


def tls_scram_broker_args(workdir: Path) -> list[str]:
    """A CA and a server certificate for 127.0.0.1 (openssl CLI), a PLAINTEXT and a SASL_SSL
    listener, and the bench user."""
    certs = workdir / "certs"
    certs.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")
    (certs / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", "server.pem", "-extfile", "server.ext")
    return ["--listeners", "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
            "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
            "--bootstrap-user", f"{BENCH_USER[0]}:{BENCH_USER[1]}"]


def run_tls_scram(s: Scenario, brokers: list, seconds: int, workdir: Path) -> tuple[int, dict | None, str]:
    """The durable producer against one broker, first over its PLAINTEXT listener, then over
    SASL_SSL with SCRAM-SHA-512 (each into a topic of its own). The report is the TLS run's, with a
    `tls_scram` section: both msg/s and their ratio."""
    b = brokers[0]
    security = {
        "plaintext": (b.listeners.get("PLAINTEXT", b.addr), []),
        "sasl_ssl": (b.listeners["SASL_SSL"], ["--tls-ca", str(workdir / "certs" / "ca.pem"),
                                               "--sasl-mechanism", "SCRAM-SHA-512",
                                               "--sasl-username", BENCH_USER[0], "--sasl-password", BENCH_USER[1]]),
    }
    runs = {}
    for name, (addr, extra) in security.items():
        cmd = [str(BENCH), "--bootstrap-servers", addr, "--topic", f"bench-{s.name}-{name}", "--verify", "count",
               "--json", *extra, *s.args]
        settle()
        print(f"bench: {s.name}: {name}: {' '.join(cmd[1:])}", flush=True)
        rc, report, err = run_json(cmd, seconds * 4 + 120)
        if rc != 0 or report is None:
            return rc or 1, report, err
        runs[name] = report
    report = runs["sasl_ssl"]
    report["tls_scram"] = {
        "plaintext_msgs_per_s": runs["plaintext"]["msgs_per_s"],
        "sasl_ssl_msgs_per_s": runs["sasl_ssl"]["msgs_per_s"],
        "ratio": runs["sasl_ssl"]["msgs_per_s"] / max(runs["plaintext"]["msgs_per_s"], 1e-9),
        "plaintext_p99_us": runs["plaintext"]["latency_us"]["p99"],
        "sasl_ssl_p99_us": runs["sasl_ssl"]["latency_us"]["p99"],
    }
    print(f"bench: {s.name}: {json.dumps(report['tls_scram'])}", flush=True)
    return rc, report, err


def run_suite(base: Path, chosen: list[Scenario], seconds: int) -> list[tuple[Scenario, int, dict]]:
    """Each scenario against its own fresh broker(s); the data is deleted after each. A scenario
    that produces no report ends the run (SystemExit); one that fails its verification is kept
    with its exit code."""
    results = []
    for s in chosen:
        workdir = base / s.name
        workdir.mkdir()
        settle()
        extra = [*s.broker_args, *(s.prepare(workdir) if s.prepare else [])]
        brokers = start_chronik(workdir, s.nodes, extra)
        try:
            if s.run is not None:
                rc, report, err = s.run(s, brokers, seconds, workdir)
            else:
                cmd = [str(BENCH), "--bootstrap-servers", ",".join(b.addr for b in brokers),
                       "--topic", f"bench-{s.name}", "--verify", "count", "--json", *s.args]
                print(f"bench: {s.name}: {' '.join(cmd[1:])}", flush=True)
                rc, report, err = run_json(cmd, seconds * 4 + 120)
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
    return results


def disk_section(disk: dict) -> list[str]:
    return [
        "## The disk's limits (chronik-bench disk)",
        "",
        "| 4 KiB append + fdatasync p50 | p99 | p99.9 | rate, one writer | sequential write, fdatasync per MiB |",
        "|---|---|---|---|---|",
        f"| {float(disk['fsync_4k_p50_us']):.0f} µs | {float(disk['fsync_4k_p99_us']):.0f} µs "
        f"| {float(disk['fsync_4k_p999_us']):.0f} µs | {float(disk['fsync_4k_per_s']):,.0f}/s "
        f"| {float(disk['seq_fsync_mb_per_s']):,.1f} MB/s |",
        "",
    ]


def section(disk: dict, results: list) -> list[str]:
    """The Chronik-only scenarios' table, with ratios to the disk's limits and their targets."""
    seq_mb_s = float(disk["seq_fsync_mb_per_s"])
    fsync_p50 = float(disk["fsync_4k_p50_us"])
    lines = [
        "## Chronik alone: scenarios with targets",
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
    for s, rc, r in results:
        lines += compaction.report_lines(s.name, r)
    for s, rc, r in results:
        lines += transactions.report_lines(s.name, r)
    for s, rc, r in results:
        lines += many_partitions.report_lines(s.name, r)
    for s, rc, r in results:
        c = r.get("tls_scram")
        if c:
            lines += [
                "",
                f"{s.name}: acks=all over PLAINTEXT {c['plaintext_msgs_per_s']:,.0f} msg/s (p99 "
                f"{ms(c['plaintext_p99_us'])} ms), over SASL_SSL with SCRAM-SHA-512 {c['sasl_ssl_msgs_per_s']:,.0f} "
                f"msg/s (p99 {ms(c['sasl_ssl_p99_us'])} ms): ratio {c['ratio']:.2f} (target ≥ 0.8).",
            ]
    for s, rc, r in results:
        c = r.get("recompress")
        if c:
            lines += [
                "",
                f"{s.name}: lz4 batches into a compression.type=producer topic {c['producer_msgs_per_s']:,.0f} msg/s "
                f"(p99 {ms(c['producer_p99_us'])} ms), recompressed into zstd {c['zstd_msgs_per_s']:,.0f} msg/s "
                f"(p99 {ms(c['zstd_p99_us'])} ms): ratio {c['ratio']:.2f}.",
            ]
    lines += [
        "",
        "Latency is per message, from the producer task's send to its acknowledgement (for e2e-latency: to",
        "the consumer's fetch returning it), from an HDR histogram of every sample. `--concurrency C` is C",
        "tasks with one message in flight each, sharing one connection per broker like threads sharing a",
        "producer. The exact command lines are printed by `make bench`.",
        "",
    ]
    return lines


def met(s: Scenario, r: dict, disk: dict, rc: int, by_name: dict) -> str:
    if s.check is None:
        return "-"
    ok = rc == 0 and r.get("verify", {}).get("ok") and s.check(r, disk, by_name)
    return "yes" if ok else "**no**"


METHOD = """
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
- **transactions: what a transaction costs.** The same chronik-bench producer (c=1024, 1 KiB,
  acks=all, 3 partitions, 128 KiB batches) three times against one broker, each into its own
  topic: idempotent, then in transactions of 100 and of 1,000 messages (chronik-bench speaks the
  producer's side: FindCoordinator and InitProducerId with the transactional id once, then per
  transaction AddPartitionsToTxn, transactional Produce requests, and EndTxn once every message
  of it is acknowledged; the next transaction's messages wait for the commit, as after Kafka's
  `commitTransaction()`). A transactional message is acknowledged when its transaction commits.
  Every run is read back (`--verify full`, read_committed for the transactional runs).
- **Ratios, not absolutes.** This machine is a shared VM: its fsync latency and bandwidth move by
  2x within minutes. Each run measures the disk first and shows the broker against it, in the
  same run. Compare columns within one report.
"""


