"""ACL administration through confluent-kafka's AdminClient (create_acls, describe_acls,
delete_acls): without an authorizer the calls get SECURITY_DISABLED; with `--authorizer acl`
bindings are created, found by exact and MATCH filters, deleted by filter (the answer lists
what went), survive a restart and reach every node of a cluster.

Kafka behaviour, so the first two tests run on both brokers (`--broker=kafka` maps
`--authorizer acl` to Kafka's StandardAuthorizer and `--super-users` to super.users; the
client here is User:ANONYMOUS on a PLAINTEXT listener, made a super user).
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   ResourcePatternType, ResourceType)

from helpers import admin, wait_until

ACL_ARGS = ["--authorizer", "acl", "--super-users", "User:ANONYMOUS"]
ANY = ResourcePatternType.ANY


def b(rt, name, pt, principal, op, perm=AclPermissionType.ALLOW, host="*"):
    return AclBinding(rt, name, pt, principal, host, op, perm)


BINDINGS = [
    b(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", AclOperation.READ),
    b(ResourceType.TOPIC, "ord", ResourcePatternType.PREFIXED, "User:bob", AclOperation.WRITE),
    b(ResourceType.GROUP, "g1", ResourcePatternType.LITERAL, "User:alice", AclOperation.READ),
    b(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:eve", AclOperation.ALL,
      AclPermissionType.DENY, host="10.0.0.9"),
]


def everything():
    return AclBindingFilter(ResourceType.ANY, None, ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)


def create(bootstrap: str, bindings) -> list[KafkaError | None]:
    a = admin(bootstrap)
    out = []
    for _, fut in a.create_acls(bindings).items():
        try:
            fut.result(timeout=30)
            out.append(None)
        except KafkaException as e:
            out.append(e.args[0])
    return out


def describe(bootstrap: str, f) -> set:
    a = admin(bootstrap)  # kept alive until the future resolved
    return set(a.describe_acls(f).result(timeout=30))


def test_without_an_authorizer_acl_calls_are_security_disabled(broker):
    errors = create(broker.bootstrap, BINDINGS[:1])
    assert errors[0] is not None and errors[0].code() == KafkaError.SECURITY_DISABLED, errors
    # The answer carries SECURITY_DISABLED too; librdkafka reports it as an empty result.
    try:
        assert describe(broker.bootstrap, everything()) == set()
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.SECURITY_DISABLED


def test_acls_are_created_described_and_deleted(broker_factory):
    bootstrap = broker_factory(args=ACL_ARGS).bootstrap
    assert create(bootstrap, BINDINGS) == [None] * len(BINDINGS)
    # Kafka applies ACLs from its metadata log a moment after answering; Chronik before.
    wait_until(lambda: describe(bootstrap, everything()) == set(BINDINGS), 20, "the ACLs are listed")
    # MATCH: every binding that applies to the topic "orders" (literal and prefixed).
    match = AclBindingFilter(ResourceType.TOPIC, "orders", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert describe(bootstrap, match) == {BINDINGS[0], BINDINGS[1], BINDINGS[3]}
    by_principal = AclBindingFilter(ResourceType.ANY, None, ANY, "User:alice", None, AclOperation.ANY,
                                    AclPermissionType.ANY)
    assert describe(bootstrap, by_principal) == {BINDINGS[0], BINDINGS[2]}
    # Creating one that exists changes nothing.
    assert create(bootstrap, BINDINGS[:1]) == [None]
    assert len(describe(bootstrap, everything())) == len(BINDINGS)
    deny_only = AclBindingFilter(ResourceType.ANY, None, ANY, None, None, AclOperation.ANY,
                                 AclPermissionType.DENY)
    a = admin(bootstrap)
    deleted = a.delete_acls([deny_only, by_principal])
    got = {f: set(fut.result(timeout=30)) for f, fut in deleted.items()}
    assert got[deny_only] == {BINDINGS[3]} and got[by_principal] == {BINDINGS[0], BINDINGS[2]}
    wait_until(lambda: describe(bootstrap, everything()) == {BINDINGS[1]}, 20, "one ACL is left")


@pytest.mark.chronik_only("ACLs live in Chronik's Raft metadata; restarts and a three-node Chronik cluster")
def test_acls_survive_a_restart_and_reach_every_node(broker_factory, cluster_factory):
    broker = broker_factory(args=ACL_ARGS)
    assert create(broker.bootstrap, BINDINGS[:2]) == [None, None]
    broker.restart()
    assert describe(broker.bootstrap, everything()) == set(BINDINGS[:2])
    c = cluster_factory(3, args=ACL_ARGS).start()
    assert create(c.bootstrap(3), BINDINGS[2:]) == [None, None]
    for i in (1, 2, 3):
        wait_until(lambda: describe(c.bootstrap(i), everything()) == set(BINDINGS[2:]), 20,
                   f"node {i} lists the ACLs")
