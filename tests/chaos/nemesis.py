"""The faults. Each `inject_*` starts one fault and returns the action that heals it.

    partition-node        one node cut from the other nodes (clients still reach it)
    partition-leader      the leader of a random partition cut from the other nodes
    partition-controller  the Raft leader (controller) cut from the other nodes
    isolate-clients       one node cut from the other nodes and from the clients
    partition-pair        two nodes cut from each other, both still reach the third (asymmetric)
    kill                  SIGKILL, restarted at heal (same data dir, same address)
    pause                 SIGSTOP, SIGCONT at heal
    disk-full             the node's data dir (its own size-limited tmpfs) filled with a filler
                          file; at heal the file is deleted

tmpfs makes fdatasync a no-op: disk-full tests ENOSPC handling, not durability on power loss
(SIGKILL keeps the page cache either way, so nothing here tests power loss).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import urllib.request
from pathlib import Path
from typing import Callable

from confluent_kafka.admin import AdminClient

KINDS = ("partition-node", "partition-leader", "partition-controller", "isolate-clients",
         "partition-pair", "kill", "pause", "disk-full")

FILLER = "chaos-filler"
FILL_CHUNK = 1 << 20
FILL_MAX_CHUNKS = 4096  # 4 GiB: far above any tmpfs size used here, a bound on the loop


def leader_of(cluster, topic: str, partition: int) -> int | None:
    """The partition's leader as Metadata reports it (None when no node answers in time)."""
    try:
        a = AdminClient({"bootstrap.servers": cluster.bootstrap(), "socket.timeout.ms": 3000})
        md = a.list_topics(topic, timeout=3)
        leader = md.topics[topic].partitions[partition].leader
        return leader if leader in cluster.nodes else None
    except Exception:
        return None


def controller(cluster) -> int | None:
    """The node whose /metrics says it is the Raft leader."""
    for i, n in cluster.nodes.items():
        if not n.alive():
            continue
        try:
            with urllib.request.urlopen(f"{n.http_url}/metrics", timeout=2) as r:
                if "chronik_raft_is_leader 1" in r.read().decode():
                    return i
        except Exception:
            continue
    return None


ENOSPC_MARKS = ("No space left on device", "os error 28")
IGNORED = ("checkpoint", "preallocate")


def enospc_line(stderr_path: Path, from_byte: int) -> str | None:
    """The first log line after from_byte where something met ENOSPC that needed the space: not
    the high-watermark checkpoint (rewritten every second, so it always does) and not the WAL's
    preallocation (appends then extend the file; until then they use preallocated blocks)."""
    try:
        with open(stderr_path, "rb") as f:
            f.seek(from_byte)
            text = f.read(16 << 20).decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if any(m in line for m in ENOSPC_MARKS) and not any(x in line for x in IGNORED):
            return line
    return None


def fill(data_dir: Path) -> int:
    """Fills the file system holding data_dir; returns the bytes written."""
    written = 0
    with open(data_dir / FILLER, "wb", buffering=0) as f:
        for chunk in (FILL_CHUNK, 4096):
            buf = b"\xff" * chunk
            for _ in range(FILL_MAX_CHUNKS if chunk == FILL_CHUNK else FILL_CHUNK // 4096):
                try:
                    written += f.write(buf)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return written


class Nemesis:
    def __init__(self, cluster, topic: str, partitions: int, rng: random.Random):
        self.c = cluster
        self.topic = topic
        self.partitions = partitions
        self.rng = rng
        self._why: dict[int, str] = {}

    def pick(self, kind: str) -> int:
        """The node a fault of this kind hits (for partition-pair, one of the two)."""
        n = None
        if kind == "partition-leader":
            p = self.rng.randrange(self.partitions)
            n = leader_of(self.c, self.topic, p)
            why = f"leader of p{p}"
        elif kind == "partition-controller":
            n = controller(self.c)
            why = "controller"
        if n is None:
            n, why = self.rng.choice(sorted(self.c.nodes)), ""
        self._why[n] = why
        return n

    def inject(self, kind: str, n: int) -> tuple[str, Callable[[], None]]:
        """Starts a fault of this kind on node n: (what it hit, how to heal it)."""
        why = self._why.pop(n, "")
        target = f"node {n}" + (f" ({why})" if why else "")
        if kind in ("partition-node", "partition-leader", "partition-controller", "isolate-clients"):
            self.c.isolate(n, clients=kind == "isolate-clients")
            return target, self.c.heal
        if kind == "partition-pair":
            b = self.rng.choice([i for i in sorted(self.c.nodes) if i != n])
            self.c.partition(n, b)
            return f"nodes {n}-{b}", self.c.heal
        node = self.c.node(n)
        if kind == "kill":
            node.kill()
            return target, node.launch
        if kind == "pause":
            pid = node.pid  # `ip netns exec` execs into chronik-server: this is the server
            os.kill(pid, signal.SIGSTOP)
            return target, lambda: os.kill(pid, signal.SIGCONT)
        if kind == "disk-full":
            d = node.data_dir
            written = fill(d)
            return f"{target} ({written >> 20} MiB filler)", lambda: (d / FILLER).unlink(missing_ok=True)
        raise ValueError(f"unknown fault kind {kind!r}")
