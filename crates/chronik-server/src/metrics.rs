//! Prometheus metrics. Code records through the `metrics` facade (the WAL does too, see
//! `chronik_wal::metric_names`); this module installs the one process-wide Prometheus
//! recorder, and at each scrape sets the gauges that are read from state (partitions, Raft)
//! rather than counted as things happen.
//!
//! Cardinality is bounded: request metrics are labelled by API only, produce/fetch by topic,
//! and per-partition gauges can be folded into per-topic ones (`--metrics-partition-labels
//! false`) for clusters with many partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::broker::Broker;

pub const REQUESTS: &str = "chronik_requests_total";
pub const REQUEST_SECONDS: &str = "chronik_request_seconds";
pub const PARTITION_ERRORS: &str = "chronik_partition_errors_total";
pub const PRODUCE_BYTES: &str = "chronik_produce_bytes_total";
pub const PRODUCE_MESSAGES: &str = "chronik_produce_messages_total";
pub const FETCH_BYTES: &str = "chronik_fetch_bytes_total";
pub const FETCH_MESSAGES: &str = "chronik_fetch_messages_total";
pub const CONNECTIONS: &str = "chronik_connections";
pub const SASL_AUTHENTICATIONS: &str = "chronik_sasl_authentications_total";

/// Latency buckets (seconds) for request and fsync histograms: 50 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];
/// Byte buckets for the group-commit batch size: 4 KiB to 64 MiB.
const BYTES_BUCKETS: &[f64] = &[
    4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Gauges are all set at scrape time from state, so a series not set for this long belongs to
/// something that went away (a deleted partition, a follower moved off, a group gone) and is
/// dropped instead of reporting its last value forever.
const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Open client connections; read into the gauge at scrape time (an event-driven gauge would
/// lose its count when the idle timeout drops it).
static OPEN_CONNECTIONS: AtomicI64 = AtomicI64::new(0);

/// Counts one open connection for as long as it lives (also if its task panics).
pub struct OpenConnection(());

impl OpenConnection {
    pub fn open() -> OpenConnection {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Installs the Prometheus recorder once per process and returns its handle (`None` if
/// another recorder was installed first, as in a test harness: metrics are then not kept).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(chronik_wal::metric_names::COMMIT_BYTES.into()),
                        BYTES_BUCKETS,
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Per-topic counters a partition updates on every produce and fetch, registered once when
/// the partition opens.
pub struct PartitionCounters {
    pub produce_bytes: Counter,
    pub produce_messages: Counter,
    pub fetch_bytes: Counter,
    pub fetch_messages: Counter,
}

impl PartitionCounters {
    pub fn new(topic: &str) -> PartitionCounters {
        let t = topic.to_string();
        PartitionCounters {
            produce_bytes: counter!(PRODUCE_BYTES, "topic" => t.clone()),
            produce_messages: counter!(PRODUCE_MESSAGES, "topic" => t.clone()),
            fetch_bytes: counter!(FETCH_BYTES, "topic" => t.clone()),
            fetch_messages: counter!(FETCH_MESSAGES, "topic" => t),
        }
    }
}

/// Request counter and latency histogram of one API, registered on first use.
struct ApiMetrics {
    requests: Counter,
    seconds: Histogram,
}

/// Indexed by API key (Kafka keys are small and dense; anything above goes to "other").
const API_SLOTS: usize = 80;
static API_METRICS: [OnceLock<ApiMetrics>; API_SLOTS] = [const { OnceLock::new() }; API_SLOTS];

/// One request answered.
pub fn request(api: ApiKey, elapsed: Duration) {
    let slot = usize::try_from(api as i16).map_or(API_SLOTS - 1, |i| i.min(API_SLOTS - 1));
    let m = API_METRICS[slot].get_or_init(|| {
        let name = api_name(api);
        ApiMetrics {
            requests: counter!(REQUESTS, "api" => name),
            seconds: histogram!(REQUEST_SECONDS, "api" => name),
        }
    });
    m.requests.increment(1);
    m.seconds.record(elapsed.as_secs_f64());
}

/// A partition-level error in an answer (Kafka error code name), by API.
pub fn partition_error(api: ApiKey, code: i16) {
    let name = kafka_protocol::ResponseError::try_from_code(code)
        .map_or_else(|| format!("code_{code}"), |e| format!("{e:?}"));
    counter!(PARTITION_ERRORS, "api" => api_name(api), "error" => name).increment(1);
}

fn api_name(api: ApiKey) -> &'static str {
    // The enum's names are fixed and few: no allocation, bounded labels.
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::DescribeProducers => "DescribeProducers",
        _ => "other",
    }
}

/// Sets the gauges read from state: this node's replicas, under-replication, Raft.
pub fn refresh(broker: &Broker) {
    let state = broker.metadata();
    let per_partition = broker.config.metrics_partition_labels;
    let mut under_replicated_total = 0u64;
    // topic -> (under-replicated partitions led here, bytes, segments)
    let mut per_topic: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    // topic -> (most messages, longest time) any follower of a partition led here trails
    let mut per_topic_lag: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(r) = broker.replicas.get(&t.name, i as i32) else {
                continue;
            };
            let leads = p.leader == broker.node_id;
            let under = leads && p.isr.len() < p.target_replicas().len();
            under_replicated_total += u64::from(under);
            let size = r.log.size_bytes();
            let segments = r.log.segment_count() as u64;
            let e = per_topic.entry(t.name.clone()).or_default();
            e.0 += u64::from(under);
            e.1 += size;
            e.2 += segments;
            if per_partition {
                let labels = [("topic", t.name.clone()), ("partition", i.to_string())];
                gauge!("chronik_partition_log_end_offset", &labels)
                    .set(r.log.log_end_offset() as f64);
                gauge!("chronik_partition_high_watermark", &labels).set(r.high_watermark() as f64);
                gauge!("chronik_partition_isr_size", &labels).set(p.isr.len() as f64);
                gauge!("chronik_partition_under_replicated", &labels)
                    .set(f64::from(u8::from(under)));
                gauge!("chronik_partition_size_bytes", &labels).set(size as f64);
                gauge!("chronik_partition_segments", &labels).set(segments as f64);
                gauge!("chronik_partition_leader", &labels).set(f64::from(u8::from(leads)));
            }
            for lag in r.follower_lags(&p.replicas) {
                let e = per_topic_lag.entry(t.name.clone()).or_default();
                e.0 = e.0.max(lag.messages);
                e.1 = e.1.max(lag.behind.as_secs_f64());
                if per_partition {
                    let labels = [
                        ("topic", t.name.clone()),
                        ("partition", i.to_string()),
                        ("replica", lag.replica.to_string()),
                    ];
                    gauge!("chronik_replica_lag_messages", &labels).set(lag.messages as f64);
                    gauge!("chronik_replica_lag_seconds", &labels).set(lag.behind.as_secs_f64());
                }
            }
        }
    }
    if !per_partition {
        for (topic, (messages, seconds)) in per_topic_lag {
            let labels = [("topic", topic)];
            gauge!("chronik_topic_max_replica_lag_messages", &labels).set(messages as f64);
            gauge!("chronik_topic_max_replica_lag_seconds", &labels).set(seconds);
        }
    }
    group_lag(broker, per_partition);
    for (topic, (under, size, segments)) in per_topic {
        let labels = [("topic", topic)];
        gauge!("chronik_topic_under_replicated_partitions", &labels).set(under as f64);
        gauge!("chronik_topic_size_bytes", &labels).set(size as f64);
        gauge!("chronik_topic_segments", &labels).set(segments as f64);
    }
    gauge!("chronik_under_replicated_partitions").set(under_replicated_total as f64);
    poisoned_partitions(broker);
    let raft = broker.raft_status();
    gauge!("chronik_raft_term").set(raft.term as f64);
    gauge!("chronik_raft_last_log_index").set(raft.last_log_index as f64);
    gauge!("chronik_raft_last_applied_index").set(raft.last_applied_index as f64);
    gauge!("chronik_raft_commit_index").set(raft.committed_index as f64);
    gauge!("chronik_raft_apply_lag")
        .set(raft.last_log_index.saturating_sub(raft.last_applied_index) as f64);
    gauge!("chronik_raft_is_leader").set(f64::from(u8::from(raft.leader == Some(broker.node_id))));
    gauge!("chronik_raft_voters").set(raft.voters.len() as f64);
    gauge!(CONNECTIONS).set(OPEN_CONNECTIONS.load(Ordering::Relaxed) as f64);
}

/// `chronik_partition_poisoned{topic,partition}` = 1 for every partition a storage error
/// poisoned (whatever `--metrics-partition-labels` says: there are few, and each needs an
/// operator's eye), 0 once at the scrape after it healed (then dropped as idle), and
/// `chronik_poisoned_partitions`, their count.
fn poisoned_partitions(broker: &Broker) {
    static REPORTED: std::sync::Mutex<BTreeSet<(String, i32)>> =
        std::sync::Mutex::new(BTreeSet::new());
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    let now: BTreeSet<(String, i32)> = broker
        .all_partitions()
        .iter()
        .filter(|p| p.storage_failure().is_some())
        .map(|p| (p.topic.clone(), p.index))
        .collect();
    for key in reported.iter().chain(&now) {
        let labels = [("topic", key.0.clone()), ("partition", key.1.to_string())];
        gauge!("chronik_partition_poisoned", &labels).set(f64::from(u8::from(now.contains(key))));
    }
    gauge!("chronik_poisoned_partitions").set(now.len() as f64);
    *reported = now;
}

/// Consumer-group lag, on the node that coordinates each group (it leads the group's offsets
/// partition, so its committed offsets are current): the partition's high watermark minus the
/// group's committed offset, for partitions this node holds a replica of (with RF = the
/// number of nodes, all of them). Folded per group and topic without partition labels.
fn group_lag(broker: &Broker, per_partition: bool) {
    let offsets = broker.offsets();
    for group in offsets.group_ids() {
        if !broker.is_coordinator(&group) {
            continue;
        }
        for (topic, committed) in offsets.group(&group) {
            let mut total = 0i64;
            for (partition, v) in committed {
                let Some(r) = broker.replicas.get(&topic, partition) else {
                    continue;
                };
                let lag = (r.high_watermark() - v.offset).max(0);
                total += lag;
                if per_partition {
                    let labels = [
                        ("group", group.clone()),
                        ("topic", topic.clone()),
                        ("partition", partition.to_string()),
                    ];
                    gauge!("chronik_consumer_group_lag", &labels).set(lag as f64);
                }
            }
            if !per_partition {
                let labels = [("group", group.clone()), ("topic", topic)];
                gauge!("chronik_consumer_group_topic_lag", &labels).set(total as f64);
            }
        }
    }
}

// Client-connection hardening (issue 15): counters of what clients got refused or closed for,
// and of log lines the rate limit held back (crate::log_limit). Labels are fixed small sets.
pub const BAD_REQUESTS: &str = "chronik_bad_requests_total";
pub const CONNECTIONS_CLOSED: &str = "chronik_connections_closed_total";
pub const CONNECTIONS_REFUSED: &str = "chronik_connections_refused_total";
pub const LOG_SUPPRESSED: &str = "chronik_log_suppressed_total";

/// A request closed its connection: `kind` is frame_size, truncated or decode.
/// One SASL authentication that ended, by mechanism (as the client named it) and outcome.
pub fn sasl_authentication(mechanism: &str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    // The mechanism label takes only the names Kafka defines, so a client cannot grow it.
    let mechanism = crate::sasl::SaslMechanism::from_name(mechanism).map_or("other", |m| m.name());
    counter!(SASL_AUTHENTICATIONS, "mechanism" => mechanism, "result" => result).increment(1);
}

pub fn bad_request(kind: &'static str) {
    counter!(BAD_REQUESTS, "kind" => kind).increment(1);
}

/// A connection closed by the broker: `reason` is idle or request_read_timeout.
pub fn connection_closed(reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// A connection refused at accept: `reason` is max_connections or max_connections_per_ip.
pub fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

/// A warning line held back by the rate limit at `site`.
pub fn log_suppressed(site: &'static str) {
    counter!(LOG_SUPPRESSED, "site" => site).increment(1);
}
