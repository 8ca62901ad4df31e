"""A full disk poisons a partition; freeing space heals it without a restart (issue 15, item 5).

The data dir lives on a small filesystem: a tmpfs (the quickest full disk; its fdatasync is a
no-op, so writes fail) and a loop-mounted ext4 image (a real filesystem, where space may also
run out at writeback, so an fdatasync can fail too). A filler file takes most of the space; producing fills the
rest until writes fail. While the partition is poisoned, /health/ready answers 503 naming it
and `chronik_partition_poisoned` is 1. Deleting the filler frees space: the same partition
must take produces again within a bounded time, without a restart, and every acknowledged
message must be in the log exactly once and in order (what the heal cut was never acked).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from confluent_kafka import Producer

from helpers import create_topic, consume_all, http_get, unique_topic, wait_until

pytestmark = pytest.mark.chronik_only("Chronik's WAL heal, seen in /health/ready and /metrics")

FS_BYTES = 48 * 1024 * 1024
LEAVE_FREE_BYTES = 3 * 1024 * 1024
VALUE_BYTES = 16 * 1024


def _acks1_producer(bootstrap: str) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": 1,
        "enable.idempotence": False,
        "message.send.max.retries": 0,
        "linger.ms": 2,
        "message.timeout.ms": 20000,
    })


def _produce_chunk(p: Producer, topic: str, first: int, n: int, acked: dict, failed: list) -> None:
    def report(err, msg):
        seq = int(msg.key())
        if err is None:
            acked[seq] = msg.offset()
        else:
            failed.append((seq, err))
    for i in range(first, first + n):
        p.produce(topic, key=str(i).encode(), value=str(i).encode().ljust(VALUE_BYTES, b"x"),
                  partition=0, on_delivery=report)
    assert p.flush(30) == 0, "delivery reports missing"


def _mount(kind: str, tmp_path, mnt) -> None:
    if kind == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mnt)], check=True)
        return
    img = tmp_path / "fs.img"
    subprocess.run(["truncate", "-s", str(FS_BYTES), str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_full_disk_heals_without_restart(broker_factory, tmp_path, kind):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    b = None
    _mount(kind, tmp_path, mnt)
    try:
        b = broker_factory(name="disk", data_dir=mnt / "data",
                           args=["--http-addr", "127.0.0.1:0", "--offsets-topic-partitions", "1"])
        topic = unique_topic("full")
        create_topic(b.bootstrap, topic, 1)
        st = os.statvfs(mnt)
        filler = mnt / "filler"
        with open(filler, "wb") as f:
            f.write(b"\1" * max(0, st.f_bavail * st.f_frsize - LEAVE_FREE_BYTES))
            f.flush()

        p = _acks1_producer(b.bootstrap)
        acked: dict[int, int] = {}
        failed: list = []
        seq = 0
        deadline = time.monotonic() + 60
        while not failed:
            assert time.monotonic() < deadline, "the disk never filled"
            _produce_chunk(p, topic, seq, 20, acked, failed)
            seq += 20
        assert acked, "nothing was acknowledged before the disk filled"
        status, body = wait_until(
            lambda: (r := http_get(b.http, "/health/ready"))[0] == 503 and r, 10,
            "readiness 503 while poisoned")
        assert f"{topic}-0" in body, body
        _, metrics = http_get(b.http, "/metrics")
        assert f'chronik_partition_poisoned{{topic="{topic}",partition="0"}} 1' in metrics

        filler.unlink()
        healed_at = time.monotonic()
        while True:
            before = len(acked)
            _produce_chunk(p, topic, seq, 1, acked, failed)
            seq += 1
            if len(acked) > before:
                break
            assert time.monotonic() - healed_at < 30, f"no produce succeeded after freeing space: {failed[-1]}"
            time.sleep(0.2)
        heal_s = time.monotonic() - healed_at
        wait_until(lambda: http_get(b.http, "/health/ready")[0] == 200, 10, "ready again")
        n_failed = len(failed)
        _produce_chunk(p, topic, seq, 50, acked, failed)
        seq += 50
        assert len(failed) == n_failed, failed[n_failed:]

        msgs = consume_all(b.bootstrap, topic, 0)
        seqs = [int(m.key) for m in msgs]
        assert len(seqs) == len(set(seqs)), "a message is in the log twice"
        at = {int(m.key): m.offset for m in msgs}
        lost = [s for s in acked if s not in at]
        assert not lost, f"{len(lost)} acknowledged messages missing, e.g. {lost[:5]}"
        assert all(at[s] == o for s, o in acked.items()), "an acknowledged message moved"
        order = [s for s in seqs if s in acked]
        assert order == sorted(order), "acknowledged messages out of order"
        print(f"acked={len(acked)} failed={len(failed)} log={len(msgs)} heal_s={heal_s:.2f}")
    finally:
        if b is not None:
            b.kill()
        subprocess.run(["umount", "-l", str(mnt)], check=False)
