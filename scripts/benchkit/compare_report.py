"""The side-by-side part of docs/benchmarks.md: per scenario, each client's median round against
each broker setup (msg/s, MB/s, p50, p99, peak RSS) with the spread over rounds, the ratios
Chronik ÷ Kafka, and a plain sentence for every figure where Chronik is behind."""

from __future__ import annotations

from .compare import VARIANTS, CompareScenario, Run

# Differences smaller than this are rounding (a fixed-rate run's msg/s, whole-ms percentiles),
# not worth a sentence.
TOLERANCE = 0.01
LABEL = {"kafka-default": "Kafka with its defaults (no fsync)", "kafka-flush": "Kafka with flush.messages=1"}


def median_run(runs: list[Run], primary: str) -> Run | None:
    """The round whose primary figure is the median (the lower middle one of an even count,
    i.e. the less favourable)."""
    ok = [r for r in runs if r.m.ok]
    if not ok:
        return None
    if primary == "latency" and all(r.m.p99_ms is not None for r in ok):
        ok.sort(key=lambda r: (r.m.p99_ms, -r.m.msgs_per_s), reverse=True)
    else:
        ok.sort(key=lambda r: r.m.msgs_per_s)
    return ok[(len(ok) - 1) // 2]


def spread(runs: list[Run], primary: str) -> str:
    ok = [r.m for r in runs if r.m.ok]
    if primary == "latency" and ok and all(m.p99_ms is not None for m in ok):
        vals = sorted(m.p99_ms for m in ok)
        return f"p99 {vals[0]:.2f}–{vals[-1]:.2f} ms" if len(vals) > 1 else "1 round"
    vals = sorted(m.msgs_per_s for m in ok)
    if len(vals) < 2:
        return "1 round" if vals else "-"
    return f"{vals[0]:,.0f}–{vals[-1]:,.0f} msg/s (±{(vals[-1] - vals[0]) / 2 / vals[(len(vals) - 1) // 2]:.0%})"


def _range(runs: list[Run], primary: str) -> tuple[float, float] | None:
    ok = [r.m for r in runs if r.m.ok]
    if not ok:
        return None
    vals = [m.p99_ms for m in ok] if primary == "latency" and all(m.p99_ms is not None for m in ok) \
        else [m.msgs_per_s for m in ok]
    return min(vals), max(vals)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _mbs(v: float) -> str:
    """MB/s: two decimals below 10 (one message at a time is a few hundredths)."""
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}"


def _mb(b: int | None) -> str:
    return "-" if not b else f"{b / 1e6:,.0f}"


def _ratio(c: float | None, k: float | None) -> str:
    if c is None or k is None or k == 0:
        return "-"
    return f"{c / k:.2f}×"


def figures_table(s: CompareScenario, runs: list[Run], variants: list[str], clients: list[str]) -> list[str]:
    lines = ["| client | broker | msg/s | MB/s | p50 ms | p99 ms | peak RSS MB | rounds: spread |",
             "|---|---|---|---|---|---|---|---|"]
    for c in clients:
        for v in variants:
            mine = [r for r in runs if r.client == c and r.broker == v]
            if not mine:
                continue
            med = median_run(mine, s.primary)
            failed = sum(1 for r in mine if not r.m.ok)
            note = f"; **{failed} of {len(mine)} failed**" if failed else ""
            if med is None:
                lines.append(f"| {c} | {v} | **failed** | | | | | {len(mine)} rounds{note} |")
                continue
            m = med.m
            lines.append(f"| {c} | {v} | {m.msgs_per_s:,.0f} | {_mbs(m.mb_per_s)} | {_ms(m.p50_ms)} | {_ms(m.p99_ms)} "
                         f"| {_mb(m.peak_rss_bytes)} | {len(mine)}: {spread(mine, s.primary)}{note} |")
    return lines


def ratios_table(s: CompareScenario, runs: list[Run], variants: list[str], clients: list[str]) -> list[str]:
    lines = ["| client | Chronik ÷ | msg/s | MB/s | p50 | p99 | peak RSS |", "|---|---|---|---|---|---|---|"]
    for c in clients:
        mc = median_run([r for r in runs if r.client == c and r.broker == "chronik"], s.primary)
        for k in variants:
            if k == "chronik":
                continue
            mk = median_run([r for r in runs if r.client == c and r.broker == k], s.primary)
            if mc is None or mk is None:
                lines.append(f"| {c} | {k} | - | - | - | - | - |")
                continue
            a, b = mc.m, mk.m
            lines.append(f"| {c} | {k} | {_ratio(a.msgs_per_s, b.msgs_per_s)} | {_ratio(a.mb_per_s, b.mb_per_s)} "
                         f"| {_ratio(a.p50_ms, b.p50_ms)} | {_ratio(a.p99_ms, b.p99_ms)} "
                         f"| {_ratio(a.peak_rss_bytes, b.peak_rss_bytes)} |")
    return lines


def behind_sentences(s: CompareScenario, runs: list[Run], variants: list[str], clients: list[str]) -> list[str]:
    """One bullet per client and Kafka setup: every figure where Chronik's median round is worse
    (fewer msg/s, higher latency, more memory), by how much; or that it is not behind."""
    out = []
    for c in clients:
        cr = [r for r in runs if r.client == c and r.broker == "chronik"]
        mc = median_run(cr, s.primary)
        for k in variants:
            if k == "chronik":
                continue
            kr = [r for r in runs if r.client == c and r.broker == k]
            mk = median_run(kr, s.primary)
            if mc is None or mk is None:
                continue
            a, b = mc.m, mk.m
            ra, rb = _range(cr, s.primary), _range(kr, s.primary)
            noise = "; the rounds of the two overlap, so within this machine's noise" \
                if ra and rb and len(cr) > 1 and ra[0] <= rb[1] and rb[0] <= ra[1] else ""
            behind = []
            if a.msgs_per_s < b.msgs_per_s * (1 - TOLERANCE):
                behind.append(f"{1 - a.msgs_per_s / b.msgs_per_s:.0%} fewer msg/s ({a.msgs_per_s:,.0f} vs "
                              f"{b.msgs_per_s:,.0f}, {_mbs(a.mb_per_s)} vs {_mbs(b.mb_per_s)} MB/s"
                              f"{noise if s.primary == 'throughput' else ''})")
            for name, x, y in (("p50", a.p50_ms, b.p50_ms), ("p99", a.p99_ms, b.p99_ms)):
                if x is not None and y is not None and x > y * (1 + TOLERANCE):
                    how = f"{x / y:.2f}× Kafka's" if y > 0 else "above Kafka's"
                    behind.append(f"{name} {how} ({x:.2f} vs {y:.2f} ms"
                                  f"{noise if name == 'p99' and s.primary == 'latency' else ''})")
            if a.peak_rss_bytes and b.peak_rss_bytes and a.peak_rss_bytes > b.peak_rss_bytes * (1 + TOLERANCE):
                behind.append(f"peak RSS {a.peak_rss_bytes / b.peak_rss_bytes:.2f}× Kafka's "
                              f"({_mb(a.peak_rss_bytes)} vs {_mb(b.peak_rss_bytes)} MB)")
            who = f"With {c}, against {LABEL.get(k, k)}"
            if behind:
                out.append(f"- {who}: **Chronik is behind**: {'; '.join(behind)}.")
            else:
                out.append(f"- {who}: Chronik is not behind on any figure (by more than {TOLERANCE:.0%}).")
    return out


def relative_table(s: CompareScenario, runs: list[Run], variants: list[str], clients: list[str]) -> list[str]:
    """Each client's median msg/s ÷ that of `s.relative_to`, against the same broker."""
    lines = [f"| client | {' | '.join(variants)} |", "|---|" + "---|" * len(variants)]
    for c in clients:
        if c == s.relative_to:
            continue
        cells = []
        for v in variants:
            mc = median_run([r for r in runs if r.client == c and r.broker == v], s.primary)
            mb = median_run([r for r in runs if r.client == s.relative_to and r.broker == v], s.primary)
            cells.append("-" if mc is None or mb is None else _ratio(mc.m.msgs_per_s, mb.m.msgs_per_s))
        lines.append(f"| {c} ÷ {s.relative_to} | {' | '.join(cells)} |")
    return lines


def section(chosen: list[CompareScenario], runs: list[Run], rounds: int, seconds: int) -> list[str]:
    variants = [v for v in (x.name for x in VARIANTS) if any(r.broker == v for r in runs)]
    lines = ["## Chronik and Apache Kafka side by side", "",
             f"{rounds} interleaved round(s) of about {seconds} s per client run; each row is the median round "
             "(by msg/s; by p99 for latency), the last column the number of rounds and their spread. "
             "Ratios are Chronik ÷ Kafka: above 1 is more msg/s (better) or more latency and memory "
             "(worse). Below each scenario, a sentence for every figure where Chronik's median round is more than "
             f"{TOLERANCE:.0%} worse than Kafka's. How this is measured: [Method](#method).", ""]
    for s in chosen:
        mine = [r for r in runs if r.scenario == s.name]
        if not mine:
            continue
        clients = list(dict.fromkeys(r.client for r in mine))
        lines += [f"### {s.name}: {s.title}", ""]
        lines += figures_table(s, mine, variants, clients) + [""]
        lines += ratios_table(s, mine, variants, clients) + [""]
        if s.relative_to:
            lines += [f"msg/s of each client ÷ {s.relative_to}'s, against the same broker:", ""]
            lines += relative_table(s, mine, variants, clients) + [""]
        lines += behind_sentences(s, mine, variants, clients) + [""]
        errors = sorted({f"{r.broker}, {r.client}, round {r.round}: {r.m.error}" for r in mine if not r.m.ok})
        if errors:
            lines += ["Failed runs:", ""] + [f"- {e}" for e in errors] + [""]
    return lines


def method(chosen: list[CompareScenario]) -> list[str]:
    clients = {}
    for s in chosen:
        for c in s.clients:
            clients.setdefault(f"{c.name}, {c.role}", c.what)
    lines = [
        "### Method of the side-by-side scenarios", "",
        "- **Brokers, one after another on the same disk.** Each round starts every setup afresh, in this "
        "order, with its data directory under `target/` (one filesystem for all), runs every client of the "
        "scenario against it, stops it and deletes its data before the next setup starts; the disk is let go "
        "quiet (`/proc/pressure/io`) before each run. Rounds repeat the order A, B, C, A, B, C, ..., so a "
        "change of the disk's or the VM's speed over minutes hits every setup alike.",
    ]
    lines += [f"  - `{v.name}`: {v.what}." for v in VARIANTS]
    lines += [
        "- Apache Kafka runs with the JVM settings of its own start script (1 GiB heap, G1), in KRaft mode "
        "(combined broker+controller nodes, `tests/reference/kafka.py`), with that reference's two shortened "
        "timings (`group.initial.rebalance.delay.ms=0`, `leader.imbalance.check.interval.seconds=1`); "
        "everything else is Kafka's default (for three nodes: "
        "`min.insync.replicas=1`, Chronik's is 2 at replication factor 3, which changes nothing while all "
        "replicas are in sync). Its perf tools run with their scripts' JVM settings (512 MiB heap, G1).",
        "- **Same topics everywhere.** Each client run gets a new topic, created by the script with "
        "CreateTopics (partitions, replication factor, and `flush.messages=1` for kafka-flush) before the "
        "client starts; the consume scenario writes one topic per setup and round with chronik-bench "
        "(acks=1, 512 KiB batches) and both consumers read all of it. Chronik drops fdatasync'd data more than "
        "32 MiB behind a partition's end from the page cache ([performance.md](performance.md)); Kafka leaves "
        "it there: so Chronik's consumers read most of it from the disk, Kafka's from memory.",
        "- **Peak RSS** is the broker's resident memory high-water mark (VmHWM in /proc/PID/status, summed "
        "over the nodes of a cluster) during that client's run: reset before it (`/proc/PID/clear_refs`), "
        "read after it. Kafka's includes the JVM heap as far as it was touched.",
        "- **Clients.** Each client's figures are compared only between brokers, never between clients: "
        "they measure different things.",
    ]
    lines += [f"  - {name}: {what}." for name, what in clients.items()]
    lines += [
        "- Kafka's ProducerPerformance and EndToEndLatency run for a number of messages, not a duration: "
        "this client's rate against this broker in the previous round times the seconds asked for (the "
        "first round guesses, so it may be shorter or longer). MB = 10^6 bytes everywhere (the Kafka tools "
        "print MiB; converted).",
        "",
    ]
    return lines
