//! Prometheus metrics. Code records through the `metrics` facade (the WAL does too, see
//! `chronik_wal::metric_names`); this module installs the one process-wide Prometheus
//! recorder and names what is counted as things happen. The gauges read from the broker's
//! state at each scrape are in `crate::gauges`; this module knows nothing of the broker.
//!
//! Cardinality is bounded: request metrics are labelled by API only, produce/fetch by topic,
//! and per-partition gauges can be folded into per-topic ones (`--metrics-partition-labels
//! false`) for clusters with many partitions.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use metrics::{counter, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

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
    /// Client connections open now.
    pub fn count() -> i64 {
        OPEN_CONNECTIONS.load(Ordering::Relaxed)
    }

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

// Client-connection hardening (issue 15): counters of what clients got refused or closed for,
// and of log lines the rate limit held back (crate::log_limit). Labels are fixed small sets.
pub const BAD_REQUESTS: &str = "chronik_bad_requests_total";
pub const CONNECTIONS_CLOSED: &str = "chronik_connections_closed_total";
pub const CONNECTIONS_REFUSED: &str = "chronik_connections_refused_total";
pub const LOG_SUPPRESSED: &str = "chronik_log_suppressed_total";

/// One SASL authentication that ended, by mechanism and outcome. The caller passes only the
/// names Kafka defines (or "other"), so a client cannot grow the label set.
pub fn sasl_authentication(mechanism: &'static str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    counter!(SASL_AUTHENTICATIONS, "mechanism" => mechanism, "result" => result).increment(1);
}

/// A request closed its connection: `kind` is frame_size, truncated or decode.
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
