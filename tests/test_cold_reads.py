"""Reads of old data leave the async runtime: a fetch that starts outside the newest 32 MiB of
the active segment (data the WAL no longer keeps in the page cache) runs on the blocking pool,
so its disk wait cannot stall the runtime thread other connections' acknowledgements use;
a consumer following the tail is still served inline. Checked through the broker's own count
of reads sent to the blocking pool (`chronik_wal_cold_reads_total`), on a real broker."""

from __future__ import annotations

import pytest

from helpers import consume_all, consume_range, create_topic, http_get, produce_all, producer, unique_topic, watermarks

pytestmark = pytest.mark.chronik_only("Chronik's blocking-pool reads, seen in /metrics")

COLD_READS = "chronik_wal_cold_reads_total"


def cold_reads(broker) -> float:
    status, text = http_get(broker.http, "/metrics")
    assert status == 200, text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(COLD_READS))


def test_old_data_is_read_off_the_runtime_and_the_tail_inline(broker):
    assert broker.http, "the broker fixture serves /metrics"
    topic = unique_topic("cold")
    # 1 MiB segments: 4 MiB of data leaves most of it in sealed segments, which count as cold.
    create_topic(broker.bootstrap, topic, config={"segment.bytes": str(1 << 20)})
    values = [b"%06d" % i + b"x" * 8_000 for i in range(500)]
    log = produce_all(producer(broker.bootstrap), topic, [(None, v) for v in values], timeout_s=60)
    assert not log.failed, log.failed

    before = cold_reads(broker)
    assert [m.value for m in consume_all(broker.bootstrap, topic, 0)] == values
    after_old = cold_reads(broker)
    assert after_old > before, "reading from offset 0 went through no blocking-pool read"

    # A consumer at the tail: the new message is in the active segment's cached end.
    _, end = watermarks(broker.bootstrap, topic, 0)
    log = produce_all(producer(broker.bootstrap), topic, [(None, b"tail")], timeout_s=30)
    assert not log.failed, log.failed
    assert [m.value for m in consume_range(broker.bootstrap, topic, 0, end, end + 1)] == [b"tail"]
    assert cold_reads(broker) == after_old, "a tail read went to the blocking pool"
