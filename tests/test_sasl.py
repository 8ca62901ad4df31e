"""SASL on the Kafka port (docs/security.md): real clients log in with SCRAM-SHA-256,
SCRAM-SHA-512 and PLAIN over SASL_PLAINTEXT and SASL_SSL; wrong passwords, unknown users,
clients without SASL and malformed tokens are refused; users made with
AlterUserScramCredentials log in at once, on every node of a cluster; KIP-368 sessions expire
and are renewed; chronik-bench logs in too.

The bootstrap user (`--bootstrap-user`) is the only one at start.
"""

from __future__ import annotations

import socket
import subprocess
import struct
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from kafka import KafkaConsumer, KafkaProducer

from conftest import Broker
from helpers import consume_range, http_get, produce_all, producer, unique_topic
import kafkawire
from tls_certs import make_ca, make_cert

pytestmark = pytest.mark.chronik_only("Chronik's --listeners, --bootstrap-user and --sasl-* flags")

ADMIN = ("admin", "admin-secret")
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


def sasl_conf(bootstrap: str, mechanism: str, user: str, password: str, **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password, **extra}


def start(base: Path, name: str, args: list[str]) -> Broker:
    b = Broker(base / name, name=name, args=[
        "--bootstrap-user", f"{ADMIN[0]}:{ADMIN[1]}", "--sasl-mechanisms", ",".join(MECHANISMS), *args])
    b.start(kafka_addr=None)
    return b


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    b = start(tmp_path_factory.mktemp("sasl"), "sasl",
              ["--listeners", "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0"])
    yield b
    b.cleanup()


def metadata_ok(conf: dict, timeout_s: float = 10) -> bool:
    a = AdminClient({**conf, "socket.timeout.ms": 3000})
    try:
        a.list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_clients_log_in_and_produce_and_consume(sasl_broker, mechanism):
    bootstrap = sasl_broker.listeners["SASL_PLAINTEXT"]
    conf = sasl_conf(bootstrap, mechanism, *ADMIN)
    topic = unique_topic("sasl")
    p = producer(bootstrap, **{k: v for k, v in conf.items() if k != "bootstrap.servers"})
    log = produce_all(p, topic, [(None, b"m%d" % i) for i in range(50)], partition=0)
    assert not log.failed, log.failed[:3]
    got = consume_range(bootstrap, topic, 0, 0, 50, **{k: v for k, v in conf.items() if k != "bootstrap.servers"})
    assert [m.value for m in got] == [b"m%d" % i for i in range(50)]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_wrong_passwords_and_unknown_users_are_refused(sasl_broker, mechanism):
    bootstrap = sasl_broker.listeners["SASL_PLAINTEXT"]
    assert not metadata_ok(sasl_conf(bootstrap, mechanism, ADMIN[0], "wrong"), timeout_s=5)
    assert not metadata_ok(sasl_conf(bootstrap, mechanism, "nobody", ADMIN[1]), timeout_s=5)
    assert sasl_broker.alive()


def test_a_client_without_sasl_gets_nothing_on_a_sasl_port(sasl_broker):
    assert not metadata_ok({"bootstrap.servers": sasl_broker.listeners["SASL_PLAINTEXT"]}, timeout_s=5)
    # The PLAINTEXT listener of the same broker still serves it.
    assert metadata_ok({"bootstrap.servers": sasl_broker.listeners["PLAINTEXT"]})


def raw_exchange(addr: str, frames: list[bytes], read: int) -> list[bytes]:
    """Sends each frame and reads `read` responses; a closed connection ends the list early."""
    host, port = addr.rsplit(":", 1)
    out = []
    with socket.create_connection((host, int(port)), timeout=5) as s:
        for f in frames:
            s.sendall(f)
        for _ in range(read):
            try:
                head = s.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    break
                (n,) = struct.unpack(">i", head)
                out.append(s.recv(n, socket.MSG_WAITALL))
            except (ConnectionError, socket.timeout):
                break
    return out


def test_out_of_order_and_malformed_sasl_requests_close_the_connection(sasl_broker):
    addr = sasl_broker.listeners["SASL_PLAINTEXT"]
    # Metadata before authenticating: closed without an answer.
    metadata = kafkawire.request(3, 1, 7, kafkawire.i32(-1))
    assert raw_exchange(addr, [metadata], 1) == []
    # SaslHandshake v1 for SCRAM, then a garbage token: an error answer, then closed.
    hs = kafkawire.request(17, 1, 1, kafkawire.string("SCRAM-SHA-256"))
    garbage = kafkawire.request(36, 0, 2, kafkawire.nbytes(b"\xff" * 5000))
    answers = raw_exchange(addr, [hs, garbage, metadata], 3)
    assert len(answers) == 2, answers
    (code,) = struct.unpack(">h", answers[1][4:6])
    assert code == 58, "SASL_AUTHENTICATION_FAILED"
    assert sasl_broker.alive()


def test_large_frames_are_refused_before_authentication_only(sasl_broker):
    """Kafka's sasl.server.max.receive.size (512 KiB): before a client authenticated, a larger
    frame closes the connection at once, without the broker reading (or buffering) its body;
    once authenticated, a 700 KiB message is produced as usual."""
    addr = sasl_broker.listeners["SASL_PLAINTEXT"]
    with kafkawire.Connection(addr, timeout_s=10) as c:
        t0 = time.monotonic()
        c.send(struct.pack(">i", 600 * 1024) + b"\x00" * 64)
        c.wait_closed(5)
        assert time.monotonic() - t0 < 5
    # Requests under the limit are read and answered as before.
    assert raw_exchange(addr, [kafkawire.api_versions_request(3, 1)], 1)
    bootstrap = addr
    conf = sasl_conf(bootstrap, "SCRAM-SHA-256", *ADMIN)
    topic = unique_topic("saslbig")
    p = producer(bootstrap, **{k: v for k, v in conf.items() if k != "bootstrap.servers"},
                 **{"message.max.bytes": 2 << 20})
    log = produce_all(p, topic, [(None, b"x" * (700 << 10))], partition=0)
    assert not log.failed, log.failed[:1]


def test_a_new_user_logs_in_at_once(sasl_broker):
    bootstrap = sasl_broker.listeners["SASL_PLAINTEXT"]
    a = AdminClient(sasl_conf(bootstrap, "SCRAM-SHA-512", *ADMIN))
    up = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"c-pw")
    for f in a.alter_user_scram_credentials([up]).values():
        f.result(timeout=30)
    assert metadata_ok(sasl_conf(bootstrap, "SCRAM-SHA-256", "carol", "c-pw"))
    # Only the mechanism it has: SHA-512 has no credential for carol, PLAIN uses the one there is.
    assert not metadata_ok(sasl_conf(bootstrap, "SCRAM-SHA-512", "carol", "c-pw"), timeout_s=5)
    assert metadata_ok(sasl_conf(bootstrap, "PLAIN", "carol", "c-pw"))


def test_kafka_python_logs_in_with_scram(sasl_broker):
    bootstrap = sasl_broker.listeners["SASL_PLAINTEXT"]
    kw = dict(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
              sasl_plain_username=ADMIN[0], sasl_plain_password=ADMIN[1])
    topic = unique_topic("kpsasl")
    p = KafkaProducer(**kw)
    for i in range(10):
        p.send(topic, b"v%d" % i).get(timeout=30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10_000, **kw)
    assert [m.value for m in c][:10] == [b"v%d" % i for i in range(10)]
    c.close()


def test_sessions_expire_and_clients_reauthenticate(tmp_path):
    b = start(tmp_path, "reauth", ["--listeners", "SASL_PLAINTEXT://127.0.0.1:0",
                                   "--connections-max-reauth-ms", "1500", "--http-addr", "127.0.0.1:0"])
    try:
        bootstrap = b.bootstrap  # the only listener
        conf = sasl_conf(bootstrap, "SCRAM-SHA-256", *ADMIN)
        topic = unique_topic("reauth")
        # librdkafka re-authenticates (KIP-368) before the session ends: a producer running for
        # three lifetimes keeps working on its connections.
        p = producer(bootstrap, **{k: v for k, v in conf.items() if k != "bootstrap.servers"})
        deadline = time.monotonic() + 5
        n = 0
        while time.monotonic() < deadline:
            log = produce_all(p, topic, [(None, b"r%d" % n)], partition=0)
            assert not log.failed, log.failed
            n += 1
            time.sleep(0.2)
        assert n >= 15
        # They did re-authenticate: more logins than connections, counted by the broker.
        assert b.http, b.ready_line
        _, text = http_get(b.http, "/metrics")
        ok = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith("chronik_sasl_authentications_total") and 'result="success"' in line)
        assert ok >= 4, text
        # A client that does not re-authenticate is cut off at its first request after the
        # lifetime (raw PLAIN login, then Metadata before and after it).
        hs = kafkawire.request(17, 1, 1, kafkawire.string("PLAIN"))
        auth = kafkawire.request(36, 0, 2, kafkawire.nbytes(f"\0{ADMIN[0]}\0{ADMIN[1]}".encode()))
        metadata = kafkawire.request(3, 1, 3, kafkawire.i32(-1))
        host, port = bootstrap.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(hs + auth + metadata)
            for _ in range(3):
                (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
                s.recv(size, socket.MSG_WAITALL)
            time.sleep(2.0)
            s.sendall(metadata)
            assert s.recv(4) == b"", "the expired session's request must close the connection"
    finally:
        b.cleanup()


def test_sasl_ssl_with_scram_and_plain(tmp_path):
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "ca", "server", "localhost", server=True)
    b = start(tmp_path, "saslssl", ["--listeners", "SASL_SSL://127.0.0.1:0",
                                    "--tls-cert", str(tmp_path / "server.pem"),
                                    "--tls-key", str(tmp_path / "server.key")])
    try:
        bootstrap = b.bootstrap
        for mechanism in ("SCRAM-SHA-512", "PLAIN"):
            conf = {**sasl_conf(bootstrap, mechanism, *ADMIN), "security.protocol": "SASL_SSL",
                    "ssl.ca.location": str(tmp_path / "ca.pem")}
            assert metadata_ok(conf), mechanism
            wrong = {**conf, "sasl.password": "nope"}
            assert not metadata_ok(wrong, timeout_s=5), mechanism
        # kcat (Debian's librdkafka 2.0) and kafka-python over SASL_SSL too.
        topic = unique_topic("saslssl")
        for mechanism in ("SCRAM-SHA-512", "PLAIN"):
            auth = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={tmp_path / 'ca.pem'}",
                    "-X", f"sasl.mechanisms={mechanism}", "-X", f"sasl.username={ADMIN[0]}",
                    "-X", f"sasl.password={ADMIN[1]}"]
            r = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0", *auth],
                               input=f"{mechanism}\n", capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", *auth],
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.split() == ["SCRAM-SHA-512", "PLAIN"], (r.stdout, r.stderr)
        for mechanism in ("SCRAM-SHA-512", "PLAIN"):
            kw = dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", ssl_cafile=str(tmp_path / "ca.pem"),
                      sasl_mechanism=mechanism, sasl_plain_username=ADMIN[0], sasl_plain_password=ADMIN[1])
            p = KafkaProducer(**kw)
            p.send(topic, f"kafka-python {mechanism}".encode(), partition=0).get(timeout=30)
            p.close()
            c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10_000, **kw)
            assert [m.value for m in c][-1] == f"kafka-python {mechanism}".encode()
            c.close()
    finally:
        b.cleanup()


def test_users_survive_a_restart_and_the_bootstrap_user_is_not_reset(tmp_path):
    b = start(tmp_path, "restart", ["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"])
    try:
        conf = sasl_conf(b.bootstrap, "SCRAM-SHA-512", *ADMIN)
        a = AdminClient(conf)
        # The admin changes its own password; the restart must not bring the old one back.
        up = UserScramCredentialUpsertion(ADMIN[0], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"new")
        for f in a.alter_user_scram_credentials([up]).values():
            f.result(timeout=30)
        b.terminate()
        b.start(kafka_addr=None)  # its --listeners again
        bootstrap = b.bootstrap
        assert metadata_ok(sasl_conf(bootstrap, "SCRAM-SHA-512", ADMIN[0], "new"))
        assert not metadata_ok(sasl_conf(bootstrap, "SCRAM-SHA-512", *ADMIN), timeout_s=5)
    finally:
        b.cleanup()


def test_kcat_over_sasl_scram(sasl_broker):
    bootstrap = sasl_broker.listeners["SASL_PLAINTEXT"]
    topic = unique_topic("sasl-kcat")
    auth = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512",
            "-X", f"sasl.username={ADMIN[0]}", "-X", f"sasl.password={ADMIN[1]}"]
    r = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0", *auth],
                       input="a\nb\nc\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", *auth],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["a", "b", "c"], (r.stdout, r.stderr)
    bad = [a.replace(ADMIN[1], "wrong") for a in auth]
    r = subprocess.run(["kcat", "-L", "-b", bootstrap, "-m", "5", *bad], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout


def test_handshake_v0_then_raw_tokens(sasl_broker):
    """Kafka clients before KIP-152 send SaslHandshake v0 and then the SASL tokens in frames of
    their own (librdkafka checks that v0 is advertised before it logs in at all)."""
    host, port = sasl_broker.listeners["SASL_PLAINTEXT"].rsplit(":", 1)
    hs = kafkawire.request(17, 0, 1, kafkawire.string("PLAIN"))
    token = f"\0{ADMIN[0]}\0{ADMIN[1]}".encode()
    metadata = kafkawire.request(3, 1, 2, kafkawire.i32(-1))
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(hs)
        (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
        answer = s.recv(size, socket.MSG_WAITALL)
        assert struct.unpack(">h", answer[4:6])[0] == 0, answer
        s.sendall(struct.pack(">i", len(token)) + token)
        (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
        assert size == 0, "PLAIN's server token is empty"
        s.sendall(metadata)
        (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
        assert struct.unpack(">i", s.recv(size, socket.MSG_WAITALL)[:4])[0] == 2, "Metadata answered"


def test_chronik_bench_logs_in_over_sasl_ssl(tmp_path):
    """chronik-bench with --tls-ca and --sasl-*: the client of the TLS+SCRAM benchmark scenario."""
    import json
    import os
    from conftest import REPO_ROOT
    bench = Path(os.environ.get("CHRONIK_BENCH_BIN", REPO_ROOT / "target" / "debug" / "chronik-bench"))
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "ca", "server", "localhost", server=True)
    b = start(tmp_path, "benchtls", ["--listeners", "SASL_SSL://127.0.0.1:0",
                                     "--tls-cert", str(tmp_path / "server.pem"),
                                     "--tls-key", str(tmp_path / "server.key")])
    try:
        base = [str(bench), "--bootstrap-servers", b.bootstrap, "--topic", unique_topic("bench-tls"), "--json",
                "--tls-ca", str(tmp_path / "ca.pem"), "--sasl-mechanism", "SCRAM-SHA-512"]
        r = subprocess.run([*base, "--sasl-username", ADMIN[0], "--sasl-password", ADMIN[1],
                            "--messages", "2000", "--acks", "all", "--verify", "full"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        report = json.loads(r.stdout.strip().splitlines()[-1])
        assert report["acked"] == 2000 and report["verify"]["ok"], report
        r = subprocess.run([*base, "--sasl-username", ADMIN[0], "--sasl-password", "wrong", "--messages", "10"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "SASL" in r.stderr, r.stderr[-2000:]
    finally:
        b.cleanup()
