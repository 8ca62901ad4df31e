//! The partition manager: this node's replicas of every partition. It follows the metadata
//! (opens, deletes and reconfigures local logs, gives each replica its role), proposes ISR
//! changes for the partitions it leads, applies retention, reopens healed partitions, and
//! publishes every leadership a replica takes or loses to its [`LeadershipListener`]s (the
//! coordinators), which it never calls otherwise.

mod heal;
mod isr;
mod roles;
mod sync;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_metadata::{BrokerInfo, BrokerState, MetadataState, TopicInfo};
use chronik_replication::{ReplicaManager, ReplicationConfig};
use chronik_wal::FsyncPolicy;
use dashmap::DashMap;
use futures::StreamExt;
use uuid::Uuid;

use crate::meta::Meta;
use crate::partition::Partition;
use crate::shutdown::Shutdown;
use crate::topic_config::{TopicConfig, TopicDefaults};

/// Partitions closed at once at shutdown. A close ends with a final sync of the partition's
/// files on the blocking pool; one after another, 10,000 partitions took 30 s to stop (issue
/// 21), while the disk serves many syncs together. Bounded so a node with many partitions does
/// not fill the blocking pool.
const PARALLEL_CLOSES: usize = 32;
/// Partitions opened at once when a topic is created or grows, and at start, for the same
/// reason: one after another, 10,000 new partitions took 34 s to create (issue 21).
const PARALLEL_OPENS: usize = 32;

/// What the partition manager needs from the broker's settings.
#[derive(Debug, Clone)]
pub struct PartitionSettings {
    pub node_id: i32,
    pub wal_root: PathBuf,
    pub fsync: FsyncPolicy,
    pub topic_defaults: TopicDefaults,
    /// Kafka's replica.lag.time.max.ms.
    pub replica_lag_time_max: Duration,
}

/// A local replica took or lost leadership of its partition (its role is already set).
pub struct Leadership {
    pub topic: String,
    pub partition: i32,
    pub part: Arc<Partition>,
    /// `true`: it leads from now on; `false`: it led and no longer does.
    pub leads: bool,
}

/// A boxed future, for the listener trait to be object safe.
pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Someone who follows leadership (a coordinator). Called in order, once per change, while
/// the manager applies the state that made it; the next state waits for it.
pub trait LeadershipListener: Send + Sync {
    fn changed<'a>(&'a self, change: &'a Leadership) -> BoxFuture<'a>;
}

/// The partitions of one topic that this node hosts. The topic id tells a topic apart from
/// one deleted and created again under the same name.
struct LocalTopic {
    id: Uuid,
    /// The topic's config overrides the local logs were last configured with.
    configs: BTreeMap<String, String>,
    /// Index = partition id; `None` where this node is not a replica.
    parts: Vec<Option<Arc<Partition>>>,
}

pub struct PartitionManager {
    settings: PartitionSettings,
    meta: Meta,
    /// topic -> its partitions on this node.
    partitions: DashMap<String, LocalTopic>,
    /// Serializes [`PartitionManager::sync`].
    sync_lock: tokio::sync::Mutex<()>,
    /// WAL replication: roles, high watermarks, fetchers.
    pub replicas: Arc<ReplicaManager>,
    /// High watermarks as checkpointed before this start, by (topic, partition).
    hw_checkpoints: HashMap<(String, i32), i64>,
    /// How this broker registered: its addresses and the incarnation it leads in. The
    /// incarnation is fresh for every process start and every heal of a poisoned partition
    /// (`heal`); this node takes no new leadership until the metadata shows it.
    registration: Mutex<BrokerInfo>,
    listeners: Mutex<Vec<Arc<dyn LeadershipListener>>>,
    shutdown: Shutdown,
    /// The previous run left the clean-shutdown marker (taken at construction, before any
    /// partition opens); cleared when the first sync is done.
    clean_start: AtomicBool,
}

impl PartitionManager {
    /// An empty manager; [`sync`](Self::sync) opens the partitions the metadata gives it.
    pub fn new(settings: PartitionSettings, meta: Meta, shutdown: Shutdown) -> Arc<Self> {
        let replicas = ReplicaManager::new(
            settings.node_id,
            ReplicationConfig {
                replica_lag_max: settings.replica_lag_time_max,
                ..ReplicationConfig::default()
            },
        );
        let clean_start = chronik_wal::take_clean_shutdown(&settings.wal_root).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read or remove the clean-shutdown marker; recovering every log");
            false
        });
        Arc::new(PartitionManager {
            clean_start: AtomicBool::new(clean_start),
            hw_checkpoints: chronik_replication::checkpoint::load(&settings.wal_root),
            registration: Mutex::new(BrokerInfo {
                node_id: settings.node_id,
                host: String::new(),
                port: 0,
                listeners: Vec::new(),
                rack: None,
                rpc_addr: String::new(),
                state: BrokerState::Alive,
                incarnation: 0,
            }),
            settings,
            meta,
            partitions: DashMap::new(),
            sync_lock: tokio::sync::Mutex::new(()),
            replicas,
            listeners: Mutex::new(Vec::new()),
            shutdown,
        })
    }

    /// Adds a listener for leadership changes applied from now on.
    pub fn subscribe(&self, listener: Arc<dyn LeadershipListener>) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }

    pub fn node_id(&self) -> i32 {
        self.settings.node_id
    }

    /// The directory holding every partition's log (and the node's checkpoints).
    pub fn wal_root(&self) -> &std::path::Path {
        &self.settings.wal_root
    }

    /// The metadata as this node has applied it.
    pub fn metadata(&self) -> Arc<MetadataState> {
        self.meta.state()
    }

    /// The effective config of `topic`.
    pub fn topic_config(&self, topic: &TopicInfo) -> TopicConfig {
        TopicConfig::resolve(&self.settings.topic_defaults, &topic.configs)
    }

    /// The partition if this node leads it (by the metadata it has applied) and has it open:
    /// the one to produce to and fetch from.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let i = usize::try_from(partition).ok()?;
        let leads = self
            .metadata()
            .topic(topic)
            .and_then(|t| t.partitions.get(i))
            .is_some_and(|p| p.leader == self.settings.node_id);
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

    /// The tasks that run until shutdown: metadata following, ISR changes, HW checkpoints
    /// and the heal watch.
    pub fn start_background_work(self: &Arc<Self>) {
        self.start_metadata_follower();
        self.start_isr_updates();
        self.replicas
            .start_checkpoints(self.settings.wal_root.clone());
        self.start_heal_watch();
    }

    /// Applies retention to every partition; called periodically.
    pub fn enforce_retention(&self) {
        let now_ms = crate::clock::now_ms();
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

    /// Flushes and closes every partition; the last step of a graceful shutdown. When every
    /// close succeeded and `may_mark` (nothing else writes to the logs any more), one
    /// filesystem sync makes them durable and the clean-shutdown marker lets the next start
    /// trust them as they are (`chronik_wal::mark_clean_shutdown`).
    pub async fn close(&self, may_mark: bool) {
        self.replicas.shutdown();
        let started = std::time::Instant::now();
        let failed = AtomicUsize::new(0);
        let parts = self.all_partitions();
        futures::stream::iter(&parts)
            .for_each_concurrent(PARALLEL_CLOSES, |p| {
                let failed = &failed;
                async move {
                    if let Err(e) = p.log.close_deferred_sync().await {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "close failed");
                    }
                }
            })
            .await;
        let failed = failed.into_inner();
        if failed > 0 || !may_mark {
            tracing::warn!(
                failed,
                "not every log closed cleanly: the next start recovers them all"
            );
            return;
        }
        let root = self.settings.wal_root.clone();
        match tokio::task::spawn_blocking(move || chronik_wal::mark_clean_shutdown(&root)).await {
            Ok(Ok(())) => tracing::info!(
                partitions = parts.len(),
                ms = started.elapsed().as_millis() as u64,
                "logs closed cleanly"
            ),
            Ok(Err(e)) => tracing::error!(error = %e,
                "cannot sync the logs or write the clean-shutdown marker; the next start recovers them all"),
            Err(e) => tracing::error!(error = %e, "clean-shutdown task failed"),
        }
    }

    /// Whether partitions opened now may trust their files as a clean shutdown left them: only
    /// those the first [`sync`](Self::sync) after start opens.
    fn opens_after_clean_shutdown(&self) -> bool {
        self.clean_start.load(Ordering::Acquire)
    }
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
