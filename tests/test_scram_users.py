"""SCRAM users through confluent-kafka's AdminClient (KIP-554: alter_user_scram_credentials and
describe_user_scram_credentials): credentials are created, listed with their iteration counts,
replaced and deleted; bad requests get Kafka's error codes; users survive a restart (they live
in the Raft metadata) and are seen by every node of a three-node cluster.

Kafka behaviour, so it runs on both brokers (`--broker=kafka` too); the restart and cluster
tests are Chronik's.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)

from conftest import kafka_mode
from helpers import admin, wait_until

SHA256, SHA512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512


def upsert(user: str, mechanism=SHA512, iterations: int = 4096, password: bytes = b"secret"):
    return UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, iterations), password)


def alter(bootstrap: str, alterations) -> dict[str, KafkaError | None]:
    """Each user's outcome: None, or the error Kafka's code came back as."""
    out = {}
    a = admin(bootstrap)  # kept alive until every future resolved
    for user, fut in a.alter_user_scram_credentials(alterations).items():
        try:
            fut.result(timeout=30)
            out[user] = None
        except KafkaException as e:
            out[user] = e.args[0]
    return out


def describe(bootstrap: str, users=None) -> dict:
    """user -> {mechanism: iterations}, or the KafkaError of that user."""
    a = admin(bootstrap)
    if users is None:
        desc = a.describe_user_scram_credentials().result(timeout=30)
        return {u: {c.mechanism: c.iterations for c in d.scram_credential_infos} for u, d in desc.items()}
    out = {}
    for user, fut in a.describe_user_scram_credentials(users).items():
        try:
            out[user] = {c.mechanism: c.iterations for c in fut.result(timeout=30).scram_credential_infos}
        except KafkaException as e:
            out[user] = e.args[0]
    return out


def test_credentials_are_created_listed_replaced_and_deleted(broker):
    b = broker.bootstrap
    # A user at most once per request (Kafka refuses a second change of the same user).
    assert alter(b, [upsert("alice", SHA256, 4096), upsert("bob")]) == {"alice": None, "bob": None}
    assert alter(b, [upsert("alice", SHA512, 8192)]) == {"alice": None}
    assert describe(b, ["alice"]) == {"alice": {SHA256: 4096, SHA512: 8192}}
    everyone = describe(b)
    assert everyone["alice"] == {SHA256: 4096, SHA512: 8192} and everyone["bob"] == {SHA512: 4096}
    assert alter(b, [upsert("alice", SHA512, 4096)]) == {"alice": None}
    assert describe(b, ["alice"])["alice"][SHA512] == 4096
    assert alter(b, [UserScramCredentialDeletion("alice", SHA256)]) == {"alice": None}
    assert describe(b, ["alice"]) == {"alice": {SHA512: 4096}}
    assert alter(b, [UserScramCredentialDeletion("alice", SHA512), UserScramCredentialDeletion("bob", SHA512)]) == {
        "alice": None, "bob": None}
    missing = describe(b, ["alice"])["alice"]
    assert isinstance(missing, KafkaError) and missing.code() == KafkaError.RESOURCE_NOT_FOUND
    assert missing.str().startswith("Attempt to describe a user credential that does not exist: alice")


def test_bad_alterations_get_kafkas_codes(broker):
    b = broker.bootstrap
    got = alter(b, [upsert("few", iterations=1000), upsert("many", iterations=20000),
                    UserScramCredentialDeletion("nobody", SHA256)])
    assert got["few"].code() == KafkaError.UNACCEPTABLE_CREDENTIAL, got
    assert got["many"].code() == KafkaError.UNACCEPTABLE_CREDENTIAL, got
    assert got["nobody"].code() == KafkaError.RESOURCE_NOT_FOUND, got
    # A user named twice in one request: none of its changes are applied.
    got = alter(b, [upsert("twice", SHA256), upsert("twice", SHA512)])
    assert got["twice"].code() == KafkaError.DUPLICATE_RESOURCE, got
    assert describe(b, ["twice"])["twice"].code() == KafkaError.RESOURCE_NOT_FOUND
    assert alter(b, [upsert("y", SHA512)]) == {"y": None}
    got = alter(b, [upsert("y", SHA256), UserScramCredentialDeletion("y", SHA512)])
    assert got["y"].code() == KafkaError.DUPLICATE_RESOURCE, got
    # ... unless a deletion of what does not exist comes first: that error is the user's.
    got = alter(b, [UserScramCredentialDeletion("y", SHA256), UserScramCredentialDeletion("y", SHA512)])
    assert got["y"].code() == KafkaError.RESOURCE_NOT_FOUND, got
    assert describe(b, ["y"]) == {"y": {SHA512: 4096}}


@pytest.mark.chronik_only("users live in Chronik's Raft metadata; a restart of the test broker")
def test_users_survive_a_restart(broker):
    assert alter(broker.bootstrap, [upsert("carol", SHA256, 5000)]) == {"carol": None}
    broker.restart()
    assert describe(broker.bootstrap, ["carol"]) == {"carol": {SHA256: 5000}}


@pytest.mark.chronik_only("a three-node Chronik cluster")
def test_every_node_of_a_cluster_sees_the_users(cluster_factory):
    c = cluster_factory(3).start()
    assert alter(c.bootstrap(2), [upsert("dave", SHA512, 4096)]) == {"dave": None}
    for i in (1, 2, 3):
        wait_until(lambda: describe(c.bootstrap(i), ["dave"]) == {"dave": {SHA512: 4096}}, 20,
                   f"node {i} lists dave")
