//! Every advertised version of every API, over TCP against the real chronik-server process
//! (its own data dir, a port the OS picks): for each (API, version) in the ranges ApiVersions
//! answers, minimal valid requests are encoded with kafka-protocol, sent, and the answers
//! decoded at that version. An answer the broker cannot encode at some version would close
//! the connection; one that decodes but says UNSUPPORTED_VERSION, or the wrong error for a
//! valid request, fails `check`.
//!
//! `CHRONIK_EVERY_VERSION_BOOTSTRAP=host:port` runs the same requests against another broker
//! (Apache Kafka 4.4: `python3 tests/reference/kafka.py start`; a fresh one each run), over
//! the versions both serve: how the expectations in `check` were confirmed.

#[path = "every_version/checks.rs"]
mod checks;
#[path = "every_version/requests.rs"]
mod requests;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chronik_protocol::versions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// From exec to the ready line (debug build on a loaded 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// One request's round trip; none of these requests waits for anything long.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole sweep (about 300 requests; a few seconds when the machine is quiet).
const SWEEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The broker process; killed when dropped, so a failing assertion leaves nothing behind.
struct Server {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chronik-server"));
    cmd.args(["standalone", "--kafka-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // A developer's CHRONIK_* settings must not change what this test sees.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CHRONIK_")) {
        cmd.env_remove(k);
    }
    cmd.env("CHRONIK_HTTP_ADDR", "127.0.0.1:0");
    let mut child = cmd.spawn().expect("spawn chronik-server");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("chronik-server ready kafka=") {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let mut server = Server {
        child,
        bootstrap: String::new(),
        _dir: dir,
    };
    server.bootstrap = rx
        .recv_timeout(READY_TIMEOUT)
        .expect("chronik-server printed no ready line");
    server
}

/// A blocking Kafka connection speaking kafka-protocol's encoders.
struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    fn connect(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            correlation_id: 0,
        }
    }

    fn call(&mut self, key: ApiKey, v: i16, body: &RequestKind) -> Result<ResponseKind, String> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("every-version")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(v))
            .map_err(|e| format!("encode header: {e}"))?;
        body.encode(&mut buf, v)
            .map_err(|e| format!("encode request: {e}"))?;
        let mut frame = BytesMut::with_capacity(buf.len() + 4);
        frame.put_i32(buf.len() as i32);
        frame.put_slice(&buf);
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("send: {e}"))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| format!("no answer (connection closed or timed out): {e}"))?;
        let mut payload = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream
            .read_exact(&mut payload)
            .map_err(|e| format!("short answer: {e}"))?;
        let mut payload = Bytes::from(payload);
        let header = ResponseHeader::decode(&mut payload, key.response_header_version(v))
            .map_err(|e| format!("decode header: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!("correlation id {}", header.correlation_id));
        }
        let resp =
            ResponseKind::decode(key, &mut payload, v).map_err(|e| format!("decode: {e}"))?;
        if payload.has_remaining() {
            return Err(format!("{} bytes left after the body", payload.remaining()));
        }
        Ok(resp)
    }
}

/// v3+ must name the client software (Kafka answers INVALID_REQUEST to an empty name).
fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("every-version"))
        .with_client_software_version(StrBytes::from_static_str("1.0"))
}

/// The ranges the broker advertises, from ApiVersions v3.
fn advertised(conn: &mut Conn) -> BTreeMap<i16, (i16, i16)> {
    let ResponseKind::ApiVersions(r) = conn
        .call(
            ApiKey::ApiVersions,
            3,
            &RequestKind::ApiVersions(api_versions_request()),
        )
        .unwrap()
    else {
        panic!("not an ApiVersions answer")
    };
    assert_eq!(r.error_code, 0);
    r.api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

/// Creates the topics the requests name; returns the id of "t".
fn create_topics(conn: &mut Conn) -> uuid::Uuid {
    let topic = |n: &str| {
        create_topics_request::CreatableTopic::default()
            .with_name(requests::name(n))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![topic("t"), topic("grow")]);
    let ResponseKind::CreateTopics(r) = conn
        .call(ApiKey::CreateTopics, 7, &RequestKind::CreateTopics(req))
        .unwrap()
    else {
        panic!("not a CreateTopics answer")
    };
    for t in &r.topics {
        assert_eq!(
            t.error_code, 0,
            "create {:?}: {:?}",
            t.name, t.error_message
        );
    }
    let id = r.topics[0].topic_id;
    // Kafka elects the new partitions' leaders a moment after it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let req = MetadataRequest::default().with_topics(Some(
        ["t", "grow"]
            .iter()
            .map(|n| {
                metadata_request::MetadataRequestTopic::default().with_name(Some(requests::name(n)))
            })
            .collect(),
    ));
    loop {
        let ResponseKind::Metadata(m) = conn
            .call(ApiKey::Metadata, 12, &RequestKind::Metadata(req.clone()))
            .unwrap()
        else {
            panic!("not a Metadata answer")
        };
        let led = |t: &metadata_response::MetadataResponseTopic| {
            t.error_code == 0 && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
        };
        if m.topics.iter().all(led) && lists_offsets(conn) {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no leaders for t and grow: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether "t"'s leader answers ListOffsets yet (Kafka's leader takes the partition a moment
/// after Metadata names it).
fn lists_offsets(conn: &mut Conn) -> bool {
    let req = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(requests::name("t"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
            ]),
    ]);
    match conn.call(ApiKey::ListOffsets, 1, &RequestKind::ListOffsets(req)) {
        Ok(ResponseKind::ListOffsets(r)) => r.topics[0].partitions[0].error_code == 0,
        _ => false,
    }
}

#[test]
fn every_advertised_version_answers_and_decodes() {
    let external = std::env::var("CHRONIK_EVERY_VERSION_BOOTSTRAP").ok();
    let server = external.is_none().then(start_server);
    let bootstrap = external.unwrap_or_else(|| server.as_ref().unwrap().bootstrap.clone());
    let mut conn = Conn::connect(&bootstrap);
    let ranges = advertised(&mut conn);
    if server.is_some() {
        // What the broker advertises is exactly the table (and each range fits the codec).
        let table: BTreeMap<i16, (i16, i16)> = versions::all()
            .map(|(k, r)| (k as i16, (r.min, r.max)))
            .collect();
        assert_eq!(ranges, table);
    }
    let topic_id = create_topics(&mut conn);

    let started = Instant::now();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (key, ours) in versions::all() {
        // Against another broker: the versions it and Chronik both serve.
        let Some(&(min, max)) = ranges.get(&(key as i16)) else {
            continue;
        };
        let (min, max) = (min.max(ours.min), max.min(ours.max));
        for v in min..=max {
            for (i, body) in requests::requests(key, v, topic_id).iter().enumerate() {
                let outcome = conn
                    .call(key, v, body)
                    .and_then(|resp| checks::check(v, i, &resp));
                if let Err(e) = outcome {
                    failures.push(format!("{key:?} v{v} request {i}: {e}"));
                    // A failed call may have closed the connection.
                    conn = Conn::connect(&bootstrap);
                }
                checked += 1;
            }
            assert!(
                started.elapsed() < SWEEP_TIMEOUT,
                "sweep over {SWEEP_TIMEOUT:?}"
            );
        }
    }
    eprintln!("{checked} requests in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 200, "only {checked} requests checked");
}
