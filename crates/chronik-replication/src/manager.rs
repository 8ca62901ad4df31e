//! The replicas of this node and the fetchers that keep its followers up to date.
//!
//! Every partition replica registered here gets a task that recomputes its high watermark
//! when its own log commits. A follower replica is fetched by the one fetcher task this node
//! runs per leader node (one gRPC stream per node pair, see `fetcher`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::replica::{BrokerId, Replica, Role};

/// Replication timing and bounds.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationConfig {
    /// How long a leader holds a fetch that has nothing new.
    pub max_wait: Duration,
    /// Upper bound on record bytes per fetch response (at least one batch is always sent).
    pub max_bytes: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_max: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            max_wait: Duration::from_millis(500),
            max_bytes: 8 * 1024 * 1024,
            replica_lag_max: Duration::from_secs(10),
        }
    }
}

pub(crate) struct Fetcher {
    pub addr: String,
    pub task: JoinHandle<()>,
}

pub struct ReplicaManager {
    pub node_id: BrokerId,
    pub config: ReplicationConfig,
    pub(crate) replicas: DashMap<(String, i32), Arc<Replica>>,
    fetchers: Mutex<HashMap<BrokerId, Fetcher>>,
    /// Set to true to stop every task of this manager.
    stop: watch::Sender<bool>,
}

impl ReplicaManager {
    pub fn new(node_id: BrokerId, config: ReplicationConfig) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager {
            node_id,
            config,
            replicas: DashMap::new(),
            fetchers: Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
        })
    }

    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Registers a replica and starts following its log's commits.
    pub fn add(&self, replica: Arc<Replica>) {
        let key = (replica.topic.clone(), replica.partition);
        let weak = Arc::downgrade(&replica);
        let mut commits = replica.log.subscribe();
        let mut stop = self.stopping();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = commits.changed() => if r.is_err() { return },
                    _ = stop.changed() => return,
                }
                let Some(r) = weak.upgrade() else { return };
                r.update_high_watermark();
            }
        });
        self.replicas.insert(key, replica);
    }

    pub fn remove(&self, topic: &str, partition: i32) {
        self.replicas.remove(&(topic.to_string(), partition));
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Replica>> {
        self.replicas
            .get(&(topic.to_string(), partition))
            .map(|r| r.clone())
    }

    pub fn all(&self) -> Vec<Arc<Replica>> {
        self.replicas.iter().map(|e| e.value().clone()).collect()
    }

    /// The replicas for which `keep` holds, without copying the others: periodic work over
    /// thousands of mostly idle replicas.
    pub fn matching(&self, keep: impl Fn(&Replica) -> bool) -> Vec<Arc<Replica>> {
        self.replicas
            .iter()
            .filter(|e| keep(e.value()))
            .map(|e| e.value().clone())
            .collect()
    }

    /// The replicas this node follows from `leader`.
    pub(crate) fn following(&self, leader: BrokerId) -> Vec<(Arc<Replica>, i32)> {
        self.replicas
            .iter()
            .filter_map(|e| match e.value().role() {
                Role::Follower { leader: l, epoch } if l == leader => {
                    Some((e.value().clone(), epoch))
                }
                _ => None,
            })
            .collect()
    }

    /// Applies a role from the metadata. A follower's leader gets a fetcher (at `leader_addr`,
    /// its RPC address) if it has none yet.
    pub fn set_role(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        role: Role,
        leader_addr: Option<&str>,
    ) {
        let Some(replica) = self.get(topic, partition) else {
            return;
        };
        replica.set_role(role.clone());
        if let (Role::Follower { leader, .. }, Some(addr)) = (role, leader_addr) {
            self.ensure_fetcher(leader, addr);
        }
    }

    fn ensure_fetcher(self: &Arc<Self>, leader: BrokerId, addr: &str) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fetchers.get(&leader) {
            if f.addr == addr && !f.task.is_finished() {
                return;
            }
            f.task.abort();
        }
        let task = tokio::spawn(crate::fetcher::run(
            Arc::downgrade(self),
            leader,
            addr.to_string(),
        ));
        fetchers.insert(
            leader,
            Fetcher {
                addr: addr.to_string(),
                task,
            },
        );
    }

    /// Keeps the high-watermark checkpoint in `dir` up to date (see `checkpoint`).
    pub fn start_checkpoints(self: &Arc<Self>, dir: std::path::PathBuf) {
        crate::checkpoint::spawn(Arc::downgrade(self), dir);
    }

    /// Stops every fetcher and watcher task.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        let fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        for f in fetchers.values() {
            f.task.abort();
        }
    }
}

pub(crate) fn upgrade(m: &Weak<ReplicaManager>) -> Option<Arc<ReplicaManager>> {
    m.upgrade()
}
