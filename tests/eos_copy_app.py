"""A consume-transform-produce loop with Kafka's exactly-once recipe (KIP-98/KIP-447), run by
tests/test_exactly_once.py as a process of its own so that the test can SIGKILL and restart it.

It subscribes to INPUT in GROUP (read_committed, no auto commit) and, for each batch of records
polled, in one transaction of a producer with the fixed transactional.id TXN_ID:
  begin_transaction; produce one record per input record to OUTPUT (same key; the value names
  the input record: "<partition>:<offset>:<input value>"); send_offsets_to_transaction(the
  consumer's positions, its group metadata); commit_transaction.
A restarted instance's init_transactions fences the previous one (same transactional.id) and
aborts its open transaction; its consumer resumes at the offsets committed with the last
committed transaction. Errors as confluent-kafka's documentation (and its eos-transactions.py
example) handles them: a retriable error retries the call, an abortable one aborts the
transaction and rewinds the consumer to the committed offsets, a fatal one (e.g. fenced) exits
with code 3.

--at-least-once (for a manual experiment, never in the suite): the same loop without a
transaction, as confluent-kafka's documentation recommends for at-least-once: the output is
flushed, then the batch's offsets are stored, and the consumer commits stored offsets every
second (enable.auto.commit); a kill copies again what was copied since the last commit. The
exactly-once checker must catch that.

It prints one line per committed batch ("committed N records, total T") and one per abort.

usage: eos_copy_app.py BOOTSTRAP GROUP INPUT OUTPUT TXN_ID BATCH [--at-least-once]
"""

from __future__ import annotations

import signal
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

# How long one client call may block before it is retried or counted as failed: longer than a
# broker restart plus a leader election on a loaded 2-core machine.
CALL_TIMEOUT_S = 30.0
# Times a retriable error is retried in a row before the process gives up (exit 4; the test
# restarts it): bounded, so a broker that never recovers ends the run instead of hanging it.
MAX_RETRIES = 20

EXIT_FATAL = 3
EXIT_RETRIES = 4


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def transform(msg) -> bytes:
    return b"%d:%d:" % (msg.partition(), msg.offset()) + (msg.value() or b"")


def retrying(what: str, call):
    """Runs `call` again while it fails with a retriable error; re-raises anything else."""
    for attempt in range(MAX_RETRIES):
        try:
            return call()
        except KafkaException as e:
            err = e.args[0]
            if not err.retriable() or err.fatal() or err.txn_requires_abort():
                raise
            log(f"{what}: retriable {err} (attempt {attempt + 1})")
            time.sleep(0.2)
    log(f"{what}: still failing after {MAX_RETRIES} attempts")
    sys.exit(EXIT_RETRIES)


def produce(producer: Producer, topic: str, key, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:
            producer.poll(0.05)


def rewind(consumer: Consumer) -> None:
    """Back to the group's committed offsets (those of the last committed transaction)."""
    assignment = consumer.assignment()
    if not assignment:
        return
    committed = retrying("committed", lambda: consumer.committed(assignment, timeout=CALL_TIMEOUT_S))
    for tp in committed:
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING
        consumer.seek(tp)
    log("rewound to " + ", ".join(f"{tp.partition}:{tp.offset}" for tp in committed))


def copy_batch_in_transaction(consumer: Consumer, producer: Producer, output: str, batch) -> bool:
    """One transaction: True if it committed, False if it was aborted (consumer rewound)."""
    try:
        producer.begin_transaction()
        for m in batch:
            produce(producer, output, m.key(), transform(m))
        positions = consumer.position(consumer.assignment())
        retrying("send_offsets_to_transaction", lambda: producer.send_offsets_to_transaction(
            positions, consumer.consumer_group_metadata(), CALL_TIMEOUT_S))
        retrying("commit_transaction", lambda: producer.commit_transaction(CALL_TIMEOUT_S))
        return True
    except KafkaException as e:
        err = e.args[0]
        if not err.txn_requires_abort():
            raise
        log(f"abortable error {err}: aborting")
        retrying("abort_transaction", lambda: producer.abort_transaction(CALL_TIMEOUT_S))
        rewind(consumer)
        return False


def copy_batch_at_least_once(consumer: Consumer, producer: Producer, output: str, batch) -> bool:
    for m in batch:
        produce(producer, output, m.key(), transform(m))
    if producer.flush(CALL_TIMEOUT_S) != 0:
        log("flush timed out")
        sys.exit(EXIT_RETRIES)
    for m in batch:
        consumer.store_offsets(message=m)
    return True


def main() -> None:
    bootstrap, group, input_topic, output, txn_id, batch_size = sys.argv[1:7]
    at_least_once = "--at-least-once" in sys.argv[7:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": at_least_once,
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": 1000,
        "auto.offset.reset": "earliest",
        # A killed instance's member leaves the group after this; its restart joins sooner.
        "session.timeout.ms": 6000,
        "socket.timeout.ms": 10000,
    })
    producer_conf = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "socket.timeout.ms": 10000,
        "enable.idempotence": True,
        "acks": "all",
    }
    if not at_least_once:
        # Longer than a broker restart: a transaction open while a broker is down must be able to
        # finish; a killed instance's open transaction is aborted by the next instance's
        # init_transactions (the same transactional.id), not by this timeout.
        producer_conf.update({"transactional.id": txn_id, "transaction.timeout.ms": 60000})
    producer = Producer(producer_conf)
    copy = copy_batch_at_least_once
    if not at_least_once:
        retrying("init_transactions", lambda: producer.init_transactions(CALL_TIMEOUT_S))
        copy = copy_batch_in_transaction
    consumer.subscribe([input_topic])
    log(f"started: group={group} txn_id={txn_id} batch={batch_size} at_least_once={at_least_once}")
    total = 0
    try:
        while True:
            batch = consumer.consume(int(batch_size), timeout=1.0)
            errors = [m.error() for m in batch if m.error() is not None]
            for err in errors:
                log(f"consumer error {err}")
            batch = [m for m in batch if m.error() is None]
            if not batch:
                continue
            if copy(consumer, producer, output, batch):
                total += len(batch)
                log(f"committed {len(batch)} records, total {total}")
    except KafkaException as e:
        log(f"fatal: {e.args[0]}")
        sys.exit(EXIT_FATAL)


if __name__ == "__main__":
    main()
