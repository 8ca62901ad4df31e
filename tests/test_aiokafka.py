"""aiokafka (pure Python asyncio, its own protocol code) against the broker.

* Every codec aiokafka has (none, gzip, and snappy, lz4 and zstd through cramjam): an idempotent
  acks=all producer's acknowledged offsets are 0..n-1 per partition in send order; a consumer
  without a group reads back every key, value, header and timestamp; offsets_for_times finds the
  earliest offset at or after a timestamp (None past the last); Fetch reports the end as high
  watermark and last stable offset; a raw Fetch (aiokafka's own
  FetchRequest and record parser) returns contiguous batches carrying the producer's codec, so
  the codec was really used and the broker kept it.
* A send to an unknown topic auto-creates it with one partition.
* A consumer group: two members subscribe, share the partitions (disjoint, covering), read and
  commit; one leaves (LeaveGroup) and the other takes every partition; a third joins, they share
  again and the newcomer starts exactly at the committed offsets. Every message is handed out
  exactly once, and the committed offsets end at the high watermarks.
* AIOKafkaAdminClient: create_topics (a second create gets TOPIC_ALREADY_EXISTS), describe_topics,
  describe_cluster, list_consumer_groups, describe_consumer_groups (a live member, an unknown
  group as Dead), list_consumer_group_offsets, delete_topics (a second delete gets
  UNKNOWN_TOPIC_OR_PARTITION).
* Three nodes: a replicated topic (RF 3) whose partitions have different leaders; the producer
  (acks=all, idempotent, lz4) and a consumer with a bootstrap list of one node reach every leader;
  a group member reads everything and commits through its coordinator, wherever that is.

The single-broker tests share one broker (distinct topic names) started with
--group-initial-rebalance-delay-ms 0, so a new group forms at once.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from conftest import BrokerFactory
from helpers import unique_topic

# Kafka error codes (https://kafka.apache.org/protocol#protocol_error_codes).
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_ALREADY_EXISTS = 36

# Codec ids in a v2 batch's attributes.
CODEC_IDS = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

# Every wait inside a scenario; the scenario as a whole gets WAIT_S * 3.
WAIT_S = 45.0


@pytest.fixture(scope="module")
def aio_broker(tmp_path_factory):
    f = BrokerFactory(tmp_path_factory.mktemp("aiokafka-broker"))
    b = f(name="aiokafka", args=["--group-initial-rebalance-delay-ms", "0"])
    yield b
    f.cleanup()


def run(coro, timeout_s: float = WAIT_S * 3):
    """Runs one scenario on a fresh event loop, cancelled (and failed) at the deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def wait_for(predicate, what: str, timeout_s: float = WAIT_S, interval_s: float = 0.05):
    """Polls a plain or async predicate until it is truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


async def create_topic(bootstrap: str, name: str, partitions: int, replication_factor: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(name, partitions, replication_factor)], timeout_ms=30000)
        errors = [(t[0], t[1]) for t in resp.topic_errors]
        assert errors == [(name, 0)], f"create_topics({name}): {resp}"

        async def has_leaders():
            [t] = await admin.describe_topics([name])
            return t["error_code"] == 0 and len(t["partitions"]) == partitions and \
                all(p["leader"] >= 0 for p in t["partitions"])
        await wait_for(has_leaders, f"{name} with {partitions} partitions, each with a leader")
    finally:
        await admin.close()


def producer(bootstrap: str, **kw) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                            linger_ms=5, request_timeout_ms=30000, **kw)


async def consume_assigned(bootstrap: str, topic: str, partitions: int, per_partition: int) -> dict[int, list]:
    """Every record of every partition from offset 0, via assign() with no group. The Fetch
    answers' high watermark and last stable offset must both be the partition's end."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=30000)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: dict[int, list] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + WAIT_S
        while any(len(v) < per_partition for v in out.values()):
            assert time.monotonic() < deadline, f"read {({p: len(v) for p, v in out.items()})} in {WAIT_S}s"
            for tp, records in (await c.getmany(timeout_ms=500)).items():
                out[tp.partition].extend(records)
        for tp in tps:
            assert (c.highwater(tp), c.last_stable_offset(tp)) == (per_partition, per_partition), tp
        return out
    finally:
        await c.stop()


async def fetched_batches(bootstrap: str, topic: str, partition: int, end: int) -> list[tuple[int, int, int]]:
    """(base offset, codec id, next offset) of every batch below `end`, as the partition's leader
    returns them to a raw Fetch (aiokafka's FetchRequest at the version it negotiated)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await client.bootstrap()
    try:
        cluster = await client.fetch_all_metadata()
        leader = cluster.leader_for_partition(TopicPartition(topic, partition))
        batches: list[tuple[int, int, int]] = []
        offset = 0
        while offset < end:
            resp = await client.send(leader, FetchRequest(
                max_wait_time=500, min_bytes=1, max_bytes=8 << 20, isolation_level=0,
                topics=[(topic, [(partition, offset, 8 << 20)])]))
            [(name, parts)] = resp.topics
            [part] = parts
            # Every Fetch version aiokafka has puts partition and error code first, records last.
            assert (name, part[0], part[1]) == (topic, partition, 0), f"fetch answered {part[:2]}"
            records = MemoryRecords(part[-1])
            while (batch := records.next_batch()) is not None:
                if batch.next_offset > offset:
                    batches.append((batch.base_offset, batch.compression_type, batch.next_offset))
                    offset = batch.next_offset
        return batches
    finally:
        await client.close()


# ---------------------------------------------------------------------------------- produce / consume
@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"], ids=lambda c: c or "none")
def test_round_trip_acks_all_idempotent(aio_broker, codec):
    topic = unique_topic(f"aio-{codec or 'none'}")
    partitions, n = 3, 900
    per_partition = n // partitions

    # Message i has the timestamp ts0 + i (CreateTime).
    ts0 = int(time.time() * 1000) - 3_600_000

    async def scenario():
        await create_topic(aio_broker.bootstrap, topic, partitions)
        p = producer(aio_broker.bootstrap, compression_type=codec)
        await p.start()
        try:
            futures = []
            for i in range(n):
                # Compressible values, so each codec has something to shrink.
                futures.append(await p.send(topic, key=b"k%d" % i, value=b"value-%d-" % i + b"abcdefgh" * 16,
                                            partition=i % partitions, headers=[("seq", b"%d" % i)],
                                            timestamp_ms=ts0 + i))
            metas = await asyncio.gather(*futures)
        finally:
            await p.stop()
        for part in range(partitions):
            offsets = [m.offset for i, m in enumerate(metas) if i % partitions == part]
            assert offsets == list(range(per_partition)), f"partition {part}: acked offsets not 0..n-1 in send order"

        got = await consume_assigned(aio_broker.bootstrap, topic, partitions, per_partition)
        for part, records in got.items():
            assert [r.offset for r in records] == list(range(per_partition))
            want = [i for i in range(n) if i % partitions == part]
            assert [(r.key, r.value, list(r.headers), r.timestamp) for r in records] == \
                [(b"k%d" % i, b"value-%d-" % i + b"abcdefgh" * 16, [("seq", b"%d" % i)], ts0 + i) for i in want]

        c = AIOKafkaConsumer(bootstrap_servers=aio_broker.bootstrap, group_id=None)
        await c.start()
        try:
            tps = [TopicPartition(topic, part) for part in range(partitions)]
            assert await c.end_offsets(tps) == {tp: per_partition for tp in tps}
            assert await c.beginning_offsets(tps) == {tp: 0 for tp in tps}
            # ListOffsets by timestamp: the earliest offset whose timestamp is >= the target (inside
            # compressed batches too), None past the last message.
            for k in (0, 301, 450, n - 1, n + 5000):
                found = await c.offsets_for_times({tp: ts0 + k for tp in tps})
                for tp in tps:
                    want = [i for i in range(n) if i % partitions == tp.partition]
                    first = next((j for j, i in enumerate(want) if i >= k), None)
                    expected = None if first is None else (first, ts0 + want[first])
                    got = None if found[tp] is None else (found[tp].offset, found[tp].timestamp)
                    assert got == expected, f"{tp}, timestamp ts0+{k}"
        finally:
            await c.stop()

        for part in range(partitions):
            batches = await fetched_batches(aio_broker.bootstrap, topic, part, per_partition)
            assert batches[0][0] == 0 and batches[-1][2] == per_partition, batches
            assert all(a[2] == b[0] for a, b in zip(batches, batches[1:])), f"batches not contiguous: {batches}"
            assert {b[1] for b in batches} == {CODEC_IDS[codec]}, f"partition {part}: codecs {batches}"

    run(scenario())


def test_auto_created_topic(aio_broker):
    """A send to a topic nobody created creates it (Metadata with auto-creation), with one
    partition by default, as Kafka's num.partitions."""
    topic = unique_topic("aio-auto")

    async def scenario():
        p = producer(aio_broker.bootstrap)
        await p.start()
        try:
            metas = [await p.send_and_wait(topic, value=b"auto-%d" % i) for i in range(5)]
        finally:
            await p.stop()
        assert [(m.partition, m.offset) for m in metas] == [(0, i) for i in range(5)]
        got = await consume_assigned(aio_broker.bootstrap, topic, 1, 5)
        assert [r.value for r in got[0]] == [b"auto-%d" % i for i in range(5)]

    run(scenario())


# ---------------------------------------------------------------------------------- consumer group
class Member:
    """One group member reading in its own task: every record it was handed, committing after
    each getmany (enable_auto_commit off, so the commits are the test's own)."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str):
        self.name = name
        self.seen: list[tuple[int, int]] = []
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, client_id=f"aio-{name}",
            enable_auto_commit=False, auto_offset_reset="earliest", heartbeat_interval_ms=300,
            session_timeout_ms=10000, max_poll_interval_ms=60000, request_timeout_ms=30000)
        self.task: asyncio.Task | None = None
        self.commit_errors: list[str] = []

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        uncommitted = False
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                self.seen.extend((tp.partition, r.offset) for r in records)
            uncommitted = uncommitted or bool(batch)
            if uncommitted:
                try:
                    await self.consumer.commit()
                    uncommitted = False
                except KafkaError as e:
                    # A commit that met a rebalance fails; the next round commits the new positions.
                    self.commit_errors.append(repr(e))

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    async def stop(self) -> None:
        """Stops reading, then leaves the group (LeaveGroup)."""
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.consumer.stop()


async def produce_round(p: AIOKafkaProducer, topic: str, partitions: int, per_partition: int, rnd: int) -> None:
    futures = [await p.send(topic, value=b"round%d-%d" % (rnd, i), partition=part)
               for part in range(partitions) for i in range(per_partition)]
    await asyncio.gather(*futures)


def test_group_members_share_commit_and_rejoin(aio_broker):
    topic = unique_topic("aio-group")
    group = unique_topic("aio-g")
    partitions, per_round = 4, 25
    everything = set(range(partitions))

    async def committed(admin) -> dict[int, int]:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic}

    async def all_at(admin, value: int) -> bool:
        return await committed(admin) == {part: value for part in range(partitions)}

    def shared(*members: Member) -> bool:
        sets = [m.assignment() for m in members]
        return all(sets) and sum(len(s) for s in sets) == partitions and set().union(*sets) == everything

    def delivered(upto: int, *members: Member) -> bool:
        have = {x for m in members for x in m.seen}
        return all((part, o) in have for part in range(partitions) for o in range(upto))

    async def scenario():
        bs = aio_broker.bootstrap
        await create_topic(bs, topic, partitions)
        admin = AIOKafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=30000)
        await admin.start()
        p = producer(bs)
        await p.start()
        a, b, c = (Member(bs, group, topic, n) for n in "abc")
        try:
            # Two members share the partitions, then read and commit round 0.
            await a.start()
            await b.start()
            await wait_for(lambda: shared(a, b), "a and b to share the partitions")
            b_parts = b.assignment()
            await produce_round(p, topic, partitions, per_round, 0)
            await wait_for(lambda: delivered(per_round, a, b), "round 0 delivered")
            await wait_for(lambda: all_at(admin, per_round), "round 0 committed")
            [desc] = await admin.describe_consumer_groups([group])
            [g] = desc.to_object()["groups"]
            assert (g["error_code"], g["state"], g["protocol_type"]) == (0, "Stable", "consumer"), g
            assert sorted(m["client_id"] for m in g["members"]) == ["aio-a", "aio-b"]
            assert {part for part, _ in b.seen} <= b_parts

            # b leaves: a takes every partition and reads round 1.
            await b.stop()
            await wait_for(lambda: a.assignment() == everything, "a to take every partition")
            await produce_round(p, topic, partitions, per_round, 1)
            await wait_for(lambda: delivered(2 * per_round, a, b), "round 1 delivered")
            await wait_for(lambda: all_at(admin, 2 * per_round), "round 1 committed")

            # c joins: a and c share again, and c starts at the committed offsets.
            await c.start()
            await wait_for(lambda: shared(a, c), "a and c to share the partitions")
            await produce_round(p, topic, partitions, per_round, 2)
            await wait_for(lambda: delivered(3 * per_round, a, b, c), "round 2 delivered")
            await wait_for(lambda: all_at(admin, 3 * per_round), "round 2 committed")
            assert c.seen and all(o >= 2 * per_round for _, o in c.seen), \
                f"c re-read offsets below the committed ones: {sorted(c.seen)[:10]}"
            every = a.seen + b.seen + c.seen
            assert sorted(every) == sorted(set(every)), "a message was handed out twice"
            assert len(every) == 3 * per_round * partitions
        finally:
            for m in (a, b, c):
                if m.task is not None and not m.task.done():
                    await m.stop()
            await p.stop()
            await admin.close()

    async def all_at(admin, value: int) -> bool:
        return await committed(admin) == {part: value for part in range(partitions)}

    run(scenario())


# ---------------------------------------------------------------------------------- admin
def test_admin_topics_cluster_and_groups(aio_broker):
    topic = unique_topic("aio-admin")
    group = unique_topic("aio-admin-g")

    async def scenario():
        bs = aio_broker.bootstrap
        admin = AIOKafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=30000)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
            brokers = [(b["node_id"], f"{b['host']}:{b['port']}") for b in cluster["brokers"]]
            assert [addr for _, addr in brokers] == [bs], cluster
            assert cluster["controller_id"] in [node for node, _ in brokers], cluster
            assert cluster["cluster_id"], cluster

            resp = await admin.create_topics([NewTopic(topic, 3, 1)], timeout_ms=30000)
            assert [(t[0], t[1]) for t in resp.topic_errors] == [(topic, 0)], resp
            again = await admin.create_topics([NewTopic(topic, 3, 1)], timeout_ms=30000)
            assert [(t[0], t[1]) for t in again.topic_errors] == [(topic, TOPIC_ALREADY_EXISTS)], again

            node = brokers[0][0]

            async def described():
                [t] = await admin.describe_topics([topic])
                return t if t["error_code"] == 0 and all(p["leader"] == node for p in t["partitions"]) else None
            t = await wait_for(described, f"{topic} with leaders")
            assert (t["topic"], t["is_internal"]) == (topic, False)
            assert sorted((p["partition"], p["error_code"], p["leader"], p["replicas"], p["isr"])
                          for p in t["partitions"]) == [(i, 0, node, [node], [node]) for i in range(3)]
            assert topic in await admin.list_topics()

            # A group with one live member and one committed offset.
            p = producer(bs)
            await p.start()
            try:
                await (await p.send(topic, value=b"one", partition=0))
            finally:
                await p.stop()
            c = AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=group, client_id="aio-admin-member",
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 heartbeat_interval_ms=300, session_timeout_ms=10000)
            await c.start()
            try:
                records = await wait_for(lambda: c.getmany(timeout_ms=200), "the one record")
                assert [r.value for rs in records.values() for r in rs] == [b"one"]
                await c.commit()
                assert (group, "consumer") in await admin.list_consumer_groups()
                # One group per call: aiokafka 0.14.0 sends DescribeGroups v3 but decodes the answer
                # with the v2 schema (no authorized_operations), which misreads every group after
                # the first (the same on Apache Kafka); a lone group's extra field is just left over.
                groups = {}
                for g in (group, group + "-never-existed"):
                    [d] = await admin.describe_consumer_groups([g])
                    [groups[g]] = d.to_object()["groups"]
                live = groups[group]
                assert (live["error_code"], live["state"], live["protocol_type"]) == (0, "Stable", "consumer"), live
                assert [m["client_id"] for m in live["members"]] == ["aio-admin-member"]
                assert live["members"][0]["member_assignment"], "a stable member's assignment is empty"
                unknown = groups[group + "-never-existed"]
                assert (unknown["error_code"], unknown["state"], unknown["members"]) == (0, "Dead", []), unknown
                offsets = await admin.list_consumer_group_offsets(group)
                # commit() commits the position of every assigned partition: 0 where nothing was read.
                assert {tp: om.offset for tp, om in offsets.items()} == \
                    {TopicPartition(topic, 0): 1, TopicPartition(topic, 1): 0, TopicPartition(topic, 2): 0}
            finally:
                await c.stop()

            resp = await admin.delete_topics([topic], timeout_ms=30000)
            assert [(t[0], t[1]) for t in resp.topic_error_codes] == [(topic, 0)], resp
            await wait_for(lambda: _absent(admin, topic), f"{topic} gone from list_topics")
            again = await admin.delete_topics([topic], timeout_ms=30000)
            assert [(t[0], t[1]) for t in again.topic_error_codes] == [(topic, UNKNOWN_TOPIC_OR_PARTITION)], again
        finally:
            await admin.close()

    run(scenario())


async def _absent(admin: AIOKafkaAdminClient, topic: str) -> bool:
    return topic not in await admin.list_topics()


# ---------------------------------------------------------------------------------- three nodes
def test_three_nodes_acks_all_across_leaders(cluster_factory):
    c = cluster_factory(3).start()
    topic = unique_topic("aio-rf3")
    partitions, n = 3, 600
    per_partition = n // partitions

    async def scenario():
        # The clients know one node; they find every partition's leader from Metadata.
        bs = c.bootstrap(1)
        await create_topic(bs, topic, partitions, replication_factor=3)
        client = AIOKafkaClient(bootstrap_servers=bs)
        await client.bootstrap()
        try:
            async def led():
                # Every node learns of the topic on its own (Kafka propagates metadata to its
                # brokers asynchronously): ask until the node answering knows every leader.
                md = await client.fetch_all_metadata()
                found = {part: md.leader_for_partition(TopicPartition(topic, part)) for part in range(partitions)}
                return (md, found) if all(x is not None and x >= 0 for x in found.values()) else None
            md, leaders = await wait_for(led, f"the leaders of {topic} in Metadata")
            assert len(set(leaders.values())) > 1, f"every partition led by one node: {leaders}"
            for part in range(partitions):
                assert sorted(md._partitions[topic][part].replicas) == sorted(b.nodeId for b in md.brokers()), \
                    md._partitions[topic][part]
        finally:
            await client.close()

        p = producer(bs, compression_type="lz4")
        await p.start()
        try:
            futures = [await p.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % partitions)
                       for i in range(n)]
            metas = await asyncio.gather(*futures)
        finally:
            await p.stop()
        for part in range(partitions):
            assert [m.offset for i, m in enumerate(metas) if i % partitions == part] == list(range(per_partition))

        got = await consume_assigned(bs, topic, partitions, per_partition)
        for part, records in got.items():
            assert [(r.offset, r.key, r.value) for r in records] == \
                [(j, b"k%d" % i, b"v%d" % i) for j, i in enumerate(range(part, n, partitions))]

        # A group member: its coordinator (FindCoordinator) may be any node; it reads every
        # partition from its leader and commits through the coordinator.
        group = unique_topic("aio-rf3-g")
        m = Member(bs, group, topic, "rf3")
        admin = AIOKafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=30000)
        await admin.start()
        try:
            await m.start()
            await wait_for(lambda: len(m.seen) >= n, f"the group member to read {n} records")
            assert sorted(m.seen) == [(part, o) for part in range(partitions) for o in range(per_partition)]

            async def all_committed():
                offsets = await admin.list_consumer_group_offsets(group)
                return {tp.partition: om.offset for tp, om in offsets.items()} == \
                    {part: per_partition for part in range(partitions)}
            await wait_for(all_committed, "the member's commits")
        finally:
            await m.stop()
            await admin.close()

    run(scenario())
