//! Broker settings: command-line flags, `CHRONIK_*` environment variables and an optional
//! TOML file, merged with the precedence flag > env > file > default.
//!
//! clap gives flag > env for free (`env = ...`); every flag is an `Option` so that "not
//! given" can fall through to the file and then to the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chronik_wal::FsyncPolicy;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use thiserror::Error;

use crate::listeners::{ListenerArgs, ListenerConfig};
use crate::net_limits::NetLimits;
use crate::security::SecuritySettings;
use crate::topic_config::TopicDefaults;
pub use chronik_cluster::PeerList;

mod kafka_security;
mod rpc_security;
use kafka_security::security_settings;
pub use rpc_security::{RpcSecurity, RpcSecurityArgs};

#[derive(Debug, Parser)]
#[command(
    name = "chronik-server",
    version,
    about = "Chronik: a Kafka-compatible streaming broker"
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Cluster mode: `chronik-server --node-id N --cluster 1@HOST:RPC,... [flags]`.
    #[command(flatten)]
    pub args: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a single-node broker (a one-node cluster).
    Standalone(ServerArgs),
}

impl Cli {
    /// The settings to run with: `standalone` (refusing cluster flags) or cluster mode
    /// (requiring `--cluster`).
    pub fn into_args(self) -> Result<ServerArgs, ConfigError> {
        match self.command {
            Some(Command::Standalone(args)) => {
                if args.cluster.is_some() || args.join.is_some() {
                    return Err(ConfigError::Invalid {
                        key: "cluster",
                        reason: "standalone runs a one-node cluster; for a cluster run \
                                 `chronik-server --node-id N --cluster ...` (or --join) without \
                                 `standalone`"
                            .into(),
                    });
                }
                Ok(args)
            }
            None if self.args.cluster.is_none() && self.args.join.is_none() => {
                Err(ConfigError::Invalid {
                    key: "cluster",
                    reason: "missing: run `chronik-server standalone` for one node, \
                             `chronik-server --node-id N --cluster 1@HOST:PORT,...` for a \
                             cluster, or `--node-id N --rpc-addr IP:PORT --join HOST:PORT` to \
                             add a node to a running one"
                        .into(),
                })
            }
            None => Ok(self.args),
        }
    }
}

/// Flags of `chronik-server standalone`. Every one can also be set by its environment
/// variable or by the same key (with `_` instead of `-`) in the `--config` TOML file.
#[derive(Debug, Args, Default)]
pub struct ServerArgs {
    /// TOML config file; its keys are the flag names with `_` instead of `-`.
    #[arg(long, env = "CHRONIK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the WAL and metadata [default: ./data]
    #[arg(long, env = "CHRONIK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of a single PLAINTEXT Kafka listener (the short form of --listeners
    /// PLAINTEXT://ADDR); port 0 lets the OS pick [default: 127.0.0.1:9092]
    #[arg(long, env = "CHRONIK_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
    /// HOST[:PORT] given to clients in Metadata, with a single listener (the short form of
    /// --advertised-listeners) [default: the bound Kafka address]
    #[arg(long, env = "CHRONIK_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    // --- Kafka listeners and TLS (crate::listeners, crate::tls) ---
    /// Kafka listeners, Kafka's syntax: NAME://HOST:PORT,... where the name is the security
    /// protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); port 0 lets the OS pick, an empty
    /// host binds every interface. Instead of --kafka-addr [default: PLAINTEXT://127.0.0.1:9092]
    #[arg(long, env = "CHRONIK_LISTENERS")]
    pub listeners: Option<String>,
    /// NAME://HOST:PORT,... given to clients in Metadata, per listener they came in on
    /// [default: each listener's bound address]
    #[arg(long, env = "CHRONIK_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Certificate chain (PEM) of SSL and SASL_SSL listeners; reloaded on SIGHUP
    #[arg(long, env = "CHRONIK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert; reloaded on SIGHUP
    #[arg(long, env = "CHRONIK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): SSL listeners then require a client certificate signed by one
    /// of them, whose subject CN is the principal (User:CN); reloaded on SIGHUP [default: no
    /// client certificate, principal User:ANONYMOUS]
    #[arg(long, env = "CHRONIK_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    // --- end of Kafka listeners and TLS ---
    /// This broker's id; it must match the id stored in the data directory [default: 1]
    #[arg(long, env = "CHRONIK_NODE_ID")]
    pub node_id: Option<i32>,
    /// When an append is acknowledged: always | interval:<ms> | never [default: always]
    #[arg(long, env = "CHRONIK_FSYNC", value_parser = FsyncPolicy::from_str)]
    pub fsync: Option<FsyncPolicy>,
    /// Partitions of the internal __consumer_offsets topic, fixed when it is first created
    /// [default: 16]
    #[arg(long, env = "CHRONIK_OFFSETS_TOPIC_PARTITIONS")]
    pub offsets_topic_partitions: Option<i32>,
    /// How long the first member of an empty group waits for others before the first
    /// generation is formed (Kafka's group.initial.rebalance.delay.ms) [default: 3000]
    #[arg(long, env = "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Committed offsets of a group without members are deleted once its newest commit is
    /// this old (Kafka's offsets.retention.minutes) [default: 10080]
    #[arg(long, env = "CHRONIK_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,
    /// Snapshot an offsets partition (and delete its older segments) once this many records
    /// were written to it since the last snapshot, and at least 4x its live keys [default: 10000]
    #[arg(long, env = "CHRONIK_OFFSETS_COMPACT_AFTER_RECORDS")]
    pub offsets_compact_after_records: Option<u64>,
    /// Partitions of an auto-created topic [default: 1]
    #[arg(long, env = "CHRONIK_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Create unknown topics on Metadata requests [default: true]
    #[arg(long, env = "CHRONIK_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Replicas of each partition of an auto-created topic, and of one created with
    /// replication factor -1 (Kafka's default.replication.factor) [default: the number of
    /// alive brokers at creation, at most 3]
    #[arg(long, env = "CHRONIK_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// Default min.insync.replicas of topics: in-sync replicas an acks=all produce needs,
    /// else NOT_ENOUGH_REPLICAS (Kafka's broker min.insync.replicas) [default: 1]
    #[arg(long, env = "CHRONIK_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i64>,
    /// Default retention.ms of topics; -1 keeps data forever [default: 604800000]
    #[arg(long, env = "CHRONIK_RETENTION_MS", allow_hyphen_values = true)]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes per partition; -1 is unlimited [default: -1]
    #[arg(long, env = "CHRONIK_RETENTION_BYTES", allow_hyphen_values = true)]
    pub retention_bytes: Option<i64>,
    /// Default segment.bytes [default: 1073741824]
    #[arg(long, env = "CHRONIK_SEGMENT_BYTES")]
    pub segment_bytes: Option<i64>,
    /// Default segment.ms [default: 604800000]
    #[arg(long, env = "CHRONIK_SEGMENT_MS")]
    pub segment_ms: Option<i64>,
    /// Default max.message.bytes, the largest record batch accepted [default: 1048588]
    #[arg(long, env = "CHRONIK_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<i64>,
    /// How often retention runs, in ms [default: 300000]
    #[arg(long, env = "CHRONIK_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Most concurrent client connections; more are refused [default: 10000]
    #[arg(long, env = "CHRONIK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Budget of request bytes being received or handled, across all connections (Kafka's
    /// queued.max.request.bytes, here on by default; at least 104857600, the largest request).
    /// When spent, connections stop reading until requests finish. Bounds the broker's RSS to
    /// about this + 64 KiB per open connection + its working set [default: 268435456]
    #[arg(long, env = "CHRONIK_QUEUED_MAX_REQUEST_BYTES")]
    pub queued_max_request_bytes: Option<usize>,
    /// Close a connection that completed no request for this long and has none in flight
    /// (Kafka's connections.max.idle.ms) [default: 600000]
    #[arg(long, env = "CHRONIK_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// A request's size, and then its body, must each arrive within this, or the connection
    /// is closed (stalled or slow-drip requests); also the bound on a TLS handshake
    /// [default: 30000]
    #[arg(long, env = "CHRONIK_REQUEST_READ_TIMEOUT_MS")]
    pub request_read_timeout_ms: Option<u64>,
    /// Most connections from one client address; more are refused (Kafka's
    /// max.connections.per.ip) [default: no limit besides --max-connections]
    #[arg(long, env = "CHRONIK_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Log format: text | json [default: text]
    #[arg(long, env = "CHRONIK_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// The metadata cluster's voters, ID@HOST:PORT of each node's Raft RPC listener, the same
    /// list on every node (cluster mode only)
    #[arg(long, env = "CHRONIK_CLUSTER", value_parser = PeerList::from_str)]
    pub cluster: Option<PeerList>,
    /// Add this node to a running cluster: the RPC address of any member (HOST:PORT). The node
    /// joins as a learner (a broker that holds replicas but does not vote) until
    /// `chronik-admin broker add` makes it a voter. Needs --node-id (unused in the cluster) and
    /// --rpc-addr (where the others reach it); instead of --cluster
    #[arg(long, env = "CHRONIK_JOIN")]
    pub join: Option<String>,
    /// Address the RPC listener (Raft, replication, admin API) binds [default: this node's
    /// entry in --cluster; standalone: none, so no admin API]
    #[arg(long, env = "CHRONIK_RPC_ADDR")]
    pub rpc_addr: Option<SocketAddr>,
    /// How long a metadata change (topic create/delete, ...) may wait for the metadata quorum
    /// before it fails [default: 10000]
    #[arg(long, env = "CHRONIK_METADATA_TIMEOUT_MS")]
    pub metadata_timeout_ms: Option<u64>,
    /// Silence after which the controller fences a broker (it heartbeats every quarter of
    /// this, at most every 500 ms) [default: 6000]
    #[arg(long, env = "CHRONIK_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// Rack given to clients in Metadata
    #[arg(long, env = "CHRONIK_RACK")]
    pub rack: Option<String>,
    /// A follower that has not caught up with its leader for this long leaves the ISR
    /// (Kafka's replica.lag.time.max.ms) [default: 10000]
    #[arg(long, env = "CHRONIK_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// Give partition leadership back to the preferred replica once it is in the ISR again
    /// (Kafka's auto.leader.rebalance.enable) [default: true]
    #[arg(long, env = "CHRONIK_AUTO_LEADER_REBALANCE")]
    pub auto_leader_rebalance: Option<bool>,
    #[command(flatten)]
    pub rpc_security: RpcSecurityArgs,
    /// Address of the HTTP endpoint: /metrics (Prometheus), /health/live, /health/ready;
    /// `off` for none [default: 127.0.0.1:9644]
    #[arg(long, env = "CHRONIK_HTTP_ADDR")]
    pub http_addr: Option<HttpAddr>,
    /// Label partition gauges by topic and partition; false folds them into per-topic gauges
    /// (for clusters with many partitions) [default: true]
    #[arg(long, env = "CHRONIK_METRICS_PARTITION_LABELS")]
    pub metrics_partition_labels: Option<bool>,

    // SASL and authorization (crate::security).
    /// SASL mechanisms offered on SASL listeners, comma-separated: SCRAM-SHA-256,
    /// SCRAM-SHA-512, PLAIN (Kafka's sasl.enabled.mechanisms) [default: SCRAM-SHA-256,SCRAM-SHA-512]
    #[arg(long, env = "CHRONIK_SASL_MECHANISMS")]
    pub sasl_mechanisms: Option<String>,
    /// NAME:PASSWORD of a SCRAM user created at start if it has no credential yet, so a
    /// cluster that requires SASL can be administered
    #[arg(long, env = "CHRONIK_BOOTSTRAP_USER")]
    pub bootstrap_user: Option<String>,
    /// Lifetime of a SASL session; a client must re-authenticate within it (KIP-368); 0: no
    /// limit (Kafka's connections.max.reauth.ms) [default: 0]
    #[arg(long, env = "CHRONIK_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// `acl` enforces ACLs on every request; `none` allows everything (Kafka's
    /// authorizer.class.name) [default: none]
    #[arg(long, env = "CHRONIK_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Principals allowed everything, separated by ';', e.g. `User:admin;User:ops`
    /// (Kafka's super.users)
    #[arg(long, env = "CHRONIK_SUPER_USERS")]
    pub super_users: Option<String>,
}

/// `--http-addr`: an address to bind, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpAddr(pub Option<SocketAddr>);

impl FromStr for HttpAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(HttpAddr(None));
        }
        s.parse()
            .map(|a| HttpAddr(Some(a)))
            .map_err(|_| format!("'{s}' is not IP:PORT or `off`"))
    }
}

impl<'de> Deserialize<'de> for HttpAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Environment variable with the log filter (tracing's `EnvFilter` syntax), read at start.
pub const LOG_FILTER_ENV: &str = "CHRONIK_LOG";
/// The log filter without `CHRONIK_LOG`. openraft's own logs are off: it logs an error every
/// election timeout for each unreachable peer, and Chronik logs Raft role changes itself.
pub const DEFAULT_LOG_FILTER: &str = "info,openraft=off";

/// The keys the `--config` file accepts, read from [`FileConfig`]'s own definition (for the
/// generated reference in docs/operations.md).
pub fn config_file_keys() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<FileConfig>()
}

/// The `--config` file. Unknown keys are an error, so a typo never silently falls back.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_addr: Option<SocketAddr>,
    advertised_addr: Option<String>,
    // Kafka listeners and TLS
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    node_id: Option<i32>,
    fsync: Option<String>,
    offsets_topic_partitions: Option<i32>,
    group_initial_rebalance_delay_ms: Option<u64>,
    offsets_retention_minutes: Option<u64>,
    offsets_compact_after_records: Option<u64>,
    num_partitions: Option<i32>,
    auto_create_topics: Option<bool>,
    default_replication_factor: Option<i16>,
    min_insync_replicas: Option<i64>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    segment_bytes: Option<i64>,
    segment_ms: Option<i64>,
    max_message_bytes: Option<i64>,
    retention_check_interval_ms: Option<u64>,
    max_connections: Option<usize>,
    queued_max_request_bytes: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    request_read_timeout_ms: Option<u64>,
    max_connections_per_ip: Option<usize>,
    log_format: Option<LogFormat>,
    cluster: Option<String>,
    rpc_addr: Option<SocketAddr>,
    metadata_timeout_ms: Option<u64>,
    broker_session_timeout_ms: Option<u64>,
    rack: Option<String>,
    replica_lag_time_max_ms: Option<u64>,
    auto_leader_rebalance: Option<bool>,
    http_addr: Option<HttpAddr>,
    metrics_partition_labels: Option<bool>,
    rpc_tls_cert: Option<PathBuf>,
    rpc_tls_key: Option<PathBuf>,
    rpc_tls_ca: Option<PathBuf>,
    rpc_admin_allowed_names: Option<Vec<String>>,
    rpc_insecure: Option<bool>,
    sasl_mechanisms: Option<String>,
    bootstrap_user: Option<String>,
    connections_max_reauth_ms: Option<u64>,
    authorizer: Option<String>,
    super_users: Option<String>,
}

/// A setting that is present but wrong. Printed as one line; the process exits with 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The merged, validated settings of one broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    /// The Kafka listeners (from --listeners or --kafka-addr) and their TLS files.
    pub listeners: ListenerConfig,
    pub node_id: i32,
    pub fsync: FsyncPolicy,
    pub offsets_topic_partitions: i32,
    pub group_initial_rebalance_delay_ms: u64,
    pub offsets_retention_minutes: u64,
    pub offsets_compact_after_records: u64,
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    /// `None`: the alive brokers at creation, at most 3.
    pub default_replication_factor: Option<i16>,
    pub topic_defaults: TopicDefaults,
    pub retention_check_interval_ms: u64,
    pub max_connections: usize,
    /// Request budget, idle and read timeouts, per-address limit.
    pub net: NetLimits,
    pub log_format: LogFormat,
    /// `None`: standalone (a one-node cluster; an RPC listener only with `--rpc-addr`).
    pub cluster: Option<ClusterSettings>,
    /// Standalone: where the RPC listener (admin API) binds, if anywhere.
    pub standalone_rpc_addr: Option<SocketAddr>,
    pub metadata_timeout: std::time::Duration,
    pub broker_session_timeout: std::time::Duration,
    pub rack: Option<String>,
    pub replica_lag_time_max: std::time::Duration,
    pub auto_leader_rebalance: bool,
    /// Where the HTTP endpoint (metrics, health) binds; `None`: no endpoint.
    pub http_addr: Option<SocketAddr>,
    pub metrics_partition_labels: bool,
    /// RPC port: mutual TLS and operator names, or unauthenticated (loopback or
    /// --rpc-insecure).
    pub rpc_security: RpcSecurity,
    pub security: SecuritySettings,
}

/// Cluster mode: the voters and where this node's Raft RPC listener binds.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub peers: PeerList,
    pub rpc_addr: SocketAddr,
    /// `--join`: the member to ask for admission (then `peers` is just this node).
    pub join: Option<String>,
}

impl BrokerConfig {
    /// Where this node's RPC listener binds, if it has one.
    pub fn rpc_listen_addr(&self) -> Option<SocketAddr> {
        match &self.cluster {
            Some(c) => Some(c.rpc_addr),
            None => self.standalone_rpc_addr,
        }
    }

    /// Merges flags/env (already folded by clap) over the config file over defaults.
    pub fn resolve(mut args: ServerArgs) -> Result<BrokerConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let groups = GroupSettings::resolve(&args, &file)?;
        let topic_defaults = topic_defaults(&args, &file)?;
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        let (cluster, standalone_rpc_addr) = cluster_settings(node_id, &args, &file)?;
        let rpc_listen = cluster.as_ref().map(|c| c.rpc_addr).or(standalone_rpc_addr);
        let rpc_security =
            RpcSecurity::resolve(std::mem::take(&mut args.rpc_security), &file, rpc_listen)?;
        let security = security_settings(&args, &file)?;
        let fsync = match (args.fsync, file.fsync) {
            (Some(f), _) => f,
            (None, Some(s)) => FsyncPolicy::from_str(&s).map_err(|e| ConfigError::Invalid {
                key: "fsync",
                reason: e.to_string(),
            })?,
            (None, None) => FsyncPolicy::Always,
        };
        let net = NetLimits::resolve(
            args.queued_max_request_bytes
                .or(file.queued_max_request_bytes),
            args.connections_max_idle_ms
                .or(file.connections_max_idle_ms),
            args.request_read_timeout_ms
                .or(file.request_read_timeout_ms),
            args.max_connections_per_ip.or(file.max_connections_per_ip),
        )?;
        let listeners = ListenerConfig::resolve(ListenerArgs {
            listeners: args.listeners.or(file.listeners),
            advertised_listeners: args.advertised_listeners.or(file.advertised_listeners),
            kafka_addr: args.kafka_addr.or(file.kafka_addr),
            advertised_addr: args.advertised_addr.or(file.advertised_addr),
            tls_cert: args.tls_cert.or(file.tls_cert),
            tls_key: args.tls_key.or(file.tls_key),
            tls_client_ca: args.tls_client_ca.or(file.tls_client_ca),
        })?;
        let cfg = BrokerConfig {
            net,
            rpc_security,
            listeners,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            node_id,
            fsync,
            offsets_topic_partitions: groups.offsets_topic_partitions,
            group_initial_rebalance_delay_ms: groups.group_initial_rebalance_delay_ms,
            offsets_retention_minutes: groups.offsets_retention_minutes,
            offsets_compact_after_records: groups.offsets_compact_after_records,
            num_partitions: args.num_partitions.or(file.num_partitions).unwrap_or(1),
            auto_create_topics: args
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(true),
            default_replication_factor: args
                .default_replication_factor
                .or(file.default_replication_factor),
            topic_defaults,
            retention_check_interval_ms: args
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms)
                .unwrap_or(300_000),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(10_000),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            cluster,
            standalone_rpc_addr,
            metadata_timeout: std::time::Duration::from_millis(
                args.metadata_timeout_ms
                    .or(file.metadata_timeout_ms)
                    .unwrap_or(10_000),
            ),
            rack: args.rack.or(file.rack),
            auto_leader_rebalance: args
                .auto_leader_rebalance
                .or(file.auto_leader_rebalance)
                .unwrap_or(true),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or(HttpAddr(Some(SocketAddr::from(([127, 0, 0, 1], 9644)))))
                .0,
            metrics_partition_labels: args
                .metrics_partition_labels
                .or(file.metrics_partition_labels)
                .unwrap_or(true),
            replica_lag_time_max: std::time::Duration::from_millis(
                args.replica_lag_time_max_ms
                    .or(file.replica_lag_time_max_ms)
                    .unwrap_or(10_000),
            ),
            broker_session_timeout: std::time::Duration::from_millis(
                args.broker_session_timeout_ms
                    .or(file.broker_session_timeout_ms)
                    .unwrap_or(6_000),
            ),
            security,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        if self.node_id < 0 {
            return invalid("node-id", "must be >= 0");
        }
        if self.cluster.is_some() && self.node_id == 0 {
            return invalid("node-id", "cluster node ids start at 1");
        }
        if !(100..=600_000).contains(&(self.metadata_timeout.as_millis() as u64)) {
            return invalid("metadata-timeout-ms", "must be between 100 and 600000");
        }
        if self
            .rack
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.len() > 255)
        {
            return invalid("rack", "must be 1 to 255 characters");
        }
        if !(100..=3_600_000).contains(&(self.replica_lag_time_max.as_millis() as u64)) {
            return invalid("replica-lag-time-max-ms", "must be between 100 and 3600000");
        }
        if !(200..=600_000).contains(&(self.broker_session_timeout.as_millis() as u64)) {
            return invalid(
                "broker-session-timeout-ms",
                "must be between 200 and 600000",
            );
        }
        if !(1..=chronik_metadata::MAX_PARTITIONS_PER_TOPIC).contains(&self.num_partitions) {
            return invalid("num-partitions", "must be between 1 and 10000");
        }
        if self.default_replication_factor.is_some_and(|rf| rf < 1) {
            return invalid("default-replication-factor", "must be at least 1");
        }
        if self.retention_check_interval_ms == 0 {
            return invalid("retention-check-interval-ms", "must be > 0");
        }
        if self.max_connections == 0 {
            return invalid("max-connections", "must be > 0");
        }
        Ok(())
    }
}

/// The consumer-group and offsets settings, each checked against its range.
struct GroupSettings {
    offsets_topic_partitions: i32,
    group_initial_rebalance_delay_ms: u64,
    offsets_retention_minutes: u64,
    offsets_compact_after_records: u64,
}

impl GroupSettings {
    fn resolve(args: &ServerArgs, file: &FileConfig) -> Result<GroupSettings, ConfigError> {
        let offsets_topic_partitions = args
            .offsets_topic_partitions
            .or(file.offsets_topic_partitions)
            .unwrap_or(16);
        if !(1..=1000).contains(&offsets_topic_partitions) {
            return Err(ConfigError::Invalid {
                key: "offsets_topic_partitions",
                reason: format!("{offsets_topic_partitions} is not between 1 and 1000"),
            });
        }
        let group_initial_rebalance_delay_ms = args
            .group_initial_rebalance_delay_ms
            .or(file.group_initial_rebalance_delay_ms)
            .unwrap_or(3000);
        if group_initial_rebalance_delay_ms > 300_000 {
            return Err(ConfigError::Invalid {
                key: "group_initial_rebalance_delay_ms",
                reason: format!("{group_initial_rebalance_delay_ms} is over 300000"),
            });
        }
        let offsets_retention_minutes = args
            .offsets_retention_minutes
            .or(file.offsets_retention_minutes)
            .unwrap_or(10_080);
        if !(1..=525_600_000).contains(&offsets_retention_minutes) {
            return Err(ConfigError::Invalid {
                key: "offsets_retention_minutes",
                reason: format!("{offsets_retention_minutes} is not between 1 and 525600000"),
            });
        }
        let offsets_compact_after_records = args
            .offsets_compact_after_records
            .or(file.offsets_compact_after_records)
            .unwrap_or(10_000);
        if offsets_compact_after_records == 0 {
            return Err(ConfigError::Invalid {
                key: "offsets_compact_after_records",
                reason: "must be at least 1".into(),
            });
        }
        Ok(GroupSettings {
            offsets_topic_partitions,
            group_initial_rebalance_delay_ms,
            offsets_retention_minutes,
            offsets_compact_after_records,
        })
    }
}

/// The broker-wide defaults of topic configs (Kafka's `log.*` settings).
fn topic_defaults(args: &ServerArgs, file: &FileConfig) -> Result<TopicDefaults, ConfigError> {
    let d = TopicDefaults::default();
    let topic_defaults = TopicDefaults {
        retention_ms: args
            .retention_ms
            .or(file.retention_ms)
            .unwrap_or(d.retention_ms),
        retention_bytes: args
            .retention_bytes
            .or(file.retention_bytes)
            .unwrap_or(d.retention_bytes),
        segment_bytes: args
            .segment_bytes
            .or(file.segment_bytes)
            .unwrap_or(d.segment_bytes),
        segment_ms: args.segment_ms.or(file.segment_ms).unwrap_or(d.segment_ms),
        max_message_bytes: args
            .max_message_bytes
            .or(file.max_message_bytes)
            .unwrap_or(d.max_message_bytes),
        min_insync_replicas: args
            .min_insync_replicas
            .or(file.min_insync_replicas)
            .unwrap_or(d.min_insync_replicas),
    };
    topic_defaults
        .validate()
        .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
    Ok(topic_defaults)
}

/// Cluster mode (`--cluster` or `--join`), or standalone with where its RPC listener binds.
fn cluster_settings(
    node_id: i32,
    args: &ServerArgs,
    file: &FileConfig,
) -> Result<(Option<ClusterSettings>, Option<SocketAddr>), ConfigError> {
    let peers = match (args.cluster.clone(), file.cluster.as_deref()) {
        (Some(p), _) => Some(p),
        (None, Some(s)) => Some(
            PeerList::from_str(s).map_err(|reason| ConfigError::Invalid {
                key: "cluster",
                reason,
            })?,
        ),
        (None, None) => None,
    };
    if let Some(join) = args.join.clone() {
        if peers.is_some() {
            return Err(ConfigError::Invalid {
                key: "join",
                reason: "give either --cluster (forming a cluster) or --join (adding a node \
                         to a running one), not both"
                    .into(),
            });
        }
        if args.node_id.or(file.node_id).is_none() {
            return Err(ConfigError::Invalid {
                key: "node-id",
                reason: "--join needs --node-id: an id no member of the cluster uses".into(),
            });
        }
        let rpc_addr = args
            .rpc_addr
            .or(file.rpc_addr)
            .ok_or_else(|| ConfigError::Invalid {
                key: "rpc-addr",
                reason: "--join needs --rpc-addr IP:PORT: where the other nodes reach this one"
                    .into(),
            })?;
        if rpc_addr.ip().is_unspecified() || rpc_addr.port() == 0 {
            return Err(ConfigError::Invalid {
                key: "rpc-addr",
                reason: format!(
                    "{rpc_addr}: with --join the RPC address is also what the other nodes \
                     dial, so it needs a real IP and port"
                ),
            });
        }
        let peers = PeerList(std::collections::BTreeMap::from([(
            node_id as u64,
            rpc_addr.to_string(),
        )]));
        let cluster = ClusterSettings {
            peers,
            rpc_addr,
            join: Some(join),
        };
        Ok((Some(cluster), None))
    } else if let Some(peers) = peers {
        let own = peers
            .0
            .get(&(node_id as u64))
            .ok_or_else(|| ConfigError::Invalid {
                key: "node-id",
                reason: format!("node id {} is not in --cluster {peers}", node_id),
            })?;
        let rpc_addr = match args.rpc_addr.or(file.rpc_addr) {
            Some(a) => a,
            None => own.parse().map_err(|_| ConfigError::Invalid {
                key: "rpc-addr",
                reason: format!(
                    "this node's --cluster entry {own} is not IP:PORT; give --rpc-addr to bind"
                ),
            })?,
        };
        let cluster = ClusterSettings {
            peers,
            rpc_addr,
            join: None,
        };
        Ok((Some(cluster), None))
    } else {
        Ok((None, args.rpc_addr.or(file.rpc_addr)))
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        reason: e.message().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag has its config-file key and the reverse, except `--config` itself and
    /// `--join` (a one-time action, not a setting to keep in a file).
    #[test]
    fn every_flag_is_a_config_file_key() {
        use clap::CommandFactory;
        let keys: std::collections::BTreeSet<String> =
            config_file_keys().iter().map(|k| k.to_string()).collect();
        let flags: std::collections::BTreeSet<String> = Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "config" | "join" | "help" | "version"))
            .map(|l| l.replace('-', "_"))
            .collect();
        assert!(keys.contains("data_dir"), "{keys:?}");
        assert_eq!(keys, flags);
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "num_partitions = 4\nfsync = \"never\"\nnode_id = 3\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path.clone()),
            num_partitions: Some(7),
            ..Default::default()
        };
        let cfg = BrokerConfig::resolve(args).unwrap();
        assert_eq!(cfg.num_partitions, 7);
        assert_eq!(cfg.node_id, 3);
        assert!(matches!(cfg.fsync, FsyncPolicy::Never));
        assert_eq!(cfg.data_dir, PathBuf::from("./data"));

        std::fs::write(&path, "num_partitons = 4\n").unwrap();
        let err = BrokerConfig::resolve(ServerArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("num_partitons"), "{err}");
    }
}
