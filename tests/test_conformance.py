"""The conformance probe: the same requests to Chronik and to Apache Kafka 4.4.0 (one combined
KRaft node from tests/reference), compared, written to docs/conformance.md.

It compares the version range of every API in ApiVersions; every topic config of a fresh topic
from DescribeConfigs (value, type, read-only flag); the broker configs clients read; and the error
codes of 50 bad or borderline requests on one node and of 8 on three-node clusters
(tests/reference/probe.py). Each difference must be listed
with its reason in tests/reference/known_differences.toml, or the test fails naming it.

It starts both brokers itself, so it runs once, in the default mode (`--broker=chronik`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from conftest import REPO_ROOT, Broker, Cluster, kafka_mode
from reference import probe
from reference.kafka import KafkaCluster, KafkaNode

pytestmark = pytest.mark.skipif(kafka_mode(), reason="the probe starts Chronik and Kafka itself; "
                                                      "it runs in the default mode")

KNOWN = REPO_ROOT / "tests" / "reference" / "known_differences.toml"
DOC = REPO_ROOT / "docs" / "conformance.md"


def load_known() -> dict[str, str]:
    with open(KNOWN, "rb") as f:
        return tomllib.load(f)["differences"]


def reason_for(key: str, known: dict[str, str]) -> str | None:
    """The listed reason: an exact key, or the longest listed prefix ending in '.*'."""
    if key in known:
        return known[key]
    best = None
    for k, why in known.items():
        if k.endswith(".*") and key.startswith(k[:-1]) and (best is None or len(k) > len(best[0])):
            best = (k, why)
    return best[1] if best else None


def fmt(v) -> str:
    return "—" if v is None else str(v).replace("|", "\\|")


# Differences the client-compatibility suite shows under `--broker=kafka` beyond what the probe
# asks (multi-node behaviour, timings): each test keeps Chronik's expectation and states Kafka's.
SUITE_FINDINGS = [
    ("test_cluster.py::test_no_metadata_write_without_a_quorum_and_no_divergence",
     "Without a quorum Kafka refuses a CreateTopics after about 10 s; Chronik after "
     "--metadata-timeout-ms (no Kafka equivalent)."),
    ("test_hardening_net.py::test_a_long_poll_is_not_idle",
     "Kafka closes a connection whose long-poll Fetch is still waiting once connections.max.idle.ms "
     "passed; Chronik counts it as busy (chronik_only)."),
    ("test_group_admin.py::test_confluent_admin_lists_describes_and_alters_offsets",
     "confluent-kafka 2.16.1 (librdkafka 2.16.0) segfaults on Kafka 4.4.0's OffsetFetch v9 answer to "
     "list_consumer_group_offsets; skipped on Kafka."),
    ("test_cluster.py, test_replication.py",
     "offsets.topic.num.partitions defaults to 16 on Chronik, 50 on Kafka; Chronik gives leadership "
     "back to the preferred replica at once, Kafka every leader.imbalance.check.interval.seconds "
     "(300 s; the reference runs with 1 s)."),
    ("test_topic_configs.py::test_chronik_rules_for_deprecated_and_missing_configs",
     "Kafka 4.x refuses message.format.version, message.downconversion.enable and "
     "message.timestamp.difference.max.ms (removed in 4.0); Chronik accepts and ignores them as Kafka "
     "3.x did, for tools written against 3.x. Configs whose behaviour Chronik lacks ("
     "tiered storage, throttled replicas) are refused unless set to their default; skipped on Kafka."),
    ("test_topic_configs.py::test_hostile_batches_get_kafkas_errors",
     "A gzip batch with a valid CRC whose data is not gzip: Kafka 4.4 answers UNKNOWN_SERVER_ERROR, "
     "Chronik CORRUPT_MESSAGE. Kafka decompresses every compressed batch to validate it (so "
     "max.decompressed.message.bytes and per-record timestamp bounds apply to all); Chronik only a "
     "batch it recompresses, and otherwise checks the timestamp bounds on the batch header's first "
     "and max timestamps."),
]


def write_doc(chronik: dict, kafka: dict, diffs: list[str], known: dict[str, str]) -> None:
    same = sum(1 for k in set(chronik) | set(kafka) if k not in diffs)
    lines = [
        "# Conformance with Apache Kafka 4.4.0",
        "",
        "Written by `tests/test_conformance.py` (part of `make test`): the same requests to Chronik and to",
        "Apache Kafka 4.4.0 (one combined KRaft node, `tests/reference/kafka.py`), each on a fresh data dir.",
        "Compared: the version range of every API in ApiVersions, every config of a fresh topic from",
        "DescribeConfigs (value, type, read-only), the broker configs clients read, and the error codes of",
        f"{sum(1 for k in kafka if k.startswith('error.'))} bad or borderline requests (`tests/reference/probe.py`).",
        "Each difference has its reason in `tests/reference/known_differences.toml`; a difference not",
        "listed there fails the test.",
        "",
        "The reference runs with the settings a single node needs (internal topics with replication",
        "factor 1) and `group.initial.rebalance.delay.ms=0`; these show as broker config values.",
        "The `cluster.` error probes run on three-node clusters of each (requests sent to a broker",
        "that does not lead the partition or coordinate the group).",
        "",
        f"{same} answers agree, {len(diffs)} differ.",
        "",
    ]
    sections = [("api.", "ApiVersions", "API"), ("topic_config.", "Topic configs (DescribeConfigs)", "Config"),
                ("broker_config.", "Broker configs (DescribeConfigs)", "Config"),
                ("error.", "Error codes", "Request")]
    for prefix, title, col in sections:
        lines += [f"## {title}", ""]
        if prefix == "error.":
            lines += ["| Request | Chronik | Kafka | Reason |", "|---|---|---|---|"]
            for k in sorted(x for x in set(chronik) | set(kafka) if x.startswith(prefix)):
                c, f = chronik.get(k, "absent"), kafka.get(k, "absent")
                why = reason_for(k, known) if k in diffs else ""
                lines.append(f"| {k[len(prefix):]} | {fmt(c)} | {fmt(f)} | {fmt(why or '')} |")
        else:
            rows = sorted(k for k in diffs if k.startswith(prefix))
            if not rows:
                lines += ["No differences.", ""]
                continue
            lines += [f"| {col} | Chronik | Kafka | Reason |", "|---|---|---|---|"]
            for k in rows:
                lines.append(f"| {k[len(prefix):]} | {fmt(chronik.get(k, 'absent'))} | "
                             f"{fmt(kafka.get(k, 'absent'))} | {fmt(reason_for(k, known))} |")
        lines.append("")
    lines += ["## Seen by the suite under `--broker=kafka`", "",
              "| Where | Difference |", "|---|---|"]
    lines += [f"| {where} | {fmt(what)} |" for where, what in SUITE_FINDINGS]
    lines.append("")
    DOC.write_text("\n".join(lines))


def probe_clusters(tmp_path) -> tuple[dict, dict]:
    """The three-broker probes, on a Chronik and a KRaft cluster, one after the other."""
    got = []
    for c in (Cluster(tmp_path / "chronik3", 3), KafkaCluster(tmp_path / "kafka3", 3)):
        try:
            c.start()
            got.append(probe.cluster_probes({i: n.bootstrap for i, n in c.nodes.items()}))
        finally:
            c.cleanup()
    return got[0], got[1]


def test_conformance_with_apache_kafka(tmp_path):
    chronik = Broker(tmp_path / "chronik", name="chronik")
    kafka = KafkaNode(tmp_path / "kafka")
    try:
        chronik.start()
        kafka.start()
        got_chronik = probe.probe(chronik.bootstrap)
        got_kafka = probe.probe(kafka.bootstrap)
    finally:
        chronik.cleanup()
        kafka.cleanup()
    cluster_chronik, cluster_kafka = probe_clusters(tmp_path)
    got_chronik.update(cluster_chronik)
    got_kafka.update(cluster_kafka)

    known = load_known()
    diffs = sorted(k for k in set(got_chronik) | set(got_kafka)
                   if got_chronik.get(k, "absent") != got_kafka.get(k, "absent"))
    write_doc(got_chronik, got_kafka, diffs, known)
    unlisted = [f"{k}: chronik={got_chronik.get(k, 'absent')!r} kafka={got_kafka.get(k, 'absent')!r}"
                for k in diffs if reason_for(k, known) is None]
    assert not unlisted, ("differences from Apache Kafka 4.4.0 not listed in "
                          f"{KNOWN.relative_to(REPO_ROOT)} (see {DOC.relative_to(REPO_ROOT)}):\n"
                          + "\n".join(unlisted))
