"""Kafka listeners and TLS on the Kafka port (docs/security.md): real clients over SSL, mutual TLS,
one broker with a PLAINTEXT and an SSL listener, what a TLS port refuses, and certificate reload
on SIGHUP. Certificates come from the openssl CLI (tests only; the broker uses rustls)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from conftest import Broker
from helpers import consume_range, produce_all, producer, unique_topic, wait_until
import kafkawire
from tls_certs import make_ca, make_cert

pytestmark = pytest.mark.chronik_only("Chronik's --listeners and --tls-* flags")

# The handshake bound of the brokers here (--request-read-timeout-ms): short, so that the
# test of a handshake that never finishes stays short.
HANDSHAKE_BOUND_MS = 4000


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "ca", "server", "localhost", server=True)
    make_cert(d, "ca", "server2", "localhost", server=True)  # the certificate a reload swaps in
    make_cert(d, "ca", "alice", "alice")
    make_cert(d, "other-ca", "mallory", "mallory")
    return d


def start_broker(base: Path, name: str, args: list[str], env: dict | None = None) -> Broker:
    b = Broker(base / name, name=name, args=args, env=env)
    b.start(kafka_addr=None)
    return b


@pytest.fixture(scope="module")
def dual(tmp_path_factory, certs):
    """One broker with a PLAINTEXT and an SSL listener, server-authenticated TLS."""
    b = start_broker(tmp_path_factory.mktemp("dual"), "dual", [
        "--listeners", "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--request-read-timeout-ms", str(HANDSHAKE_BOUND_MS)])
    assert set(b.listeners) == {"PLAINTEXT", "SSL"}, b.ready_line
    assert b.bootstrap == b.listeners["PLAINTEXT"], "kafka= names the first listener"
    yield b
    b.cleanup()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory, certs):
    """A broker whose only listener is SSL and requires a client certificate signed by ca."""
    b = start_broker(tmp_path_factory.mktemp("mtls"), "mtls", [
        "--listeners", "SSL://127.0.0.1:0",
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--tls-client-ca", str(certs / "ca.pem")],
        env={"CHRONIK_LOG": "info,openraft=off,chronik_server::tls=debug"})
    yield b
    b.cleanup()


def ssl_conf(certs: Path, client: str | None = None) -> dict:
    conf = {"security.protocol": "ssl", "ssl.ca.location": str(certs / "ca.pem")}
    if client:
        conf["ssl.certificate.location"] = str(certs / f"{client}.pem")
        conf["ssl.key.location"] = str(certs / f"{client}.key")
    return conf


def round_trip(bootstrap: str, conf: dict, n: int = 200) -> None:
    topic = unique_topic("tls")
    items = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(n)]
    log = produce_all(producer(bootstrap, **conf), topic, items)
    assert not log.failed, log.failed[:3]
    got = consume_range(bootstrap, topic, 0, 0, n, **conf)
    assert [(m.key, m.value) for m in got] == items


def broker_ports(bootstrap: str, conf: dict) -> dict[int, tuple[str, int]]:
    a = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000, **conf})
    md = a.list_topics(timeout=20)
    return {b.id: (b.host, b.port) for b in md.brokers.values()}


# ------------------------------------------------------------------------------ clients
def test_confluent_over_ssl(dual, certs):
    round_trip(dual.listeners["SSL"], ssl_conf(certs))


def test_confluent_mtls_with_client_certificate(mtls, certs):
    round_trip(mtls.bootstrap, ssl_conf(certs, client="alice"))
    # The principal is the client certificate's CN (logged at debug by chronik_server::tls).
    wait_until(lambda: "User:alice" in mtls.stderr_path.read_text(errors="replace"), 10,
               "the principal User:alice in the broker's log")


def test_kafka_python_over_ssl(dual, certs):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = unique_topic("tls-kp")
    ssl_args = dict(bootstrap_servers=dual.listeners["SSL"], security_protocol="SSL",
                    ssl_cafile=str(certs / "ca.pem"), request_timeout_ms=30000)
    p = KafkaProducer(acks="all", **ssl_args)
    try:
        for i in range(50):
            p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()).get(timeout=60)
    finally:
        p.close()
    c = KafkaConsumer(auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=10000, **ssl_args)
    try:
        c.assign([TopicPartition(topic, 0)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 50 and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=1000).values():
                got += [(r.key, r.value) for r in records]
    finally:
        c.close()
    assert got == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]


def test_kcat_over_ssl(dual, certs):
    topic = unique_topic("tls-kcat")
    tls = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={certs / 'ca.pem'}"]
    payload = "".join(f"k{i}:v{i}\n" for i in range(100)).encode()
    r = subprocess.run(["kcat", "-P", "-b", dual.listeners["SSL"], "-t", topic, "-K", ":", *tls],
                       input=payload, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    r = subprocess.run(["kcat", "-C", "-b", dual.listeners["SSL"], "-t", topic, "-o", "beginning", "-e",
                        "-q", "-f", "%k:%s\n", *tls], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert r.stdout == payload


def test_metadata_advertises_the_listener_the_client_came_in_on(dual, certs):
    plain_host, plain_port = dual.listeners["PLAINTEXT"].rsplit(":", 1)
    ssl_host, ssl_port = dual.listeners["SSL"].rsplit(":", 1)
    assert broker_ports(dual.listeners["PLAINTEXT"], {}) == {1: (plain_host, int(plain_port))}
    assert broker_ports(dual.listeners["SSL"], ssl_conf(certs)) == {1: (ssl_host, int(ssl_port))}


# ------------------------------------------------------------------------------ refused
def assert_healthy(b: Broker, certs: Path) -> None:
    assert b.alive(), f"broker died:\n{b.stderr_tail()}"
    assert broker_ports(b.listeners.get("SSL", b.bootstrap), ssl_conf(certs))


def test_plaintext_client_on_the_ssl_port_fails(dual, certs):
    a = AdminClient({"bootstrap.servers": dual.listeners["SSL"], "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        a.list_topics(timeout=5)
    assert_healthy(dual, certs)


def test_client_certificate_from_another_ca_is_refused(mtls, certs):
    for client in ("mallory", None):  # signed by another CA; no certificate at all
        a = AdminClient({"bootstrap.servers": mtls.bootstrap, "socket.timeout.ms": 3000,
                         **ssl_conf(certs, client=client)})
        with pytest.raises(KafkaException):
            a.list_topics(timeout=5)
    # librdkafka (OpenSSL) does not even send mallory's certificate: the broker's certificate
    # request names the CA it accepts. Python's ssl sends it, and the broker refuses it.
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "mallory.pem"), str(certs / "mallory.key"))
    with kafkawire.Connection(mtls.bootstrap) as c:
        with pytest.raises((ssl.SSLError, ConnectionError, kafkawire.Closed)):
            c.sock = ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
            api_versions_ok(c)  # TLS 1.3: the client learns of the refusal at its first read
    # Refused by the broker's certificate check (rustls' errors, logged at debug here).
    wait_until(lambda: "UnknownIssuer" in mtls.stderr_path.read_text(errors="replace"), 10,
               "the other CA's certificate refused as UnknownIssuer")
    log = mtls.stderr_path.read_text(errors="replace")
    assert "peer sent no certificates" in log, "a client without a certificate was not refused as such"
    assert broker_ports(mtls.bootstrap, ssl_conf(certs, client="alice"))


def test_handshake_that_never_finishes_is_closed_within_the_bound(dual, certs):
    # A TLS record header announcing a 512-byte handshake message, then 5 bytes of it, then nothing.
    partial_hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03])
    with kafkawire.Connection(dual.listeners["SSL"]) as c:
        start = time.monotonic()
        c.send(partial_hello)
        c.wait_closed(HANDSHAKE_BOUND_MS / 1000 + 10)
        elapsed = time.monotonic() - start
    assert elapsed >= HANDSHAKE_BOUND_MS / 1000 - 0.5, f"closed after {elapsed:.2f}s, before the bound"
    assert_healthy(dual, certs)


def test_random_bytes_on_the_ssl_port_are_closed_promptly(dual, certs):
    garbage = b"\x00" + os.urandom(200)  # not a TLS record type
    with kafkawire.Connection(dual.listeners["SSL"]) as c:
        start = time.monotonic()
        c.send(garbage)
        c.wait_closed(HANDSHAKE_BOUND_MS / 1000 - 1)
        elapsed = time.monotonic() - start
    assert elapsed < HANDSHAKE_BOUND_MS / 1000 - 1
    assert_healthy(dual, certs)


def test_handshakes_hold_connection_slots(tmp_path, certs):
    """Two handshakes that never finish fill --max-connections 2: a third connection is refused
    at accept; once the bound closes them, a client gets in again."""
    b = start_broker(tmp_path, "slots", [
        "--listeners", "SSL://127.0.0.1:0", "--max-connections", "2",
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--request-read-timeout-ms", "3000"])
    try:
        stalled = [kafkawire.Connection(b.bootstrap) for _ in range(2)]
        for c in stalled:
            c.send(bytes([0x16, 0x03, 0x01, 0x02, 0x00]))
        time.sleep(0.5)  # let the broker accept both
        with kafkawire.Connection(b.bootstrap) as third:
            start = time.monotonic()
            third.wait_closed(2.5)  # refused at accept, well before the 3 s handshake bound
            assert time.monotonic() - start < 2.5
        for c in stalled:
            c.wait_closed(15)
            c.close()
        assert broker_ports(b.bootstrap, ssl_conf(certs))
    finally:
        b.cleanup()


# ------------------------------------------------------------------------------ reload
def tls_connection(addr: str, certs: Path) -> kafkawire.Connection:
    c = kafkawire.Connection(addr)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    c.sock = ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
    return c


def api_versions_ok(c: kafkawire.Connection) -> None:
    body = c.roundtrip(kafkawire.request(kafkawire.API_VERSIONS, 0, 7, b""))
    r = kafkawire.Reader(body)
    assert r.i32() == 7 and r.i16() == 0, "ApiVersions answered with an error"


def test_sighup_reloads_certificates_and_keeps_open_connections(tmp_path, certs):
    live = tmp_path / "live"
    live.mkdir()
    for ext in ("pem", "key"):
        (live / f"server.{ext}").write_bytes((certs / f"server.{ext}").read_bytes())
    b = start_broker(tmp_path, "reload", [
        "--listeners", "SSL://127.0.0.1:0",
        "--tls-cert", str(live / "server.pem"), "--tls-key", str(live / "server.key")])
    try:
        old = tls_connection(b.bootstrap, certs)
        old_serial = old.sock.getpeercert()["serialNumber"]
        api_versions_ok(old)

        # A bad file: the broker keeps the certificate it has and logs an error.
        (live / "server.pem").write_text("not a certificate\n")
        os.kill(b.pid, signal.SIGHUP)
        wait_until(lambda: "not reloaded" in b.stderr_path.read_text(errors="replace"), 10,
                   "the reload error in the log")
        with tls_connection(b.bootstrap, certs) as c:
            assert c.sock.getpeercert()["serialNumber"] == old_serial

        for ext in ("pem", "key"):
            (live / f"server.{ext}").write_bytes((certs / f"server2.{ext}").read_bytes())
        os.kill(b.pid, signal.SIGHUP)

        def new_serial() -> bool:
            with tls_connection(b.bootstrap, certs) as c:
                return c.sock.getpeercert()["serialNumber"] != old_serial
        wait_until(new_serial, 10, "a new connection seeing the new certificate")
        api_versions_ok(old)  # the connection opened before the reload still works
        old.close()
        assert b.alive()
    finally:
        b.cleanup()


def test_kcat_and_kafka_python_with_a_client_certificate(mtls, certs):
    """The mTLS broker with the other two clients: each presents alice's certificate; without
    one, kcat gets nothing."""
    from kafka import KafkaProducer

    topic = unique_topic("mtls-clients")
    tls = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={certs / 'ca.pem'}",
           "-X", f"ssl.certificate.location={certs / 'alice.pem'}", "-X", f"ssl.key.location={certs / 'alice.key'}"]
    r = subprocess.run(["kcat", "-P", "-b", mtls.bootstrap, "-t", topic, "-p", "0", *tls],
                       input=b"kcat\n", capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    p = KafkaProducer(bootstrap_servers=mtls.bootstrap, security_protocol="SSL", ssl_cafile=str(certs / "ca.pem"),
                      ssl_certfile=str(certs / "alice.pem"), ssl_keyfile=str(certs / "alice.key"))
    try:
        p.send(topic, b"kafka-python", partition=0).get(timeout=60)
    finally:
        p.close()
    r = subprocess.run(["kcat", "-C", "-b", mtls.bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", *tls],
                       capture_output=True, timeout=60)
    assert r.stdout.split() == [b"kcat", b"kafka-python"], r.stderr.decode(errors="replace")[-2000:]
    no_cert = tls[:4]
    r = subprocess.run(["kcat", "-L", "-b", mtls.bootstrap, "-m", "5", *no_cert], capture_output=True, timeout=60)
    assert r.returncode != 0
