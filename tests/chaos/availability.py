"""Unavailability per fault, from acknowledgement times.

A fault's window runs from its start to the next fault's start (or the end of the run), so it
covers the fault, its heal and the settling after it. Within it:
  partition_gap  the longest time any single partition acknowledged nothing (the workload sends
                 to every partition all the time, so this is how long a partition was unwritable)
  cluster_gap    the longest time no partition acknowledged anything
  heal_to_ack    from the heal until every partition acknowledged again (None: some never did)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .history import ACKED, Attempt, Fault


@dataclass
class Window:
    kind: str
    target: str
    partition_gap: float
    cluster_gap: float
    heal_to_ack: float | None


def _longest_gap(times: list[float], start: float, end: float) -> float:
    i = bisect.bisect_left(times, start)
    j = bisect.bisect_right(times, end)
    points = [start, *times[i:j], end]
    return max(b - a for a, b in zip(points, points[1:]))


def _first_after(times: list[float], t: float) -> float | None:
    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


def measure(faults: list[Fault], attempts: list[Attempt], partitions: int, t_end: float) -> list[Window]:
    per_partition: dict[int, list[float]] = {p: [] for p in range(partitions)}
    for a in attempts:
        if a.outcome == ACKED and a.t_done is not None:
            per_partition.setdefault(a.partition, []).append(a.t_done)
    for times in per_partition.values():
        times.sort()
    every = sorted(t for times in per_partition.values() for t in times)
    out = []
    for i, f in enumerate(faults):
        end = faults[i + 1].t_start if i + 1 < len(faults) else t_end
        heal = f.t_heal if f.t_heal is not None else f.t_start
        firsts = [_first_after(times, heal) for times in per_partition.values()]
        heal_to_ack = None if any(t is None or t > end for t in firsts) else max(firsts) - heal
        out.append(Window(
            kind=f.kind, target=f.target,
            partition_gap=max(_longest_gap(times, f.t_start, end) for times in per_partition.values()),
            cluster_gap=_longest_gap(every, f.t_start, end),
            heal_to_ack=heal_to_ack,
        ))
    return out
