"""The librdkafka side of the many-partitions scenario (benchkit/many_partitions.py), run with
the test venv's Python (confluent-kafka), one JSON line on stdout per command:

    mp_client.py produce-each BOOTSTRAP TOPIC PARTITIONS
        one acks=all message (linger 20 ms) to every partition; seconds until all are acked
    mp_client.py wait-leaders BOOTSTRAP TOPIC PARTITIONS DEAD TIMEOUT_S
        polls Metadata until every partition has a leader other than broker DEAD (-1: any
        leader); seconds it took
    mp_client.py leader-counts BOOTSTRAP TOPIC PARTITIONS
        how many partitions each broker leads"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient


def produce_each(bootstrap: str, topic: str, partitions: int) -> dict:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                  "enable.idempotence": False, "message.timeout.ms": 300_000})
    failed: list[str] = []
    acked = 0

    def done(err, _msg):
        nonlocal acked
        if err is not None:
            failed.append(str(err))
        else:
            acked += 1

    t0 = time.monotonic()
    for i in range(partitions):
        while True:
            try:
                p.produce(topic, value=b"x" * 100, partition=i, on_delivery=done)
                break
            except BufferError:
                p.poll(0.01)
    left = p.flush(300)
    return {"seconds": time.monotonic() - t0, "acked": acked, "failed": len(failed) + left,
            "errors": failed[:3]}


def leaders(admin: AdminClient, topic: str) -> dict[int, int]:
    md = admin.list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {pid: pm.leader for pid, pm in t.partitions.items()}


def wait_leaders(bootstrap: str, topic: str, partitions: int, dead: int, timeout_s: float) -> dict:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.monotonic()
    seen: dict[int, int] = {}
    while time.monotonic() - t0 < timeout_s:
        try:
            seen = leaders(admin, topic)
        except KafkaException:
            seen = {}
        if len(seen) == partitions and all(l >= 0 and l != dead for l in seen.values()):
            return {"seconds": time.monotonic() - t0, "ok": True}
        time.sleep(0.1)
    bad = sum(1 for l in seen.values() if l < 0 or l == dead) + partitions - len(seen)
    return {"seconds": time.monotonic() - t0, "ok": False, "without_leader": bad}


def main() -> None:
    cmd, boot, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if cmd == "produce-each":
        out = produce_each(boot, topic, n)
    elif cmd == "wait-leaders":
        out = wait_leaders(boot, topic, n, int(sys.argv[5]), float(sys.argv[6]))
    elif cmd == "leader-counts":
        counts: dict[int, int] = {}
        for leader in leaders(AdminClient({"bootstrap.servers": boot}), topic).values():
            counts[leader] = counts.get(leader, 0) + 1
        out = {"counts": counts}
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
