//! The committed offsets of the groups one `__consumer_offsets` partition coordinates, and the
//! replay that rebuilds them from that partition's log.
//!
//! Invariant: an entry always holds the value of the *last* record for its key in log order.
//! `apply` takes the record's log offset and ignores anything older than what it holds, so
//! commits whose appends complete out of order still leave the state the log describes.

use std::collections::{BTreeMap, HashMap};

use chronik_wal::{BatchHeader, PartitionLog, WalError};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use thiserror::Error;
use tracing::warn;

use crate::record::{GroupRecord, Key, OffsetKey, OffsetValue};

/// The last record of one key, with where it sits in the log. `value` None is a tombstone,
/// kept so that an older record applied late cannot bring the key back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub value: Option<OffsetValue>,
    pub log_offset: i64,
}

/// Committed offsets by group, then by (topic, partition); and each group's latest
/// membership record.
#[derive(Debug, Default)]
pub struct OffsetStore {
    groups: HashMap<String, BTreeMap<(String, i32), Committed>>,
    /// group → (its latest metadata record or tombstone, that record's log offset).
    metadata: HashMap<String, (Option<GroupRecord>, i64)>,
    /// Keys with a value (offsets and group records).
    live: u64,
    /// Records read by the replay that built this store.
    replayed: u64,
    /// KIP-447: offsets a transactional producer committed (TxnOffsetCommit) whose
    /// transaction has not ended yet, by producer id, as (key, value, log offset). They
    /// become committed when the producer's COMMIT marker reaches this partition and are
    /// dropped by its ABORT marker (Kafka's pendingTransactionalOffsetCommits). Bounded by the
    /// log: one entry per such record of an open transaction.
    pending_txn: HashMap<i64, Vec<(OffsetKey, Option<OffsetValue>, i64)>>,
}

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("reading the offsets log: {0}")]
    Wal(#[from] WalError),
}

/// Most bytes one read of the replay asks for.
const REPLAY_READ_BYTES: usize = 4 << 20;

impl OffsetStore {
    /// Applies one record: `value` None is a tombstone.
    pub fn apply(&mut self, key: OffsetKey, value: Option<OffsetValue>, log_offset: i64) {
        let entries = self.groups.entry(key.group).or_default();
        let tp = (key.topic, key.partition);
        let was_live = match entries.get(&tp) {
            Some(c) if c.log_offset > log_offset => return,
            Some(c) => c.value.is_some(),
            None => false,
        };
        self.live = self.live + u64::from(value.is_some()) - u64::from(was_live);
        entries.insert(tp, Committed { value, log_offset });
    }

    /// Holds a transactional offset commit of `producer_id` until its transaction ends.
    pub fn add_pending(
        &mut self,
        producer_id: i64,
        key: OffsetKey,
        value: Option<OffsetValue>,
        log_offset: i64,
    ) {
        self.pending_txn
            .entry(producer_id)
            .or_default()
            .push((key, value, log_offset));
    }

    /// The transaction of `producer_id` ended on this partition with its marker at
    /// `marker_offset`: its offsets before the marker are applied (`commit`), each at its own
    /// record's log offset, so a later plain commit still wins (Kafka's
    /// completePendingTxnOffsetCommit), or dropped. Offsets after the marker belong to the
    /// producer's next transaction and stay pending.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool, marker_offset: i64) {
        let Some(entries) = self.pending_txn.remove(&producer_id) else {
            return;
        };
        let (ended, next): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|(_, _, offset)| *offset < marker_offset);
        if commit {
            for (k, v, offset) in ended {
                self.apply(k, v, offset);
            }
        }
        if !next.is_empty() {
            self.pending_txn.insert(producer_id, next);
        }
    }

    /// Whether a transaction still holds an offset commit for this partition of `group`
    /// (OffsetFetch's require_stable answers UNSTABLE_OFFSET_COMMIT then, KIP-447).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn
            .values()
            .flatten()
            .any(|(k, _, _)| k.group == group && k.topic == topic && k.partition == partition)
    }

    /// Applies a group metadata record: `None` is a tombstone.
    pub fn apply_group(&mut self, group: String, record: Option<GroupRecord>, log_offset: i64) {
        let was_live = match self.metadata.get(&group) {
            Some((_, o)) if *o > log_offset => return,
            Some((r, _)) => r.is_some(),
            None => false,
        };
        self.live = self.live + u64::from(record.is_some()) - u64::from(was_live);
        self.metadata.insert(group, (record, log_offset));
    }

    /// Drops tombstones. Only safe when no write can be applied late (the caller holds every
    /// writer off), since a tombstone is what keeps an older record from coming back.
    pub fn forget_tombstones(&mut self) {
        for m in self.groups.values_mut() {
            m.retain(|_, c| c.value.is_some());
        }
        self.groups.retain(|_, m| !m.is_empty());
        self.metadata.retain(|_, (r, _)| r.is_some());
    }

    /// Records the replay read (a measure of how long the next replay will take).
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// Live keys: committed offsets plus group records.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Every group's latest metadata record (what a coordinator restores on start).
    pub fn group_records(&self) -> impl Iterator<Item = (&str, &GroupRecord)> {
        self.metadata
            .iter()
            .filter_map(|(g, (r, _))| r.as_ref().map(|r| (g.as_str(), r)))
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&OffsetValue> {
        self.groups
            .get(group)?
            .get(&(topic.to_string(), partition))?
            .value
            .as_ref()
    }

    /// Groups whose newest commit is older than `now_ms - retention_ms`: candidates for
    /// Kafka's offsets retention (the caller skips groups that still have members).
    pub fn expired_groups(&self, now_ms: i64, retention_ms: i64) -> Vec<String> {
        let cutoff = now_ms.saturating_sub(retention_ms);
        self.groups
            .keys()
            .filter(|g| {
                let live = self.group(g);
                !live.is_empty() && live.iter().all(|(_, _, v)| v.commit_timestamp_ms < cutoff)
            })
            .cloned()
            .collect()
    }

    /// Groups with at least one committed offset.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, m)| m.values().any(|c| c.value.is_some()))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Every committed offset of `group`, ordered by topic then partition.
    pub fn group(&self, group: &str) -> Vec<(&str, i32, &OffsetValue)> {
        self.groups
            .get(group)
            .map(|m| {
                m.iter()
                    .filter_map(|((t, p), c)| c.value.as_ref().map(|v| (t.as_str(), *p, v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rebuilds the state of one `__consumer_offsets` partition by reading its log from the
    /// start to its committed end. This is the one place group state comes from on start,
    /// and (with replication) when this node becomes the partition's leader.
    ///
    /// Records that do not decode are logged and skipped: one bad record must not take every
    /// group of the partition down with it.
    pub fn rebuild(log: &PartitionLog) -> Result<OffsetStore, ReplayError> {
        let mut store = OffsetStore::default();
        for_each_record(log, |r| {
            if r.control {
                // A transaction marker (key: version i16, type i16: 0 abort, 1 commit) ends
                // the producer's pending offsets.
                if let Some(k) = r.key.as_deref().filter(|k| k.len() >= 4) {
                    let kind = i16::from_be_bytes([k[2], k[3]]);
                    if kind == 0 || kind == 1 {
                        store.complete_txn(r.producer_id, kind == 1, r.offset);
                    }
                }
                return;
            }
            store.replayed += 1;
            let txn = r.transactional.then_some(r.producer_id);
            store.apply_raw(r.key.as_deref(), r.value.as_deref(), r.offset, txn, log);
        })?;
        Ok(store)
    }

    fn apply_raw(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        offset: i64,
        txn: Option<i64>,
        log: &PartitionLog,
    ) {
        let Some(key) = key else { return };
        let key = match Key::decode(key) {
            Ok(Key::Offset(k)) => k,
            Ok(Key::Group(g)) => {
                match value.map(GroupRecord::decode) {
                    None => self.apply_group(g, None, offset),
                    Some(Ok(r)) => self.apply_group(g, Some(r), offset),
                    Some(Err(e)) => warn!(topic = log.topic(), partition = log.partition(), offset,
                        error = %e, "skipping a group metadata record with a bad value"),
                }
                return;
            }
            Ok(Key::Other(_)) => return,
            Err(e) => {
                warn!(topic = log.topic(), partition = log.partition(), offset, error = %e,
                    "skipping an offsets record with a bad key");
                return;
            }
        };
        let value = match value.map(OffsetValue::decode) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                warn!(topic = log.topic(), partition = log.partition(), offset, error = %e,
                    "skipping an offsets record with a bad value");
                return;
            }
        };
        match txn {
            Some(producer_id) => self.add_pending(producer_id, key, value, offset),
            None => self.apply(key, value, offset),
        }
    }
}

/// Hands every record of `log` from its start to its committed end to `f`, once each, in log
/// order (control records too): the replay of an internal topic (`__consumer_offsets` here,
/// `__transaction_state` in the broker). A batch that does not decode is logged and skipped:
/// one bad record must not take the whole partition down with it.
pub fn for_each_record(log: &PartitionLog, mut f: impl FnMut(Record)) -> Result<(), WalError> {
    let end = log.committed_offset();
    let mut next = log.log_start_offset();
    while next < end {
        let read = log.read(next, REPLAY_READ_BYTES, end)?;
        if read.batches == 0 {
            break;
        }
        let mut data = read.data;
        let before = next;
        while !data.is_empty() {
            // A batch the cleaner emptied (kept for its producer's sequence) has no record to
            // move `next` on; its header still says where it ends.
            if let Ok(h) = BatchHeader::parse(&data) {
                next = next.max(h.last_offset().saturating_add(1));
            }
            let set = match RecordBatchDecoder::decode(&mut data) {
                Ok(s) => s,
                Err(e) => {
                    warn!(topic = log.topic(), partition = log.partition(), offset = next,
                        error = %e, "skipping an undecodable batch in a replayed log");
                    break;
                }
            };
            for r in set.records {
                next = next.max(r.offset + 1);
                if r.offset >= before {
                    f(r);
                }
            }
        }
        if next == before {
            break; // no progress: nothing decodable at this position
        }
    }
    Ok(())
}

/// The `__consumer_offsets` partition that coordinates `group`: Kafka's
/// `abs(groupId.hashCode()) % partitions`, with Java's String.hashCode, so a group lands on
/// the same partition number as it would in Apache Kafka.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(g: &str, t: &str, p: i32) -> OffsetKey {
        OffsetKey {
            group: g.into(),
            topic: t.into(),
            partition: p,
        }
    }

    fn val(offset: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        }
    }

    /// KIP-447: transactional offsets wait for their transaction; a commit applies them at
    /// their own log offsets (a later plain commit still wins), an abort drops them.
    #[test]
    fn transactional_offsets_apply_on_commit_only() {
        let mut s = OffsetStore::default();
        s.add_pending(7, key("g", "t", 0), Some(val(10)), 3);
        s.add_pending(8, key("g", "t", 1), Some(val(20)), 4);
        assert!(s.get("g", "t", 0).is_none());
        assert!(s.has_pending("g", "t", 0));
        s.apply(key("g", "t", 0), Some(val(5)), 6); // a plain commit after the txn record
        s.complete_txn(7, true, 7);
        assert_eq!(s.get("g", "t", 0).unwrap().offset, 5);
        s.complete_txn(8, false, 8);
        assert!(s.get("g", "t", 1).is_none());
        assert!(!s.has_pending("g", "t", 1));
        s.add_pending(9, key("g", "t", 2), Some(val(30)), 9);
        s.complete_txn(9, true, 10);
        assert_eq!(s.get("g", "t", 2).unwrap().offset, 30);
    }

    /// A marker completes only the offsets before it: the producer's next transaction's
    /// offsets (after the marker in the log) stay pending.
    #[test]
    fn a_marker_ends_only_the_offsets_before_it() {
        let mut s = OffsetStore::default();
        s.add_pending(7, key("g", "t", 0), Some(val(10)), 3);
        s.add_pending(7, key("g", "t", 1), Some(val(20)), 9);
        s.complete_txn(7, true, 5);
        assert_eq!(s.get("g", "t", 0).unwrap().offset, 10);
        assert!(s.get("g", "t", 1).is_none());
        assert!(s.has_pending("g", "t", 1));
        s.complete_txn(7, false, 11);
        assert!(!s.has_pending("g", "t", 1));
    }

    #[test]
    fn later_log_offsets_win_whatever_the_order_applied() {
        let mut s = OffsetStore::default();
        s.apply(key("g", "t", 0), Some(val(10)), 5);
        s.apply(key("g", "t", 0), Some(val(7)), 3); // older record applied late
        assert_eq!(s.get("g", "t", 0).unwrap().offset, 10);
        s.apply(key("g", "t", 0), None, 6);
        assert!(s.get("g", "t", 0).is_none());
        // An older record applied after the tombstone does not bring the key back.
        s.apply(key("g", "t", 0), Some(val(9)), 4);
        assert!(s.get("g", "t", 0).is_none());
        assert_eq!(s.live(), 0);
        s.apply(key("g", "t", 1), Some(val(1)), 7);
        s.apply(key("g", "a", 0), Some(val(2)), 8);
        let all: Vec<_> = s
            .group("g")
            .into_iter()
            .map(|(t, p, v)| (t.to_string(), p, v.offset))
            .collect();
        assert_eq!(all, vec![("a".to_string(), 0, 2), ("t".to_string(), 1, 1)]);
        assert_eq!(s.live(), 2);
        s.forget_tombstones();
        assert_eq!(s.live(), 2);
        assert_eq!(s.group("g").len(), 2);
        assert!(s.group("other").is_empty());
    }

    #[test]
    fn only_groups_whose_newest_commit_is_old_expire() {
        let mut s = OffsetStore::default();
        let at = |offset, ts| OffsetValue {
            commit_timestamp_ms: ts,
            ..val(offset)
        };
        s.apply(key("old", "t", 0), Some(at(1, 100)), 1);
        s.apply(key("old", "t", 1), Some(at(1, 200)), 2);
        s.apply(key("mixed", "t", 0), Some(at(1, 100)), 3);
        s.apply(key("mixed", "t", 1), Some(at(1, 5_000)), 4);
        s.apply(key("gone", "t", 0), Some(at(1, 100)), 5);
        s.apply(key("gone", "t", 0), None, 6);
        assert_eq!(s.expired_groups(1_300, 1_000), vec!["old".to_string()]);
        let mut all = s.expired_groups(10_000, 1_000);
        all.sort();
        assert_eq!(all, vec!["mixed".to_string(), "old".to_string()]);
        assert!(s.expired_groups(1_300, 100_000).is_empty());
    }

    #[test]
    fn partition_for_matches_java_string_hash_code() {
        // Java: "my-group".hashCode() == 1_025_200_466 ... checked against known values:
        // "".hashCode() == 0, "a".hashCode() == 97, "group".hashCode() == 98629247.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's abs gives 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for g in ["x", "consumer-1", "ünïcödé"] {
            assert!((0..7).contains(&partition_for(g, 7)));
        }
    }
}
