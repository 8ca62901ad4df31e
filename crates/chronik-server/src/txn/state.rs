//! The transactions of one partition (Kafka's `ProducerStateManager` transaction part and
//! `.txnindex`): each producer's ongoing transaction's first offset, the offsets that are not
//! stable yet, and the aborted transactions a read_committed consumer must skip.
//!
//! Invariants:
//! - a producer has at most one ongoing transaction per partition; it starts with the
//!   producer's first transactional batch and ends with its marker;
//! - a transaction stays *unstable* until its marker is below the high watermark (Kafka's
//!   `unreplicatedTxns`): a marker a failover could still lose must not let consumers read
//!   past the transaction's first offset;
//! - `aborted` is ordered by marker offset (the order markers are appended in).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chronik_wal::BatchHeader;

use super::control::MarkerType;

/// Bound on transactions open at once on one partition (the producer table's own bound): a
/// first transactional batch beyond it is refused with CONCURRENT_TRANSACTIONS (retriable)
/// until one ends. A log rebuilt on open is taken as it is (its leader kept the bound).
pub const MAX_ONGOING_TXNS: usize = crate::producer_state::MAX_PRODUCERS_PER_PARTITION;

/// An aborted transaction: one entry of Kafka's transaction index (`AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
    /// The last stable offset once the transaction was aborted: the first offset of the
    /// earliest other ongoing transaction, else the offset after the marker.
    pub last_stable_offset: i64,
}

#[derive(Debug, Default)]
pub struct TxnState {
    /// Producer id -> first offset of its ongoing transaction (Kafka's
    /// `currentTxnFirstOffset`).
    ongoing: HashMap<i64, i64>,
    /// The first offsets of the ongoing transactions, ordered (unique: two batches never
    /// share an offset).
    ongoing_firsts: BTreeSet<i64>,
    /// Marker offset -> first offset of each completed transaction whose marker the high
    /// watermark has not passed yet (Kafka's `unreplicatedTxns`): only the last few markers.
    unreplicated: BTreeMap<i64, i64>,
    /// Aborted transactions, by marker offset.
    aborted: VecDeque<AbortedTxn>,
}

impl TxnState {
    /// Whether `h` is the first batch of a transaction on this partition: transactional, and
    /// its producer has no ongoing transaction here (KIP-890 verifies exactly these).
    pub fn begins_txn(&self, h: &BatchHeader) -> bool {
        h.is_transactional() && !h.is_control() && !self.ongoing.contains_key(&h.producer_id)
    }

    /// Whether one more transaction may begin ([`MAX_ONGOING_TXNS`]).
    pub fn has_room(&self) -> bool {
        self.ongoing.len() < MAX_ONGOING_TXNS
    }

    /// The first offset of `producer_id`'s ongoing transaction, if it has one.
    pub fn ongoing_first_offset(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    pub fn ongoing_count(&self) -> usize {
        self.ongoing.len()
    }

    /// Records a data batch appended at `base_offset`: a transactional batch starts its
    /// producer's transaction unless one is ongoing.
    pub fn on_data(&mut self, h: &BatchHeader, base_offset: i64) {
        if self.begins_txn(h) {
            self.ongoing.insert(h.producer_id, base_offset);
            self.ongoing_firsts.insert(base_offset);
        }
    }

    /// Records `producer_id`'s marker appended at `offset`; `hw` is the high watermark now.
    /// Returns the aborted transaction it recorded, if it aborted one. A marker for a
    /// producer without an ongoing transaction here (Kafka writes one to every partition of
    /// the transaction, even those it wrote nothing to) only ends nothing.
    pub fn on_marker(
        &mut self,
        producer_id: i64,
        marker: MarkerType,
        offset: i64,
        hw: i64,
    ) -> Option<AbortedTxn> {
        self.drop_stable(hw);
        let first = self.ongoing.remove(&producer_id)?;
        self.ongoing_firsts.remove(&first);
        if offset >= hw {
            self.unreplicated.insert(offset, first);
        }
        if marker == MarkerType::Commit {
            return None;
        }
        // Kafka's lastStableOffset(completedTxn): the earliest other ongoing transaction.
        let next_ongoing = self.ongoing_firsts.first().copied();
        let entry = AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: offset,
            last_stable_offset: next_ongoing.unwrap_or(offset + 1),
        };
        self.aborted.push_back(entry);
        Some(entry)
    }

    /// Forgets completed transactions whose marker is below `hw`: they are stable.
    fn drop_stable(&mut self, hw: i64) {
        self.unreplicated = self.unreplicated.split_off(&hw);
    }

    /// Kafka's last stable offset: the high watermark, or the first offset of the earliest
    /// transaction that is not stable if that is lower.
    pub fn last_stable_offset(&mut self, hw: i64) -> i64 {
        self.drop_stable(hw);
        // A handful of markers at most are not below the high watermark: scanned.
        let unreplicated = self.unreplicated.values().min();
        [self.ongoing_firsts.first(), unreplicated]
            .into_iter()
            .flatten()
            .fold(hw, |lso, first| lso.min(*first))
    }

    /// The aborted transactions a fetch of `[from, upper)` must report (Kafka's
    /// `collectAbortedTxns`: marker at or after `from`, first offset below `upper`), as
    /// (producer id, first offset). Entries whose marker is below `log_start` are dropped
    /// first: their data and marker are gone (retention, DeleteRecords).
    pub fn aborted_overlapping(
        &mut self,
        from: i64,
        upper: i64,
        log_start: i64,
    ) -> Vec<(i64, i64)> {
        self.forget_aborted_below(log_start);
        // Markers are ordered; first offsets are not, so the tail from `from` is filtered.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted
            .range(start..)
            .filter(|a| a.first_offset < upper)
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// Drops the aborted transactions whose abort marker was at one of `marker_offsets`: the
    /// log cleaner removed those markers (their data went before), so no fetch may report
    /// them any more. A rebuild from the log would not find them either.
    pub fn forget_aborted_markers(&mut self, marker_offsets: &[i64]) {
        self.aborted
            .retain(|a| marker_offsets.binary_search(&a.last_offset).is_err());
    }

    /// Drops the aborted transactions whose marker is below `log_start`: retention or
    /// DeleteRecords removed their data and marker.
    pub fn forget_aborted_below(&mut self, log_start: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start)
        {
            self.aborted.pop_front();
        }
    }

    /// Every aborted transaction held (tests, diagnostics).
    pub fn aborted(&self) -> Vec<AbortedTxn> {
        self.aborted.iter().copied().collect()
    }

    /// Every ongoing transaction as (producer id, first offset), by producer id.
    pub fn ongoing(&self) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = self.ongoing.iter().map(|(p, f)| (*p, *f)).collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::tests::header;

    #[test]
    fn the_first_transactional_batch_begins_a_transaction_and_later_ones_do_not() {
        let mut t = TxnState::default();
        let h = header(7, 0, 0, 2, true);
        assert!(t.begins_txn(&h));
        t.on_data(&h, 10);
        assert!(!t.begins_txn(&header(7, 0, 2, 1, true)));
        t.on_data(&header(7, 0, 2, 1, true), 12);
        assert_eq!(t.ongoing_first_offset(7), Some(10));
        // Idempotent, non-transactional batches never begin one.
        assert!(!t.begins_txn(&header(8, 0, 0, 1, false)));
        t.on_marker(7, MarkerType::Commit, 13, 0);
        assert!(t.begins_txn(&header(7, 0, 3, 1, true)));
    }

    #[test]
    fn lso_is_the_earliest_unstable_first_offset_below_the_high_watermark() {
        let mut t = TxnState::default();
        assert_eq!(t.last_stable_offset(5), 5);
        t.on_data(&header(1, 0, 0, 1, true), 5);
        t.on_data(&header(2, 0, 0, 1, true), 6);
        assert_eq!(t.last_stable_offset(4), 4);
        assert_eq!(t.last_stable_offset(7), 5);
        // Producer 1 commits at 7: until the high watermark passes 7, its marker could be
        // lost in a failover, so the LSO stays at its first offset.
        t.on_marker(1, MarkerType::Commit, 7, 7);
        assert_eq!(t.last_stable_offset(7), 5);
        assert_eq!(t.last_stable_offset(8), 6);
        t.on_marker(2, MarkerType::Abort, 8, 8);
        assert_eq!(t.last_stable_offset(8), 6);
        assert_eq!(t.last_stable_offset(9), 9);
        // A marker already below the high watermark it is recorded with (a rebuild from the
        // log, given the checkpointed high watermark) is stable at once: nothing is kept.
        t.on_data(&header(3, 0, 0, 1, true), 9);
        t.on_marker(3, MarkerType::Commit, 10, 20);
        assert!(t.unreplicated.is_empty());
        assert_eq!(t.last_stable_offset(11), 11);
    }

    #[test]
    fn aborted_index_entries_overlap_fetches_and_go_below_the_log_start() {
        let mut t = TxnState::default();
        t.on_data(&header(1, 0, 0, 1, true), 0);
        t.on_data(&header(2, 0, 0, 1, true), 1);
        let a = t.on_marker(2, MarkerType::Abort, 3, 0).expect("aborted");
        // Producer 1's transaction (first offset 0) is still open.
        assert_eq!(
            a,
            AbortedTxn {
                producer_id: 2,
                first_offset: 1,
                last_offset: 3,
                last_stable_offset: 0
            }
        );
        assert_eq!(t.on_marker(1, MarkerType::Commit, 4, 0), None);
        t.on_data(&header(1, 0, 1, 1, true), 5);
        let b = t.on_marker(1, MarkerType::Abort, 6, 0).expect("aborted");
        assert_eq!(b.last_stable_offset, 7);
        assert_eq!(t.aborted_overlapping(0, 10, 0), vec![(2, 1), (1, 5)]);
        // Fetching [4, 5) overlaps neither's data; [4, 6) has producer 1's batch at 5.
        assert_eq!(t.aborted_overlapping(4, 5, 0), vec![]);
        assert_eq!(t.aborted_overlapping(4, 6, 0), vec![(1, 5)]);
        assert_eq!(t.aborted_overlapping(0, 2, 0), vec![(2, 1)]);
        // Retention moved the log start past the first abort marker: that entry goes.
        assert_eq!(t.aborted_overlapping(0, 10, 4), vec![(1, 5)]);
        assert_eq!(t.aborted().len(), 1);
    }

    #[test]
    fn a_marker_without_an_ongoing_transaction_ends_nothing() {
        let mut t = TxnState::default();
        assert_eq!(t.on_marker(9, MarkerType::Abort, 0, 0), None);
        assert!(t.aborted().is_empty());
        assert_eq!(t.last_stable_offset(1), 1);
    }
}
