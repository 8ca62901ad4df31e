//! Following the metadata: every applied state opens the partitions this node now hosts,
//! removes the ones it no longer does, applies topic configs and gives each local replica its
//! role (leader or follower, epoch, ISR).

use std::sync::Arc;

use chronik_groups::OFFSETS_TOPIC;
use chronik_metadata::{MetadataState, TopicInfo};
use chronik_replication::Role;
use chronik_wal::{PartitionLog, WalError};
use tracing::Instrument;

use futures::StreamExt;

use super::{Broker, LocalTopic};
use crate::partition::Partition;

/// Producer-state rebuilds (log scans) run at once when this node takes over partitions: a
/// bound on the reads a failover starts together, which still overlaps their waits.
const MAX_PARALLEL_REBUILDS: usize = 8;

/// One local replica's role in an applied state, and what it had before.
struct RoleChange {
    topic: String,
    partition: usize,
    part: Arc<Partition>,
    role: Role,
    was_leader: bool,
    leader: i32,
    sealed: bool,
    span: tracing::Span,
}

impl RoleChange {
    /// Whether this replica becomes leader now (and must rebuild its producer state first).
    fn takes_leadership(&self) -> bool {
        matches!(self.role, Role::Leader { .. }) && !self.was_leader
    }
}

impl Broker {
    /// Opens and closes local partitions as the metadata changes, whoever changed it.
    pub(super) fn start_metadata_follower(self: &Arc<Self>) {
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
    pub(super) async fn sync_partitions(
        &self,
        state: &MetadataState,
    ) -> Result<(), (String, i32, WalError)> {
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
    /// groups) from its log, which the previous leader filled. The rebuilds of all new
    /// leaderships run side by side, at most [`MAX_PARALLEL_REBUILDS`] at once, so taking over
    /// many partitions (a failover) does not take one log scan per partition in turn.
    pub(super) async fn apply_roles(&self, state: &MetadataState) {
        let changes = self.plan_roles(state);
        // Each future owns what it uses, collected first: a stream over a borrowing iterator
        // makes the future not provably Send (rustc #102211).
        let rebuilds: Vec<_> = changes
            .iter()
            .map(|c| {
                let (part, span, takes) = (c.part.clone(), c.span.clone(), c.takes_leadership());
                async move {
                    if !takes {
                        return true;
                    }
                    // Stop taking fetched batches first, so the scan sees the final log.
                    part.replica.set_role(Role::Unknown);
                    match part.rebuild_producers().instrument(span.clone()).await {
                        Ok(()) => true,
                        Err(e) => {
                            span.in_scope(|| {
                                tracing::error!(error = %e,
                                "cannot rebuild producer state; not taking leadership")
                            });
                            false
                        }
                    }
                }
            })
            .collect();
        let rebuilt: Vec<bool> = futures::stream::iter(rebuilds)
            .buffered(MAX_PARALLEL_REBUILDS)
            .collect()
            .await;
        for (c, ok) in changes.iter().zip(rebuilt) {
            if ok {
                self.take_role(state, c).await;
            }
        }
    }

    /// The role `state` gives each local replica, with what it had before.
    fn plan_roles(&self, state: &MetadataState) -> Vec<RoleChange> {
        // Leadership needs this process's incarnation in the state: only then are the epochs
        // of the partitions it led before a restart or heal bumped (the registration that
        // bumps them lands in a later state; this one is applied again then).
        let registered = self.registered(state);
        let mut out = Vec::new();
        for topic in state.topics.values() {
            let Some(local) = self.partitions.get(&topic.name).map(|t| t.parts.clone()) else {
                continue;
            };
            let min_isr = self.topic_config(topic).min_insync_replicas();
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
                        min_isr: min_isr.min(info.replicas.len()),
                    }
                } else {
                    Role::Follower {
                        leader: info.leader,
                        epoch: info.leader_epoch,
                    }
                };
                out.push(RoleChange {
                    topic: topic.name.clone(),
                    partition: i,
                    was_leader: part.replica.is_leader(),
                    part: part.clone(),
                    role,
                    leader: info.leader,
                    sealed: info.sealed,
                    span: tracing::info_span!("partition", topic = %topic.name, partition = i),
                });
            }
        }
        out
    }

    /// Gives one replica its planned role (its producer state is rebuilt if it takes over).
    async fn take_role(&self, state: &MetadataState, c: &RoleChange) {
        let (part, i, span) = (&c.part, c.partition, &c.span);
        let leading = matches!(c.role, Role::Leader { .. });
        let addr = state
            .brokers
            .get(&c.leader)
            .map(|b| b.rpc_addr.clone())
            .filter(|a| !a.is_empty());
        // Only a leader refuses produce; followers keep replicating what it has.
        if c.sealed && leading {
            part.log.seal();
        } else {
            part.log.resume();
        }
        span.in_scope(|| {
            self.replicas
                .set_role(&c.topic, i as i32, c.role.clone(), addr.as_deref())
        });
        if c.topic == OFFSETS_TOPIC && c.takes_leadership() {
            self.load_offsets_partition(part, i)
                .instrument(span.clone())
                .await;
        }
        let _span = span.enter();
        if c.topic == OFFSETS_TOPIC && !leading && c.was_leader {
            // No longer the coordinator of this partition's groups: their parked joins
            // go look for the new one.
            if let Some(offsets) = self.offsets.get() {
                self.groups()
                    .release_waiters(|g| offsets.partition_of(g) == i as i32);
            }
        }
    }

    /// After this node took over offsets partition `p`: replay it and restore its groups.
    pub(super) async fn load_offsets_partition(&self, part: &Partition, p: usize) {
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

    /// Gives the local logs of every topic whose overrides changed (AlterConfigs) their new
    /// log config: segment size and age, retention, index interval.
    pub(super) fn sync_topic_configs(&self, state: &MetadataState) {
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
    pub(super) async fn sync_replica_sets(
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
    pub(super) fn remove_orphan_dirs(&self) {
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

    /// Opens partitions `from..` of `topic` that this node hosts and publishes them. Called
    /// with `partition_sync` held.
    pub(super) async fn open_partitions(
        &self,
        topic: &TopicInfo,
        from: usize,
    ) -> Result<(), (i32, WalError)> {
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
    pub(super) async fn open_partition(
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
}
