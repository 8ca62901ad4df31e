"""Chronik's command-line flags and CHRONIK_* variables as Apache Kafka server properties, for
running the client-compatibility suite against the reference broker (`pytest --broker=kafka`).

Chronik names its flags after Kafka's configs, so a test that starts a broker with
`--replica-lag-time-max-ms 1500` gets `replica.lag.time.max.ms=1500` on Kafka. A flag with no
Kafka equivalent that changes behaviour a test checks raises ChronikOnlyFlag: that test is about
Chronik alone and must be marked `chronik_only`.
"""

from __future__ import annotations


class ChronikOnlyFlag(ValueError):
    pass


# Flag -> Kafka broker property, same value.
SAME_VALUE = {
    "--group-initial-rebalance-delay-ms": "group.initial.rebalance.delay.ms",
    "--replica-lag-time-max-ms": "replica.lag.time.max.ms",
    "--auto-leader-rebalance": "auto.leader.rebalance.enable",
    "--auto-create-topics": "auto.create.topics.enable",
    "--num-partitions": "num.partitions",
    "--default-replication-factor": "default.replication.factor",
    "--min-insync-replicas": "min.insync.replicas",
    "--retention-ms": "log.retention.ms",
    "--retention-bytes": "log.retention.bytes",
    "--segment-bytes": "log.segment.bytes",
    "--segment-ms": "log.roll.ms",
    "--max-message-bytes": "message.max.bytes",
    "--offsets-topic-partitions": "offsets.topic.num.partitions",
    "--offsets-retention-minutes": "offsets.retention.minutes",
    "--transaction-state-partitions": "transaction.state.log.num.partitions",
    "--transaction-max-timeout-ms": "transaction.max.timeout.ms",
    "--transactional-id-expiration-ms": "transactional.id.expiration.ms",
    "--max-connections": "max.connections",
    "--queued-max-request-bytes": "queued.max.request.bytes",
    "--connections-max-idle-ms": "connections.max.idle.ms",
    "--max-connections-per-ip": "max.connections.per.ip",
    "--rack": "broker.rack",
    "--super-users": "super.users",
    "--log-cleaner-threads": "log.cleaner.threads",
    "--log-cleaner-backoff-ms": "log.cleaner.backoff.ms",
    "--log-cleaner-dedupe-buffer-size": "log.cleaner.dedupe.buffer.size",
    "--log-cleaner-io-max-bytes-per-second": "log.cleaner.io.max.bytes.per.second",
}

# Flags that only tune how long Chronik waits internally; Kafka has its own (fixed) timings, and
# no test result depends on the value beyond speed.
TIMING_ONLY = {"--metadata-timeout-ms"}


def _fsync(value: str) -> dict[str, str]:
    """--fsync always|interval:<ms>|never: Kafka's per-append or timed flush."""
    if value == "always":
        return {"log.flush.interval.messages": "1"}
    if value.startswith("interval:"):
        return {"log.flush.interval.ms": value.split(":", 1)[1]}
    return {}


def _session_timeout(value: str) -> dict[str, str]:
    """Kafka requires broker.heartbeat.interval.ms (2000 by default) below the session timeout;
    Chronik heartbeats every quarter of it, at most every 500 ms."""
    ms = int(value)
    return {"broker.session.timeout.ms": str(ms), "broker.heartbeat.interval.ms": str(max(100, min(500, ms // 4)))}


def _retention_check(value: str) -> dict[str, str]:
    """Chronik's one retention task enforces log retention and expires group offsets, starting
    one interval after start; Kafka's first pass waits log.initial.task.delay.ms (30 s)."""
    return {"log.retention.check.interval.ms": value, "offsets.retention.check.interval.ms": value,
            "log.initial.task.delay.ms": value}


def _authorizer(value: str) -> dict[str, str]:
    """--authorizer acl: Kafka's KRaft ACL authorizer."""
    if value == "acl":
        return {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}
    return {}


SPECIAL = {"--authorizer": _authorizer, "--fsync": _fsync, "--broker-session-timeout-ms": _session_timeout,
           "--retention-check-interval-ms": _retention_check}


def kafka_properties(args: list[str] | None, env: dict[str, str] | None) -> dict[str, str]:
    """Kafka properties equivalent to Chronik flags (`--flag value` or `--flag=value`) and
    CHRONIK_FLAG_NAME variables."""
    pairs: list[tuple[str, str]] = []
    items = list(args or [])
    i = 0
    while i < len(items):
        flag = items[i]
        if "=" in flag:
            name, value = flag.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items):
                raise ChronikOnlyFlag(f"flag {flag} without a value")
            name, value = flag, items[i + 1]
            i += 2
        pairs.append((name, value))
    for k, v in (env or {}).items():
        if k.startswith("CHRONIK_") and k != "CHRONIK_HTTP_ADDR":
            pairs.append(("--" + k[len("CHRONIK_"):].lower().replace("_", "-"), v))
    props: dict[str, str] = {}
    for name, value in pairs:
        if name in SAME_VALUE:
            props[SAME_VALUE[name]] = value
        elif name in SPECIAL:
            props.update(SPECIAL[name](value))
        elif name in TIMING_ONLY:
            continue
        else:
            raise ChronikOnlyFlag(f"{name} has no Apache Kafka equivalent: mark the test chronik_only")
    return props
