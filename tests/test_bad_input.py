"""Hostile and malformed input on the Kafka port, sent with raw sockets (tests/kafkawire.py).

Each bad input must at worst cost the connection that sent it: afterwards the broker process
is alive and a normal client on a new connection still produces and consumes.
"""

from __future__ import annotations

import random
import socket
import struct

import pytest

import kafkawire as w
from helpers import consume_all, create_topic, produce_all, producer, unique_topic, watermarks

CLOSE_TIMEOUT_S = 10


def assert_healthy(broker) -> None:
    """The process is alive, ApiVersions answers, and a real client round-trips a message."""
    assert broker.alive(), f"broker died (exit code {broker.proc.returncode})"
    with w.Connection(broker.bootstrap) as conn:
        resp = w.parse_api_versions_response(conn.roundtrip(w.api_versions_request(0, 4242)), 0)
        assert resp.correlation_id == 4242 and resp.error_code == w.NONE
    topic = unique_topic("healthy")
    log = produce_all(producer(broker.bootstrap), topic, [(b"k", b"still-works")], timeout_s=30)
    assert not log.failed, log.failed
    assert [m.value for m in consume_all(broker.bootstrap, topic, 0)] == [b"still-works"]


def assert_closed(conn: w.Connection, what: str) -> bytes:
    """The broker must close the connection within a deadline, not wait for more bytes."""
    try:
        return conn.wait_closed(CLOSE_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"{what}: connection still open {CLOSE_TIMEOUT_S}s later")


def assert_closed_or_answered(conn: w.Connection, what: str, correlation_id: int) -> None:
    """Within a deadline the broker either closes the connection (what Kafka does) or sends a
    well-formed response frame carrying the request's correlation id."""
    try:
        payload = conn.recv_frame(CLOSE_TIMEOUT_S)
    except w.Closed:
        return
    except TimeoutError:
        pytest.fail(f"{what}: neither answered nor closed within {CLOSE_TIMEOUT_S}s")
    except ValueError as e:
        pytest.fail(f"{what}: malformed answer: {e}")
    assert len(payload) >= 4 and w.Reader(payload).i32() == correlation_id, \
        f"{what}: answer with the wrong correlation id: {payload[:16].hex()}"


def advertised(broker) -> dict[int, tuple[int, int]]:
    with w.Connection(broker.bootstrap) as conn:
        return w.parse_api_versions_response(conn.roundtrip(w.api_versions_request(0, 1)), 0).api_keys


# ---------------------------------------------------------------------- ApiVersions
@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_lists_the_core_apis(broker, version):
    with w.Connection(broker.bootstrap) as conn:
        payload = conn.roundtrip(w.api_versions_request(version, 77))
    resp = w.parse_api_versions_response(payload, version)
    assert resp.correlation_id == 77
    assert resp.error_code == w.NONE
    assert resp.trailing_bytes == 0, f"{resp.trailing_bytes} unexpected bytes after the v{version} body"
    # Produce, Fetch, ListOffsets, Metadata, ApiVersions, CreateTopics, DeleteTopics, InitProducerId,
    # DescribeConfigs, CreatePartitions, DescribeCluster.
    for key in (0, 1, 2, 3, 18, 19, 20, 22, 32, 37, 60):
        assert key in resp.api_keys, f"api key {key} not advertised: {sorted(resp.api_keys)}"
        lo, hi = resp.api_keys[key]
        assert 0 <= lo <= hi, (key, lo, hi)
    lo, hi = resp.api_keys[w.API_VERSIONS]
    assert lo == 0 and hi >= 3, f"ApiVersions range {lo}-{hi}"


def test_api_versions_unsupported_version_answers_35_at_v0(broker):
    with w.Connection(broker.bootstrap) as conn:
        payload = conn.roundtrip(w.api_versions_request(99, 1234))
        resp = w.parse_api_versions_response(payload, 0)
        assert resp.correlation_id == 1234
        assert resp.error_code == w.UNSUPPORTED_VERSION, f"error_code {resp.error_code}"
        assert resp.trailing_bytes == 0, f"body is not v0-encoded: {resp.trailing_bytes} extra bytes"
        assert w.API_VERSIONS in resp.api_keys, f"ApiVersions' own range missing: {resp.api_keys}"
        lo, hi = resp.api_keys[w.API_VERSIONS]
        assert lo == 0 and 3 <= hi < 99, (lo, hi)

        # The client downgrades on the same connection, as librdkafka and the Java client do.
        resp = w.parse_api_versions_response(conn.roundtrip(w.api_versions_request(hi, 1235)), hi)
        assert (resp.correlation_id, resp.error_code) == (1235, w.NONE)
    assert_healthy(broker)


def test_pipelined_requests_are_answered_in_order(broker):
    with w.Connection(broker.bootstrap) as conn:
        conn.send(b"".join(w.api_versions_request(v, 500 + i) for i, v in enumerate([0, 3, 1, 2, 3, 0])))
        corr = [w.Reader(conn.recv_frame()).i32() for _ in range(6)]
    assert corr == [500, 501, 502, 503, 504, 505]


# ---------------------------------------------------------------------- malformed frames
def test_garbage_bytes(broker):
    rng = random.Random(1234)
    # An HTTP request on the Kafka port: "GET " read as a size is ~1.2 GB.
    with w.Connection(broker.bootstrap) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert_closed(conn, "HTTP request")
    # A frame of plausible size whose content is random (an unknown API key, most likely).
    with w.Connection(broker.bootstrap) as conn:
        junk = bytes(rng.getrandbits(8) for _ in range(64))
        conn.send(w.i32(64) + junk)
        assert_closed_or_answered(conn, "64 random bytes in a frame", w.Reader(junk[4:]).i32())
    # A zero-length frame and a negative size: no header at all.
    for raw in (w.i32(0), w.i32(-1) + b"\x00" * 8):
        with w.Connection(broker.bootstrap) as conn:
            conn.send(raw)
            assert_closed(conn, f"frame header {raw[:4].hex()}")
    # A header that ends inside the client id string.
    with w.Connection(broker.bootstrap) as conn:
        conn.send(w.frame(w.i16(18) + w.i16(0) + w.i32(9) + w.i16(200) + b"abc"))
        assert_closed_or_answered(conn, "client id longer than the frame", 9)
    assert_healthy(broker)


def test_truncated_frame_then_close(broker):
    req = w.api_versions_request(0, 5)
    with w.Connection(broker.bootstrap) as conn:
        conn.send(w.i32(100) + req[4:14])  # says 100 bytes, sends 10
    # And one that stays open, stalled mid-frame, while others keep being served.
    stalled = w.Connection(broker.bootstrap)
    try:
        stalled.send(w.i32(100) + b"\x00\x12")
        assert_healthy(broker)
    finally:
        stalled.close()
    assert_healthy(broker)


def test_unknown_api_key(broker):
    with w.Connection(broker.bootstrap) as conn:
        conn.send(w.request(9999, 0, 31, b"\x00" * 16))
        assert_closed_or_answered(conn, "API key 9999", 31)
    assert_healthy(broker)


@pytest.mark.parametrize("size", [0x7FFFFFFF, 2_000_000_000, 1 << 30])
def test_huge_size_header_closes_connection_without_allocating(broker, size):
    rss_before = broker.rss_bytes()
    with w.Connection(broker.bootstrap) as conn:
        conn.send(w.i32(size) + w.api_versions_request(0, 1)[4:])
        assert_closed(conn, f"size header {size}")
    rss_after = broker.rss_bytes()
    assert rss_after - rss_before < 64 * 1024 * 1024, \
        f"RSS grew from {rss_before >> 20} MiB to {rss_after >> 20} MiB on a {size}-byte size header"
    assert_healthy(broker)


# ---------------------------------------------------------------------- Produce
@pytest.mark.parametrize("version", [7, 9])
def test_produce_with_corrupted_crc_gets_corrupt_message(broker, version):
    lo, hi = advertised(broker).get(w.PRODUCE, (None, None))
    assert lo is not None, "Produce not advertised"
    if not lo <= version <= hi:
        pytest.skip(f"broker advertises Produce v{lo}-v{hi}")
    topic = unique_topic("crc")
    create_topic(broker.bootstrap, topic)
    good = w.record_batch([(b"k%d" % i, b"value-%d" % i) for i in range(3)])
    bad = w.corrupt_record_batch(w.record_batch([(b"x", b"corrupted-value")]))

    with w.Connection(broker.bootstrap) as conn:
        # Control: the same encoder's uncorrupted batch is accepted.
        corr, parts = w.parse_produce_response(conn.roundtrip(w.produce_request(version, 1, topic, 0, good)), version)
        assert corr == 1 and len(parts) == 1, parts
        assert (parts[0].error_code, parts[0].base_offset) == (w.NONE, 0), parts[0]

        corr, parts = w.parse_produce_response(conn.roundtrip(w.produce_request(version, 2, topic, 0, bad)), version)
        assert corr == 2 and len(parts) == 1, parts
        assert parts[0].error_code == w.CORRUPT_MESSAGE, f"corrupted batch answered with error {parts[0].error_code}"

        # The connection stays usable and the next good batch lands right after the first.
        corr, parts = w.parse_produce_response(conn.roundtrip(w.produce_request(version, 3, topic, 0, good)), version)
        assert (parts[0].error_code, parts[0].base_offset) == (w.NONE, 3), parts[0]

    assert watermarks(broker.bootstrap, topic, 0) == (0, 6)
    values = [m.value for m in consume_all(broker.bootstrap, topic, 0)]
    assert values == [b"value-%d" % i for i in range(3)] * 2, "corrupted data was stored"
    assert_healthy(broker)


def test_produce_to_unknown_partition(broker):
    topic = unique_topic("nopart")
    create_topic(broker.bootstrap, topic, partitions=1)
    lo, hi = advertised(broker)[w.PRODUCE]
    version = 7 if lo <= 7 <= hi else 9
    with w.Connection(broker.bootstrap) as conn:
        _, parts = w.parse_produce_response(
            conn.roundtrip(w.produce_request(version, 1, topic, 5, w.record_batch([(None, b"v")]))), version)
    assert parts[0].error_code == w.UNKNOWN_TOPIC_OR_PARTITION, parts[0]
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)


# ---------------------------------------------------------------------- odd but valid
@pytest.mark.parametrize("client_id", [None, "", "x" * 1000])
def test_metadata_with_unusual_client_ids(broker, client_id):
    with w.Connection(broker.bootstrap) as conn:
        md = w.parse_metadata_response_v1(conn.roundtrip(w.metadata_request_v1(8, None, client_id=client_id)))
    assert md.correlation_id == 8
    assert md.brokers == [(broker.node_id, broker.host, broker.port)], md.brokers
    assert md.controller_id == broker.node_id


def test_client_closing_mid_response(broker):
    """A client that sends requests and disconnects at once must not take anything down."""
    for _ in range(20):
        s = socket.create_connection((broker.host, broker.port), timeout=5)
        s.sendall(w.metadata_request_v1(1, None) * 5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        s.close()
    assert_healthy(broker)
