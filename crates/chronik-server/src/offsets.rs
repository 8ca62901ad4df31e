//! Committed offsets, kept in the internal `__consumer_offsets` topic.
//!
//! A group belongs to partition `partition_for(group)` of that topic; this node coordinates it
//! when it leads that partition (standalone: always). A commit is encoded as one record batch
//! (one record per committed partition, Kafka's record layout, see `chronik_groups::record`),
//! appended through the partition's WAL like any produce, and applied to the in-memory
//! [`OffsetStore`] only once it is durable. On start every partition's store is rebuilt by
//! replaying its log (`OffsetStore::rebuild`), so offsets are exactly what the log says.
//!
//! The topic is compacted (`cleanup.policy=compact`, as in Kafka): the log cleaner keeps the
//! latest record of each key, so a replay reads about as many records as there are live keys
//! (plus the uncleaned head), and deleted offsets and groups go with their tombstones after
//! `delete.retention.ms`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chronik_groups::{
    encode_group_batch, encode_offsets_batch, encode_txn_offsets_batch, partition_for, GroupRecord,
    OffsetKey, OffsetStore, OffsetValue, OFFSETS_TOPIC,
};
use kafka_protocol::ResponseError;
use thiserror::Error;

use crate::clock::now_ms;
use crate::partitions::PartitionManager;

#[derive(Debug, Error)]
pub enum OffsetsError {
    #[error("the offsets topic has no partition {0} on this node")]
    NotHere(i32),
    #[error("encoding the offsets record: {0}")]
    Encode(String),
    #[error("appending to the offsets log: {0}")]
    Append(String),
    #[error("the offsets log did not commit in time")]
    Timeout,
}

impl OffsetsError {
    /// The code Kafka answers when its offsets log append fails this way.
    pub fn code(&self) -> ResponseError {
        match self {
            OffsetsError::NotHere(_) => ResponseError::NotCoordinator,
            OffsetsError::Encode(_) => ResponseError::InvalidCommitOffsetSize,
            OffsetsError::Append(_) | OffsetsError::Timeout => {
                ResponseError::CoordinatorNotAvailable
            }
        }
    }
}

/// The state of every offsets partition. A store's mutex is held only to read or apply,
/// never across I/O.
pub struct Offsets {
    partitions: i32,
    stores: Vec<Mutex<OffsetStore>>,
    /// Writes hold a partition's lock shared from append to apply; a replay or a tombstone
    /// purge holds it exclusively, so no write in flight applies to a store being replaced
    /// or comes back after its tombstone went.
    write_locks: Vec<tokio::sync::RwLock<()>>,
}

impl Offsets {
    /// Replays every offsets partition this node hosts. The topic must exist and be open.
    /// Before the topic exists (a cluster still forming) it will have `default_partitions`.
    pub fn rebuild(
        local: &PartitionManager,
        default_partitions: i32,
    ) -> Result<Offsets, chronik_groups::ReplayError> {
        let partitions = local
            .metadata()
            .topic(OFFSETS_TOPIC)
            .map_or(default_partitions, |t| t.partitions.len() as i32);
        let mut stores = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let store = match local.partition(OFFSETS_TOPIC, p) {
                Some(part) => OffsetStore::rebuild(&part.log)?,
                None => OffsetStore::default(),
            };
            stores.push(Mutex::new(store));
        }
        Ok(Offsets {
            partitions,
            stores,
            write_locks: (0..partitions)
                .map(|_| tokio::sync::RwLock::new(()))
                .collect(),
        })
    }

    pub fn partition_of(&self, group: &str) -> i32 {
        partition_for(group, self.partitions)
    }

    fn store(&self, group: &str) -> std::sync::MutexGuard<'_, OffsetStore> {
        let p = self.partition_of(group) as usize;
        self.stores[p].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `entries` for `group` as one batch, waits until it is durable, then applies it.
    pub async fn commit(
        self: &Arc<Self>,
        local: &Arc<PartitionManager>,
        group: &str,
        entries: Vec<(OffsetKey, OffsetValue)>,
    ) -> Result<(), OffsetsError> {
        let entries = entries.into_iter().map(|(k, v)| (k, Some(v))).collect();
        self.write(local, group, entries).await
    }

    /// KIP-447 TxnOffsetCommit: appends `entries` as one transactional batch of the producer
    /// to `group`'s partition and, once durable, holds them pending there: the producer's
    /// COMMIT marker on that partition applies them, its ABORT marker drops them
    /// ([`complete_txn`](Self::complete_txn)).
    pub async fn commit_txn(
        self: &Arc<Self>,
        local: &Arc<PartitionManager>,
        group: &str,
        producer: (i64, i16),
        entries: Vec<(OffsetKey, OffsetValue)>,
    ) -> Result<(), OffsetsError> {
        let entries: Vec<_> = entries.into_iter().map(|(k, v)| (k, Some(v))).collect();
        let (producer_id, producer_epoch) = producer;
        let batch = encode_txn_offsets_batch(&entries, producer_id, producer_epoch, now_ms())
            .map_err(|e| OffsetsError::Encode(e.to_string()))?;
        self.append_and_apply(local, group, &batch, |store, base| {
            for (i, (k, v)) in entries.into_iter().enumerate() {
                store.add_pending(producer_id, k, v, base + i as i64);
            }
        })
        .await
    }

    /// A transaction marker of `producer_id` at `marker_offset` reached offsets partition `p`
    /// (durably): its pending offsets before it there are applied (`commit`) or dropped.
    ///
    /// Applied in log order: a TxnOffsetCommit appended before the marker becomes durable
    /// with it (one high watermark advance) but is held pending only by its own
    /// continuation, which may run after this one; its offsets would then stay pending for
    /// good (OffsetFetch with require_stable answering UNSTABLE_OFFSET_COMMIT until the next
    /// replay; seen with Kafka Streams when the transaction coordinator's node was killed).
    /// So this waits for the partition's in-flight appends (`append_and_apply` holds the
    /// partition's write lock shared until it has applied) before completing.
    pub async fn complete_txn(&self, p: i32, producer_id: i64, commit: bool, marker_offset: i64) {
        let Some(i) = usize::try_from(p).ok().filter(|i| *i < self.stores.len()) else {
            return;
        };
        let _exclusive = self.write_locks[i].write().await;
        self.stores[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .complete_txn(producer_id, commit, marker_offset);
    }

    /// Whether an open transaction holds an offset for this partition of `group`.
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.store(group).has_pending(group, topic, partition)
    }

    /// Deletes the committed offsets of `partitions` (those that have one) of `group`.
    pub async fn delete(
        self: &Arc<Self>,
        local: &Arc<PartitionManager>,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<(), OffsetsError> {
        let keys = partitions
            .iter()
            .filter(|(t, p)| self.get(group, t, *p).is_some())
            .map(|(t, p)| {
                (
                    OffsetKey {
                        group: group.to_string(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    None,
                )
            })
            .collect();
        self.write(local, group, keys).await
    }

    /// Deletes every committed offset of `group` (tombstones in the log).
    pub async fn delete_group(
        self: &Arc<Self>,
        local: &Arc<PartitionManager>,
        group: &str,
    ) -> Result<(), OffsetsError> {
        let keys: Vec<(OffsetKey, Option<OffsetValue>)> = self
            .group(group)
            .into_iter()
            .flat_map(|(topic, parts)| {
                parts.into_iter().map(move |(p, _)| {
                    (
                        OffsetKey {
                            group: group.to_string(),
                            topic: topic.clone(),
                            partition: p,
                        },
                        None,
                    )
                })
            })
            .collect();
        self.write(local, group, keys).await?;
        let has_record = self.store(group).group_records().any(|(g, _)| g == group);
        if has_record {
            let batch = encode_group_batch(group, None, now_ms())
                .map_err(|e| OffsetsError::Encode(e.to_string()))?;
            self.append_and_apply(local, group, &batch, |store, base| {
                store.apply_group(group.to_string(), None, base)
            })
            .await?;
        }
        Ok(())
    }

    async fn write(
        self: &Arc<Self>,
        local: &Arc<PartitionManager>,
        group: &str,
        entries: Vec<(OffsetKey, Option<OffsetValue>)>,
    ) -> Result<(), OffsetsError> {
        if entries.is_empty() {
            return Ok(());
        }
        let batch = encode_offsets_batch(&entries, now_ms())
            .map_err(|e| OffsetsError::Encode(e.to_string()))?;
        self.append_and_apply(local, group, &batch, |store, base| {
            for (i, (k, v)) in entries.into_iter().enumerate() {
                store.apply(k, v, base + i as i64);
            }
        })
        .await
    }

    /// The one write path: appends `batch` (`records` records) to `group`'s partition, waits
    /// until it is durable, then applies it with `apply(store, base offset)`, all under the
    /// partition's shared write lock (see `write_locks`).
    async fn append_and_apply(
        self: &Arc<Self>,
        local: &Arc<PartitionManager>,
        group: &str,
        batch: &[u8],
        apply: impl FnOnce(&mut OffsetStore, i64),
    ) -> Result<(), OffsetsError> {
        let p = self.partition_of(group) as usize;
        let _shared = self.write_locks[p].read().await;
        let base = self.append_durably(local, group, batch).await?;
        apply(&mut self.store(group), base);
        Ok(())
    }

    /// Forgets the tombstones the stores hold in memory. A tombstone keeps an older record
    /// whose append completed late from being applied over it; with every writer held off,
    /// none is in flight, so they can go (the log keeps its own until the cleaner drops them).
    /// Without this, every deleted offset would stay in memory until the next replay.
    pub async fn forget_tombstones(&self) {
        for (lock, store) in self.write_locks.iter().zip(&self.stores) {
            let _exclusive = lock.write().await;
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget_tombstones();
        }
    }

    /// Records `group`'s membership in its offsets partition (see `GroupManager::take_dirty`).
    pub async fn write_group(
        self: &Arc<Self>,
        local: &Arc<PartitionManager>,
        group: &str,
        record: GroupRecord,
    ) -> Result<(), OffsetsError> {
        let batch = encode_group_batch(group, Some(&record), now_ms())
            .map_err(|e| OffsetsError::Encode(e.to_string()))?;
        self.append_and_apply(local, group, &batch, |store, base| {
            store.apply_group(group.to_string(), Some(record), base)
        })
        .await
    }

    /// Replays offsets partition `p` from its log again: this node just became its leader,
    /// and its replica's log holds what the previous leader wrote. Returns the partition's
    /// group records, for the group manager to restore. The replay reads the whole partition
    /// (possibly long out of the page cache), so it runs on the blocking pool; writers are held
    /// off meanwhile, so none applies to the store being replaced.
    pub async fn reload_partition(
        &self,
        log: &Arc<chronik_wal::PartitionLog>,
        p: usize,
    ) -> Result<Vec<(String, GroupRecord)>, chronik_groups::ReplayError> {
        let _exclusive = match self.write_locks.get(p) {
            Some(lock) => Some(lock.write().await),
            None => None,
        };
        let replay_log = log.clone();
        let store = tokio::task::spawn_blocking(move || OffsetStore::rebuild(&replay_log))
            .await
            .map_err(|e| {
                chronik_groups::ReplayError::Wal(chronik_wal::WalError::Failed(format!(
                    "offsets replay panicked: {e}"
                )))
            })??;
        let records = store
            .group_records()
            .map(|(g, r)| (g.to_string(), r.clone()))
            .collect();
        tracing::info!(
            topic = OFFSETS_TOPIC,
            partition = p,
            records = store.replayed(),
            live = store.live(),
            "replayed committed offsets and group state"
        );
        if let Some(slot) = self.stores.get(p) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = store;
        }
        Ok(records)
    }

    /// Every group's latest membership record, for restoring them on start.
    pub fn group_records(&self) -> Vec<(String, GroupRecord)> {
        let mut out = Vec::new();
        for s in &self.stores {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.group_records().map(|(g, r)| (g.to_string(), r.clone())));
        }
        out
    }

    /// Appends one batch to `group`'s offsets partition and waits until it is durable;
    /// returns the batch's base offset.
    async fn append_durably(
        &self,
        local: &Arc<PartitionManager>,
        group: &str,
        batch: &[u8],
    ) -> Result<i64, OffsetsError> {
        self.append_durably_to(local, self.partition_of(group), batch)
            .await
    }

    async fn append_durably_to(
        &self,
        local: &Arc<PartitionManager>,
        p: i32,
        batch: &[u8],
    ) -> Result<i64, OffsetsError> {
        use crate::durable_append::{append_durably, DurableAppendError as E};
        append_durably(local, OFFSETS_TOPIC, p, batch)
            .await
            .map_err(|e| match e {
                E::NotHere { .. } => OffsetsError::NotHere(p),
                E::TooLarge { size, max, .. } => OffsetsError::Encode(format!(
                    "commit of {size} bytes is over the offsets topic's max.message.bytes={max}"
                )),
                E::Timeout { .. } => OffsetsError::Timeout,
                other @ E::Append { .. } => OffsetsError::Append(other.to_string()),
            })
    }

    /// Groups whose every commit is older than the retention.
    pub fn expired_groups(&self, now_ms: i64, retention_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stores {
            out.extend(
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .expired_groups(now_ms, retention_ms),
            );
        }
        out
    }

    /// Groups that have committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stores {
            out.extend(s.lock().unwrap_or_else(|e| e.into_inner()).group_ids());
        }
        out
    }

    pub fn has_group(&self, group: &str) -> bool {
        !self.store(group).group(group).is_empty()
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<OffsetValue> {
        self.store(group).get(group, topic, partition).cloned()
    }

    /// All committed offsets of `group` by topic.
    pub fn group(&self, group: &str) -> BTreeMap<String, Vec<(i32, OffsetValue)>> {
        let mut out: BTreeMap<String, Vec<(i32, OffsetValue)>> = BTreeMap::new();
        for (t, p, v) in self.store(group).group(group) {
            out.entry(t.to_string()).or_default().push((p, v.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chronik_groups::{OffsetKey, OffsetValue};

    use super::*;

    /// A TxnOffsetCommit appended before its transaction's marker becomes durable with it, and
    /// the two continuations may run in either order: the marker must not complete before the
    /// commit's offsets are held, or they stay pending for good (require_stable OffsetFetch
    /// answers UNSTABLE_OFFSET_COMMIT; Kafka Streams could not start its tasks after the
    /// transaction coordinator's node was killed).
    #[tokio::test]
    async fn a_marker_completes_after_the_offsets_appended_before_it_are_held() {
        let offsets = Arc::new(Offsets {
            partitions: 1,
            stores: vec![Mutex::new(OffsetStore::default())],
            write_locks: vec![tokio::sync::RwLock::new(())],
        });
        // The TxnOffsetCommit (offset 3) between its durable append and its apply.
        let in_flight = offsets.write_locks[0].read().await;
        let o = offsets.clone();
        let abort = tokio::spawn(async move { o.complete_txn(0, 7, false, 4).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !abort.is_finished(),
            "the abort marker completed before the offsets appended before it were held"
        );
        let key = OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        };
        let value = OffsetValue {
            offset: 10,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        offsets.store("g").add_pending(7, key, Some(value), 3);
        drop(in_flight);
        abort.await.expect("join");
        assert!(
            !offsets.has_pending("g", "t", 0),
            "aborted offsets stay pending"
        );
    }
}
