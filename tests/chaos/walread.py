"""Reads a partition's records straight from a node's WAL segment files (docs/wal-format.md):
`{data}/wal/{topic}/{p}/wal_{p}_{base}.log` = a 32-byte header, then frames
`[len u32 LE][crc u32 LE][Kafka v2 RecordBatch]`, then (active segment only) zeros.

Only what the checker needs: uncompressed batches (the workload sets compression.type=none),
each record's offset and value.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SEGMENT_HEADER = 32
BATCH_HEADER = 61  # bytes of a v2 RecordBatch before its records


class WalReadError(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (Kafka record fields); returns (value, next position)."""
    shift = raw = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WalReadError("truncated varint")
        b = buf[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos


def batch_records(batch: bytes) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record in one RecordBatch."""
    base = struct.unpack_from(">q", batch, 0)[0]
    attributes = struct.unpack_from(">h", batch, 21)[0]
    if attributes & 0x07:
        raise WalReadError(f"batch at {base} is compressed (attributes {attributes:#x})")
    if attributes & 0x20:
        return []  # control batch (transaction marker): no workload data
    count = struct.unpack_from(">i", batch, 57)[0]
    out = []
    pos = BATCH_HEADER
    for _ in range(count):
        length, pos = _varint(batch, pos)
        end = pos + length
        pos += 1  # record attributes
        _, pos = _varint(batch, pos)  # timestamp delta
        delta, pos = _varint(batch, pos)
        klen, pos = _varint(batch, pos)
        pos += max(klen, 0)
        vlen, pos = _varint(batch, pos)
        value = None if vlen < 0 else bytes(batch[pos:pos + vlen])
        out.append((base + delta, value))
        pos = end
    return out


def segment_batches(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:8] != b"CHRNKWAL":
        raise WalReadError(f"{path}: bad segment magic")
    out = []
    pos = SEGMENT_HEADER
    while pos + 8 <= len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        if length == 0:
            break  # preallocated zeros: the end of the data
        payload = data[pos + 8:pos + 8 + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break  # a torn tail (the node was killed mid-write); recovery trims it the same way
        out.append(payload)
        pos += 8 + length
    return out


def partition_records(data_dir: Path, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
    """Every record of the partition on this node, ascending by offset."""
    d = Path(data_dir) / "wal" / topic / str(partition)
    out: list[tuple[int, bytes | None]] = []
    for seg in sorted(d.glob(f"wal_{partition}_*.log")):
        for batch in segment_batches(seg):
            out += batch_records(batch)
    return out
