//! What the cleaner knows of transactions while it walks a log in offset order: Kafka's
//! `CleanedTransactionMetadata` (LogCleaner.scala).
//!
//! The caller hands over the log's aborted transactions (its aborted-transaction index: each
//! one's producer, first offset and abort marker offset); every other transactional batch
//! below the cleaner's bound (at most the last stable offset) belongs to a committed
//! transaction. Walking the batches in order, an aborted transaction becomes *ongoing* once
//! a batch at or past its first offset is read, and ends at its producer's abort marker; each
//! transactional batch of a producer with an ongoing aborted transaction is aborted.
//!
//! A marker may go once no batch of its transaction was read in this walk (every batch of the
//! transaction is already gone from the log): an abort marker must stay while any aborted
//! batch does, so read_committed consumers and an aborted index rebuilt from the log still
//! skip it; a commit marker must stay while any batch of its transaction does, so a rebuild
//! from the log does not take the transaction for open. Empty control batches may always go.
//!
//! The walk must start at the log start (the filter's) or at the dirty offset (the offset
//! map's, which only needs to know which batches are aborted): Chronik rebuilds transaction
//! state from the whole log, so unlike Kafka (which tracks this per segment group) a marker is
//! judged against every batch before it.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::batch::BatchHeader;

/// One entry of the aborted-transaction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The abort marker's offset.
    pub last_offset: i64,
}

/// The type of a control batch's record (Kafka's `ControlRecordType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
    /// Any other control record (never in a data partition): kept as it is.
    Other,
}

impl ControlType {
    /// From a control record's key: `(version i16, type i16)`.
    pub fn from_key(key: Option<&[u8]>) -> ControlType {
        match key {
            Some(k) if k.len() >= 4 => match i16::from_be_bytes([k[2], k[3]]) {
                0 => ControlType::Abort,
                1 => ControlType::Commit,
                _ => ControlType::Other,
            },
            _ => ControlType::Other,
        }
    }
}

/// An aborted transaction whose first batch the walk has passed, not yet its marker.
#[derive(Debug, Clone, Copy)]
struct Ongoing {
    /// Whether a batch of it was read in this walk.
    observed: bool,
}

/// The transaction state of one walk over a log (one per offset map build, one per filter
/// pass). Its size is bounded by the index handed in and by the producers of the log.
#[derive(Debug, Clone, Default)]
pub struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Producer → its aborted transaction the walk is inside of.
    aborted: HashMap<i64, Ongoing>,
    /// Producers with a committed transaction the walk read a batch of and whose marker it
    /// has not reached yet.
    committed: HashSet<i64>,
}

impl TxnTracker {
    /// A walk over a log whose aborted-transaction index is `aborted` (any order).
    pub fn new(mut aborted: Vec<AbortedTxn>) -> TxnTracker {
        aborted.sort_by_key(|a| a.first_offset);
        TxnTracker {
            pending: aborted.into(),
            ..TxnTracker::default()
        }
    }

    /// Kafka's `consumeAbortedTxnsUpTo`: aborted transactions starting at or before `offset`
    /// become ongoing.
    fn reach(&mut self, offset: i64) {
        while self
            .pending
            .front()
            .is_some_and(|a| a.first_offset <= offset)
        {
            if let Some(a) = self.pending.pop_front() {
                self.aborted
                    .entry(a.producer_id)
                    .or_insert(Ongoing { observed: false });
            }
        }
    }

    /// Reads a data batch (Kafka's `onBatchRead`): whether it belongs to an aborted
    /// transaction.
    pub fn on_batch(&mut self, h: &BatchHeader) -> bool {
        self.reach(h.last_offset());
        if !h.is_transactional() || h.is_control() {
            return false;
        }
        match self.aborted.get_mut(&h.producer_id) {
            Some(a) => {
                a.observed = true;
                true
            }
            None => {
                self.committed.insert(h.producer_id);
                false
            }
        }
    }

    /// Reads a control batch whose record is of type `control` (`None`: an empty control
    /// batch, which a clean already emptied). Kafka's `onControlBatchRead`: whether the batch
    /// may go, as far as its transaction is concerned (no batch of it was read).
    pub fn on_control(&mut self, h: &BatchHeader, control: Option<ControlType>) -> bool {
        self.reach(h.last_offset());
        match control {
            None => true,
            Some(ControlType::Abort) => {
                !matches!(self.aborted.remove(&h.producer_id), Some(a) if a.observed)
            }
            Some(ControlType::Commit) => !self.committed.remove(&h.producer_id),
            Some(ControlType::Other) => false,
        }
    }
}
