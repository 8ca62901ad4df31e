"""What a campaign records: send attempts with their outcomes, and faults with their times.

Every time is `time.monotonic()` seconds. A message's value is `b"{producer}:{seq}"`, so each
one is unique and names its sender, optionally followed by a space and padding (bytes on disk,
so a full disk is reached sooner); its key is `b"{producer}"`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

# Outcomes of a send attempt. "unknown": the client gave up (timeout, transport) without knowing
# whether the broker stored it; such messages may or may not be in the log, and either is correct.
ACKED, FAILED, UNKNOWN, PENDING = "acked", "failed", "unknown", "pending"


@dataclass
class Attempt:
    producer: int
    seq: int
    partition: int
    t_send: float
    outcome: str = PENDING
    offset: int | None = None
    t_done: float | None = None
    error: str | None = None

    @property
    def id(self) -> tuple[int, int]:
        return (self.producer, self.seq)


def encode_value(producer: int, seq: int, pad: int = 0) -> bytes:
    v = f"{producer}:{seq}".encode()
    return v + b" " + b"x" * pad if pad else v


def decode_value(value: bytes | None) -> tuple[int, int] | None:
    """(producer, seq) of a value the workload wrote; None for anything else."""
    try:
        a, b = (value or b"").split(b" ", 1)[0].split(b":")
        return int(a), int(b)
    except ValueError:
        return None


def compact_value(value: bytes | None) -> bytes | None:
    """The value with its padding replaced by its length and CRC: what the read-back keeps in
    memory. Two values compare equal after this exactly when they were equal (up to CRC-32)."""
    if value is None or b" " not in value:
        return value
    head, pad = value.split(b" ", 1)
    return head + b" " + f"{len(pad)}/{zlib.crc32(pad):08x}".encode()


@dataclass
class Fault:
    kind: str
    target: str
    t_start: float
    t_heal: float | None = None
    t_settled: float | None = None
    notes: list[str] = field(default_factory=list)
