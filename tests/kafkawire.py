"""Kafka wire protocol by hand, for tests that must send what no well-behaved client sends.

Real clients (kcat, confluent-kafka, kafka-python) cannot produce a batch with a bad CRC,
an unknown API key or a frame that lies about its size. This module builds such requests
byte by byte with `struct`, following the Kafka protocol guide
(https://kafka.apache.org/protocol) and the v2 record batch format (KIP-98).

Only what the tests need is here: ApiVersions (any version), Produce v3-v9 with a real v2
record batch, Metadata v1, and a small blocking connection with deadlines.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

# API keys (https://kafka.apache.org/protocol#protocol_api_keys).
PRODUCE = 0
METADATA = 3
API_VERSIONS = 18
INIT_PRODUCER_ID = 22
WRITE_TXN_MARKERS = 27

# Error codes (https://kafka.apache.org/protocol#protocol_error_codes).
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
TRANSACTION_COORDINATOR_FENCED = 52
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
INVALID_RECORD = 87

# Record batch attribute bits.
TRANSACTIONAL = 0x10


# --------------------------------------------------------------------------- CRC32C
# Castagnoli polynomial, reflected. Pure Python: a few KB per test, speed does not matter.
def _make_crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC32C check value (RFC 3720)"


# --------------------------------------------------------------------------- primitives
def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def uvarint(v: int) -> bytes:
    assert v >= 0
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:
    """Signed zigzag varint (records use these for lengths and deltas)."""
    return uvarint((v << 1) ^ (v >> 63))


def string(s: str | None) -> bytes:
    """Classic nullable STRING: int16 length, -1 for null."""
    if s is None:
        return i16(-1)
    raw = s.encode()
    return i16(len(raw)) + raw


def compact_string(s: str | None) -> bytes:
    """COMPACT_(NULLABLE_)STRING: uvarint length+1, 0 for null."""
    if s is None:
        return uvarint(0)
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def compact_bytes(b: bytes | None) -> bytes:
    if b is None:
        return uvarint(0)
    return uvarint(len(b) + 1) + b


EMPTY_TAGS = uvarint(0)


class Reader:
    """Cursor over a response body; raises ValueError when the body is shorter than the schema."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos}, have {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def i8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def uvarint(self) -> int:
        shift = 0
        out = 0
        while True:
            b = self._take(1)[0]
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 63:
                raise ValueError("uvarint too long")

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self._take(n).decode()

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode()

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --------------------------------------------------------------------------- framing
def request_header(api_key: int, api_version: int, correlation_id: int, client_id: str | None,
                   flexible: bool) -> bytes:
    """Request header v1 (non-flexible) or v2 (flexible: v1 plus tagged fields).

    client_id stays a classic nullable STRING even in header v2.
    """
    hdr = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    return hdr + EMPTY_TAGS if flexible else hdr


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def request(api_key: int, api_version: int, correlation_id: int, body: bytes, *,
            flexible: bool = False, client_id: str | None = "chronik-tests") -> bytes:
    return frame(request_header(api_key, api_version, correlation_id, client_id, flexible) + body)


# --------------------------------------------------------------------------- connection
class Closed(Exception):
    """The broker closed the connection (EOF or reset)."""


class Connection:
    """A blocking socket with a deadline on every read."""

    def __init__(self, bootstrap: str, timeout_s: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout_s = timeout_s

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete response within the deadline ({len(buf)}/{n} bytes)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            except socket.timeout:
                continue
            if not chunk:
                raise Closed(f"EOF after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self, timeout_s: float | None = None) -> bytes:
        """One size-prefixed response payload (header + body)."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.timeout_s)
        (size,) = struct.unpack(">i", self._recv_exact(4, deadline))
        if size < 0 or size > 64 * 1024 * 1024:
            raise ValueError(f"implausible response size {size}")
        return self._recv_exact(size, deadline)

    def wait_closed(self, timeout_s: float) -> bytes:
        """Read until the peer closes; returns whatever arrived before that.

        Raises TimeoutError if the connection is still open at the deadline.
        """
        deadline = time.monotonic() + timeout_s
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection still open after {timeout_s}s ({len(got)} bytes received)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return bytes(got)
            except socket.timeout:
                continue
            if not chunk:
                return bytes(got)
            got += chunk

    def roundtrip(self, req: bytes, timeout_s: float | None = None) -> bytes:
        self.send(req)
        return self.recv_frame(timeout_s)


# --------------------------------------------------------------------------- ApiVersions
@dataclass
class ApiVersionsResponse:
    correlation_id: int
    error_code: int
    api_keys: dict[int, tuple[int, int]]  # api_key -> (min_version, max_version)
    throttle_time_ms: int | None
    trailing_bytes: int


FIND_COORDINATOR = 10


def find_coordinator(addr: str, key: str, key_type: int = 0, timeout_s: float = 10) -> tuple[int, int]:
    """FindCoordinator v1 for one key (key_type 0: a group, 1: a transactional id), asked of
    `addr`: (error code, node id). Connection errors propagate (OSError, Closed, TimeoutError)."""
    with Connection(addr, timeout_s=timeout_s) as conn:
        r = Reader(conn.roundtrip(request(FIND_COORDINATOR, 1, 1, string(key) + i8(key_type))))
    r.i32()  # correlation id
    r.i32()  # throttle time
    err = r.i16()
    r.string()  # error message
    return err, r.i32()


def api_versions_request(version: int, correlation_id: int) -> bytes:
    """ApiVersions at any version number, including ones the broker does not know.

    v3+ is flexible (header v2, body with client software name/version and tagged fields);
    v5 (KIP-1242) adds the cluster id and node id the client means to reach (null and -1: not known).
    """
    if version >= 3:
        body = compact_string("chronik-tests") + compact_string("0.1")
        if version >= 5:
            body += compact_string(None) + i32(-1)
        body += EMPTY_TAGS
        return request(API_VERSIONS, version, correlation_id, body, flexible=True)
    return request(API_VERSIONS, version, correlation_id, b"")


def parse_api_versions_response(payload: bytes, body_version: int) -> ApiVersionsResponse:
    """ApiVersions responses always use response header v0 (correlation id only)."""
    r = Reader(payload)
    corr = r.i32()
    error_code = r.i16()
    keys: dict[int, tuple[int, int]] = {}
    throttle = None
    if body_version >= 3:
        for _ in range(r.uvarint() - 1):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            r.skip_tags()
            keys[k] = (lo, hi)
        throttle = r.i32()
        r.skip_tags()
    else:
        for _ in range(r.i32()):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            keys[k] = (lo, hi)
        if body_version >= 1:
            throttle = r.i32()
    return ApiVersionsResponse(corr, error_code, keys, throttle, r.remaining())


# --------------------------------------------------------------------------- record batch v2
def record_batch(records: list[tuple[bytes | None, bytes | None]], *, base_offset: int = 0,
                 base_timestamp_ms: int | None = None, producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1, timestamp_deltas: list[int] | None = None,
                 max_timestamp_ms: int | None = None, attributes: int = 0) -> bytes:
    """An uncompressed magic-2 record batch with a correct CRC32C; no producer id unless given.
    Every record has the base timestamp unless `timestamp_deltas` says otherwise; the header's
    max timestamp is the base timestamp unless `max_timestamp_ms` says otherwise (the header
    need not match the records: a broker must not trust it). `attributes` sets the batch's
    attribute bits (TRANSACTIONAL = 0x10)."""
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000)
    deltas = timestamp_deltas or [0] * len(records)
    body = bytearray()
    for delta, (key, value) in enumerate(records):
        rec = bytearray()
        rec += i8(0)  # attributes
        rec += varint(deltas[delta])  # timestamp delta
        rec += varint(delta)  # offset delta
        rec += varint(-1) if key is None else varint(len(key)) + key
        rec += varint(-1) if value is None else varint(len(value)) + value
        rec += varint(0)  # header count
        body += varint(len(rec)) + rec
    after_crc = (
        i16(attributes)  # default 0: no compression, CreateTime, not transactional, not control
        + i32(len(records) - 1)  # last offset delta
        + i64(base_timestamp_ms)
        + i64(base_timestamp_ms if max_timestamp_ms is None else max_timestamp_ms)
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(records))
        + bytes(body)
    )
    after_length = i32(0) + i8(2) + u32(crc32c(after_crc)) + after_crc  # leader epoch, magic, crc
    return i64(base_offset) + i32(len(after_length)) + after_length


# Byte offset of the first record inside a batch built by record_batch().
RECORD_BATCH_HEADER_BYTES = 61


def corrupt_record_batch(batch: bytes) -> bytes:
    """The same batch with one byte inside its records flipped: the stored CRC no longer matches."""
    assert len(batch) > RECORD_BATCH_HEADER_BYTES + 4
    b = bytearray(batch)
    b[-3] ^= 0xFF  # inside the last record's value
    return bytes(b)


# --------------------------------------------------------------------------- Produce
@dataclass
class PartitionProduceResponse:
    topic: str
    partition: int
    error_code: int
    base_offset: int


def produce_request(version: int, correlation_id: int, topic: str, partition: int, batch: bytes,
                    *, acks: int = -1, timeout_ms: int = 10_000, transactional_id: str | None = None) -> bytes:
    """Produce v3-v9 (v9 is the first flexible version; v13 replaces names with topic ids)."""
    if not 3 <= version <= 9:
        raise ValueError(f"produce_request encodes v3-v9, not v{version}")
    if version >= 9:
        body = (
            compact_string(transactional_id)
            + i16(acks)
            + i32(timeout_ms)
            + uvarint(1 + 1)  # one topic
            + compact_string(topic)
            + uvarint(1 + 1)  # one partition
            + i32(partition)
            + compact_bytes(batch)
            + EMPTY_TAGS  # partition
            + EMPTY_TAGS  # topic
            + EMPTY_TAGS  # request
        )
        return request(PRODUCE, version, correlation_id, body, flexible=True)
    body = (
        string(transactional_id)
        + i16(acks)
        + i32(timeout_ms)
        + i32(1)
        + string(topic)
        + i32(1)
        + i32(partition)
        + nbytes(batch)
    )
    return request(PRODUCE, version, correlation_id, body)


def parse_produce_response(payload: bytes, version: int) -> tuple[int, list[PartitionProduceResponse]]:
    """Returns (correlation_id, partition responses) for Produce v3-v9."""
    r = Reader(payload)
    corr = r.i32()
    out = []
    if version >= 9:
        r.skip_tags()  # response header v1
        for _ in range(r.uvarint() - 1):
            name = r.compact_string()
            for _ in range(r.uvarint() - 1):
                idx, err, base = r.i32(), r.i16(), r.i64()
                r.i64()  # log append time
                r.i64()  # log start offset
                for _ in range(r.uvarint() - 1):  # record errors
                    r.i32()
                    r.compact_string()
                    r.skip_tags()
                r.compact_string()  # error message
                r.skip_tags()
                out.append(PartitionProduceResponse(name, idx, err, base))
            r.skip_tags()
        r.i32()  # throttle
        r.skip_tags()
        return corr, out
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err, base = r.i32(), r.i16(), r.i64()
            r.i64()  # log append time (v2+)
            if version >= 5:
                r.i64()  # log start offset
            if version >= 8:
                for _ in range(r.i32()):
                    r.i32()
                    r.string()
                r.string()
            out.append(PartitionProduceResponse(name, idx, err, base))
    r.i32()  # throttle
    return corr, out


# --------------------------------------------------------------------------- Metadata
def metadata_request_v1(correlation_id: int, topics: list[str] | None, client_id: str | None = "chronik-tests") -> bytes:
    """Metadata v1 (non-flexible); topics=None asks for all topics."""
    if topics is None:
        body = i32(-1)
    else:
        body = i32(len(topics)) + b"".join(string(t) for t in topics)
    return request(METADATA, 1, correlation_id, body, client_id=client_id)


@dataclass
class MetadataV1:
    correlation_id: int
    brokers: list[tuple[int, str, int]]
    controller_id: int
    topics: dict[str, tuple[int, list[int]]]  # name -> (error_code, partition ids)


def parse_metadata_response_v1(payload: bytes) -> MetadataV1:
    r = Reader(payload)
    corr = r.i32()
    brokers = []
    for _ in range(r.i32()):
        node, host, port = r.i32(), r.string(), r.i32()
        r.string()  # rack
        brokers.append((node, host, port))
    controller = r.i32()
    topics = {}
    for _ in range(r.i32()):
        err, name = r.i16(), r.string()
        r.i8()  # is_internal
        parts = []
        for _ in range(r.i32()):
            r.i16()  # partition error
            pid = r.i32()
            r.i32()  # leader
            for _ in range(r.i32()):
                r.i32()  # replicas
            for _ in range(r.i32()):
                r.i32()  # isr
            parts.append(pid)
        topics[name] = (err, sorted(parts))
    return MetadataV1(corr, brokers, controller, topics)


# --------------------------------------------------------------------------- InitProducerId
def init_producer_id_request_v0(correlation_id: int, timeout_ms: int = 60_000) -> bytes:
    """InitProducerId v0 without a transactional id: an idempotent producer's first request."""
    return request(INIT_PRODUCER_ID, 0, correlation_id, string(None) + i32(timeout_ms))


def parse_init_producer_id_response_v0(payload: bytes) -> tuple[int, int, int, int]:
    """Returns (correlation_id, error_code, producer_id, producer_epoch)."""
    r = Reader(payload)
    corr = r.i32()
    r.i32()  # throttle time
    return corr, r.i16(), r.i64(), r.i16()


# --------------------------------------------------------------------------- WriteTxnMarkers
@dataclass
class TxnMarker:
    producer_id: int
    producer_epoch: int
    committed: bool
    coordinator_epoch: int
    topics: list[tuple[str, list[int]]]


def write_txn_markers_request(correlation_id: int, markers: list[TxnMarker]) -> bytes:
    """WriteTxnMarkers v1 (flexible; v0 was removed in Kafka 4.0)."""
    body = uvarint(len(markers) + 1)
    for m in markers:
        body += i64(m.producer_id) + i16(m.producer_epoch) + i8(1 if m.committed else 0)
        body += uvarint(len(m.topics) + 1)
        for name, parts in m.topics:
            body += compact_string(name) + uvarint(len(parts) + 1) + b"".join(i32(p) for p in parts)
            body += EMPTY_TAGS
        body += i32(m.coordinator_epoch) + EMPTY_TAGS
    body += EMPTY_TAGS
    return request(WRITE_TXN_MARKERS, 1, correlation_id, body, flexible=True)


def parse_write_txn_markers_response(payload: bytes) -> tuple[int, list[tuple[int, str, int, int]]]:
    """(correlation id, [(producer id, topic, partition, error code)])."""
    r = Reader(payload)
    corr = r.i32()
    r.skip_tags()  # response header v1
    out = []
    for _ in range(r.uvarint() - 1):
        pid = r.i64()
        for _ in range(r.uvarint() - 1):
            name = r.compact_string()
            for _ in range(r.uvarint() - 1):
                idx, err = r.i32(), r.i16()
                r.skip_tags()
                out.append((pid, name, idx, err))
            r.skip_tags()
        r.skip_tags()
    r.skip_tags()
    return corr, out
