"""kafkajs (pure JavaScript, its own protocol code) against the broker, through tests/js.

Each test runs one scenario of tests/js/kafkajs_driver.js under Node and checks the JSON it
prints. kafkajs, its codec packages and their versions are pinned in tests/js/package.json and
package-lock.json, installed by `make deps` (npm ci into tests/js/node_modules).

* Every codec kafkajs can use here: none and gzip (built in), snappy (kafkajs-snappy), lz4
  (kafkajs-lz4) and zstd (zstd-codec through a small codec in the driver; @kafkajs/zstd needs a
  native build that fails on Node 20). An idempotent acks=all producer's acknowledged base
  offsets are contiguous per partition; a group consumer reads back every key, value and header
  and timestamp in offset order; ListOffsets by timestamp finds the earliest offset at or after
  a timestamp (inside compressed batches too); the codec compressed every produced batch and decompressed fetched ones, so
  the broker handed the batches back as they were produced.
* acks=0 and acks=1 beside acks=all; a tombstone (null value), an empty value and headers with
  an empty value come back as sent; a 900 KiB message is stored, a 1.1 MiB one refused with
  MESSAGE_TOO_LARGE (message.max.bytes, 1 MiB by default on both brokers).
* A consumer group: two members share the partitions (disjoint, covering) and commit; one
  leaves and the other takes every partition; a third joins, they share again and the newcomer
  starts at the committed offsets; every message is handed out exactly once; the group ends
  Empty with its offsets at the high watermarks.
* Admin: describeCluster, createTopics (again: false, TOPIC_ALREADY_EXISTS), fetchTopicMetadata,
  listTopics, listGroups, describeGroups (a live member; an unknown group as Dead), fetchOffsets,
  deleteGroups (a live group: NON_EMPTY_GROUP; an unknown one: GROUP_ID_NOT_FOUND), setOffsets on
  the emptied group, deleteTopics (again: UNKNOWN_TOPIC_OR_PARTITION).

The node process gets a deadline (its own watchdog, and pytest kills it past the same deadline).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BrokerFactory, _die_with_parent
from helpers import unique_topic

JS_DIR = Path(__file__).resolve().parent / "js"
DRIVER = JS_DIR / "kafkajs_driver.js"
# A scenario's own deadline (its watchdog exits the process), and each wait inside it.
SCENARIO_TIMEOUT_S = 90
WAIT_S = 45


@pytest.fixture(scope="module")
def js_broker(tmp_path_factory):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("Node.js or tests/js/node_modules missing: run `make deps`", pytrace=False)
    f = BrokerFactory(tmp_path_factory.mktemp("kafkajs-broker"))
    b = f(name="kafkajs", args=["--group-initial-rebalance-delay-ms", "0"])
    yield b
    f.cleanup()


def drive(command: str, **args) -> dict:
    """Runs one driver command and returns its JSON result; fails with its stderr if it failed."""
    args = {"timeoutMs": SCENARIO_TIMEOUT_S * 1000, "waitMs": WAIT_S * 1000, **args}
    env = {**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    try:
        proc = subprocess.run(["node", str(DRIVER), command, json.dumps(args)], cwd=JS_DIR, env=env,
                              capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S + 15,
                              preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        raise AssertionError(f"kafkajs {command} hung past {SCENARIO_TIMEOUT_S + 15}s; stderr tail:\n"
                             f"{_tail(e.stderr)}") from None
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "error" in result:
        raise AssertionError(f"kafkajs {command} exited {proc.returncode}: {json.dumps(result)[:4000]}\n"
                             f"stderr tail:\n{_tail(proc.stderr)}")
    return result


def _tail(text, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_round_trip_every_codec(js_broker, codec):
    topic = unique_topic(f"js-{codec}")
    partitions, count, batch = 3, 900, 150
    per_partition = count // partitions
    # Message i has timestamp ts0 + i: look up the earliest offset at ts0 + k for each k.
    targets = [0, 301, 450, count - 1, count + 5000]
    r = drive("roundtrip", brokers=js_broker.bootstrap, topic=topic, codec=codec,
              partitions=partitions, count=count, batch=batch, timestampTargets=targets)

    assert all(a["errorCode"] == 0 for a in r["acks"]), r["acks"]
    for p in range(partitions):
        acks = [a for a in r["acks"] if a["partition"] == p]
        bases = [a["baseOffset"] for a in acks]
        assert bases == [sum(a["sent"] for a in acks[:i]) for i in range(len(acks))], \
            f"partition {p}: base offsets {bases} are not contiguous in send order"
        assert sum(a["sent"] for a in acks) == per_partition

    by_partition = {p: [m for m in r["messages"] if m["partition"] == p] for p in range(partitions)}
    for p, msgs in by_partition.items():
        assert [m["offset"] for m in msgs] == list(range(per_partition)), f"partition {p}"
        want = [i for i in range(count) if i % partitions == p]
        assert [(m["key"], m["value"], m["headers"], m["timestamp"]) for m in msgs] == \
            [(f"k{i}", f"value-{i}-" + "abcdefgh" * 16, {"seq": str(i), "codec": codec}, r["ts0"] + i) for i in want]
        for k in targets:
            # The first message of the partition at or after ts0 + k; none (-1, which kafkajs turns
            # into the high watermark) past the last one.
            first = next((j for j, i in enumerate(want) if i >= k), per_partition)
            assert r["byTimestamp"][str(k)][str(p)] == first, f"partition {p}, timestamp ts0+{k}"

    assert sorted((o["partition"], o["low"], o["high"]) for o in r["offsets"]) == \
        [(p, 0, per_partition) for p in range(partitions)]

    calls = r["codecCalls"]
    if codec == "none":
        assert all(c == {"compress": 0, "decompress": 0} for c in calls.values()), calls
    else:
        # One compressed batch per partition per send (again if kafkajs retried the send), and
        # every one of them fetched back at least once.
        assert calls[codec]["compress"] >= len(r["acks"]), calls
        assert calls[codec]["decompress"] >= len(r["acks"]), calls
        assert all(c == {"compress": 0, "decompress": 0} for name, c in calls.items() if name != codec), calls


def test_acks_tombstones_and_message_size(js_broker):
    r = drive("edges", brokers=js_broker.bootstrap, topic=unique_topic("js-edges"))
    assert r["acks0"] == []  # acks=0: no answer to report
    assert r["acks1"] == [{"errorCode": 0, "baseOffset": 2}]
    assert r["large"] == [{"errorCode": 0, "baseOffset": 5}]
    assert r["tooLarge"] == "MESSAGE_TOO_LARGE"
    assert r["messages"] == [
        {"offset": 0, "key": None, "size": 1, "headers": {}},
        {"offset": 1, "key": None, "size": 1, "headers": {}},
        {"offset": 2, "key": "tomb", "size": None, "headers": {}},
        {"offset": 3, "key": "empty", "size": 0, "headers": {}},
        {"offset": 4, "key": None, "size": 1, "headers": {"x": "1", "y": ""}},
        {"offset": 5, "key": None, "size": 900 * 1024, "headers": {}},
    ]
    assert r["offsets"] == [{"low": 0, "high": 6}]


def test_group_members_share_commit_and_rejoin(js_broker):
    partitions, per_round = 4, 25
    everything = list(range(partitions))
    r = drive("group", brokers=js_broker.bootstrap, topic=unique_topic("js-group"),
              groupId=unique_topic("js-g"), partitions=partitions, perRound=per_round)
    ph, seen = r["phases"], r["seen"]

    def committed_at(offsets: dict, value: int) -> bool:
        return offsets == {str(p): value for p in everything}

    # Two members, disjoint non-empty shares covering the topic; round 0 committed.
    a, b = ph["shared"]["a"], ph["shared"]["b"]
    assert a and b and sorted(a + b) == everything, ph["shared"]
    assert committed_at(ph["shared"]["committed"], per_round), ph["shared"]
    [g] = ph["shared"]["describe"]
    assert (g["errorCode"], g["state"], g["protocolType"]) == (0, "Stable", "consumer"), g
    assert len(g["members"]) == 2 and all(m["hasAssignment"] for m in g["members"]), g
    assert {p for p, _ in seen["b"]} <= set(b), f"b read outside its partitions {b}: {seen['b']}"

    # b left: a alone holds every partition; round 1 committed.
    assert ph["alone"]["a"] == everything, ph["alone"]
    assert committed_at(ph["alone"]["committed"], 2 * per_round), ph["alone"]

    # c joined: a and c share again; c started at the committed offsets.
    a, c = ph["rejoined"]["a"], ph["rejoined"]["c"]
    assert a and c and sorted(a + c) == everything, ph["rejoined"]
    assert committed_at(ph["rejoined"]["committed"], 3 * per_round), ph["rejoined"]
    assert seen["c"] and all(o >= 2 * per_round for _, o in seen["c"]), \
        f"c re-read offsets below the committed ones: {sorted(seen['c'])[:10]}"

    every = [tuple(x) for m in ("a", "b", "c") for x in seen[m]]
    assert sorted(every) == [(p, o) for p in everything for o in range(3 * per_round)], \
        "not every message handed out exactly once"
    assert ph["empty"] == {"state": "Empty", "members": 0}, ph["empty"]


def test_admin_topics_cluster_and_groups(js_broker):
    topic, group = unique_topic("js-admin"), unique_topic("js-admin-g")
    r = drive("admin", brokers=js_broker.bootstrap, topic=topic, groupId=group)

    [broker] = r["cluster"]["brokers"]
    assert f"{broker['host']}:{broker['port']}" == js_broker.bootstrap, r["cluster"]
    assert r["cluster"]["controller"] == broker["nodeId"] and r["cluster"]["clusterId"], r["cluster"]
    node = broker["nodeId"]

    assert (r["created"], r["createdAgain"]) == (True, False)
    assert r["metadata"] == [{"name": topic, "partitions": [
        {"partitionId": p, "errorCode": 0, "leader": node, "replicas": [node], "isr": [node]} for p in range(3)]}]
    assert r["listedBeforeDelete"] is True

    assert r["listGroups"] == [{"groupId": group, "protocolType": "consumer"}]
    groups = {g["groupId"]: g for g in r["describeGroups"]}
    live = groups[group]
    assert (live["errorCode"], live["state"], live["protocolType"], live["protocol"]) == \
        (0, "Stable", "consumer", "RoundRobinAssigner"), live
    assert [m["clientId"] for m in live["members"]] == ["kafkajs-admin"] and live["members"][0]["memberAssignmentBytes"] > 0
    unknown = groups[f"{group}-never-existed"]
    assert (unknown["errorCode"], unknown["state"], unknown["members"]) == (0, "Dead", []), unknown
    # kafkajs commits only the partition it read; it reports -1 for the others.
    assert r["fetchOffsets"] == {"0": 1, "1": -1, "2": -1}
    assert r["deleteLiveGroup"] == [{"groupId": group, "errorCode": 68, "error": "NON_EMPTY_GROUP"}]

    # Once the member left: offsets set from outside (OffsetCommit of an Empty group), then
    # DeleteGroups removes the group and its offsets; an unknown group gets GROUP_ID_NOT_FOUND.
    assert r["setOffsets"] == {"0": 0, "1": -1, "2": 1}
    assert r["deleteGroups"] == [{"groupId": group, "errorCode": 0}]
    assert r["listedAfterDeleteGroups"] is False
    assert r["offsetsAfterDeleteGroups"] == {"0": -1, "1": -1, "2": -1}
    assert r["deleteUnknownGroup"] == [{"groupId": f"{group}-never-existed", "errorCode": 69,
                                        "error": "GROUP_ID_NOT_FOUND"}]

    assert r["listedAfterDelete"] is True
    assert r["deleteAgain"] == {"error": "UNKNOWN_TOPIC_OR_PARTITION"}
