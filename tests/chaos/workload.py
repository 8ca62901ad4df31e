"""Producers that record every send attempt and its outcome.

Each producer is an idempotent acks=all confluent-kafka Producer in its own thread, sending
`producer:seq` round-robin over the partitions at a bounded rate. The delivery callback records
acked (partition, offset), or the error: an idempotent producer's timeout or transport error is
"unknown" (the batch may have been stored), anything else "failed". librdkafka's local queue is
bounded (queue.buffering.max.messages); when it is full the producer waits instead of sending.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Producer

from .history import ACKED, FAILED, PENDING, UNKNOWN, Attempt, encode_value

AMBIGUOUS = {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
             KafkaError.REQUEST_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN}

PRODUCER_CONF = {
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "none",  # the WAL reader reads uncompressed batches only
    "linger.ms": 5,
    # A message not acknowledged within 30 s is given up ("unknown"): longer than any fault's
    # hold plus failover, so an ordinary fault never times messages out.
    "message.timeout.ms": 30000,
    "request.timeout.ms": 10000,
    "socket.timeout.ms": 10000,
    "socket.keepalive.enable": True,
    "retry.backoff.ms": 100,
    "retry.backoff.max.ms": 1000,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 2000,
    "queue.buffering.max.messages": 20000,
    "log_level": 2,  # critical only: connection errors are the point here, not news
}


class Workload:
    def __init__(self, bootstrap: str, topic: str, partitions: int, producers: int = 3,
                 rate_per_producer: float = 100.0, pad: int = 0, log_dir: Path | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.rate = rate_per_producer
        self.pad = pad
        # librdkafka's idempotence log ("eos": producer ids, epoch bumps, sequence resets) per
        # producer, for explaining a duplicate or a gap after the run.
        self.log_dir = log_dir
        self.attempts: list[list[Attempt]] = [[] for _ in range(producers)]
        self.fatal: list[str] = []  # fatal client errors (the producer is then replaced)
        self._fatal_flag = [False] * producers
        self.last_ack: dict[int, float] = {}  # partition -> time of its latest acknowledgement
        self._flush_s = 60.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"chaos-producer-{i}", daemon=True)
                         for i in range(producers)]

    def start(self) -> "Workload":
        for t in self._threads:
            t.start()
        return self

    def stop(self, flush_s: float = 60.0) -> None:
        """Stop sending, wait up to flush_s for outstanding acks; whatever is still pending is unknown."""
        self._flush_s = flush_s
        self._stop.set()
        for t in self._threads:
            t.join(flush_s + 30)
        for attempts in self.attempts:
            for a in attempts:
                if a.outcome == PENDING:
                    a.outcome, a.error = UNKNOWN, "still pending at the end"

    def acked_since(self, t: float) -> bool:
        """Every partition acknowledged something after t."""
        return all(self.last_ack.get(p, float("-inf")) > t for p in range(self.partitions))

    def all_attempts(self) -> list[Attempt]:
        return [a for attempts in self.attempts for a in attempts]

    def _producer(self, index: int) -> Producer:
        """A fresh producer (a new producer id); a fatal error raises the thread's flag so the
        loop replaces it: a fatal idempotent producer refuses every later produce."""
        self._fatal_flag[index] = False

        def on_error(err):
            if err.fatal():
                self._fatal(index, str(err))
        conf = {"bootstrap.servers": self.bootstrap, **PRODUCER_CONF, "error_cb": on_error}
        if self.log_dir is not None:
            conf.update({"debug": "eos", "log_level": 7, "logger": _file_logger(self.log_dir, index)})
        return Producer(conf)

    def _run(self, index: int) -> None:
        attempts = self.attempts[index]
        producer = self._producer(index)
        seq = 0
        period = 1.0 / self.rate
        next_t = time.monotonic()

        def done(attempt: Attempt):
            def cb(err, msg):
                attempt.t_done = time.monotonic()
                if err is None:
                    attempt.outcome, attempt.offset = ACKED, msg.offset()
                    self.last_ack[attempt.partition] = attempt.t_done
                else:
                    attempt.error = err.name()
                    attempt.outcome = UNKNOWN if err.code() in AMBIGUOUS or err.retriable() else FAILED
            return cb

        while not self._stop.is_set():
            if self._fatal_flag[index]:
                producer = self._replace(index, producer)
            a = Attempt(index, seq, seq % self.partitions, time.monotonic())
            try:
                producer.produce(self.topic, key=str(index).encode(), value=encode_value(index, seq, self.pad),
                                 partition=a.partition, on_delivery=done(a))
            except BufferError:
                self._poll(index, producer, 0.1)
                continue
            except KafkaException as e:  # a fatal producer refuses every produce
                self._fatal(index, f"produce: {e}")
                continue
            attempts.append(a)
            seq += 1
            next_t += period
            self._poll(index, producer, max(0.0, next_t - time.monotonic()))
            if time.monotonic() - next_t > 1.0:
                next_t = time.monotonic()  # fell behind (a stall): do not burst to catch up
        try:
            producer.flush(self._flush_s)
        except KafkaException as e:
            self._fatal(index, f"flush: {e}")

    def _fatal(self, index: int, what: str) -> None:
        self.fatal.append(f"producer {index} at {time.monotonic():.1f}: {what}")
        self._fatal_flag[index] = True

    def _poll(self, index: int, producer: Producer, timeout_s: float) -> None:
        """poll() raises once the producer hit a fatal error (librdkafka then refuses everything)."""
        try:
            producer.poll(timeout_s)
        except KafkaException as e:
            self._fatal(index, f"poll: {e}")

    def _replace(self, index: int, producer: Producer) -> Producer:
        """A fatal producer is replaced (new producer id); what it still held never gets a
        delivery report and ends as "unknown"."""
        try:
            producer.flush(1)
        except KafkaException:
            pass
        time.sleep(0.1)
        return self._producer(index)


def _file_logger(log_dir: Path, index: int) -> logging.Logger:
    """A logger that appends librdkafka's lines for producer `index` to log_dir/producerN.log."""
    logger = logging.getLogger(f"chaos.producer{index}")
    if not logger.handlers:
        h = logging.FileHandler(log_dir / f"producer{index}.log")
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(h)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger

