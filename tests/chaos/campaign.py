"""One campaign: a 3-node cluster in network namespaces (tests/netns.py), each node's data dir
on its own size-limited tmpfs, a topic with RF=3 and min.insync.replicas=2, producers running
throughout, and `faults` faults one after another. Each fault is held for a random time, healed,
and followed by a settle (every node up and every partition's ISR full again, bounded) before
the next one. At the end everything is read back and checked.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ANSI_ESCAPE_RE as ANSI
from netns import NetnsCluster

from . import availability, checker, readback
from .history import ACKED, Attempt, Fault
from .nemesis import FILLER, KINDS, Nemesis, enospc_line
from .workload import Workload

TOPIC = "chaos"
NODE_ARGS = ["--broker-session-timeout-ms", "3000", "--replica-lag-time-max-ms", "3000"]
TMPFS_SIZE = "512m"
# A disk-full fault is held until the node logs an ENOSPC from something other than the
# high-watermark checkpoint (the WAL first uses its preallocated blocks), at most this long.
DISK_FULL_MAX_HOLD_S = 30.0
SETTLE_S = 60.0
# Longer than --replica-lag-time-max-ms in NODE_ARGS: see settle().
STABLE_S = 3.5
# After a disk-full fault, how long the node gets to recover on its own once space is free
# before the campaign restarts it (and says so).
DISK_RECOVERY_S = 30.0


@dataclass
class Result:
    faults: list[Fault]
    attempts: list[Attempt]
    windows: list[availability.Window]
    violations: list[checker.Violation]
    hws: dict[int, int]
    fatal_client_errors: list[str]
    partitions: int
    seconds: float
    settle_times: list[float] = field(default_factory=list)
    final_notes: list[str] = field(default_factory=list)


def _mount_tmpfs(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(d)], check=True, timeout=30)


def _keep_wal(cluster: NetnsCluster, base: Path) -> None:
    """Copies every node's WAL of the topic out of its tmpfs (unmounted at the end), so that
    the batches behind a violation can be read afterwards (tests/chaos/walread.py)."""
    for i, n in cluster.nodes.items():
        src = n.data_dir / "wal" / TOPIC
        if src.is_dir():
            shutil.copytree(src, base / f"node{i}" / "wal-copy", dirs_exist_ok=True)


def _umount(d: Path) -> None:
    subprocess.run(["umount", "-l", str(d)], check=False, timeout=30)


def _create_topic(cluster, partitions: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        a = AdminClient({"bootstrap.servers": cluster.bootstrap(), "socket.timeout.ms": 10000})
        try:
            a.create_topics([NewTopic(TOPIC, num_partitions=partitions, replication_factor=3,
                                      config={"min.insync.replicas": "2"})],
                            operation_timeout=30, request_timeout=30)[TOPIC].result(timeout=40)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def isr_now(cluster) -> dict[int, set[int]]:
    """Each partition's ISR as Metadata reports it now ({} when no node answers)."""
    try:
        a = AdminClient({"bootstrap.servers": cluster.bootstrap(), "socket.timeout.ms": 5000})
        t = a.list_topics(TOPIC, timeout=10).topics[TOPIC]
        return {p.id: set(p.isrs) for p in t.partitions.values()}
    except Exception:
        return {}


def full_isr(cluster, partitions: int) -> bool:
    try:
        a = AdminClient({"bootstrap.servers": cluster.bootstrap(), "socket.timeout.ms": 3000})
        t = a.list_topics(TOPIC, timeout=3).topics[TOPIC]
        return len(t.partitions) == partitions and all(
            p.leader in cluster.nodes and sorted(p.isrs) == sorted(cluster.nodes) for p in t.partitions.values())
    except Exception:
        return False


def _nodes_up(cluster, fault: Fault, deadline: float) -> None:
    """Every node running and ready; a node that exited on its own is restarted and noted."""
    for i, n in cluster.nodes.items():
        if not n.alive():  # a killed node was relaunched by its heal: this one exited by itself
            fault.notes.append(f"node {i} had exited (code {n.proc.returncode}); restarted")
            n.launch()
        n.wait_ready(max(5.0, deadline - time.monotonic()))


def settle(cluster, partitions: int, fault: Fault, timeout_s: float = SETTLE_S, workload=None) -> bool:
    """Every node up, every partition's ISR full for STABLE_S, and (with a workload running)
    every partition acknowledged since the heal: a follower whose log broke (poisoned after
    ENOSPC) stays in the ISR until the leader's lag timer drops it, and a leader whose log broke
    stays leader with a full ISR while every produce fails, so the ISR alone proves little."""
    deadline = time.monotonic() + timeout_s
    try:
        _nodes_up(cluster, fault, deadline)
    except Exception as e:
        fault.notes.append(f"a node did not come back: {e!s:.200}")
        return False
    full_since = None
    while time.monotonic() < deadline:
        if full_isr(cluster, partitions):
            full_since = full_since or time.monotonic()
            if time.monotonic() - full_since >= STABLE_S and (
                    workload is None or workload.acked_since(fault.t_heal or fault.t_start)):
                return True
        else:
            full_since = None
        time.sleep(0.25)
    return False


def _heal_and_settle(cluster, nemesis_heal, fault: Fault, partitions: int, target_node: int | None,
                     workload) -> None:
    fault.t_heal = time.monotonic()
    nemesis_heal()
    if fault.kind == "disk-full":
        if not settle(cluster, partitions, fault, DISK_RECOVERY_S, workload):
            fault.notes.append(f"not recovered {DISK_RECOVERY_S:.0f}s after space was freed: "
                               f"node {target_node} restarted")
            cluster.node(target_node).kill()
            cluster.node(target_node).launch()
            if not settle(cluster, partitions, fault, SETTLE_S, workload):
                fault.notes.append(f"not settled {SETTLE_S:.0f}s after the restart")
                return
    elif not settle(cluster, partitions, fault, SETTLE_S, workload):
        fault.notes.append(f"not settled within {SETTLE_S:.0f}s of the heal")
        broken = [i for i, n in cluster.nodes.items() if _poisoned(n)]
        if not broken:
            return
        # A log poisoned earlier (ENOSPC) stays broken until reopened: restart its node so
        # later faults are measured on a working cluster, and say so.
        fault.notes.append(f"nodes {broken} hold a poisoned partition log: restarted")
        for i in broken:
            cluster.node(i).kill()
            cluster.node(i).launch()
        if not settle(cluster, partitions, fault, SETTLE_S, workload):
            return
    fault.t_settled = time.monotonic()


def _poisoned(node) -> bool:
    """This run of the node logged a poisoned partition log (it stays so until reopened)."""
    try:
        with open(node.stderr_path, "rb") as f:
            return b"partition log poisoned" in f.read(64 << 20)
    except (OSError, TypeError):
        return False


def _undo_everything(cluster) -> None:
    """Whatever fault is in force ends: network rules gone, paused nodes resumed, fillers deleted."""
    try:
        cluster.heal()
    except Exception:
        pass
    for n in cluster.nodes.values():
        (n.data_dir / FILLER).unlink(missing_ok=True)
        if n.alive():
            try:
                os.kill(n.pid, signal.SIGCONT)
            except OSError:
                pass


def _stderr_size(node) -> int:
    try:
        return node.stderr_path.stat().st_size
    except (OSError, AttributeError):
        return 0


def _hold_until_enospc(node, log_pos: int, fault: Fault) -> None:
    deadline = fault.t_start + DISK_FULL_MAX_HOLD_S
    while time.monotonic() < deadline:
        line = enospc_line(node.stderr_path, log_pos)
        if line:
            fault.notes.append(f"ENOSPC after {time.monotonic() - fault.t_start:.1f}s: "
                               f"{ANSI.sub('', line).strip()[:300]}")
            time.sleep(1.0)  # let it act on the error before space comes back
            return
        time.sleep(0.25)
    fault.notes.append(f"no ENOSPC outside the checkpoint within {DISK_FULL_MAX_HOLD_S:.0f}s")


def schedule(faults: int, rng: random.Random) -> list[str]:
    """Every kind equally often, in shuffled rounds."""
    out: list[str] = []
    while len(out) < faults:
        round_ = list(KINDS)
        rng.shuffle(round_)
        out += round_
    return out[:faults]


def _one_fault(cluster, nemesis: Nemesis, kind: str, rng: random.Random, hold_s: tuple[float, float],
               partitions: int, workload: Workload) -> Fault:
    """Injects one fault, holds it, heals it and waits for the cluster to settle."""
    f = Fault(kind, "", time.monotonic())
    try:
        node = nemesis.pick(kind)
        log_pos = _stderr_size(cluster.node(node)) if kind == "disk-full" else 0
        target, heal = nemesis.inject(kind, node)
        f.target = target
        time.sleep(rng.uniform(*hold_s))
        if kind == "disk-full":
            _hold_until_enospc(cluster.node(node), log_pos, f)
        _heal_and_settle(cluster, heal, f, partitions, node, workload)
    except Exception as e:  # one broken fault must not lose the campaign: note it, go on
        f.notes.append(f"fault failed: {type(e).__name__}: {e!s:.300}")
        f.t_heal = f.t_heal or time.monotonic()
        _undo_everything(cluster)
        settle(cluster, partitions, f, SETTLE_S, workload)
    return f


def _read_back(cluster, partitions: int, attempts: list[Attempt], final: Fault):
    """Consumes every partition, reads every replica's WAL (finally with the nodes stopped) and
    runs the checker: (violations, high watermarks)."""
    hws = readback.wait_high_watermarks(cluster.bootstrap(), TOPIC, partitions, attempts)
    log_view = readback.consume_all(cluster.bootstrap(), TOPIC, hws)
    in_sync = isr_now(cluster)
    final.notes += [f"p{p}: ISR at the end {sorted(isr)}" for p, isr in sorted(in_sync.items())
                    if len(isr) < len(cluster.nodes)]
    dirs = {i: n.data_dir for i, n in cluster.nodes.items()}
    readback.wait_replicas(dirs, TOPIC, hws)
    for n in cluster.nodes.values():
        try:
            n.terminate()
        except Exception as e:
            final.notes.append(f"{n.name}: {e!s:.200}")
    replicas = readback.replica_logs(dirs, TOPIC, partitions)
    return checker.check(attempts, log_view, replicas, hws, in_sync or None), hws


def run(base: Path, faults: int, seed: int, hold_s: tuple[float, float] = (2.0, 8.0), partitions: int = 3,
        producers: int = 3, rate: float = 100.0, pad: int = 200, log=print) -> Result:
    rng = random.Random(seed)
    t0 = time.monotonic()
    cluster = NetnsCluster(base, 3, NODE_ARGS)
    mounted: list[Path] = []
    workload = None
    try:
        for n in cluster.nodes.values():
            _mount_tmpfs(n.data_dir)
            mounted.append(n.data_dir)
        cluster.start(90)
        _create_topic(cluster, partitions)
        if not settle(cluster, partitions, Fault("start", "", t0)):
            raise RuntimeError("the cluster never reached a full ISR before the first fault")
        workload = Workload(cluster.bootstrap(), TOPIC, partitions, producers, rate, pad, log_dir=base).start()
        time.sleep(3)
        nemesis = Nemesis(cluster, TOPIC, partitions, rng)
        done: list[Fault] = []
        for i, kind in enumerate(schedule(faults, rng)):
            f = _one_fault(cluster, nemesis, kind, rng, hold_s, partitions, workload)
            done.append(f)
            acked = sum(1 for a in workload.all_attempts() if a.outcome == ACKED)
            took = (f.t_settled or time.monotonic()) - f.t_heal
            log(f"fault {i + 1}/{faults}: {kind} {f.target}, held {f.t_heal - f.t_start:.1f}s, "
                f"settled in {took:.1f}s; acked so far {acked}, fatal client errors {len(workload.fatal)} "
                f"{'; '.join(f.notes)}")
            time.sleep(rng.uniform(0.5, 2.0))
        time.sleep(2)
        workload.stop(60)
        t_end = time.monotonic()
        attempts = workload.all_attempts()
        final = Fault("final", "", t_end)
        if not settle(cluster, partitions, final):
            final.notes.append("the cluster did not settle (full ISR) before the read-back")
        violations, hws = _read_back(cluster, partitions, attempts, final)
        if violations:
            _keep_wal(cluster, base)
        windows = availability.measure(done, attempts, partitions, t_end)
        for note in final.notes:
            log(f"final: {note}")
        return Result(done, attempts, windows, violations, hws, list(workload.fatal), partitions,
                      time.monotonic() - t0, [f.t_settled - f.t_heal for f in done if f.t_settled], final.notes)
    finally:
        if workload is not None and not workload._stop.is_set():
            workload.stop(5)
        _undo_everything(cluster)
        cluster.cleanup()
        for d in mounted:
            _umount(d)
