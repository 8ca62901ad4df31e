"""Client-side helpers shared by the test modules: deadlines, topic names, confluent-kafka
producers and assign()-only consumers (consumer groups are not implemented by the broker yet).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# Errors librdkafka reports through error_cb that are about connections, not about data:
# expected while a broker is killed or restarted.
TRANSIENT_ERRORS = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}


# Client-level errors seen by consumers (error_cb), newest last; printed by tests on failure.
CLIENT_ERRORS: list[KafkaError] = []


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.02):
    """Poll `predicate` until it returns a truthy value; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def admin_error(future, timeout_s: float = 30) -> KafkaError | None:
    """The KafkaError an admin future failed with, or None if it succeeded."""
    try:
        future.result(timeout=timeout_s)
        return None
    except KafkaException as e:
        return e.args[0]


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def producer(bootstrap: str, logger=None, **conf) -> Producer:
    base = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "socket.timeout.ms": 10000,
    }
    base.update(conf)
    return Producer(base, logger=logger) if logger is not None else Producer(base)


def consumer(bootstrap: str, **conf) -> Consumer:
    """A consumer for assign() only.

    librdkafka refuses to create a consumer without group.id, so one is set, but the tests never
    subscribe() and never commit: offsets come from assign() and auto.offset.reset.
    """
    base = {
        "bootstrap.servers": bootstrap,
        # Client-level errors (connection refused, coordinator lookups) go to error_cb and are kept
        # for diagnostics; partition-level errors still come back from poll() as messages.
        "error_cb": lambda err: CLIENT_ERRORS.append(err),
        "group.id": "chronik-tests-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "socket.timeout.ms": 10000,
    }
    base.update(conf)
    return Consumer(base)


def admin(bootstrap: str) -> AdminClient:
    """Keep a reference while waiting on its futures: a collected client fails them with _DESTROY."""
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None,
                 timeout_s: float = 30) -> None:
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                         operation_timeout=timeout_s, request_timeout=timeout_s)
    fs[name].result(timeout=timeout_s)
    wait_until(lambda: _partition_count(a, name) == partitions, timeout_s,
               f"topic {name} with {partitions} partitions in metadata")


def _partition_count(a, name: str) -> int:
    md = a.list_topics(timeout=10)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return -1
    return len(t.partitions)


def partition_count(bootstrap: str, name: str) -> int:
    return _partition_count(admin(bootstrap), name)


# Answers a broker gives while leadership settles (Apache Kafka right after a restart): asked again.
RETRIABLE_WATERMARK_ERRORS = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                              KafkaError.UNKNOWN_TOPIC_OR_PART}


def watermarks(bootstrap: str, topic: str, partition: int, timeout_s: float = 10) -> tuple[int, int]:
    """(low, high) of one partition, asking again while its leadership settles."""
    c = consumer(bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = max(deadline - time.monotonic(), 0.1)
            try:
                return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=left, cached=False)
            except KafkaException as e:
                if e.args[0].code() not in RETRIABLE_WATERMARK_ERRORS or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
    finally:
        c.close()


@dataclass
class Msg:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list | None


def consume_range(bootstrap: str, topic: str, partition: int, start: int, end: int,
                  timeout_s: float = 60, **conf) -> list[Msg]:
    """Every message of [start, end) of one partition, via assign(); fails on any message error.

    Offsets must come back strictly increasing (no message twice).
    """
    out: list[Msg] = []
    if end <= start:
        return out
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        while not out or out[-1].offset < end - 1:
            if time.monotonic() > deadline:
                last = out[-1].offset if out else None
                raise AssertionError(f"{topic}[{partition}]: read {len(out)} messages in {timeout_s}s, "
                                     f"last offset {last}, wanted up to {end - 1}")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise AssertionError(f"{topic}[{partition}]: consumer error {m.error()!r}")
            if out and m.offset() <= out[-1].offset:
                raise AssertionError(f"{topic}[{partition}]: offset {m.offset()} after {out[-1].offset}")
            out.append(Msg(m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1], m.headers()))
    finally:
        c.close()
    return [m for m in out if m.offset < end]


def consume_all(bootstrap: str, topic: str, partition: int, timeout_s: float = 60) -> list[Msg]:
    """Everything from the log start to the high watermark of one partition."""
    low, high = watermarks(bootstrap, topic, partition)
    return consume_range(bootstrap, topic, partition, low, high, timeout_s)


class DeliveryLog:
    """Collects delivery reports of a confluent-kafka Producer."""

    def __init__(self):
        self.ok: list[tuple[int, int, bytes | None, bytes | None]] = []  # (partition, offset, key, value)
        self.failed: list[tuple[bytes | None, KafkaError]] = []

    def __call__(self, err, msg):
        if err is None:
            self.ok.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
        else:
            self.failed.append((msg.value(), err))


def produce_all(p: Producer, topic: str, items, timeout_s: float = 120, **kw) -> DeliveryLog:
    """Produce (key, value) items, wait for every delivery report, and return them."""
    log = DeliveryLog()
    n = 0
    for key, value in items:
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=log, **kw)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        p.poll(0)
    remaining = p.flush(timeout_s)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout_s}s"
    assert len(log.ok) + len(log.failed) == n
    return log


def http_get(addr: str, path: str) -> tuple[int, str]:
    """GET http://addr/path -> (status, body); status 0 with the error when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        return 0, str(e)
