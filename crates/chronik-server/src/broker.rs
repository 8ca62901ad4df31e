//! The broker's shared state: identity, metadata, and the partitions this node serves.
//!
//! Topic administration (create, delete, grow) goes through the metadata state machine
//! first and then opens or removes WAL partitions; one async lock serializes these so the
//! WAL directories always follow the metadata.

mod heal;
mod periodic;
mod roles;
mod start;
mod topics;
mod users;

pub use topics::Layout;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chronik_cluster::{ClusterError, MetadataNode, ProposeError};
use chronik_groups::{GroupManager, OFFSETS_TOPIC};
use chronik_metadata::{
    BrokerInfo, MetadataCommand, MetadataError, MetadataState, Outcome, Refusal, TopicInfo,
    UnexpectedOutcome,
};
use chronik_replication::ReplicaManager;
use chronik_wal::WalError;
use dashmap::DashMap;
use kafka_protocol::ResponseError;
use thiserror::Error;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::offsets::Offsets;
use crate::partition::Partition;
use crate::shutdown::Shutdown;
use crate::topic_config::TopicConfig;

/// How many producer ids one metadata command reserves for this broker.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Why the broker could not start. Printed once; the process exits non-zero.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(
        "{path} was written by an older chronik-server whose metadata was not replicated; \
         this version keeps metadata in a Raft log and cannot read it: start with an empty \
         data directory"
    )]
    OldMetadata { path: String },
    #[error("shut down before the metadata cluster was ready")]
    Interrupted,
    #[error("no Kafka listener to advertise")]
    NoListener,
    #[error("cannot register this broker in the metadata: {0}")]
    Register(String),
    #[error("cannot open partition {topic}-{partition}: {source}")]
    Wal {
        topic: String,
        partition: i32,
        #[source]
        source: WalError,
    },
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the committed offsets: {0}")]
    Offsets(String),
    #[error("cannot create the bootstrap user: {0}")]
    BootstrapUser(String),
    #[error(
        "data directory {path} is in use by another chronik-server (lock file {path}/chronik.lock)"
    )]
    Locked { path: String },
}

/// A refused topic operation: the Kafka error and a message for the client.
#[derive(Debug, Clone)]
pub struct TopicError {
    pub code: ResponseError,
    pub message: String,
}

impl TopicError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        TopicError {
            code,
            message: message.into(),
        }
    }
}

impl From<Refusal> for TopicError {
    fn from(r: Refusal) -> Self {
        MetadataError::Refused(r).into()
    }
}

impl From<UnexpectedOutcome> for TopicError {
    fn from(e: UnexpectedOutcome) -> Self {
        TopicError::new(ResponseError::UnknownServerError, e.to_string())
    }
}

impl From<MetadataError> for TopicError {
    fn from(e: MetadataError) -> Self {
        let code = match &e {
            MetadataError::Refused(r) => match r {
                Refusal::TopicExists(_) => ResponseError::TopicAlreadyExists,
                Refusal::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
                Refusal::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
                Refusal::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
                Refusal::InvalidReplicationFactor(..) => ResponseError::InvalidReplicationFactor,
                Refusal::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
                Refusal::InvalidIsr { .. } => ResponseError::InvalidRequest,
                Refusal::IneligibleLeader { .. } => ResponseError::EligibleLeadersNotAvailable,
                Refusal::InvalidReassignment { .. } | Refusal::InvalidReplicaAssignment { .. } => {
                    ResponseError::InvalidReplicaAssignment
                }
                Refusal::NoReassignmentInProgress { .. } => ResponseError::NoReassignmentInProgress,
                Refusal::UnacceptableCredential { .. } => ResponseError::UnacceptableCredential,
                Refusal::NoSuchCredential { .. } => ResponseError::ResourceNotFound,
                Refusal::InvalidAcl(_) => ResponseError::InvalidRequest,
            },
            MetadataError::Io { .. } | MetadataError::Corrupt { .. } => {
                ResponseError::KafkaStorageError
            }
        };
        TopicError::new(code, e.to_string())
    }
}

/// The partitions of one topic that this node hosts. The topic id tells a topic apart from
/// a deleted one of the same name.
struct LocalTopic {
    id: Uuid,
    /// The topic's config overrides the local logs were last configured with.
    configs: BTreeMap<String, String>,
    /// Index = partition id; `None` where this node is not a replica.
    parts: Vec<Option<Arc<Partition>>>,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
    metadata: Arc<MetadataNode>,
    wal_root: PathBuf,
    /// topic -> its partitions on this node.
    partitions: DashMap<String, LocalTopic>,
    /// Serializes topic create/delete/grow so WAL directories follow metadata.
    topic_admin: tokio::sync::Mutex<()>,
    /// Serializes [`Broker::sync_partitions`].
    partition_sync: tokio::sync::Mutex<()>,
    /// WAL replication: roles, high watermarks, fetchers.
    pub replicas: Arc<ReplicaManager>,
    /// High watermarks as checkpointed before this start, by (topic, partition).
    hw_checkpoints: std::collections::HashMap<(String, i32), i64>,
    /// `[next, end)` of the producer-id block this broker owns.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Committed offsets; set once at start, after the offsets topic is open.
    offsets: OnceLock<Offsets>,
    /// An exclusive lock on the data directory, held for the broker's life: two processes
    /// writing one WAL would corrupt it. The OS releases it when the process dies.
    _data_dir_lock: std::fs::File,
    /// Group membership. Held only for short, non-blocking state changes.
    groups: std::sync::Mutex<GroupManager>,
    /// How this broker registered: its addresses and the incarnation it leads in. The
    /// incarnation is fresh for every process start and every heal of a poisoned partition
    /// (`heal`); this broker takes no new leadership until the metadata shows it.
    registration: std::sync::Mutex<BrokerInfo>,
    pub shutdown: Shutdown,
}

impl Broker {
    /// Group membership state.
    pub fn groups(&self) -> std::sync::MutexGuard<'_, GroupManager> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the `__consumer_offsets` topic on first start, then rebuilds the committed
    /// offsets by replaying it.
    async fn open_offsets(self: &Arc<Self>, cluster_size: usize) -> Result<(), StartError> {
        let want = self.config.offsets_topic_partitions;
        match self.metadata().topic(OFFSETS_TOPIC) {
            Some(t) if t.partitions.len() as i32 != want => {
                tracing::warn!(
                    topic = OFFSETS_TOPIC,
                    partitions = t.partitions.len(),
                    configured = want,
                    "the offsets topic keeps the partition count it was created with"
                );
            }
            Some(_) => {}
            // Every broker of the cluster has registered (always, standalone): create it now,
            // spread over all of them.
            None if self.metadata().brokers.len() >= cluster_size => {
                self.create_offsets_topic(cluster_size).await?;
            }
            // Give the others a bounded while to register first, without holding up this
            // node's start: until the topic exists, FindCoordinator answers
            // COORDINATOR_NOT_AVAILABLE and clients retry. A new topic holds no offsets, so
            // the empty stores built below stay right.
            None => {
                let me = self.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
                    while me.metadata().brokers.len() < cluster_size
                        && me.metadata().topic(OFFSETS_TOPIC).is_none()
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    if me.metadata().topic(OFFSETS_TOPIC).is_none() {
                        if let Err(e) = me.create_offsets_topic(cluster_size).await {
                            tracing::error!(error = %e, "cannot create the offsets topic");
                        }
                    }
                });
            }
        }
        let me = self.clone();
        let offsets = tokio::task::spawn_blocking(move || Offsets::rebuild(&me))
            .await
            .map_err(|e| StartError::Offsets(format!("offsets replay panicked: {e}")))?
            .map_err(|e| StartError::Offsets(e.to_string()))?;
        let now = std::time::Instant::now();
        let records = offsets.group_records();
        let _ = self.offsets.set(offsets);
        let mut groups = self.groups();
        for (group, record) in &records {
            groups.restore(group, record, now);
        }
        if !records.is_empty() {
            tracing::info!(
                groups = records.len(),
                "restored consumer groups from the offsets log"
            );
        }
        Ok(())
    }

    /// Creates `__consumer_offsets` (unless another broker did first) and opens the
    /// partitions this node hosts.
    async fn create_offsets_topic(&self, cluster_size: usize) -> Result<(), StartError> {
        // Offsets must outlive any time or size retention (compaction is still to come).
        let configs = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), (100 << 20).to_string()),
        ]);
        let want = self.config.offsets_topic_partitions;
        // Replicated like Kafka's offsets.topic.replication.factor=3, on as many brokers as
        // have registered (never more than 3).
        let rf = cluster_size
            .min(3)
            .min(self.metadata().brokers.len())
            .max(1) as i16;
        match self
            .create_topic_checked(
                OFFSETS_TOPIC,
                Layout::Counts {
                    partitions: want,
                    replication_factor: rf,
                },
                configs,
                true,
                false,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {}
            Err(e) => return Err(StartError::Offsets(e.message)),
        }
        let state = self.metadata();
        self.sync_partitions(&state)
            .await
            .map_err(|(topic, partition, source)| StartError::Wal {
                topic,
                partition,
                source,
            })
    }

    /// Committed offsets (set during start).
    pub fn offsets(&self) -> &Offsets {
        self.offsets
            .get()
            .expect("offsets are opened before the broker serves requests")
    }

    /// A consistent snapshot of the metadata as this node has applied it.
    pub fn metadata(&self) -> Arc<MetadataState> {
        self.metadata.state()
    }

    /// The controller id given to clients: this broker, as in Kafka's KRaft mode. Any broker
    /// takes admin requests and forwards their metadata changes to the Raft leader, so a
    /// client never waits on a dead leader it was told about.
    pub fn controller_id(&self) -> i32 {
        self.node_id
    }

    /// The Raft leader, if this node knows one.
    pub fn raft_leader(&self) -> Option<i32> {
        self.metadata.leader().map(|l| l as i32)
    }

    /// Raft membership and this node's log position.
    pub fn raft_status(&self) -> chronik_cluster::RaftStatus {
        self.metadata.status()
    }

    /// Ok while a metadata leader with a quorum is reachable; else why not.
    pub fn check_leader_contact(&self) -> Result<(), String> {
        self.metadata.check_leader_contact()
    }

    /// A Raft membership change, carried out by the leader.
    pub async fn change_membership(
        &self,
        op: &chronik_cluster::membership::MembershipOp,
    ) -> Result<(), String> {
        self.metadata.change_membership(op).await
    }

    /// Waits (bounded by the metadata timeout) until this node sees a membership where `done`
    /// holds; a committed change reaches every member shortly after the leader.
    pub async fn wait_membership(&self, done: impl Fn(&chronik_cluster::RaftStatus) -> bool) {
        self.metadata
            .wait_membership(done, self.config.metadata_timeout)
            .await;
    }

    /// Commits a metadata command (from any node) and waits, bounded, until this node applied
    /// a state where `done` holds.
    pub async fn propose(
        &self,
        cmd: MetadataCommand,
        done: impl Fn(&MetadataState) -> bool,
    ) -> Result<Arc<MetadataState>, TopicError> {
        self.apply(cmd).await?;
        Ok(self.applied_locally(done).await)
    }

    /// The effective config of `topic`.
    pub fn topic_config(&self, topic: &TopicInfo) -> TopicConfig {
        TopicConfig::resolve(&self.config.topic_defaults, &topic.configs)
    }

    /// The partition if this node leads it (by the metadata it has applied) and has it open:
    /// the one to produce to and fetch from.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let i = usize::try_from(partition).ok()?;
        let leads = self
            .metadata()
            .topic(topic)
            .and_then(|t| t.partitions.get(i))
            .is_some_and(|p| p.leader == self.node_id);
        if !leads {
            return None;
        }
        let part = self
            .partitions
            .get(topic)?
            .parts
            .get(i)
            .cloned()
            .flatten()?;
        // The replica takes the role only after it rebuilt its producer state.
        part.replica.is_leader().then_some(part)
    }

    /// Whether this node coordinates `group`: it leads the group's offsets partition.
    pub fn is_coordinator(&self, group: &str) -> bool {
        self.offsets.get().is_some_and(|o| {
            self.partition(OFFSETS_TOPIC, o.partition_of(group))
                .is_some()
        })
    }

    /// Every partition this node hosts.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .iter()
            .flat_map(|e| {
                e.value()
                    .parts
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Commits a metadata command through the Raft leader, wherever it is.
    async fn apply(&self, cmd: MetadataCommand) -> Result<Outcome, TopicError> {
        self.metadata.propose(cmd).await.map_err(|e| match e {
            ProposeError::Refused(r) => TopicError::from(r),
            ProposeError::Unavailable(msg) => TopicError::new(ResponseError::RequestTimedOut, msg),
        })
    }

    /// Waits (bounded by the metadata timeout) until this node has applied a change the
    /// leader committed, so the local partitions can follow it before the client hears back.
    async fn applied_locally(&self, done: impl Fn(&MetadataState) -> bool) -> Arc<MetadataState> {
        let mut rx = self.metadata.subscribe();
        let waited = tokio::time::timeout(self.config.metadata_timeout, async {
            rx.wait_for(|s| done(s)).await.map(|s| s.clone())
        })
        .await;
        match waited {
            Ok(Ok(s)) => s,
            _ => self.metadata(),
        }
    }

    /// The next producer id, reserving a new block through metadata when one runs out.
    pub async fn next_producer_id(&self) -> Result<i64, TopicError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let (first, count) = self
                .apply(MetadataCommand::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                })
                .await?
                .into_producer_ids()?;
            *ids = (first, first + count);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Applies retention to every partition; called periodically.
    pub fn enforce_retention(&self) {
        let now_ms = now_ms();
        for p in self.all_partitions() {
            match p.log.enforce_retention(now_ms) {
                Ok(outcome) => {
                    tracing::debug!(topic = %p.topic, partition = p.index, ?outcome, "retention")
                }
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }

    /// Kafka's offsets retention: forgets the offsets of groups without members whose every
    /// commit is older than `offsets.retention.minutes`.
    pub async fn expire_offsets(self: &Arc<Self>) {
        let retention_ms = self.config.offsets_retention_minutes.saturating_mul(60_000) as i64;
        for group in self.offsets().expired_groups(now_ms(), retention_ms) {
            if self.groups().has_members(&group) {
                continue;
            }
            match self.offsets().delete_group(self, &group).await {
                Ok(()) => tracing::info!(group = %group, "expired the offsets of an idle group"),
                Err(e) => tracing::warn!(group = %group, error = %e, "offsets expiry failed"),
            }
        }
    }

    /// Flushes and closes every partition; the last step of a graceful shutdown.
    pub async fn close(&self) {
        self.replicas.shutdown();
        for p in self.all_partitions() {
            if let Err(e) = p.log.close().await {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "close failed");
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
