//! chronik-bench's verification against a broker that lies.
//!
//! The test double below speaks just enough Kafka (ApiVersions, Metadata, CreateTopics,
//! ListOffsets, Produce, Fetch) to be benchmarked, and can acknowledge every Nth produced
//! batch with error_code 0 without storing it: the failure a benchmark must not count as
//! throughput. The real `chronik-bench` binary runs against it as a separate process.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PARTITIONS: i32 = 2;

/// Stored batches per partition, with their base offsets patched in.
#[derive(Default)]
struct Store {
    logs: HashMap<i32, Vec<(i64, Bytes)>>,
    ends: HashMap<i32, i64>,
    batches_seen: u64,
}

struct Fake {
    /// Acknowledge but drop every Nth batch; 0 drops nothing.
    drop_every: u64,
    port: u16,
    store: Mutex<Store>,
}

async fn start(drop_every: u64) -> (Arc<Fake>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = Arc::new(Fake {
        drop_every,
        port,
        store: Mutex::new(Store::default()),
    });
    let f = fake.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, f.clone()));
        }
    });
    (fake, format!("127.0.0.1:{port}"))
}

async fn serve(mut sock: TcpStream, fake: Arc<Fake>) {
    loop {
        let mut len = [0u8; 4];
        if sock.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        if sock.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut buf = Bytes::from(frame);
        let key = ApiKey::try_from(i16::from_be_bytes([buf[0], buf[1]])).unwrap();
        let version = i16::from_be_bytes([buf[2], buf[3]]);
        let header = RequestHeader::decode(&mut buf, key.request_header_version(version)).unwrap();
        let Some(body) = answer(&fake, key, version, &mut buf) else {
            continue; // acks=0
        };
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, key.response_header_version(version))
            .unwrap();
        out.extend_from_slice(&body);
        let mut framed = BytesMut::new();
        framed.put_u32(out.len() as u32);
        framed.extend_from_slice(&out);
        if sock.write_all(&framed).await.is_err() {
            return;
        }
    }
}

fn enc<M: Encodable>(m: &M, version: i16) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b, version).unwrap();
    b.freeze()
}

fn answer(fake: &Fake, key: ApiKey, version: i16, buf: &mut Bytes) -> Option<Bytes> {
    Some(match key {
        ApiKey::ApiVersions => api_versions(version),
        ApiKey::Metadata => metadata(fake, version, buf),
        ApiKey::CreateTopics => create_topics(version, buf),
        ApiKey::ListOffsets => list_offsets(fake, version, buf),
        ApiKey::Produce => return produce(fake, version, buf),
        ApiKey::Fetch => fetch(fake, version, buf),
        other => panic!("the fake broker does not speak {other:?}"),
    })
}

fn api_versions(version: i16) -> Bytes {
    let keys = [
        (ApiKey::Produce, 3, 9),
        (ApiKey::Fetch, 4, 12),
        (ApiKey::ListOffsets, 1, 7),
        (ApiKey::Metadata, 1, 12),
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::CreateTopics, 2, 7),
    ];
    enc(
        &ApiVersionsResponse::default().with_api_keys(
            keys.iter()
                .map(|(k, lo, hi)| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*lo)
                        .with_max_version(*hi)
                })
                .collect(),
        ),
        version,
    )
}

fn metadata(fake: &Fake, version: i16, buf: &mut Bytes) -> Bytes {
    let req = MetadataRequest::decode(buf, version).unwrap();
    let topics = req
        .topics
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            MetadataResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    (0..PARTITIONS)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(1))
                                .with_replica_nodes(vec![BrokerId(1)])
                                .with_isr_nodes(vec![BrokerId(1)])
                        })
                        .collect(),
                )
        })
        .collect();
    enc(
        &MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(i32::from(fake.port))])
            .with_controller_id(BrokerId(1))
            .with_topics(topics),
        version,
    )
}

fn create_topics(version: i16, buf: &mut Bytes) -> Bytes {
    let req = CreateTopicsRequest::decode(buf, version).unwrap();
    enc(
        &CreateTopicsResponse::default().with_topics(
            req.topics
                .into_iter()
                .map(|t| CreatableTopicResult::default().with_name(t.name))
                .collect(),
        ),
        version,
    )
}

fn list_offsets(fake: &Fake, version: i16, buf: &mut Bytes) -> Bytes {
    let req = ListOffsetsRequest::decode(buf, version).unwrap();
    let store = fake.store.lock().unwrap();
    enc(
        &ListOffsetsResponse::default().with_topics(
            req.topics
                .into_iter()
                .map(|t| {
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let end =
                                        store.ends.get(&p.partition_index).copied().unwrap_or(0);
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_offset(if p.timestamp == -2 { 0 } else { end })
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        version,
    )
}

/// Stores what it is sent, except every `drop_every`th batch, and answers success for all.
fn produce(fake: &Fake, version: i16, buf: &mut Bytes) -> Option<Bytes> {
    let req = ProduceRequest::decode(buf, version).unwrap();
    let mut store = fake.store.lock().unwrap();
    let mut topics = Vec::new();
    for t in req.topic_data {
        let mut parts = Vec::new();
        for p in t.partition_data {
            let records = p.records.unwrap_or_default();
            store.batches_seen += 1;
            let lose = fake.drop_every > 0 && store.batches_seen.is_multiple_of(fake.drop_every);
            let base = store.ends.get(&p.index).copied().unwrap_or(0);
            if !lose {
                // Bytes 23..27 of a v2 batch: last offset delta.
                let delta = (&records[23..27]).get_i32();
                let mut patched = BytesMut::from(&records[..]);
                patched[0..8].copy_from_slice(&base.to_be_bytes());
                store
                    .logs
                    .entry(p.index)
                    .or_default()
                    .push((base, patched.freeze()));
                store.ends.insert(p.index, base + i64::from(delta) + 1);
            }
            // The lie: success either way.
            parts.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_base_offset(base),
            );
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(parts),
        );
    }
    if req.acks == 0 {
        return None;
    }
    Some(enc(
        &ProduceResponse::default().with_responses(topics),
        version,
    ))
}

fn fetch(fake: &Fake, version: i16, buf: &mut Bytes) -> Bytes {
    let req = FetchRequest::decode(buf, version).unwrap();
    let store = fake.store.lock().unwrap();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let mut data = BytesMut::new();
                    for (base, batch) in store
                        .logs
                        .get(&p.partition)
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                    {
                        let last = base + i64::from((&batch[23..27]).get_i32());
                        if last >= p.fetch_offset && data.len() < 1 << 20 {
                            data.extend_from_slice(batch);
                        }
                    }
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(store.ends.get(&p.partition).copied().unwrap_or(0))
                        .with_records(Some(data.freeze()))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_partitions(parts)
        })
        .collect();
    enc(&FetchResponse::default().with_responses(topics), version)
}

fn bench(addr: &str, verify: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronik-bench"))
        .args([
            "--bootstrap-servers",
            addr,
            "--topic",
            "lossy",
            "--partitions",
            "2",
            "--messages",
            "3000",
            "--concurrency",
            "16",
            "--message-size",
            "100",
            "--verify",
            verify,
            "--json",
        ])
        .output()
        .expect("run chronik-bench")
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_catches_a_broker_that_drops_acknowledged_batches() {
    for verify in ["count", "full"] {
        let (fake, addr) = start(10).await;
        let out = tokio::task::spawn_blocking(move || bench(&addr, verify))
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "verify={verify}: {stderr}");
        assert!(stderr.contains("VERIFICATION FAILED"), "{stderr}");
        let r = report(&out);
        assert_eq!(r["acked"], 3000, "every message was acknowledged");
        assert_eq!(r["verify"]["ok"], false);
        assert!(r["verify"]["missing"].as_u64().unwrap() > 0, "{r}");
        assert!(fake.store.lock().unwrap().batches_seen >= 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_passes_when_the_same_double_keeps_everything() {
    for verify in ["count", "full"] {
        let (_fake, addr) = start(0).await;
        let out = tokio::task::spawn_blocking(move || bench(&addr, verify))
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "verify={verify}: {stderr}");
        let r = report(&out);
        assert_eq!(r["verify"]["ok"], true, "{r}");
        assert_eq!(r["verify"]["stored"], 3000);
    }
}
