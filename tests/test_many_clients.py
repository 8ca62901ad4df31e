"""Many clients at once: 50 idempotent producers (each with its own connections), and 50 raw
connections all open before any of them sends a request."""

from __future__ import annotations

import threading
from collections import defaultdict

import kafkawire as w
from helpers import consume_all, create_topic, produce_all, producer, unique_topic, watermarks

CLIENTS = 50


def test_50_concurrent_producers_all_data_consumable(broker):
    topic = unique_topic("many")
    partitions = 4
    create_topic(broker.bootstrap, topic, partitions=partitions)
    per_client = 200
    producers = [producer(broker.bootstrap, **{"client.id": f"many-{j}"}) for j in range(CLIENTS)]
    # Every producer connects (Metadata + InitProducerId) before any of them produces.
    for p in producers:
        assert topic in p.list_topics(topic, timeout=30).topics
    barrier = threading.Barrier(CLIENTS)
    logs: dict[int, object] = {}
    errors: dict[int, BaseException] = {}

    def run(j: int) -> None:
        try:
            barrier.wait(timeout=60)
            items = [(f"client-{j}".encode(), f"client-{j}:{i}".encode()) for i in range(per_client)]
            logs[j] = produce_all(producers[j], topic, items, timeout_s=120)
        except BaseException as e:  # reported below, with the client's number
            errors[j] = e

    threads = [threading.Thread(target=run, args=(j,)) for j in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "producer threads still running"
    assert not errors, {j: repr(e) for j, e in list(errors.items())[:5]}
    failed = {j: log.failed[:2] for j, log in logs.items() if log.failed}
    assert not failed, f"{len(failed)} producers had delivery failures: {dict(list(failed.items())[:3])}"

    acked = {(part, off): v for log in logs.values() for part, off, _, v in log.ok}
    assert len(acked) == CLIENTS * per_client, "two messages acknowledged at the same offset"

    per_client_seen: dict[int, list[int]] = defaultdict(list)
    total = 0
    for part in range(partitions):
        for m in consume_all(broker.bootstrap, topic, part):
            assert acked.get((part, m.offset)) == m.value, f"partition {part} offset {m.offset}: {m.value!r}"
            client, i = m.value.decode().split(":")
            per_client_seen[int(client.split("-")[1])].append(int(i))
            total += 1
    assert total == CLIENTS * per_client
    for j in range(CLIENTS):
        # One key per client: one partition, so the client's messages are stored in send order.
        assert per_client_seen[j] == list(range(per_client)), f"client {j}: stored {per_client_seen[j][:10]}..."


def test_50_raw_connections_open_at_once(broker):
    topic = unique_topic("raw-many")
    create_topic(broker.bootstrap, topic)
    with w.Connection(broker.bootstrap) as conn:
        lo, hi = w.parse_api_versions_response(conn.roundtrip(w.api_versions_request(0, 1)), 0).api_keys[w.PRODUCE]
    version = 7 if lo <= 7 <= hi else 9
    conns = [w.Connection(broker.bootstrap, timeout_s=60) for _ in range(CLIENTS)]
    results: dict[int, object] = {}
    barrier = threading.Barrier(CLIENTS)

    def run(j: int) -> None:
        try:
            barrier.wait(timeout=30)
            batch = w.record_batch([(b"c%d" % j, b"c%d-r%d" % (j, r)) for r in range(10)])
            _, parts = w.parse_produce_response(conns[j].roundtrip(w.produce_request(version, j, topic, 0, batch)),
                                                version)
            results[j] = parts[0].error_code
        except BaseException as e:
            results[j] = e

    threads = [threading.Thread(target=run, args=(j,)) for j in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    finally:
        for c in conns:
            c.close()
    assert results == {j: w.NONE for j in range(CLIENTS)}, {j: r for j, r in results.items() if r != w.NONE}
    assert watermarks(broker.bootstrap, topic, 0) == (0, CLIENTS * 10)
    values = [m.value for m in consume_all(broker.bootstrap, topic, 0)]
    for j in range(CLIENTS):
        mine = [v for v in values if v.startswith(b"c%d-" % j)]
        assert mine == [b"c%d-r%d" % (j, r) for r in range(10)], f"connection {j}: {mine}"
