//! What the bench needs to know about the cluster: the topic's partitions, who leads each,
//! one connection per leader, and the partitions' end offsets (for verification).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use kafka_protocol::ResponseError;

use crate::client::{ConnectOptions, Connection};
use crate::report::error_name;

/// Kafka error codes the bench reacts to (numbered once, by kafka-protocol's `ResponseError`).
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
pub const LEADER_NOT_AVAILABLE: i16 = ResponseError::LeaderNotAvailable.code();
pub const NOT_LEADER_OR_FOLLOWER: i16 = ResponseError::NotLeaderOrFollower.code();
pub const REQUEST_TIMED_OUT: i16 = ResponseError::RequestTimedOut.code();
pub const TOPIC_ALREADY_EXISTS: i16 = ResponseError::TopicAlreadyExists.code();
pub const FENCED_LEADER_EPOCH: i16 = ResponseError::FencedLeaderEpoch.code();
pub const UNKNOWN_LEADER_EPOCH: i16 = ResponseError::UnknownLeaderEpoch.code();
pub const OFFSET_NOT_AVAILABLE: i16 = ResponseError::OffsetNotAvailable.code();

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a new topic's partitions to get leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ListOffsets is retried while a partition's leader is not ready to answer it.
const OFFSETS_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two ListOffsets attempts.
const OFFSETS_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Errors of a partition whose leadership is still settling: the answer will come if asked
/// again. Apache Kafka answers NOT_LEADER_OR_FOLLOWER for a moment after CreateTopics, until
/// the leader has applied the new partition (its Metadata already names that leader), and
/// OFFSET_NOT_AVAILABLE until a new leader's high watermark caught up. The Java client retries
/// all of these for ListOffsets (`Errors.*` that are `RetriableException`s).
pub fn retriable(code: i16) -> bool {
    matches!(
        code,
        UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REQUEST_TIMED_OUT
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
            | OFFSET_NOT_AVAILABLE
    )
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The topic as the bench sees it: partition → leader connection.
pub struct TopicLayout {
    pub topic: String,
    pub partitions: Vec<i32>,
    /// Leader broker of each partition.
    pub leader_of: BTreeMap<i32, i32>,
    /// One connection per leader broker.
    pub leaders: BTreeMap<i32, Connection>,
}

impl TopicLayout {
    /// Partitions grouped by their leader's broker id.
    pub fn by_leader(&self) -> BTreeMap<i32, Vec<i32>> {
        let mut out: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (p, b) in &self.leader_of {
            out.entry(*b).or_default().push(*p);
        }
        out
    }
}

/// Connects to the first bootstrap server that answers.
pub async fn bootstrap(servers: &str, options: &ConnectOptions) -> Result<Connection> {
    let mut last = None;
    for s in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match Connection::connect(s, options).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow!(e)).context("no bootstrap server answered"),
        None => bail!("--bootstrap-servers names no server"),
    }
}

/// Makes sure the topic exists (creating it with `partitions` if given), then maps its leaders.
/// `replication_factor` applies when the topic is created here (-1: the broker default).
pub async fn prepare_topic(
    boot: &Connection,
    topic: &str,
    partitions: Option<i32>,
    replication_factor: i16,
    allow_create: bool,
) -> Result<TopicLayout> {
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    let mut created = false;
    loop {
        let meta = boot
            .send_timeout(
                metadata_request(topic, allow_create && partitions.is_none()),
                REQUEST_TIMEOUT,
            )
            .await?;
        let brokers: HashMap<i32, String> = meta
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        let t = meta
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic));
        let code = t
            .map(|t| t.error_code)
            .unwrap_or(UNKNOWN_TOPIC_OR_PARTITION);
        if code == UNKNOWN_TOPIC_OR_PARTITION && !created {
            let Some(n) = partitions else {
                if allow_create {
                    created = true; // Metadata asked for auto-creation; poll for it.
                    continue;
                }
                bail!("topic {topic} does not exist");
            };
            create_topic(boot, topic, n, replication_factor).await?;
            created = true;
            continue;
        }
        let ready = code == 0
            && t.is_some_and(|t| {
                !t.partitions.is_empty()
                    && t.partitions
                        .iter()
                        .all(|p| p.error_code == 0 && brokers.contains_key(&p.leader_id.0))
            });
        if let (true, Some(t)) = (ready, t) {
            if let Some(n) = partitions {
                if t.partitions.len() as i32 != n {
                    eprintln!(
                        "chronik-bench: topic {topic} exists with {} partitions, not {n}; using it as it is",
                        t.partitions.len()
                    );
                }
            }
            let mut leader_of = BTreeMap::new();
            for p in &t.partitions {
                leader_of.insert(p.partition_index, p.leader_id.0);
            }
            let mut leaders = BTreeMap::new();
            for b in leader_of.values() {
                if leaders.contains_key(b) {
                    continue;
                }
                let addr = &brokers[b];
                let conn = if addr == boot.addr() {
                    boot.clone()
                } else {
                    Connection::connect(addr, boot.options()).await?
                };
                leaders.insert(*b, conn);
            }
            return Ok(TopicLayout {
                topic: topic.to_string(),
                partitions: leader_of.keys().copied().collect(),
                leader_of,
                leaders,
            });
        }
        if code != 0 && code != UNKNOWN_TOPIC_OR_PARTITION && code != LEADER_NOT_AVAILABLE {
            bail!("Metadata for topic {topic} failed with error code {code}");
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leader for every partition after {TOPIC_READY_TIMEOUT:?} (error code {code})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metadata_request(topic: &str, auto_create: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(auto_create)
}

async fn create_topic(
    boot: &Connection,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> Result<()> {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)])
        .with_timeout_ms(30_000);
    let resp = boot.send_timeout(req, REQUEST_TIMEOUT).await?;
    for t in resp.topics {
        if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
            bail!(
                "CreateTopics {topic} failed with error code {}: {}",
                t.error_code,
                t.error_message.map(|m| m.to_string()).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Each partition's end offset (high watermark) as its leader reports it.
pub async fn end_offsets(layout: &TopicLayout) -> Result<BTreeMap<i32, i64>> {
    list_offsets(layout, -1).await
}

/// Each partition's log start offset.
pub async fn start_offsets(layout: &TopicLayout) -> Result<BTreeMap<i32, i64>> {
    list_offsets(layout, -2).await
}

/// ListOffsets for every partition, each asked of its leader. A partition that answers a
/// retriable error (`retriable`) is asked again, every `OFFSETS_RETRY_PAUSE`, until
/// `OFFSETS_READY_TIMEOUT`; any other error fails at once.
async fn list_offsets(layout: &TopicLayout, timestamp: i64) -> Result<BTreeMap<i32, i64>> {
    let deadline = Instant::now() + OFFSETS_READY_TIMEOUT;
    let mut out = BTreeMap::new();
    loop {
        let mut waiting: BTreeMap<i32, i16> = BTreeMap::new();
        for (broker, parts) in layout.by_leader() {
            let parts: Vec<i32> = parts.into_iter().filter(|p| !out.contains_key(p)).collect();
            if parts.is_empty() {
                continue;
            }
            let answers = list_offsets_of(layout, broker, &parts, timestamp).await?;
            for (p, (code, offset)) in answers {
                if code == 0 {
                    out.insert(p, offset);
                } else if retriable(code) {
                    waiting.insert(p, code);
                } else {
                    bail!(
                        "ListOffsets {}/{p} failed with {}",
                        layout.topic,
                        error_name(code)
                    );
                }
            }
        }
        for p in &layout.partitions {
            if !out.contains_key(p) && !waiting.contains_key(p) {
                bail!("ListOffsets gave no answer for {}/{p}", layout.topic);
            }
        }
        let Some((p, code)) = waiting.iter().next() else {
            return Ok(out);
        };
        if Instant::now() > deadline {
            bail!(
                "ListOffsets {}/{p} still failed with {} after {OFFSETS_READY_TIMEOUT:?}",
                layout.topic,
                error_name(*code)
            );
        }
        tokio::time::sleep(OFFSETS_RETRY_PAUSE).await;
    }
}

/// One ListOffsets request to `broker` for `parts`: partition → (error code, offset).
async fn list_offsets_of(
    layout: &TopicLayout,
    broker: i32,
    parts: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, (i16, i64)>> {
    let conn = &layout.leaders[&broker];
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(&layout.topic))
            .with_partitions(
                parts
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let resp = conn.send_timeout(req, REQUEST_TIMEOUT).await?;
    Ok(resp
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| (p.partition_index, (p.error_code, p.offset)))
        .collect())
}
