"""The chronik-server command line: errors, signals, identity across restarts, and where settings
come from (flag > environment > --config file > default)."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

import kafkawire as w
from conftest import SERVER_BIN, clean_env
from helpers import admin, produce_all, producer, unique_topic

pytestmark = pytest.mark.chronik_only("chronik-server's command line, config file and environment")

# Keys of the --config TOML file; they mirror the flags (`--num-partitions` -> `num_partitions`).
CFG_NUM_PARTITIONS = "num_partitions"
CFG_FSYNC = "fsync"

BAD_START_TIMEOUT_S = 20


def run_bad(tmp_path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs a command line that must be refused; a broker that starts anyway hits the timeout."""
    cmd = [str(SERVER_BIN), "standalone", "--data-dir", str(tmp_path / "data"), "--kafka-addr", "127.0.0.1:0", *args]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=BAD_START_TIMEOUT_S, env=clean_env(env), cwd=tmp_path)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{args} was not refused: still running after {BAD_START_TIMEOUT_S}s; stdout={e.stdout!r}")


def assert_refused(r: subprocess.CompletedProcess, *names: str) -> str:
    """Exit code 2, nothing served, and the error on stderr names one of `names`."""
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, f"exit code {r.returncode}, want 2; stderr: {err[-2000:]}"
    assert b"ready" not in r.stdout, r.stdout
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    norm = err.lower().replace("_", "-")
    assert any(n.lower().replace("_", "-") in norm for n in names), f"stderr does not name any of {names}: {err!r}"
    return err


# ---------------------------------------------------------------------- refused command lines
def test_unknown_flag_exits_2_and_names_it(tmp_path):
    r = run_bad(tmp_path, "--no-such-flag")
    err = assert_refused(r, "--no-such-flag")
    first = next(ln for ln in err.splitlines() if ln.strip())
    assert "--no-such-flag" in first, f"the first line of the error does not name the flag: {first!r}"


@pytest.mark.parametrize("flag,value", [
    ("--fsync", "sometimes"),
    ("--fsync", "interval:abc"),
    ("--fsync", "interval:"),
    ("--num-partitions", "abc"),
    ("--num-partitions", "0"),
    ("--auto-create-topics", "maybe"),
    ("--log-format", "xml"),
    ("--kafka-addr", "not-an-address"),
])
def test_bad_flag_value_exits_2(tmp_path, flag, value):
    r = run_bad(tmp_path, flag, value)
    assert_refused(r, flag.lstrip("-"), value)


def test_bad_env_value_exits_2(tmp_path):
    assert_refused(run_bad(tmp_path, env={"CHRONIK_FSYNC": "bogus"}), "fsync", "bogus")
    assert_refused(run_bad(tmp_path, env={"CHRONIK_NUM_PARTITIONS": "many"}), "num-partitions", "many")


def test_bad_config_file_exits_2(tmp_path):
    bad_value = tmp_path / "bad-value.toml"
    bad_value.write_text(f'{CFG_FSYNC} = "bogus"\n')
    assert_refused(run_bad(tmp_path, "--config", str(bad_value)), "fsync", "bogus")

    not_toml = tmp_path / "not-toml.toml"
    not_toml.write_text("this is = = not toml [\n")
    assert_refused(run_bad(tmp_path, "--config", str(not_toml)), "not-toml.toml", "toml")

    missing = tmp_path / "missing.toml"
    assert_refused(run_bad(tmp_path, "--config", str(missing)), "missing.toml")


# ---------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_gracefully_with_exit_0(broker, sig):
    topic = unique_topic("shutdown")
    assert not produce_all(producer(broker.bootstrap), topic, [(b"k", b"v")]).failed
    # An idle client connection must not keep the broker from exiting.
    idle = w.Connection(broker.bootstrap)
    try:
        idle.roundtrip(w.api_versions_request(0, 1))
        code = broker.signal_and_wait(sig)
    finally:
        idle.close()
    assert code == 0, f"exit code {code} after {sig.name}; stderr:\n{broker.stderr_tail()}"
    stdout = broker.stdout_path.read_text()
    assert stdout.splitlines() == [broker.ready_line], f"stdout must hold only the ready line: {stdout!r}"


def test_identity_is_stable_across_restarts(broker):
    first = (broker.node_id, broker.cluster_id)
    assert broker.node_id == 1
    assert broker.cluster_id
    broker.restart()  # graceful
    assert (broker.node_id, broker.cluster_id) == first
    broker.kill()
    broker.restart()  # after a crash
    assert (broker.node_id, broker.cluster_id) == first


def test_fresh_data_dirs_get_distinct_cluster_ids(broker_factory):
    a = broker_factory(name="a")
    b = broker_factory(name="b")
    assert a.cluster_id != b.cluster_id


def test_node_id_flag(broker_factory):
    b = broker_factory(args=["--node-id", "7"])
    assert b.node_id == 7
    with w.Connection(b.bootstrap) as conn:
        md = w.parse_metadata_response_v1(conn.roundtrip(w.metadata_request_v1(1, None)))
    assert md.brokers == [(7, b.host, b.port)] and md.controller_id == 7, md


def test_log_format_json(broker_factory):
    b = broker_factory(args=["--log-format", "json"])
    assert not produce_all(producer(b.bootstrap), unique_topic("json-log"), [(b"k", b"v")]).failed
    b.terminate()
    lines = [ln for ln in b.stderr_path.read_text().splitlines() if ln.strip()]
    assert lines, "no log lines at all on stderr"
    for ln in lines:
        try:
            json.loads(ln)
        except ValueError:
            pytest.fail(f"not a JSON log line: {ln!r}")


# ---------------------------------------------------------------------- where settings come from
def auto_created_partitions(bootstrap: str) -> int:
    """Partition count of a topic auto-created by a producer's first message."""
    topic = unique_topic("auto")
    p = producer(bootstrap)
    log = produce_all(p, topic, [(b"k", b"v")], timeout_s=30)
    assert not log.failed, log.failed
    md = admin(bootstrap).list_topics(timeout=10)
    assert topic in md.topics, "auto-created topic not listed"
    return len(md.topics[topic].partitions)


@pytest.mark.parametrize("config,env,flag,want", [
    (None, None, None, 1),  # default
    (5, None, None, 5),  # config file
    (None, 3, None, 3),  # environment
    (5, 3, None, 3),  # environment beats config file
    (5, 3, 7, 7),  # flag beats both
    (5, None, 7, 7),  # flag beats config file
], ids=["default", "config", "env", "env>config", "flag>env>config", "flag>config"])
def test_num_partitions_precedence(broker_factory, tmp_path, config, env, flag, want):
    args = []
    if config is not None:
        cfg = tmp_path / "chronik.toml"
        cfg.write_text(f"{CFG_NUM_PARTITIONS} = {config}\n")
        args += ["--config", str(cfg)]
    if flag is not None:
        args += ["--num-partitions", str(flag)]
    b = broker_factory(args=args, env={"CHRONIK_NUM_PARTITIONS": str(env)} if env is not None else None)
    assert auto_created_partitions(b.bootstrap) == want


def test_auto_create_topics_false(broker_factory):
    b = broker_factory(args=["--auto-create-topics", "false"])
    topic = unique_topic("no-auto")
    with w.Connection(b.bootstrap) as conn:
        for corr in (1, 2):  # asking twice: the first request must not have created it
            md = w.parse_metadata_response_v1(conn.roundtrip(w.metadata_request_v1(corr, [topic])))
            assert md.topics.get(topic, (None,))[0] == w.UNKNOWN_TOPIC_OR_PARTITION, md.topics
    assert topic not in admin(b.bootstrap).list_topics(timeout=10).topics


def test_auto_create_topics_on_by_default_via_metadata(broker):
    topic = unique_topic("auto-md")
    with w.Connection(broker.bootstrap) as conn:
        md = w.parse_metadata_response_v1(conn.roundtrip(w.metadata_request_v1(1, [topic])))
        if md.topics[topic][0] != w.NONE:  # Kafka may answer LEADER_NOT_AVAILABLE while creating
            md = w.parse_metadata_response_v1(conn.roundtrip(w.metadata_request_v1(2, [topic])))
    assert md.topics[topic] == (w.NONE, [0]), md.topics


def test_data_dir_and_kafka_addr_from_environment(broker_factory, tmp_path):
    env_dir = tmp_path / "from-env"
    b = broker_factory(name="envb", data_dir_flag=False, start=False,
                       env={"CHRONIK_DATA_DIR": str(env_dir), "CHRONIK_KAFKA_ADDR": "127.0.0.1:0"})
    b.start(kafka_addr=None)
    assert not produce_all(producer(b.bootstrap), unique_topic("env"), [(b"k", b"v")]).failed
    b.terminate()
    assert env_dir.is_dir() and any(env_dir.iterdir()), "CHRONIK_DATA_DIR was not used"
    assert not (b.workdir / "data").exists(), "the default ./data was used instead of CHRONIK_DATA_DIR"


def test_fsync_setting_from_config_file_is_accepted(broker_factory, tmp_path):
    """A valid fsync policy in the config file is accepted (and a bad one refused, see above)."""
    cfg = tmp_path / "fsync.toml"
    cfg.write_text(f'{CFG_FSYNC} = "interval:50"\n')
    b = broker_factory(args=["--config", str(cfg)])
    assert not produce_all(producer(b.bootstrap), unique_topic("fsync-cfg"), [(b"k", b"v")]).failed


def test_a_second_broker_on_the_same_data_dir_is_refused(broker, tmp_path):
    """Two processes appending to one WAL would corrupt it: the data directory is locked."""
    r = subprocess.run([str(SERVER_BIN), "standalone", "--data-dir", str(broker.data_dir),
                        "--kafka-addr", "127.0.0.1:0"],
                       capture_output=True, timeout=BAD_START_TIMEOUT_S, env=clean_env(), cwd=tmp_path)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, err
    assert b"ready" not in r.stdout
    assert "in use by another chronik-server" in err and str(broker.data_dir) in err, err
    # The first broker is unaffected, and the lock dies with its process.
    topic = unique_topic("lock")
    p = producer(broker.bootstrap)
    log = produce_all(p, topic, [(None, b"still here")])
    assert len(log.ok) == 1 and not log.failed, log.failed
    broker.kill()
    broker.restart()
    assert broker.alive()
