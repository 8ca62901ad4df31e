//! The replicas of this node and the fetchers that keep its followers up to date.
//!
//! Every partition replica registered here gets a task that recomputes its high watermark
//! when its own log commits. A follower replica is fetched by the one fetcher task this node
//! runs per leader node (one gRPC stream per node pair, see `fetcher`). Every replica bumps the
//! manager's one change signal ([`Changes`]) with what its followers' fetches would learn; the
//! fetches held on this node wait on that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::changes::Changes;
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
    /// Bumped by every registered replica's changes: what held fetches wait on.
    pub(crate) changes: Arc<Changes>,
}

impl ReplicaManager {
    pub fn new(node_id: BrokerId, config: ReplicationConfig) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager {
            node_id,
            config,
            replicas: DashMap::new(),
            fetchers: Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
            changes: Arc::default(),
        })
    }

    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Registers a replica and starts following its log's commits (for its high watermark)
    /// and, while it leads, its log end (for the fetches held on [`Changes`]).
    pub fn add(&self, replica: Arc<Replica>) {
        let key = (replica.topic.clone(), replica.partition);
        replica.attach_changes(self.changes.clone());
        let weak = Arc::downgrade(&replica);
        let mut commits = replica.log.subscribe();
        let mut ends = replica.log.subscribe_end();
        let mut stop = self.stopping();
        tokio::spawn(async move {
            loop {
                let appended = tokio::select! {
                    r = commits.changed() => if r.is_err() { return } else { false },
                    r = ends.changed() => if r.is_err() { return } else { true },
                    _ = stop.changed() => return,
                };
                let Some(r) = weak.upgrade() else { return };
                if !appended {
                    r.update_high_watermark();
                } else if r.is_leader() {
                    // A follower's own appends are news to no fetch served here.
                    r.changed();
                }
            }
        });
        self.replicas.insert(key, replica);
        self.changes.bump();
    }

    pub fn remove(&self, topic: &str, partition: i32) {
        if let Some((_, r)) = self.replicas.remove(&(topic.to_string(), partition)) {
            // Fetch sessions holding it serve it again, and find it gone.
            r.changed();
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Replica>> {
        self.replicas
            .get(&(topic.to_string(), partition))
            .map(|r| r.clone())
    }

    /// [`get`](Self::get) by a key the caller already holds (no copy of the topic name).
    pub(crate) fn get_key(&self, key: &(String, i32)) -> Option<Arc<Replica>> {
        self.replicas.get(key).map(|r| r.clone())
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
        let mut out = Vec::new();
        self.for_each_following(leader, |_, r, epoch| out.push((r.clone(), epoch)));
        out
    }

    /// Calls `f` with each replica this node follows from `leader`, its key and its epoch,
    /// copying nothing (a follower looks at thousands for every fetch).
    pub(crate) fn for_each_following(
        &self,
        leader: BrokerId,
        mut f: impl FnMut(&(String, i32), &Arc<Replica>, i32),
    ) {
        for e in self.replicas.iter() {
            if let Some(epoch) = e.value().follower_epoch(leader) {
                f(e.key(), e.value(), epoch);
            }
        }
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
