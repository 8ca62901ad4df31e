"""A leader that loses unsynced data to a power loss comes back in a new leader epoch, so its
followers cut the tail it lost instead of keeping different data at the same offsets and epoch
(issue 15, item 9).

Power loss is simulated with an LD_PRELOAD shim (tests/powerloss/syncshim.c, built here with
cc): after every successful fsync/fdatasync of a regular file it appends the file's size and
path to $CHRONIK_SYNC_LOG. After a SIGKILL (which by itself keeps the page cache, so loses
nothing), every WAL segment of the killed node is truncated to its size at its last sync, or to
its 32-byte header if it was never synced: exactly what the disk would hold had the power
failed at that moment (segment files are append-only between syncs, so a prefix is the honest
model). Other files (Raft log, checkpoints) are written with their own syncs and left alone.

All nodes run with --fsync never, so the leader acknowledges from the page cache and its
followers fetch and store data the leader never synced. The leader is killed and loses it all,
restarts within the session timeout while one follower is paused, and takes new data at the
lost offsets before the paused follower fetches again. Without a new epoch that follower's
fetch passes the divergence check (its last epoch ends, in the leader's log, past its end),
and the replicas differ forever at the same offsets.
"""

from __future__ import annotations

import signal
import struct
import subprocess
from pathlib import Path

from confluent_kafka import Producer

from confluent_kafka.admin import NewTopic

import pytest

from helpers import admin, producer, unique_topic, wait_until

pytestmark = pytest.mark.chronik_only("Chronik's WAL files and leader epochs after a simulated power loss")

SEGMENT_HEADER_BYTES = 32
SHIM_SRC = Path(__file__).parent / "powerloss" / "syncshim.c"


def read_batches(data_dir: Path, topic: str) -> list[tuple[int, int, int, bytes]]:
    """(base offset, last offset, leader epoch, batch bytes) of every frame in the partition's
    segments, in order; stops at a segment's zeros or torn tail."""
    out = []
    for seg in sorted((data_dir / "wal" / topic / "0").glob("wal_0_*.log")):
        buf = seg.read_bytes()
        pos = SEGMENT_HEADER_BYTES
        while pos + 8 <= len(buf):
            (n,) = struct.unpack_from("<I", buf, pos)
            if n == 0 or pos + 8 + n > len(buf):
                break
            payload = buf[pos + 8: pos + 8 + n]
            base, = struct.unpack_from(">q", payload, 0)
            epoch, = struct.unpack_from(">i", payload, 12)
            delta, = struct.unpack_from(">i", payload, 23)
            out.append((base, base + delta, epoch, payload))
            pos += 8 + n
    return out


def power_loss(node) -> None:
    """Cuts every WAL segment of a killed node back to its size at its last fsync."""
    synced: dict[str, int] = {}
    log = Path(node.env["CHRONIK_SYNC_LOG"])
    if log.exists():
        for line in log.read_text().splitlines():
            size, path = line.split(" ", 1)
            synced[path] = int(size)
        log.unlink()
    for seg in (node.data_dir / "wal").rglob("wal_*.log"):
        keep = synced.get(str(seg.resolve()), SEGMENT_HEADER_BYTES)
        if seg.stat().st_size > keep:
            with open(seg, "r+b") as f:
                f.truncate(keep)


def leader_of(bootstrap: str, topic: str) -> int:
    md = admin(bootstrap).list_topics(topic, timeout=10)
    return md.topics[topic].partitions[0].leader


def test_power_loss_on_a_leader_bumps_its_epoch_and_replicas_converge(cluster_factory, tmp_path):
    shim = tmp_path / "syncshim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(SHIM_SRC), "-ldl"], check=True)
    c = cluster_factory(3, args=["--fsync", "never", "--broker-session-timeout-ms", "30000",
                                 "--offsets-topic-partitions", "1"])
    for n in c.nodes.values():
        n.env.update({"LD_PRELOAD": str(shim), "CHRONIK_SYNC_LOG": str(n.workdir / "syncs.log")})
    c.start()
    topic = unique_topic("powerloss")
    a = admin(c.bootstrap())
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)],
                         operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=30)
    leader = wait_until(lambda: leader_of(c.bootstrap(), topic) in c.nodes and leader_of(c.bootstrap(), topic),
                        30, "a leader")
    assert isinstance(leader, int)
    victim = c.node(leader)
    b_id, paused_id = [i for i in c.nodes if i != leader]
    paused = c.node(paused_id)

    p = producer(c.bootstrap(), acks="all")
    for i in range(300):
        p.produce(topic, key=f"a{i}".encode(), value=b"lost-unless-synced", partition=0)
    assert p.flush(60) == 0
    for i in c.nodes:
        wait_until(lambda i=i: (bs := read_batches(c.node(i).data_dir, topic)) and bs[-1][1] == 299,
                   30, f"node {i} holds offsets 0..299")
    old_epoch = max(e for _, _, e, _ in read_batches(victim.data_dir, topic))

    paused.proc.send_signal(signal.SIGSTOP)
    try:
        victim.kill()
        power_loss(victim)
        lost_to = (read_batches(victim.data_dir, topic) or [(0, -1, 0, b"")])[-1][1] + 1
        assert lost_to < 300, "the simulated power loss dropped nothing"
        victim.start()
        wait_until(lambda: leader_of(victim.bootstrap, topic) == leader, 30, "the victim leads again")
        p2 = Producer({"bootstrap.servers": victim.bootstrap, "acks": 1, "enable.idempotence": False,
                       "message.timeout.ms": 30000})
        for i in range(600):
            p2.produce(topic, key=f"b{i}".encode(), value=b"after the restart", partition=0)
        assert p2.flush(60) == 0
        wait_until(lambda: read_batches(victim.data_dir, topic)[-1][1] >= 300 + lost_to, 30,
                   "the victim refilled past the paused follower's end")
    finally:
        paused.proc.send_signal(signal.SIGCONT)

    def converged():
        logs = {i: read_batches(c.node(i).data_dir, topic) for i in c.nodes}
        complete = all(l and l[-1][1] == lost_to + 599 for l in logs.values())
        return complete and len({tuple(l) for l in logs.values()}) == 1 and logs
    try:
        logs = wait_until(converged, 60, "all three replicas hold identical logs", interval_s=0.5)
    except AssertionError:
        logs = {i: read_batches(c.node(i).data_dir, topic) for i in c.nodes}
        for i, l in logs.items():
            print(i, [(b, e, epoch) for b, e, epoch, _ in l[:3]], "...", (l[-1][:3] if l else None))
        raise
    new = logs[leader]
    new_epochs = {e for base, _, e, _ in new if base >= lost_to}
    assert new_epochs and min(new_epochs) > old_epoch, (old_epoch, new_epochs)
    print(f"lost offsets {lost_to}..299 on the leader; epoch {old_epoch} -> {sorted(new_epochs)}; "
          f"{len(new)} identical batches on every replica")


def test_power_loss_keeps_what_sync_rounds_acknowledged(broker_factory, tmp_path):
    """Many partitions syncing at once share syncfs rounds (chronik-wal sync_rounds.rs); the
    shim records every open file's size before a successful syncfs. After SIGKILL and the
    simulated power loss, every message acknowledged under fsync=always is still there."""
    from confluent_kafka import Consumer, TopicPartition
    from test_operations import scrape, total

    shim = tmp_path / "syncshim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(SHIM_SRC), "-ldl"], check=True)
    b = broker_factory(name="rounds", start=False)
    b.env.update({"LD_PRELOAD": str(shim), "CHRONIK_SYNC_LOG": str(b.workdir / "syncs.log")})
    b.start()
    topic, partitions = unique_topic("rounds"), 64
    a = admin(b.bootstrap)  # kept alive until the future resolves
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=30)
    acked: dict[int, int] = {}

    def delivered(err, msg):
        if err is None:
            acked[msg.partition()] = acked.get(msg.partition(), 0) + 1

    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 2})
    rounds = 0.0
    for n in range(20):
        for i in range(partitions * 10):
            p.produce(topic, key=f"k{n}-{i}".encode(), value=b"v" * 100, partition=i % partitions,
                      on_delivery=delivered)
        p.flush(60)
        rounds = total(scrape(b.http), "chronik_wal_sync_rounds_total")
        if rounds > 0 and n >= 3:
            break
    assert rounds > 0, "no sync round ran: the test did not exercise them"
    # A last burst whose acknowledgements may race the kill: only acknowledged ones count.
    for i in range(partitions * 10):
        p.produce(topic, value=b"late", partition=i % partitions, on_delivery=delivered)
    p.poll(0.05)
    b.kill()
    p.flush(0)
    power_loss(b)
    b.restart()
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "x", "enable.auto.commit": False})
    for part, n in acked.items():
        low, high = c.get_watermark_offsets(TopicPartition(topic, part), timeout=30)
        assert high - low >= n, f"partition {part}: {n} acknowledged, {high - low} after the power loss"
    c.close()
    print(f"{int(rounds)} sync rounds; {sum(acked.values())} acknowledged messages all kept")
