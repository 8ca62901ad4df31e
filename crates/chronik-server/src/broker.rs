//! The broker's shared state: identity, metadata, and the partitions this node serves.
//!
//! Topic administration (create, delete, grow) goes through the metadata state machine
//! first and then opens or removes WAL partitions; one async lock serializes these so the
//! WAL directories always follow the metadata.

mod heal;
mod topics;

pub use topics::Layout;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chronik_admin::pb::admin_server::AdminServer;
use chronik_cluster::{
    ClusterError, LivenessConfig, MetadataNode, NodeConfig, PeerList, ProposeError,
};
use chronik_groups::{GroupConfig, GroupManager, OFFSETS_TOPIC};
use chronik_metadata::{
    BrokerInfo, BrokerState, MetadataCommand, MetadataError, MetadataState, Outcome, Refusal,
    TopicInfo,
};
use chronik_replication::pb::replication_server::ReplicationServer;
use chronik_replication::{ReplicaManager, ReplicationConfig, ReplicationService, Role};
use chronik_wal::{PartitionLog, WalError};
use dashmap::DashMap;
use kafka_protocol::ResponseError;
use thiserror::Error;
use uuid::Uuid;

use crate::admin::{AdminService, BrokerSlot};
use crate::config::BrokerConfig;
use crate::offsets::Offsets;
use crate::partition::Partition;
use crate::shutdown::Shutdown;
use crate::startup::StartupPhase;
use crate::topic_config::TopicConfig;
use tracing::Instrument;

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
    /// Joins (or, standalone, forms) the metadata cluster, registers this broker, opens the
    /// partitions it hosts (recovering each WAL) and the committed offsets.
    pub async fn start(
        config: BrokerConfig,
        bound: SocketAddr,
        rpc_listener: Option<tokio::net::TcpListener>,
        shutdown: Shutdown,
        phase: StartupPhase,
    ) -> Result<Arc<Broker>, StartError> {
        let meta_dir = config.data_dir.join("metadata");
        let wal_root = config.data_dir.join("wal");
        std::fs::create_dir_all(&wal_root).map_err(|source| StartError::DataDir {
            path: wal_root.display().to_string(),
            source,
        })?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let old = meta_dir.join("state.json");
        if old.exists() {
            return Err(StartError::OldMetadata {
                path: old.display().to_string(),
            });
        }
        let node_id = config.node_id;
        let peers = match &config.cluster {
            Some(c) => c.peers.clone(),
            // A one-node cluster nobody dials: the address is a name, never connected to.
            None => PeerList(BTreeMap::from([(node_id as u64, "standalone".to_string())])),
        };
        let replicas = ReplicaManager::new(
            node_id,
            ReplicationConfig {
                replica_lag_max: config.replica_lag_time_max,
                ..ReplicationConfig::default()
            },
        );
        let slot: BrokerSlot = Arc::new(OnceLock::new());
        let routes =
            tonic::service::Routes::new(ReplicationServer::new(Arc::new(ReplicationService {
                manager: replicas.clone(),
            })))
            .add_service(AdminServer::new(AdminService {
                broker: slot.clone(),
            }));
        phase.set(StartupPhase::METADATA);
        let node = MetadataNode::start(NodeConfig {
            node_id: node_id as u64,
            peers: peers.clone(),
            dir: meta_dir,
            rpc_listener,
            propose_timeout: config.metadata_timeout,
            heartbeat: std::time::Duration::from_millis(100),
            snapshot_after_logs: 1000,
            extra_routes: Some(routes),
            join: config.cluster.as_ref().and_then(|c| c.join.clone()),
        })
        .await?;
        phase.set(StartupPhase::METADATA_CATCH_UP);
        let state = loop {
            tokio::select! {
                _ = shutdown.wait() => {
                    node.shutdown().await;
                    return Err(StartError::Interrupted);
                }
                r = node.wait_ready(std::time::Duration::from_secs(5)) => match r {
                    Ok(s) => break s,
                    Err(e) => tracing::warn!(node = node_id, error = %e, "waiting for the metadata cluster"),
                }
            }
        };
        let (host, port) = config.advertised(bound);
        let hw_checkpoints = chronik_replication::checkpoint::load(&wal_root);
        let broker = Arc::new(Broker {
            node_id,
            cluster_id: state.cluster_id.clone(),
            advertised_host: host.clone(),
            advertised_port: port,
            metadata: node,
            wal_root,
            partitions: DashMap::new(),
            topic_admin: tokio::sync::Mutex::new(()),
            partition_sync: tokio::sync::Mutex::new(()),
            replicas,
            hw_checkpoints,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            offsets: OnceLock::new(),
            _data_dir_lock: data_dir_lock,
            groups: std::sync::Mutex::new(GroupManager::new(GroupConfig {
                initial_rebalance_delay: std::time::Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                ..GroupConfig::default()
            })),
            registration: std::sync::Mutex::new(BrokerInfo {
                node_id,
                host: String::new(),
                port: 0,
                rack: None,
                rpc_addr: String::new(),
                state: BrokerState::Alive,
                incarnation: 0,
            }),
            shutdown,
            config,
        });
        let _ = slot.set(Arc::downgrade(&broker));
        let me = BrokerInfo {
            node_id,
            host,
            port,
            rack: broker.config.rack.clone(),
            rpc_addr: match &broker.config.cluster {
                Some(c) => c
                    .peers
                    .0
                    .get(&(node_id as u64))
                    .cloned()
                    .unwrap_or_default(),
                None => String::new(),
            },
            state: BrokerState::Alive,
            incarnation: 0,
        };
        // Every start registers a new incarnation: the partitions this broker led get a new
        // leader epoch before it leads them again (see `MetadataCommand::RegisterBroker`).
        *broker.registration() = me;
        broker
            .register_new_incarnation()
            .await
            .map_err(|e| StartError::Register(e.message))?;
        broker.remove_orphan_dirs();
        let state = broker.metadata();
        phase.set(StartupPhase::WAL_RECOVERY);
        broker
            .sync_partitions(&state)
            .await
            .map_err(|(topic, partition, source)| StartError::Wal {
                topic,
                partition,
                source,
            })?;
        phase.set(StartupPhase::OFFSETS);
        broker.open_offsets(peers.0.len()).await?;
        broker.start_group_timer();
        broker.start_metadata_follower();
        broker.start_isr_updates();
        broker.replicas.start_checkpoints(broker.wal_root.clone());
        broker.start_heal_watch();
        let session = broker.config.broker_session_timeout;
        broker.metadata.start_liveness(LivenessConfig {
            heartbeat_interval: (session / 4).min(std::time::Duration::from_millis(500)),
            session_timeout: session,
            auto_leader_rebalance: broker.config.auto_leader_rebalance,
        });
        Ok(broker)
    }

    /// Opens and closes local partitions as the metadata changes, whoever changed it.
    fn start_metadata_follower(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let mut changes = self.metadata.subscribe();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
                let Some(broker) = me.upgrade() else { return };
                let state = changes.borrow_and_update().clone();
                if let Err((topic, partition, e)) = broker.sync_partitions(&state).await {
                    tracing::error!(topic = %topic, partition, error = %e, "cannot open partition");
                }
            }
        });
    }

    /// Makes the local partitions match `state`: opens the partitions of topics this node is a
    /// replica of, and deletes the data of topics the metadata no longer has (or has again
    /// under a new id).
    async fn sync_partitions(&self, state: &MetadataState) -> Result<(), (String, i32, WalError)> {
        let _sync = self.partition_sync.lock().await;
        let gone: Vec<String> = self
            .partitions
            .iter()
            .filter(|e| state.topic(e.key()).is_none_or(|t| t.id != e.value().id))
            .map(|e| e.key().clone())
            .collect();
        for name in gone {
            if let Some((_, local)) = self.partitions.remove(&name) {
                for p in local.parts.into_iter().flatten() {
                    self.replicas.remove(&p.topic, p.index);
                    if let Err(e) = p.log.delete().await {
                        tracing::error!(topic = %name, partition = p.index, error = %e, "failed to delete partition data");
                    }
                }
                tracing::info!(topic = %name, "removed local data of a deleted topic");
            }
        }
        for topic in state.topics.values() {
            let have = self
                .partitions
                .get(&topic.name)
                .map_or(0, |t| t.parts.len());
            if have < topic.partitions.len() {
                self.open_partitions(topic, have)
                    .await
                    .map_err(|(p, e)| (topic.name.clone(), p, e))?;
            }
        }
        self.sync_replica_sets(state).await?;
        self.sync_topic_configs(state);
        self.apply_roles(state).await;
        Ok(())
    }

    /// Gives every local replica its role from `state`. A replica that becomes leader first
    /// rebuilds its producer state (and, for an offsets partition, its committed offsets and
    /// groups) from its log, which the previous leader filled.
    async fn apply_roles(&self, state: &MetadataState) {
        // Leadership needs this process's incarnation in the state: only then are the epochs
        // of the partitions it led before a restart or heal bumped (the registration that
        // bumps them lands in a later state; this one is applied again then).
        let registered = self.registered(state);
        for topic in state.topics.values() {
            let Some(local) = self.partitions.get(&topic.name).map(|t| t.parts.clone()) else {
                continue;
            };
            for (i, info) in topic.partitions.iter().enumerate() {
                let Some(Some(part)) = local.get(i) else {
                    continue;
                };
                if info.leader == self.node_id && !registered && !part.replica.is_leader() {
                    continue;
                }
                let role = if info.leader == self.node_id {
                    Role::Leader {
                        epoch: info.leader_epoch,
                        isr: info.isr.clone(),
                    }
                } else {
                    Role::Follower {
                        leader: info.leader,
                        epoch: info.leader_epoch,
                    }
                };
                let was_leader = part.replica.is_leader();
                let span = tracing::info_span!("partition", topic = %topic.name, partition = i);
                if matches!(role, Role::Leader { .. }) && !was_leader {
                    // Stop taking fetched batches first, so the scan below sees the final log.
                    part.replica.set_role(Role::Unknown);
                    let rebuilt = part.rebuild_producers().instrument(span.clone()).await;
                    if let Err(e) = rebuilt {
                        span.in_scope(|| {
                            tracing::error!(error = %e,
                                "cannot rebuild producer state; not taking leadership")
                        });
                        continue;
                    }
                }
                let addr = state
                    .brokers
                    .get(&info.leader)
                    .map(|b| b.rpc_addr.clone())
                    .filter(|a| !a.is_empty());
                // Only a leader refuses produce; followers keep replicating what it has.
                if info.sealed && info.leader == self.node_id {
                    part.log.seal();
                } else {
                    part.log.resume();
                }
                span.in_scope(|| {
                    self.replicas
                        .set_role(&topic.name, i as i32, role.clone(), addr.as_deref())
                });
                if topic.name == OFFSETS_TOPIC && matches!(role, Role::Leader { .. }) && !was_leader
                {
                    self.load_offsets_partition(part, i)
                        .instrument(span.clone())
                        .await;
                }
                let _span = span.entered();
                if topic.name == OFFSETS_TOPIC && !matches!(role, Role::Leader { .. }) && was_leader
                {
                    // No longer the coordinator of this partition's groups: their parked joins
                    // go look for the new one.
                    if let Some(offsets) = self.offsets.get() {
                        self.groups()
                            .release_waiters(|g| offsets.partition_of(g) == i as i32);
                    }
                }
            }
        }
    }

    /// After this node took over offsets partition `p`: replay it and restore its groups.
    async fn load_offsets_partition(&self, part: &Partition, p: usize) {
        let Some(offsets) = self.offsets.get() else {
            return; // start: Offsets::rebuild replays every led partition itself
        };
        match offsets.reload_partition(&part.log, p).await {
            Ok(records) => {
                let now = std::time::Instant::now();
                let mut groups = self.groups();
                for (group, record) in &records {
                    groups.restore(group, record, now);
                }
                tracing::info!(
                    partition = p,
                    groups = records.len(),
                    "took over an offsets partition: committed offsets and groups reloaded"
                );
            }
            Err(e) => {
                tracing::error!(partition = p, error = %e, "cannot reload an offsets partition")
            }
        }
    }

    /// Runs `work` on this broker every `period` until shutdown or until the broker is gone.
    /// Ticks missed while `work` runs are not made up: the next one waits a whole period.
    fn every<F, Fut>(self: &Arc<Self>, period: std::time::Duration, work: F)
    where
        F: Fn(Arc<Broker>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let me = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tick.tick() => {}
                }
                let Some(broker) = me.upgrade() else { return };
                work(broker).await;
            }
        });
    }

    /// Leaders propose ISR changes (followers lagging past `replica.lag.time.max.ms` leave,
    /// caught-up replicas join) every 250 ms.
    fn start_isr_updates(self: &Arc<Self>) {
        self.every(std::time::Duration::from_millis(250), |broker| async move {
            broker.update_isrs().await
        });
    }

    async fn update_isrs(&self) {
        let state = self.metadata();
        let lag = self.config.replica_lag_time_max;
        for r in self.replicas.all() {
            let Some(info) = state
                .topic(&r.topic)
                .and_then(|t| t.partitions.get(r.partition as usize))
            else {
                continue;
            };
            let Some((epoch, isr)) = r.isr_change(&info.replicas, lag) else {
                continue;
            };
            // Joining members count towards the high watermark before the change
            // commits; leaving ones until it has.
            r.widen_isr(&isr);
            let cmd = MetadataCommand::AlterIsr {
                topic: r.topic.clone(),
                partition: r.partition,
                leader_epoch: epoch,
                isr: isr.clone(),
            };
            match self.apply(cmd).await {
                Ok(_) => tracing::info!(topic = %r.topic, partition = r.partition,
                    from = ?info.isr, to = ?isr, "ISR changed"),
                Err(e) => tracing::warn!(topic = %r.topic, partition = r.partition,
                    error = %e.message, "ISR change refused"),
            }
        }
    }

    /// Drives group timers (session expiry, rebalance deadlines) every 100 ms until shutdown,
    /// and records membership changes in the offsets log.
    fn start_group_timer(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = shutdown.wait() => {
                        // Timers stop here, so parked joins would hold the shutdown's drain
                        // until its deadline: answer them now.
                        if let Some(broker) = me.upgrade() {
                            let n = broker.groups().release_waiters(|_| true);
                            tracing::debug!(released = n, "shutdown: answered parked group requests");
                        }
                        return;
                    }
                    _ = tick.tick() => {}
                }
                let Some(broker) = me.upgrade() else { return };
                let dirty = {
                    let mut groups = broker.groups();
                    groups.tick(std::time::Instant::now());
                    groups.take_dirty()
                };
                // Recorded one after another, in the order the changes happened, so the last
                // record of a group in the log is its latest membership. Timers wait meanwhile.
                for (group, record) in dirty {
                    if let Err(e) = broker.offsets().write_group(&broker, &group, record).await {
                        tracing::warn!(group = %group, error = %e, "could not record group membership");
                    }
                }
            }
        });
    }

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

    /// Opens partitions `from..` of `topic` that this node hosts and publishes them. Called
    /// with `partition_sync` held.
    async fn open_partitions(&self, topic: &TopicInfo, from: usize) -> Result<(), (i32, WalError)> {
        let mut opened = Vec::new();
        for (i, info) in topic.partitions.iter().enumerate().skip(from) {
            if !info.replicas.contains(&self.node_id) {
                opened.push(None);
                continue;
            }
            let part = self
                .open_partition(topic, i as i32, info)
                .await
                .map_err(|e| (i as i32, e))?;
            opened.push(Some(part));
        }
        let mut entry = self
            .partitions
            .entry(topic.name.clone())
            .or_insert_with(|| LocalTopic {
                id: topic.id,
                configs: topic.configs.clone(),
                parts: Vec::new(),
            });
        entry.parts.truncate(from);
        entry.parts.extend(opened);
        Ok(())
    }

    /// Opens this node's replica of one partition and registers it for replication.
    #[tracing::instrument(name = "partition", skip_all, fields(topic = %topic.name, partition = index))]
    async fn open_partition(
        &self,
        topic: &TopicInfo,
        index: i32,
        info: &chronik_metadata::PartitionInfo,
    ) -> Result<Arc<Partition>, WalError> {
        let config = self.topic_config(topic).log_config(self.config.fsync);
        let log = PartitionLog::open(&self.wal_root, &topic.name, index, config).await?;
        if info.sealed {
            log.seal();
        }
        let hw = self
            .hw_checkpoints
            .get(&(topic.name.clone(), index))
            .copied();
        let part = Partition::open(log, self.node_id, hw).await?;
        self.replicas.add(part.replica.clone());
        Ok(part)
    }

    /// Gives the local logs of every topic whose overrides changed (AlterConfigs) their new
    /// log config: segment size and age, retention, index interval.
    fn sync_topic_configs(&self, state: &MetadataState) {
        for topic in state.topics.values() {
            let Some(mut local) = self.partitions.get_mut(&topic.name) else {
                continue;
            };
            if local.configs == topic.configs {
                continue;
            }
            let config = self.topic_config(topic).log_config(self.config.fsync);
            for part in local.parts.iter().flatten() {
                part.log.set_config(config.clone());
            }
            local.configs = topic.configs.clone();
            tracing::info!(topic = %topic.name, configs = ?topic.configs, "topic configs changed");
        }
    }

    /// Follows changes of replica sets (reassignments): opens the replicas this node was
    /// given, which then fetch from their leader from offset 0, and deletes the data of those
    /// it no longer holds.
    async fn sync_replica_sets(
        &self,
        state: &MetadataState,
    ) -> Result<(), (String, i32, WalError)> {
        for topic in state.topics.values() {
            let Some(local) = self.partitions.get(&topic.name).map(|t| t.parts.clone()) else {
                continue;
            };
            for (i, info) in topic.partitions.iter().enumerate() {
                let wanted = info.replicas.contains(&self.node_id);
                let slot = match local.get(i) {
                    Some(None) if wanted => {
                        let part = self
                            .open_partition(topic, i as i32, info)
                            .await
                            .map_err(|e| (topic.name.clone(), i as i32, e))?;
                        tracing::info!(topic = %topic.name, partition = i, node = self.node_id,
                            "this node is a new replica; catching up from the leader");
                        Some(part)
                    }
                    Some(Some(part)) if !wanted => {
                        self.replicas.remove(&topic.name, i as i32);
                        if let Err(e) = part.log.delete().await {
                            tracing::error!(topic = %topic.name, partition = i, error = %e,
                                "failed to delete the data of a replica moved away");
                        } else {
                            tracing::info!(topic = %topic.name, partition = i, node = self.node_id,
                                "replica moved away; its local data is deleted");
                        }
                        None
                    }
                    _ => continue,
                };
                if let Some(mut entry) = self.partitions.get_mut(&topic.name) {
                    if let Some(s) = entry.parts.get_mut(i) {
                        *s = slot;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes WAL directories of topics the metadata no longer has (a delete that was
    /// interrupted by a crash after the metadata change).
    fn remove_orphan_dirs(&self) {
        let state = self.metadata();
        let Ok(entries) = std::fs::read_dir(&self.wal_root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            // Only whole topics: partition directories of a live topic are left alone, since
            // right after a restart the applied metadata may trail what this node applied
            // before it stopped, and deleting a replica on stale metadata could delete the only
            // copy. Replicas moved away at runtime are deleted by `sync_replica_sets`.
            if entry.path().is_dir() && !state.topics.contains_key(&name) {
                tracing::warn!(topic = %name, "removing data of a deleted topic");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::error!(topic = %name, error = %e, "cannot remove data of a deleted topic");
                }
            }
        }
    }

    /// The next producer id, reserving a new block through metadata when one runs out.
    pub async fn next_producer_id(&self) -> Result<i64, TopicError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            match self
                .apply(MetadataCommand::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                })
                .await?
            {
                Outcome::ProducerIds { first, count } => *ids = (first, first + count),
                _ => unreachable!("AllocateProducerIds yields ids"),
            }
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

/// Takes the data directory's lock file, or fails if another process holds it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join("chronik.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked {
            path: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir {
            path: path.display().to_string(),
            source,
        }),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
