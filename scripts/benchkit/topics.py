"""Creating the benchmark's topics the same way on every broker, before any client runs:
CreateTopics v4 with the partitions, the replication factor and the topic configs of the
scenario (`flush.messages=1` for the Kafka run that fsyncs every append), then Metadata until
every partition is listed. Clients then never auto-create a topic with broker defaults."""

from __future__ import annotations

import time

from .kafka_broker import reference  # noqa: F401 - puts tests/ on sys.path for kafkawire

import kafkawire  # noqa: E402

CREATE_TOPICS = 19
TOPIC_ALREADY_EXISTS = 36
# Errors that go away by asking again: a controller that is not ready yet (Kafka right after
# start), a request that timed out.
RETRIABLE = {7, 41, 51}
READY_TIMEOUT_S = 60.0


def _create_topics_v4(correlation_id: int, name: str, partitions: int, replication_factor: int,
                      configs: dict[str, str], timeout_ms: int) -> bytes:
    topic = (kafkawire.string(name) + kafkawire.i32(partitions) + kafkawire.i16(replication_factor)
             + kafkawire.i32(0)  # no manual assignments
             + kafkawire.i32(len(configs))
             + b"".join(kafkawire.string(k) + kafkawire.string(v) for k, v in configs.items()))
    body = kafkawire.i32(1) + topic + kafkawire.i32(timeout_ms) + kafkawire.i8(0)  # validate_only false
    return kafkawire.request(CREATE_TOPICS, 4, correlation_id, body, client_id="chronik-bench-script")


def _create_topics_error(payload: bytes) -> tuple[int, str | None]:
    r = kafkawire.Reader(payload)
    r.i32()  # correlation id
    r.i32()  # throttle time
    if r.i32() != 1:
        raise ValueError("CreateTopics answered for other than one topic")
    r.string()  # name
    return r.i16(), r.string()


def create_topic(bootstrap: str, name: str, partitions: int, replication_factor: int,
                 configs: dict[str, str] | None = None) -> None:
    """Creates the topic (an existing one is an error: every run uses a fresh name) and waits
    until Metadata lists all its partitions, retrying retriable errors until the deadline."""
    server = bootstrap.split(",")[0]
    deadline = time.monotonic() + READY_TIMEOUT_S
    corr = 0
    created = False
    with kafkawire.Connection(server, timeout_s=30) as c:
        while True:
            corr += 1
            if not created:
                err, msg = _create_topics_error(c.roundtrip(_create_topics_v4(
                    corr, name, partitions, replication_factor, dict(configs or {}), 30_000)))
                if err == 0 or err == TOPIC_ALREADY_EXISTS and corr > 1:
                    created = True
                elif err not in RETRIABLE or time.monotonic() > deadline:
                    raise RuntimeError(f"CreateTopics {name} failed with error {err}: {msg}")
                else:
                    time.sleep(0.2)
                continue
            md = kafkawire.parse_metadata_response_v1(c.roundtrip(kafkawire.metadata_request_v1(corr, [name])))
            err, parts = md.topics.get(name, (3, []))
            if err == 0 and len(parts) == partitions:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name}: Metadata lists {len(parts)} of {partitions} partitions "
                                   f"(error {err}) after {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
