//! Broker settings: command-line flags, `CHRONIK_*` environment variables and an optional
//! TOML file, merged with the precedence flag > env > file > default.
//!
//! Each setting is defined once, as a clap argument on [`ServerArgs`] (or a struct flattened
//! into it): its flag name, environment variable, help and default (`default_value`) are
//! written there, its config-file key is the flag name with `_` for `-` ([`file_key`]), and
//! `--help`, the `--config` file and the generated reference in docs/operations.md all read
//! that one definition. A setting without a default is an `Option` whose help says what
//! "unset" means.
//!
//! Why clap alone and not a second layer such as figment: clap already does flag > env >
//! default, and [`clap::ArgMatches::value_source`] says which settings a flag or the
//! environment gave. The file only fills the others, so [`Cli::load`] parses once, turns the
//! file's entries for settings still at their default into extra `--key=value` arguments
//! ([`file`]) and parses again. Every value, from whichever source, then goes through the same
//! value parser and the same clap rules (`conflicts_with`, `requires`); a serde layer would
//! need a second parser (and a second default) for each type. [`BrokerConfig::resolve`] turns
//! the parsed arguments into the checked settings the broker runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chronik_wal::FsyncPolicy;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::listeners::{ListenerArgs, ListenerConfig};
use crate::net_limits::{NetLimitArgs, NetLimits};
use crate::security::SecuritySettings;
pub(crate) use crate::settings::defaults;
pub use crate::settings::ConfigError;
use crate::topic_config::TopicDefaults;
pub use chronik_cluster::PeerList;

mod cleaner;
mod file;
mod kafka_security;
mod rpc_security;
pub use cleaner::CleanerArgs;
pub use file::{file_key, settings, FLAG_ONLY};
pub use kafka_security::SecurityArgs;
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

/// Flags of `chronik-server` and `chronik-server standalone`. Every one can also be set by
/// its environment variable and, all but `--config`, by its key in the `--config` file.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML file of settings: each key is a flag name with `_` for `-` (`num_partitions = 4`);
    /// it sets what neither a flag nor the environment sets
    #[arg(long, env = "CHRONIK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the WAL and metadata
    #[arg(long, env = "CHRONIK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub listeners: ListenerArgs,
    /// This broker's id; it must match the id stored in the data directory
    #[arg(long, env = "CHRONIK_NODE_ID", default_value_t = 1)]
    pub node_id: i32,
    /// When an append is acknowledged: always | interval:<ms> | never
    #[arg(long, env = "CHRONIK_FSYNC")]
    #[arg(default_value = "always", value_parser = FsyncPolicy::from_str)]
    pub fsync: FsyncPolicy,
    /// Partitions of the internal __consumer_offsets topic, fixed when it is first created
    #[arg(long, env = "CHRONIK_OFFSETS_TOPIC_PARTITIONS", default_value_t = 16)]
    pub offsets_topic_partitions: i32,
    /// How long the first member of an empty group waits for others before the first
    /// generation is formed (Kafka's group.initial.rebalance.delay.ms)
    #[arg(long, env = "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    #[arg(default_value_t = 3000)]
    pub group_initial_rebalance_delay_ms: u64,
    /// Committed offsets of a group without members are deleted once its newest commit is
    /// this old (Kafka's offsets.retention.minutes)
    #[arg(long, env = "CHRONIK_OFFSETS_RETENTION_MINUTES")]
    #[arg(default_value_t = 10_080)]
    pub offsets_retention_minutes: u64,
    /// Partitions of the internal __transaction_state topic, fixed when it is first created
    /// (Kafka's transaction.state.log.num.partitions)
    #[arg(
        long,
        env = "CHRONIK_TRANSACTION_STATE_PARTITIONS",
        default_value_t = 50
    )]
    pub transaction_state_partitions: i32,
    /// Longest transaction.timeout.ms a transactional producer may ask for (Kafka's
    /// transaction.max.timeout.ms)
    #[arg(
        long,
        env = "CHRONIK_TRANSACTION_MAX_TIMEOUT_MS",
        default_value_t = 900_000
    )]
    pub transaction_max_timeout_ms: i32,
    /// A transactional id idle this long is forgotten (Kafka's
    /// transactional.id.expiration.ms)
    #[arg(long, env = "CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS")]
    #[arg(default_value_t = 604_800_000)]
    pub transactional_id_expiration_ms: i64,
    /// Partitions of an auto-created topic
    #[arg(long, env = "CHRONIK_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,
    /// Create unknown topics on Metadata requests
    #[arg(long, env = "CHRONIK_AUTO_CREATE_TOPICS")]
    #[arg(default_value_t = true, action = ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Replicas of each partition of an auto-created topic, and of one created with
    /// replication factor -1 (Kafka's default.replication.factor). Unset: the number of alive
    /// brokers at creation, at most 3
    #[arg(long, env = "CHRONIK_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// Default min.insync.replicas of topics: in-sync replicas an acks=all produce needs,
    /// else NOT_ENOUGH_REPLICAS (Kafka's broker min.insync.replicas)
    #[arg(long, env = "CHRONIK_MIN_INSYNC_REPLICAS")]
    #[arg(default_value_t = TopicDefaults::default().min_insync_replicas)]
    pub min_insync_replicas: i64,
    /// Default retention.ms of topics; -1 keeps data forever
    #[arg(long, env = "CHRONIK_RETENTION_MS")]
    #[arg(allow_hyphen_values = true, default_value_t = TopicDefaults::default().retention_ms)]
    pub retention_ms: i64,
    /// Default retention.bytes per partition; -1 is unlimited
    #[arg(long, env = "CHRONIK_RETENTION_BYTES")]
    #[arg(allow_hyphen_values = true, default_value_t = TopicDefaults::default().retention_bytes)]
    pub retention_bytes: i64,
    /// Default segment.bytes
    #[arg(long, env = "CHRONIK_SEGMENT_BYTES")]
    #[arg(default_value_t = TopicDefaults::default().segment_bytes)]
    pub segment_bytes: i64,
    /// Default segment.ms
    #[arg(long, env = "CHRONIK_SEGMENT_MS")]
    #[arg(default_value_t = TopicDefaults::default().segment_ms)]
    pub segment_ms: i64,
    /// Default max.message.bytes, the largest record batch accepted
    #[arg(long, env = "CHRONIK_MAX_MESSAGE_BYTES")]
    #[arg(default_value_t = TopicDefaults::default().max_message_bytes)]
    pub max_message_bytes: i64,
    /// How often retention runs, in ms
    #[arg(long, env = "CHRONIK_RETENTION_CHECK_INTERVAL_MS")]
    #[arg(default_value_t = 300_000)]
    pub retention_check_interval_ms: u64,
    /// Most concurrent client connections; more are refused
    #[arg(long, env = "CHRONIK_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most sealed-segment files kept open for reads, in one cache for all partitions: the
    /// least recently used is closed when it is full (0: each read opens its file). Each
    /// partition's active segment holds one descriptor besides (docs/operations.md, "File
    /// descriptors"). Unset: 4096, or a quarter of the file-descriptor limit if that is less
    #[arg(long, env = "CHRONIK_MAX_OPEN_SEGMENT_FILES")]
    pub max_open_segment_files: Option<usize>,
    #[command(flatten)]
    pub net: NetLimitArgs,
    #[command(flatten)]
    pub cleaner: CleanerArgs,
    /// Log format
    #[arg(long, env = "CHRONIK_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// The metadata cluster's voters, ID@HOST:PORT of each node's Raft RPC listener, the same
    /// list on every node (cluster mode only)
    #[arg(long, env = "CHRONIK_CLUSTER", value_parser = PeerList::from_str)]
    pub cluster: Option<PeerList>,
    /// Add this node to a running cluster: the RPC address of any member (HOST:PORT). The node
    /// joins as a learner (a broker that holds replicas but does not vote) until
    /// `chronik-admin broker add` makes it a voter; on a restart it is a member already. Needs
    /// --node-id (unused in the cluster) and --rpc-addr (where the others reach it); instead
    /// of --cluster
    #[arg(long, env = "CHRONIK_JOIN", requires = "node_id")]
    pub join: Option<String>,
    /// Address the RPC listener (Raft, replication, admin API) binds. Unset: this node's entry
    /// in --cluster; standalone: none, so no admin API
    #[arg(long, env = "CHRONIK_RPC_ADDR")]
    pub rpc_addr: Option<SocketAddr>,
    /// How long a metadata change (topic create/delete, ...) may wait for the metadata quorum
    /// before it fails
    #[arg(long, env = "CHRONIK_METADATA_TIMEOUT_MS", default_value_t = 10_000)]
    pub metadata_timeout_ms: u64,
    /// Silence after which the controller fences a broker (it heartbeats every quarter of
    /// this, at most every 500 ms)
    #[arg(long, env = "CHRONIK_BROKER_SESSION_TIMEOUT_MS")]
    #[arg(default_value_t = 6_000)]
    pub broker_session_timeout_ms: u64,
    /// Rack given to clients in Metadata
    #[arg(long, env = "CHRONIK_RACK")]
    pub rack: Option<String>,
    /// A follower that has not caught up with its leader for this long leaves the ISR
    /// (Kafka's replica.lag.time.max.ms)
    #[arg(long, env = "CHRONIK_REPLICA_LAG_TIME_MAX_MS")]
    #[arg(default_value_t = 10_000)]
    pub replica_lag_time_max_ms: u64,
    /// Give partition leadership back to the preferred replica once it is in the ISR again
    /// (Kafka's auto.leader.rebalance.enable)
    #[arg(long, env = "CHRONIK_AUTO_LEADER_REBALANCE")]
    #[arg(default_value_t = true, action = ArgAction::Set)]
    pub auto_leader_rebalance: bool,
    #[command(flatten)]
    pub rpc_security: RpcSecurityArgs,
    /// Address of the HTTP endpoint: /metrics (Prometheus), /health/live, /health/ready;
    /// `off` for none
    #[arg(long, env = "CHRONIK_HTTP_ADDR", default_value = "127.0.0.1:9644")]
    pub http_addr: HttpAddr,
    /// Label partition gauges by topic and partition; false folds them into per-topic gauges
    /// (for clusters with many partitions)
    #[arg(long, env = "CHRONIK_METRICS_PARTITION_LABELS")]
    #[arg(default_value_t = true, action = ArgAction::Set)]
    pub metrics_partition_labels: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Every setting at its default (the definition parsed without flags and environment), for
/// tests that change a few in a struct literal.
impl Default for ServerArgs {
    fn default() -> Self {
        defaults()
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
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
    pub transaction_state_partitions: i32,
    pub transaction_max_timeout_ms: i32,
    pub transactional_id_expiration_ms: i64,
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    /// `None`: the alive brokers at creation, at most 3.
    pub default_replication_factor: Option<i16>,
    pub topic_defaults: TopicDefaults,
    pub retention_check_interval_ms: u64,
    pub max_connections: usize,
    /// Bound of the sealed-segment file cache; `None`: derived from the descriptor limit at
    /// start (`crate::fd_budget`).
    pub max_open_segment_files: Option<usize>,
    /// Request budget, idle and read timeouts, per-address limit.
    pub net: NetLimits,
    /// The log cleaner (compacted topics).
    pub cleaner: crate::cleaner::CleanerSettings,
    pub log_format: LogFormat,
    /// `None`: standalone (a one-node cluster; an RPC listener only with `--rpc-addr`).
    pub cluster: Option<ClusterSettings>,
    /// Standalone: where the RPC listener (admin API) binds, if anywhere.
    pub standalone_rpc_addr: Option<SocketAddr>,
    pub metadata_timeout: Duration,
    pub broker_session_timeout: Duration,
    pub rack: Option<String>,
    pub replica_lag_time_max: Duration,
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

fn invalid<T>(key: &'static str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.into(),
    })
}

impl BrokerConfig {
    /// Where this node's RPC listener binds, if it has one.
    pub fn rpc_listen_addr(&self) -> Option<SocketAddr> {
        match &self.cluster {
            Some(c) => Some(c.rpc_addr),
            None => self.standalone_rpc_addr,
        }
    }

    /// Checks the settings (already merged by [`Cli::load`]) and derives what the broker
    /// runs with.
    pub fn resolve(args: ServerArgs) -> Result<BrokerConfig, ConfigError> {
        let topic_defaults = topic_defaults(&args)?;
        let (cluster, standalone_rpc_addr) = cluster_settings(&args)?;
        let rpc_listen = cluster.as_ref().map(|c| c.rpc_addr).or(standalone_rpc_addr);
        let data_dir = args.data_dir;
        let cfg = BrokerConfig {
            net: NetLimits::resolve(&args.net)?,
            cleaner: args.cleaner.resolve(args.metrics_partition_labels)?,
            rpc_security: RpcSecurity::resolve(args.rpc_security, rpc_listen)?,
            listeners: ListenerConfig::resolve(args.listeners)?,
            security: kafka_security::security_settings(&args.security)?,
            data_dir,
            node_id: args.node_id,
            fsync: args.fsync,
            offsets_topic_partitions: args.offsets_topic_partitions,
            group_initial_rebalance_delay_ms: args.group_initial_rebalance_delay_ms,
            offsets_retention_minutes: args.offsets_retention_minutes,
            transaction_state_partitions: args.transaction_state_partitions,
            transaction_max_timeout_ms: args.transaction_max_timeout_ms,
            transactional_id_expiration_ms: args.transactional_id_expiration_ms,
            num_partitions: args.num_partitions,
            auto_create_topics: args.auto_create_topics,
            default_replication_factor: args.default_replication_factor,
            topic_defaults,
            retention_check_interval_ms: args.retention_check_interval_ms,
            max_connections: args.max_connections,
            max_open_segment_files: args.max_open_segment_files,
            log_format: args.log_format,
            cluster,
            standalone_rpc_addr,
            metadata_timeout: Duration::from_millis(args.metadata_timeout_ms),
            rack: args.rack,
            auto_leader_rebalance: args.auto_leader_rebalance,
            http_addr: args.http_addr.0,
            metrics_partition_labels: args.metrics_partition_labels,
            replica_lag_time_max: Duration::from_millis(args.replica_lag_time_max_ms),
            broker_session_timeout: Duration::from_millis(args.broker_session_timeout_ms),
        };
        cfg.validate_groups()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
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

    /// The consumer-group and offsets settings, each against its range.
    fn validate_groups(&self) -> Result<(), ConfigError> {
        let partitions = self.offsets_topic_partitions;
        if !(1..=1000).contains(&partitions) {
            return invalid(
                "offsets_topic_partitions",
                format!("{partitions} is not between 1 and 1000"),
            );
        }
        let delay_ms = self.group_initial_rebalance_delay_ms;
        if delay_ms > 300_000 {
            return invalid(
                "group_initial_rebalance_delay_ms",
                format!("{delay_ms} is over 300000"),
            );
        }
        let minutes = self.offsets_retention_minutes;
        if !(1..=525_600_000).contains(&minutes) {
            return invalid(
                "offsets_retention_minutes",
                format!("{minutes} is not between 1 and 525600000"),
            );
        }
        // Kafka's ranges: at least 1 each.
        let txn_partitions = self.transaction_state_partitions;
        if !(1..=1000).contains(&txn_partitions) {
            return invalid(
                "transaction_state_partitions",
                format!("{txn_partitions} is not between 1 and 1000"),
            );
        }
        if self.transaction_max_timeout_ms < 1 || self.transactional_id_expiration_ms < 1 {
            return invalid(
                "transaction_max_timeout_ms",
                "transaction.max.timeout.ms and transactional.id.expiration.ms must be at least 1"
                    .to_string(),
            );
        }
        Ok(())
    }
}

/// The broker-wide defaults of topic configs (Kafka's `log.*` settings).
fn topic_defaults(args: &ServerArgs) -> Result<TopicDefaults, ConfigError> {
    let topic_defaults = TopicDefaults {
        retention_ms: args.retention_ms,
        retention_bytes: args.retention_bytes,
        segment_bytes: args.segment_bytes,
        segment_ms: args.segment_ms,
        max_message_bytes: args.max_message_bytes,
        min_insync_replicas: args.min_insync_replicas,
    };
    topic_defaults
        .validate()
        .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
    Ok(topic_defaults)
}

/// Cluster mode (`--cluster` or `--join`), or standalone with where its RPC listener binds.
fn cluster_settings(
    args: &ServerArgs,
) -> Result<(Option<ClusterSettings>, Option<SocketAddr>), ConfigError> {
    let node_id = args.node_id;
    if let Some(join) = args.join.clone() {
        // That --join comes with --node-id is clap's rule (`requires`).
        if args.cluster.is_some() {
            return invalid(
                "join",
                "give either --cluster (forming a cluster) or --join (adding a node to a \
                 running one), not both",
            );
        }
        let Some(rpc_addr) = args.rpc_addr else {
            return invalid(
                "rpc-addr",
                "--join needs --rpc-addr IP:PORT: where the other nodes reach this one",
            );
        };
        if rpc_addr.ip().is_unspecified() || rpc_addr.port() == 0 {
            return invalid(
                "rpc-addr",
                format!(
                    "{rpc_addr}: with --join the RPC address is also what the other nodes \
                     dial, so it needs a real IP and port"
                ),
            );
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
    } else if let Some(peers) = args.cluster.clone() {
        let Some(own) = peers.0.get(&(node_id as u64)) else {
            return invalid(
                "node-id",
                format!("node id {node_id} is not in --cluster {peers}"),
            );
        };
        let rpc_addr = match args.rpc_addr {
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
        Ok((None, args.rpc_addr))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::sync::Mutex;

    /// Held by every test that reads `CHRONIK_*` variables ([`Cli::load`]) while one sets them.
    pub(crate) static ENV: Mutex<()> = Mutex::new(());

    pub(crate) fn load(flags: &[&str]) -> Result<ServerArgs, ConfigError> {
        let argv = ["chronik-server"].iter().chain(flags);
        Cli::load(argv.map(|s| s.to_string())).and_then(Cli::into_args)
    }

    fn with_file(text: &str, flags: &[&str]) -> Result<ServerArgs, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        load(&[&["standalone", "--config", path], flags].concat())
    }

    /// Every flag has its config-file key, but those listed flag-only with a reason.
    #[test]
    fn every_flag_is_a_config_file_key_or_says_why_not() {
        let cmd = Cli::command();
        for arg in settings(&cmd) {
            let long = arg.get_long().unwrap();
            let reason = FLAG_ONLY.iter().find(|(f, _)| *f == long).map(|(_, r)| r);
            match (file_key(arg), reason) {
                (Some(key), None) => assert_eq!(key, long.replace('-', "_")),
                (None, Some(r)) => assert!(!r.is_empty(), "--{long}"),
                other => panic!("--{long}: {other:?}"),
            }
        }
        for (flag, _) in FLAG_ONLY {
            assert!(settings(&cmd).any(|a| a.get_long() == Some(flag)), "{flag}");
        }
        assert!(settings(&cmd).any(|a| a.get_long() == Some("join")));
    }

    /// Each setting's default, written in the file under its key, is accepted and resolves:
    /// every key is known, and every default parses from the file as from a flag.
    #[test]
    fn every_default_reads_back_from_the_file() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        let mut cmd = Cli::command();
        cmd.build(); // gives switches their implicit default, false
        for arg in settings(&cmd) {
            let (Some(key), Some(d)) = (file_key(arg), arg.get_default_values().first()) else {
                continue;
            };
            let d = d.to_str().unwrap();
            if arg.get_action().takes_values() {
                text.push_str(&format!("{key} = {d:?}\n"));
            } else {
                text.push_str(&format!("{key} = {d}\n"));
            }
        }
        assert!(
            text.contains("replica_lag_time_max_ms = \"10000\""),
            "{text}"
        );
        assert!(text.contains("rpc_insecure = false"), "{text}");
        let cfg = BrokerConfig::resolve(with_file(&text, &[]).unwrap()).unwrap();
        let default = BrokerConfig::resolve(ServerArgs::default()).unwrap();
        assert_eq!(format!("{cfg:?}"), format!("{default:?}"));
    }

    /// flag > env > file > default, for a duration in ms, a bool, a list, a path and a switch.
    #[test]
    fn precedence_flag_over_env_over_file_over_default() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let file = "replica_lag_time_max_ms = 2000\nauto_leader_rebalance = false\n\
                    rpc_admin_allowed_names = [\"file\"]\ndata_dir = \"/file\"\n\
                    rpc_insecure = true\n";
        let vars = [
            ("CHRONIK_REPLICA_LAG_TIME_MAX_MS", "3000"),
            ("CHRONIK_AUTO_LEADER_REBALANCE", "true"),
            ("CHRONIK_RPC_ADMIN_ALLOWED_NAMES", "env1,env2"),
            ("CHRONIK_DATA_DIR", "/env"),
        ];
        let flags = [
            "--replica-lag-time-max-ms",
            "4000",
            "--auto-leader-rebalance",
            "false",
            "--rpc-admin-allowed-names",
            "flag",
            "--data-dir",
            "/flag",
        ];
        type Seen = (u64, bool, Option<Vec<String>>, PathBuf, bool);
        let seen = |a: ServerArgs| -> Seen {
            let rpc = a.rpc_security;
            let (lag, rebalance) = (a.replica_lag_time_max_ms, a.auto_leader_rebalance);
            (
                lag,
                rebalance,
                rpc.rpc_admin_allowed_names,
                a.data_dir,
                rpc.rpc_insecure,
            )
        };
        let names = |n: &[&str]| Some(n.iter().map(|s| s.to_string()).collect());
        let path = |p: &str| PathBuf::from(p);
        assert_eq!(
            seen(load(&["standalone"]).unwrap()),
            (10_000, true, None, path("./data"), false)
        );
        let from_file = (2000, false, names(&["file"]), path("/file"), true);
        assert_eq!(seen(with_file(file, &[]).unwrap()), from_file);
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let from_env = with_file(file, &[]).map(seen);
        let from_flags = with_file(file, &flags).map(seen);
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        // The switch has no variable set here, so the file's value stays.
        assert_eq!(
            from_env.unwrap(),
            (3000, true, names(&["env1", "env2"]), path("/env"), true)
        );
        assert_eq!(
            from_flags.unwrap(),
            (4000, false, names(&["flag"]), path("/flag"), true)
        );
    }

    #[test]
    fn file_errors_name_the_file_and_the_key() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let err = |text: &str, flags: &[&str]| with_file(text, flags).unwrap_err().to_string();
        let e = err("num_partitons = 4\n", &[]);
        assert!(
            e.contains("c.toml") && e.contains("unknown key `num_partitons`"),
            "{e}"
        );
        let e = err("config = \"other.toml\"\n", &[]);
        assert!(e.contains("names the file itself"), "{e}");
        let e = err("fsync = \"bogus\"\n", &[]);
        assert!(
            e.contains("c.toml") && e.contains("fsync") && e.contains("bogus"),
            "{e}"
        );
        let e = err("auto_create_topics = \"maybe\"\n", &[]);
        assert!(
            e.contains("auto-create-topics") && e.contains("maybe"),
            "{e}"
        );
        let e = err("num_partitions = [1, 2]\n", &[]);
        assert!(e.contains("num_partitions: takes one value"), "{e}");
        let e = err("rpc_insecure = \"yes\"\n", &[]);
        assert!(e.contains("rpc_insecure: must be true or false"), "{e}");
        // Settings that exclude each other do so whatever their sources.
        let e = err(
            "listeners = \"PLAINTEXT://127.0.0.1:0\"\n",
            &["--kafka-addr", "1.2.3.4:5"],
        );
        assert!(
            e.contains("--listeners") && e.contains("--kafka-addr"),
            "{e}"
        );
        let e = err("join = \"10.0.0.1:9093\"\n", &[]);
        assert!(
            e.contains("required arguments were not provided: --node-id"),
            "{e}"
        );
        let e = err("join = \"10.0.0.1:9093\"\nnode_id = 2\n", &[]);
        assert!(e.contains("standalone runs a one-node cluster"), "{e}");
        let missing = load(&["standalone", "--config", "/nonexistent/c.toml"]).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/c.toml"),
            "{missing}"
        );
    }

    #[test]
    fn a_file_value_counts_as_given_for_clap_rules() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let file = "rpc_addr = \"127.0.0.1:9093\"\njoin = \"127.0.0.1:9094\"\n";
        let e = load(&["--join", "127.0.0.1:9094"]).unwrap_err().to_string();
        assert!(e.contains("--node-id"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{file}node_id = 4\n")).unwrap();
        let args = load(&["--config", path.to_str().unwrap()]).unwrap();
        let cfg = BrokerConfig::resolve(args).unwrap();
        let cluster = cfg.cluster.unwrap();
        assert_eq!(
            (cfg.node_id, cluster.join.as_deref()),
            (4, Some("127.0.0.1:9094"))
        );
    }

    #[test]
    fn typed_defaults_and_ranges() {
        let d = BrokerConfig::resolve(ServerArgs::default()).unwrap();
        assert_eq!(d.data_dir, PathBuf::from("./data"));
        assert_eq!(d.fsync, FsyncPolicy::Always);
        assert_eq!(d.http_addr, Some(SocketAddr::from(([127, 0, 0, 1], 9644))));
        assert_eq!(d.topic_defaults, TopicDefaults::default());
        assert_eq!(d.replica_lag_time_max, Duration::from_secs(10));
        let bad = ServerArgs {
            offsets_topic_partitions: 0,
            ..Default::default()
        };
        let e = BrokerConfig::resolve(bad).unwrap_err().to_string();
        assert!(e.contains("offsets_topic_partitions"), "{e}");
        let bad = ServerArgs {
            retention_ms: -2,
            ..Default::default()
        };
        let e = BrokerConfig::resolve(bad).unwrap_err().to_string();
        assert!(e.contains("retention-ms"), "{e}");
    }
}
