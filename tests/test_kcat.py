"""kcat (librdkafka 2.0.2 from Debian) against the broker: bulk keyed produce/consume and metadata."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from helpers import create_topic, unique_topic


@pytest.fixture(autouse=True)
def _kcat_installed():
    assert shutil.which("kcat"), "kcat is not installed: run `make deps`"

KCAT_TIMEOUT_S = 120


def kcat(*args: str, input: bytes | None = None, timeout_s: float = KCAT_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout_s)


def assert_no_delivery_errors(r: subprocess.CompletedProcess) -> None:
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"kcat exited {r.returncode}: {err[-3000:]}"
    assert "Delivery failed" not in err and "ERROR" not in err, err[-3000:]


def kcat_consume(bootstrap: str, topic: str, partition: int = 0) -> list[tuple[int, str, str]]:
    """(offset, key, value) for everything from the beginning to the end of the partition."""
    r = kcat("-C", "-b", bootstrap, "-t", topic, "-p", str(partition), "-o", "beginning", "-e", "-q",
             "-f", "%o\t%k\t%s\n")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"kcat -C exited {r.returncode}: {err[-3000:]}"
    out = []
    for line in r.stdout.decode().splitlines():
        off, key, value = line.split("\t")
        out.append((int(off), key, value))
    return out


def test_kcat_10000_keyed_messages_acks_all_round_trip(broker):
    topic = unique_topic("kcat")  # auto-created by the first Metadata request
    n = 10_000
    sent = [(f"key-{i:05d}", f"value-{i}-" + "x" * (i % 97)) for i in range(n)]
    payload = "".join(f"{k}:{v}\n" for k, v in sent).encode()

    r = kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-K", ":",
             "-X", "acks=all", "-X", "message.timeout.ms=60000", input=payload)
    assert_no_delivery_errors(r)

    got = kcat_consume(broker.bootstrap, topic)
    assert len(got) == n, f"consumed {len(got)} of {n} messages"
    assert [o for o, _, _ in got] == list(range(n)), "offsets are not 0..n-1 in order"
    for i, ((_, key, value), (k, v)) in enumerate(zip(got, sent)):
        assert (key, value) == (k, v), f"message {i}: got {(key, value)!r}, sent {(k, v)!r}"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compressed_round_trip(broker, codec):
    topic = unique_topic(f"kcat-{codec}")
    n = 2_000
    sent = [(f"k{i}", f"{codec}-{i}-" + "abc" * (i % 50)) for i in range(n)]
    payload = "".join(f"{k}:{v}\n" for k, v in sent).encode()
    r = kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-K", ":", "-z", codec,
             "-X", "acks=all", "-X", "message.timeout.ms=60000", input=payload)
    assert_no_delivery_errors(r)
    got = kcat_consume(broker.bootstrap, topic)
    assert [(k, v) for _, k, v in got] == sent
    assert [o for o, _, _ in got] == list(range(n))


def test_kcat_metadata_listing(broker):
    topic = unique_topic("kcat-meta")
    create_topic(broker.bootstrap, topic, partitions=3)

    r = kcat("-L", "-J", "-b", broker.bootstrap)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    md = json.loads(r.stdout)

    brokers = {b["id"]: b["name"] for b in md["brokers"]}
    assert brokers == {broker.node_id: broker.bootstrap}, f"brokers in metadata: {md['brokers']}"
    assert md.get("controllerid") == broker.node_id, md

    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, f"{topic} not listed: {sorted(topics)}"
    t = topics[topic]
    assert "error" not in t, t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    for p in t["partitions"]:
        assert "error" not in p, p
        assert p["leader"] == broker.node_id, p
        assert [x["id"] for x in p["replicas"]] == [broker.node_id], p
        assert [x["id"] for x in p["isrs"]] == [broker.node_id], p

    # Plain-text listing of one topic, as an operator would run it.
    r = kcat("-L", "-b", broker.bootstrap, "-t", topic)
    text = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert f'topic "{topic}" with 3 partitions' in text, text
    assert f"broker {broker.node_id} at {broker.bootstrap}" in text, text
