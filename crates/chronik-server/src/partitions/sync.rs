//! Following the metadata: every applied state opens the partitions this node now hosts,
//! removes the ones it no longer does, applies topic configs, then gives each local replica
//! its role (`roles`).

use std::sync::Arc;

use chronik_metadata::{MetadataState, TopicInfo};
use chronik_wal::{PartitionLog, WalError};
use futures::StreamExt;

use super::{LocalTopic, PartitionManager};
use crate::partition::Partition;

impl PartitionManager {
    /// Opens and closes local partitions as the metadata changes, whoever changed it.
    pub(super) fn start_metadata_follower(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let mut changes = self.meta.node.subscribe();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
                let Some(manager) = me.upgrade() else { return };
                let state = changes.borrow_and_update().clone();
                if let Err((topic, partition, e)) = manager.sync(&state).await {
                    tracing::error!(topic = %topic, partition, error = %e, "cannot open partition");
                }
            }
        });
    }

    /// Makes the local partitions match `state`: opens the partitions of topics this node is a
    /// replica of, and deletes the data of topics the metadata no longer has (or has again
    /// under a new id).
    pub async fn sync(&self, state: &MetadataState) -> Result<(), (String, i32, WalError)> {
        let _sync = self.sync_lock.lock().await;
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
        // Every partition on disk at start is open: later opens are new partitions or
        // come back after a delete, and recover in full.
        if self
            .clean_start
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::info!(
                partitions = self.all_partitions().len(),
                "opened the logs of a clean shutdown without recovering them"
            );
        }
        self.sync_replica_sets(state).await?;
        self.sync_topic_configs(state);
        self.apply_roles(state).await;
        Ok(())
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
            let config = self.topic_config(topic);
            let (log, produce) = (
                config.log_config(self.settings.fsync),
                config.produce_config(),
            );
            for part in local.parts.iter().flatten() {
                part.log.set_config(log.clone());
                part.set_config(produce.clone());
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
                let wanted = info.replicas.contains(&self.settings.node_id);
                let slot = match local.get(i) {
                    Some(None) if wanted => {
                        let part = self
                            .open_partition(topic, i as i32, info)
                            .await
                            .map_err(|e| (topic.name.clone(), i as i32, e))?;
                        tracing::info!(topic = %topic.name, partition = i, node = self.settings.node_id,
                            "this node is a new replica; catching up from the leader");
                        Some(part)
                    }
                    Some(Some(part)) if !wanted => {
                        self.replicas.remove(&topic.name, i as i32);
                        if let Err(e) = part.log.delete().await {
                            tracing::error!(topic = %topic.name, partition = i, error = %e,
                                "failed to delete the data of a replica moved away");
                        } else {
                            tracing::info!(topic = %topic.name, partition = i, node = self.settings.node_id,
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
    pub fn remove_orphan_dirs(&self) {
        let state = self.metadata();
        let Ok(entries) = std::fs::read_dir(&self.settings.wal_root) else {
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
        // Opened PARALLEL_OPENS at a time (each open's recovery and file syncs run on the
        // blocking pool), kept in partition order.
        // Built in a loop, not by a closure: the futures borrow `self` and `topic`, and a
        // closure's would make the spawning tasks' futures not provably Send.
        let mut opens = Vec::with_capacity(topic.partitions.len().saturating_sub(from));
        for (i, info) in topic.partitions.iter().enumerate().skip(from) {
            opens.push(async move {
                if !info.replicas.contains(&self.settings.node_id) {
                    return Ok(None);
                }
                self.open_partition(topic, i as i32, info)
                    .await
                    .map(Some)
                    .map_err(|e| (i as i32, e))
            });
        }
        let opened: Vec<Option<Arc<Partition>>> = futures::stream::iter(opens)
            .buffered(super::PARALLEL_OPENS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
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
        let config = self.topic_config(topic);
        let log_config = config.log_config(self.settings.fsync);
        let root = &self.settings.wal_root;
        let log = if self.opens_after_clean_shutdown() {
            PartitionLog::open_after_clean_shutdown(root, &topic.name, index, log_config).await?
        } else {
            PartitionLog::open(root, &topic.name, index, log_config).await?
        };
        if info.sealed {
            log.seal();
        }
        let hw = self
            .hw_checkpoints
            .get(&(topic.name.clone(), index))
            .copied();
        let part = Partition::open(log, self.settings.node_id, hw, config.produce_config()).await?;
        self.replicas.add(part.replica.clone());
        Ok(part)
    }
}
