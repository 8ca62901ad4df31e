//! The broker's shared state: identity, metadata, and the partitions this node serves.
//!
//! Topic administration (create, delete, grow) goes through the metadata state machine
//! first and then opens or removes WAL partitions; one async lock serializes these so the
//! WAL directories always follow the metadata.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chronik_groups::{GroupConfig, GroupManager, OFFSETS_TOPIC};
use chronik_metadata::{
    BrokerInfo, LocalStore, MetadataCommand, MetadataError, MetadataState, Outcome, Refusal,
    TopicInfo,
};
use chronik_wal::{PartitionLog, WalError};
use dashmap::DashMap;
use kafka_protocol::ResponseError;
use thiserror::Error;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::offsets::Offsets;
use crate::partition::Partition;
use crate::shutdown::Shutdown;
use crate::topic_config::{self, TopicConfig};

/// How many producer ids one metadata command reserves for this broker.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Why the broker could not start. Printed once; the process exits non-zero.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
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
    fn new(code: ResponseError, message: impl Into<String>) -> Self {
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
            },
            MetadataError::Io { .. } | MetadataError::Corrupt { .. } => {
                ResponseError::KafkaStorageError
            }
        };
        TopicError::new(code, e.to_string())
    }
}

pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
    metadata: Arc<LocalStore>,
    wal_root: PathBuf,
    /// topic -> its partitions on this node, index = partition id.
    partitions: DashMap<String, Vec<Arc<Partition>>>,
    /// Serializes topic create/delete/grow so WAL directories follow metadata.
    topic_admin: tokio::sync::Mutex<()>,
    /// `[next, end)` of the producer-id block this broker owns.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Committed offsets; set once at start, after the offsets topic is open.
    offsets: OnceLock<Offsets>,
    /// An exclusive lock on the data directory, held for the broker's life: two processes
    /// writing one WAL would corrupt it. The OS releases it when the process dies.
    _data_dir_lock: std::fs::File,
    /// Group membership. Held only for short, non-blocking state changes.
    groups: std::sync::Mutex<GroupManager>,
    pub shutdown: Shutdown,
}

impl Broker {
    /// Opens metadata and every partition (recovering each WAL), registers this broker.
    pub async fn start(
        config: BrokerConfig,
        bound: SocketAddr,
        shutdown: Shutdown,
    ) -> Result<Arc<Broker>, StartError> {
        let meta_dir = config.data_dir.join("metadata");
        let wal_root = config.data_dir.join("wal");
        std::fs::create_dir_all(&wal_root).map_err(|source| StartError::DataDir {
            path: wal_root.display().to_string(),
            source,
        })?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let node_id = config.node_id;
        let (store, identity) = {
            let dir = meta_dir.clone();
            tokio::task::spawn_blocking(move || LocalStore::open(&dir, node_id))
                .await
                .expect("metadata open task panicked")?
        };
        let (host, port) = config.advertised(bound);
        let broker = Arc::new(Broker {
            node_id,
            cluster_id: identity.cluster_id.clone(),
            advertised_host: host.clone(),
            advertised_port: port,
            metadata: Arc::new(store),
            wal_root,
            partitions: DashMap::new(),
            topic_admin: tokio::sync::Mutex::new(()),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            offsets: OnceLock::new(),
            _data_dir_lock: data_dir_lock,
            groups: std::sync::Mutex::new(GroupManager::new(GroupConfig {
                initial_rebalance_delay: std::time::Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                ..GroupConfig::default()
            })),
            shutdown,
            config,
        });
        let me = BrokerInfo {
            node_id,
            host,
            port,
            rack: None,
        };
        if broker.metadata().brokers.get(&node_id) != Some(&me) {
            broker
                .apply(MetadataCommand::RegisterBroker(me))
                .await
                .map_err(|e| {
                    StartError::Metadata(MetadataError::Corrupt {
                        path: meta_dir.display().to_string(),
                        reason: e.message,
                    })
                })?;
        }
        broker.remove_orphan_dirs();
        let state = broker.metadata();
        for topic in state.topics.values() {
            broker
                .open_partitions(topic, 0)
                .await
                .map_err(|(partition, source)| StartError::Wal {
                    topic: topic.name.clone(),
                    partition,
                    source,
                })?;
        }
        broker.open_offsets().await?;
        broker.start_group_timer();
        Ok(broker)
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
                    _ = shutdown.wait() => return,
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
    async fn open_offsets(self: &Arc<Self>) -> Result<(), StartError> {
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
            None => {
                // Offsets must outlive any time or size retention (compaction is still to come).
                let configs = BTreeMap::from([
                    ("retention.ms".to_string(), "-1".to_string()),
                    ("retention.bytes".to_string(), "-1".to_string()),
                    ("segment.bytes".to_string(), (100 << 20).to_string()),
                ]);
                self.create_topic_checked(OFFSETS_TOPIC, want, 1, configs, true, false)
                    .await
                    .map_err(|e| StartError::Offsets(e.message))?;
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

    /// Committed offsets (set during start).
    pub fn offsets(&self) -> &Offsets {
        self.offsets
            .get()
            .expect("offsets are opened before the broker serves requests")
    }

    /// A consistent snapshot of the metadata.
    pub fn metadata(&self) -> Arc<MetadataState> {
        self.metadata.snapshot()
    }

    /// The effective config of `topic`.
    pub fn topic_config(&self, topic: &TopicInfo) -> TopicConfig {
        TopicConfig::resolve(&self.config.topic_defaults, &topic.configs)
    }

    /// The partition if this node serves it.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let parts = self.partitions.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| parts.get(i).cloned())
    }

    /// Every partition this node serves.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .iter()
            .flat_map(|e| e.value().clone())
            .collect()
    }

    async fn apply(&self, cmd: MetadataCommand) -> Result<Outcome, TopicError> {
        let store = self.metadata.clone();
        tokio::task::spawn_blocking(move || store.apply(&cmd))
            .await
            .map_err(|e| TopicError::new(ResponseError::UnknownServerError, e.to_string()))?
            .map_err(TopicError::from)
    }

    /// Creates a topic and opens its partitions. `num_partitions`/`replication_factor` of
    /// -1 mean the broker default.
    pub async fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
        chronik_metadata::topic_name::validate(name)
            .map_err(|r| TopicError::new(ResponseError::InvalidTopicException, r))?;
        if name == OFFSETS_TOPIC {
            return Err(TopicError::new(
                ResponseError::TopicAlreadyExists,
                format!("{OFFSETS_TOPIC} is internal and created by the broker"),
            ));
        }
        topic_config::validate_overrides(&configs)
            .map_err(|e| TopicError::new(ResponseError::InvalidConfig, e.to_string()))?;
        self.create_topic_checked(
            name,
            num_partitions,
            replication_factor,
            configs,
            false,
            validate_only,
        )
        .await
    }

    /// Creates a topic whose name and configs were already checked.
    async fn create_topic_checked(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        internal: bool,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
        let partitions = if num_partitions == -1 {
            self.config.num_partitions
        } else {
            num_partitions
        };
        let rf = if replication_factor == -1 {
            1
        } else {
            replication_factor
        };
        if rf < 1 {
            return Err(TopicError::new(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {rf} must be at least 1"),
            ));
        }
        let cmd = MetadataCommand::CreateTopic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor: rf,
            configs,
            internal,
        };
        let _admin = self.topic_admin.lock().await;
        if validate_only {
            let mut scratch = (*self.metadata()).clone();
            return match scratch.apply(&cmd)? {
                Outcome::Topic(t) => Ok(t),
                _ => unreachable!("CreateTopic yields a topic"),
            };
        }
        let topic = match self.apply(cmd).await? {
            Outcome::Topic(t) => t,
            _ => unreachable!("CreateTopic yields a topic"),
        };
        self.open_partitions(&topic, 0).await.map_err(|(p, e)| {
            TopicError::new(
                ResponseError::KafkaStorageError,
                format!("partition {p}: {e}"),
            )
        })?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Returns the topic, creating it with broker defaults if it is missing and
    /// auto-creation is on. `Ok(None)`: missing and not created.
    pub async fn get_or_auto_create(
        &self,
        name: &str,
        allow: bool,
    ) -> Result<Option<TopicInfo>, TopicError> {
        if let Some(t) = self.metadata().topic(name) {
            return Ok(Some(t.clone()));
        }
        if !(allow && self.config.auto_create_topics) {
            return Ok(None);
        }
        match self
            .create_topic(name, -1, -1, BTreeMap::new(), false)
            .await
        {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {
                Ok(self.metadata().topic(name).cloned())
            }
            Err(e) => Err(e),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        if name == OFFSETS_TOPIC {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("{OFFSETS_TOPIC} is internal and cannot be deleted"),
            ));
        }
        let _admin = self.topic_admin.lock().await;
        self.apply(MetadataCommand::DeleteTopic {
            name: name.to_string(),
        })
        .await?;
        if let Some((_, parts)) = self.partitions.remove(name) {
            for p in parts {
                if let Err(e) = p.log.delete().await {
                    tracing::error!(topic = name, partition = p.index, error = %e, "failed to delete partition data");
                }
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let cmd = MetadataCommand::CreatePartitions {
            name: name.to_string(),
            total,
        };
        let _admin = self.topic_admin.lock().await;
        if validate_only {
            (*self.metadata()).clone().apply(&cmd)?;
            return Ok(());
        }
        let before = self
            .metadata()
            .topic(name)
            .map(|t| t.partitions.len())
            .unwrap_or(0);
        let topic = match self.apply(cmd).await? {
            Outcome::Topic(t) => t,
            _ => unreachable!("CreatePartitions yields a topic"),
        };
        self.open_partitions(&topic, before)
            .await
            .map_err(|(p, e)| {
                TopicError::new(
                    ResponseError::KafkaStorageError,
                    format!("partition {p}: {e}"),
                )
            })?;
        tracing::info!(topic = name, from = before, to = total, "added partitions");
        Ok(())
    }

    /// Opens partitions `from..` of `topic` that this node hosts and publishes them.
    async fn open_partitions(&self, topic: &TopicInfo, from: usize) -> Result<(), (i32, WalError)> {
        let config = self.topic_config(topic).log_config(self.config.fsync);
        let mut opened = Vec::new();
        for (i, info) in topic.partitions.iter().enumerate().skip(from) {
            if !info.replicas.contains(&self.node_id) {
                continue;
            }
            let log = PartitionLog::open(&self.wal_root, &topic.name, i as i32, config.clone())
                .await
                .map_err(|e| (i as i32, e))?;
            if info.sealed {
                log.seal();
            }
            opened.push(Partition::open(log).await.map_err(|e| (i as i32, e))?);
        }
        let mut entry = self.partitions.entry(topic.name.clone()).or_default();
        entry.truncate(from);
        entry.extend(opened);
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
