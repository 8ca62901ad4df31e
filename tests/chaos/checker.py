"""Finds what must never happen, from the history and the final state read back.

Inputs (plain data, so the self-test needs no broker):
  attempts  every send attempt (history.Attempt)
  log       {partition: [(offset, value), ...]} ascending: each partition consumed from offset 0
            to its high watermark, as clients see it
  replicas  {node: {partition: [(offset, value), ...]}}: each replica's own log (its WAL files)
  hw        {partition: high watermark} the log was read to
  in_sync   {partition: ISR node ids} at the end (None: every replica counts as in sync)

Violations, each reported once per affected message (or replica and partition):
  lost          acknowledged, and in no partition
  duplicate     one (producer, seq) at more than one place
  reordered     within one producer and partition, a seq below one stored before it
  offset-moved  acknowledged at (partition, offset), but stored somewhere else
  divergence    a replica's records below the high watermark differ from what clients read (a
                replica out of the ISR may be shorter: under-replicated, not divergent, but
                what it holds must still match)
  phantom       a record the workload never sent
"""

from __future__ import annotations

from dataclasses import dataclass

from .history import ACKED, Attempt, decode_value

KINDS = ("lost", "duplicate", "reordered", "offset-moved", "divergence", "phantom")

Log = dict[int, list[tuple[int, bytes]]]


@dataclass(frozen=True)
class Violation:
    kind: str
    partition: int
    detail: str


def check(attempts: list[Attempt], log: Log, replicas: dict[int, Log] | None = None,
          hw: dict[int, int] | None = None, in_sync: dict[int, set[int]] | None = None) -> list[Violation]:
    found: list[Violation] = []
    where = _positions(log, found)
    sent = {a.id for a in attempts}
    for ident, places in where.items():
        if len(places) > 1:
            found.append(Violation("duplicate", places[1][0], f"{ident} at {places}"))
        if ident not in sent:
            found.append(Violation("phantom", places[0][0], f"{ident} at {places} was never sent"))
    for a in attempts:
        if a.outcome != ACKED:
            continue
        places = where.get(a.id)
        if not places:
            found.append(Violation("lost", a.partition, f"{a.id} acked at offset {a.offset}, not in the log"))
        elif a.offset is not None and (a.partition, a.offset) not in places:
            # No offset: librdkafka reports a message whose first send's outcome was unknown
            # as delivered, without an offset, once a later sequence of the same producer is
            # acknowledged (it must have been persisted). Only its presence can be checked.
            found.append(Violation("offset-moved", a.partition,
                                   f"{a.id} acked at ({a.partition}, {a.offset}), stored at {places}"))
    found += _reordered(log)
    if replicas is not None:
        found += _divergence(log, replicas, hw or {}, in_sync)
    return found


def _positions(log: Log, found: list[Violation]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    where: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for p, records in log.items():
        for offset, value in records:
            ident = decode_value(value)
            if ident is None:
                found.append(Violation("phantom", p, f"offset {offset} holds {value!r}"))
                continue
            where.setdefault(ident, []).append((p, offset))
    return where


def _reordered(log: Log) -> list[Violation]:
    """Per partition and producer, seqs must rise with the offset. A duplicate's second copy is
    reported as a duplicate only, not also as a reordering."""
    out = []
    for p, records in log.items():
        top: dict[int, tuple[int, int]] = {}  # producer -> (highest seq so far, its offset)
        seen: set[tuple[int, int]] = set()
        for offset, value in records:
            ident = decode_value(value)
            if ident is None or ident in seen:
                continue
            seen.add(ident)
            producer, seq = ident
            prev = top.get(producer)
            if prev is not None and seq < prev[0]:
                out.append(Violation("reordered", p, f"producer {producer}: seq {seq} at offset {offset} "
                                                     f"after seq {prev[0]} at offset {prev[1]}"))
            else:
                top[producer] = (seq, offset)
    return out


def _divergence(log: Log, replicas: dict[int, Log], hw: dict[int, int],
                in_sync: dict[int, set[int]] | None) -> list[Violation]:
    out = []
    for p, records in log.items():
        end = hw.get(p, records[-1][0] + 1 if records else 0)
        want = [r for r in records if r[0] < end]
        for node, logs in sorted(replicas.items()):
            have = [r for r in logs.get(p, []) if r[0] < end]
            if in_sync is not None and node not in in_sync.get(p, set()):
                want_here = want[:len(have)]  # out of the ISR: a prefix is all it owes
            else:
                want_here = want
            if have != want_here:
                out.append(Violation("divergence", p, f"node {node}: {_first_difference(want, have)} "
                                                      f"(below high watermark {end})"))
    return out


def _first_difference(want: list[tuple[int, bytes]], have: list[tuple[int, bytes]]) -> str:
    for i, (a, b) in enumerate(zip(want, have)):
        if a != b:
            return f"record {i}: clients read {a}, replica holds {b}"
    if len(have) < len(want):
        return f"replica ends at offset {have[-1][0] if have else None}, clients read up to {want[-1][0]}"
    return f"replica holds extra records from {have[len(want)]}"


def summarize(violations: list[Violation]) -> dict[str, int]:
    return {k: sum(1 for v in violations if v.kind == k) for k in KINDS}
