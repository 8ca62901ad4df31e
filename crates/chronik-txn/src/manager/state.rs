//! One transactional id's metadata and its transitions: Kafka's `TransactionMetadata`
//! `prepare*` methods for clients below transaction.version 2 (the epoch is bumped only by
//! InitProducerId and by fencing, never by EndTxn).
//!
//! A transition is *prepared* (the target fields computed, the id marked pending so that no
//! second transition starts) and *completed* only once its record is durable in the log, as
//! Kafka does: a crash between the two leaves the log, not memory, as the truth.

use std::collections::BTreeSet;

use crate::record::{TopicPartition, TxnLogValue, TxnState};

use super::RequestId;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's `isEpochExhausted`: the last epochs are kept so the coordinator can always fence
/// (one bump past what any client was given).
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The fields one record of the transaction log holds, plus the last epoch (kept in memory
/// only, as Kafka below transaction.version 2) that lets a retried InitProducerId through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnFields {
    pub producer_id: i64,
    pub prev_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_transaction_version: i16,
}

impl TxnFields {
    pub fn to_value(&self) -> TxnLogValue {
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.prev_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            transaction_timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            last_update_timestamp_ms: self.last_update_ms,
            start_timestamp_ms: self.start_ms,
            client_transaction_version: self.client_transaction_version,
            next_producer_epoch: -1,
        }
    }

    /// What a replayed record means (the last epoch is not in the record: Kafka loads it as
    /// NO_PRODUCER_EPOCH too; the next epoch is transaction.version 2's, never written here).
    pub fn from_value(v: TxnLogValue) -> TxnFields {
        TxnFields {
            producer_id: v.producer_id,
            prev_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: v.transaction_timeout_ms,
            state: v.state,
            partitions: v.partitions,
            start_ms: v.start_timestamp_ms,
            last_update_ms: v.last_update_timestamp_ms,
            client_transaction_version: v.client_transaction_version,
        }
    }
}

/// Who waits for a pending transition, and what comes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingKind {
    /// InitProducerId's epoch bump or id rotation: answer with the new id and epoch.
    InitProducerId(RequestId),
    /// Partitions (or the group's offsets partition) join the transaction: answer OK.
    AddPartitions(RequestId),
    /// PrepareCommit / PrepareAbort: then markers. `reply` is the EndTxn to answer OK, or the
    /// InitProducerId that fenced an ongoing transaction (answered CONCURRENT_TRANSACTIONS, so
    /// the client retries once the abort completed); None for a timeout's abort.
    Prepare { reply: Option<Reply> },
    /// The Prepare record is durable and the markers are being written; `target` is the
    /// CompleteCommit / CompleteAbort record to append once they are.
    Markers,
    /// The Complete record is being appended. `retry`: its append failed and `tick` appends it
    /// again (Kafka's marker manager retries it likewise, without bound: the transaction cannot
    /// move on otherwise).
    Complete { retry: bool },
    /// The transactional id expired: its tombstone is being appended.
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    EndTxn(RequestId),
    FencedByInit(RequestId),
}

/// A prepared transition: the fields to take once `seq`'s append is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub target: TxnFields,
    pub kind: PendingKind,
    /// Which append this is (AppendToken::seq): a late answer for an older one is ignored.
    pub seq: u64,
}

/// One transactional id on its coordinator.
#[derive(Debug, Clone)]
pub struct TxnMetadata {
    pub fields: TxnFields,
    /// At most one transition at a time (Kafka's pendingState); while set, other requests get
    /// CONCURRENT_TRANSACTIONS.
    pub pending: Option<Pending>,
    /// A fence's Prepare append failed after the epoch was bumped in memory: the next fence
    /// must not bump again (that epoch was never given to any client). Kafka's
    /// hasFailedEpochFence.
    pub failed_epoch_fence: bool,
}

impl TxnMetadata {
    /// A new transactional id (InitProducerId): epoch -1 until its first transition, as Kafka
    /// creates it.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            fields: TxnFields {
                producer_id,
                prev_producer_id: NO_PRODUCER_ID,
                next_producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now_ms,
                client_transaction_version: 0,
            },
            pending: None,
            failed_epoch_fence: false,
        }
    }

    pub fn loaded(fields: TxnFields) -> TxnMetadata {
        TxnMetadata {
            fields,
            pending: None,
            failed_epoch_fence: false,
        }
    }

    /// The common part of every transition: Kafka's TxnTransitMetadata records the producer
    /// id it replaces as the previous one.
    fn transit(&self, state: TxnState) -> TxnFields {
        TxnFields {
            prev_producer_id: self.fields.producer_id,
            state,
            ..self.fields.clone()
        }
    }

    /// Kafka's `prepareIncrementProducerEpoch` (InitProducerId). `expected_epoch` is the
    /// epoch the client sent with its producer id (KIP-360), if any. Errors are Kafka's error
    /// codes: PRODUCER_FENCED for a stale expected epoch.
    pub fn prepare_increment_epoch(
        &self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<TxnFields, i16> {
        use kafka_protocol::ResponseError::*;
        let cur = &self.fields;
        if epoch_exhausted(cur.producer_epoch) {
            // Kafka throws IllegalStateException here (the caller rotates the id when the
            // client's epoch matches): it reaches the client as an unknown server error.
            return Err(UnknownServerError.code());
        }
        let bumped = cur.producer_epoch + 1;
        let (epoch, last) = match expected_epoch {
            // No expected epoch: a new instance; a new id's -1 becomes 0.
            None => (bumped, NO_PRODUCER_EPOCH),
            // The current instance recovering after an error, or a new id.
            Some(e) if cur.producer_epoch == NO_PRODUCER_EPOCH || e == cur.producer_epoch => {
                (bumped, cur.producer_epoch)
            }
            // A retry of a bump that succeeded: answer the same epoch again.
            Some(e) if e == cur.last_producer_epoch => {
                (cur.producer_epoch, cur.last_producer_epoch)
            }
            Some(_) => return Err(ProducerFenced.code()),
        };
        Ok(TxnFields {
            producer_epoch: epoch,
            last_producer_epoch: last,
            timeout_ms,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            ..self.transit(TxnState::Empty)
        })
    }

    /// Kafka's `prepareProducerIdRotation`: the epoch is exhausted, so InitProducerId moves
    /// the transactional id to a new producer id at epoch 0.
    pub fn prepare_rotation(
        &self,
        new_producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> TxnFields {
        TxnFields {
            producer_id: new_producer_id,
            producer_epoch: 0,
            last_producer_epoch: if record_last_epoch {
                self.fields.producer_epoch
            } else {
                NO_PRODUCER_EPOCH
            },
            timeout_ms,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            ..self.transit(TxnState::Empty)
        }
    }

    /// Kafka's `prepareAddPartitions`: the transaction starts (its start time is set) when the
    /// first partition joins after Empty or a completed transaction.
    pub fn prepare_add_partitions(
        &self,
        added: impl IntoIterator<Item = TopicPartition>,
        now_ms: i64,
    ) -> TxnFields {
        let starts = matches!(
            self.fields.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        );
        let mut partitions = self.fields.partitions.clone();
        partitions.extend(added);
        TxnFields {
            partitions,
            start_ms: if starts { now_ms } else { self.fields.start_ms },
            last_update_ms: now_ms,
            client_transaction_version: 0,
            ..self.transit(TxnState::Ongoing)
        }
    }

    /// Kafka's `prepareAbortOrCommit` below transaction.version 2: the epoch stays.
    pub fn prepare_abort_or_commit(&self, commit: bool, now_ms: i64) -> TxnFields {
        let state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        TxnFields {
            next_producer_id: NO_PRODUCER_ID,
            last_update_ms: now_ms,
            client_transaction_version: 0,
            ..self.transit(state)
        }
    }

    /// Kafka's `prepareComplete`: after the markers, the partitions are forgotten.
    pub fn prepare_complete(&self, now_ms: i64) -> TxnFields {
        let state = if self.fields.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        TxnFields {
            next_producer_id: NO_PRODUCER_ID,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            ..self.transit(state)
        }
    }

    /// Kafka's `prepareFenceProducerEpoch` followed by the abort it leads to (its
    /// PrepareEpochFence state is never written: the fence *is* the PrepareAbort record with
    /// the bumped epoch). The bump happens in memory at once, so requests of the fenced
    /// instance get PRODUCER_FENCED from now on, and is not repeated after a failed attempt.
    pub fn fence_and_prepare_abort(&mut self, now_ms: i64) -> TxnFields {
        let epoch = self.fields.producer_epoch;
        if !self.failed_epoch_fence && epoch != i16::MAX {
            self.fields.producer_epoch = epoch + 1;
        }
        self.fields.last_producer_epoch = NO_PRODUCER_EPOCH;
        self.prepare_abort_or_commit(false, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::ResponseError::*;

    fn at_epoch(epoch: i16, last: i16) -> TxnMetadata {
        let mut m = TxnMetadata::new(7, 1000, 0);
        m.fields.producer_epoch = epoch;
        m.fields.last_producer_epoch = last;
        m
    }

    #[test]
    fn init_epoch_rules_follow_kip_360() {
        // A new id: -1 becomes 0 with or without an expected epoch.
        let m = TxnMetadata::new(7, 1000, 0);
        assert_eq!(
            m.prepare_increment_epoch(500, None, 9)
                .unwrap()
                .producer_epoch,
            0
        );
        assert_eq!(
            m.prepare_increment_epoch(500, Some(3), 9)
                .unwrap()
                .producer_epoch,
            0
        );
        // The current epoch: bumped, and remembered as the last one.
        let m = at_epoch(4, -1);
        let t = m.prepare_increment_epoch(500, Some(4), 9).unwrap();
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (5, 4));
        assert_eq!((t.timeout_ms, t.start_ms, t.last_update_ms), (500, -1, 9));
        // A retry of that bump gets the same answer.
        let m = at_epoch(5, 4);
        let t = m.prepare_increment_epoch(500, Some(4), 9).unwrap();
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (5, 4));
        // Anything else is fenced.
        assert_eq!(
            m.prepare_increment_epoch(500, Some(3), 9),
            Err(ProducerFenced.code())
        );
        // No expected epoch: a new instance, the last epoch forgotten.
        let t = m.prepare_increment_epoch(500, None, 9).unwrap();
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (6, -1));
        assert_eq!(t.prev_producer_id, 7);
    }

    #[test]
    fn a_failed_fence_does_not_bump_twice() {
        let mut m = at_epoch(4, 3);
        m.fields.state = TxnState::Ongoing;
        let t = m.fence_and_prepare_abort(5);
        assert_eq!((t.producer_epoch, t.state), (5, TxnState::PrepareAbort));
        assert_eq!(m.fields.producer_epoch, 5, "bumped in memory at once");
        m.failed_epoch_fence = true;
        assert_eq!(m.fence_and_prepare_abort(6).producer_epoch, 5);
        let mut m = at_epoch(i16::MAX, -1);
        assert_eq!(m.fence_and_prepare_abort(6).producer_epoch, i16::MAX);
    }

    #[test]
    fn complete_forgets_partitions_and_keeps_the_start() {
        let mut m = at_epoch(1, -1);
        let t = m.prepare_add_partitions([TopicPartition::new("t", 0)], 100);
        assert_eq!((t.state, t.start_ms), (TxnState::Ongoing, 100));
        m.fields = t;
        let t = m.prepare_add_partitions([TopicPartition::new("t", 1)], 200);
        assert_eq!((t.start_ms, t.partitions.len()), (100, 2));
        m.fields = m.prepare_abort_or_commit(true, 300);
        let t = m.prepare_complete(400);
        assert_eq!(t.state, TxnState::CompleteCommit);
        assert!(t.partitions.is_empty());
        assert_eq!(
            (t.start_ms, t.last_update_ms, t.producer_epoch),
            (100, 400, 1)
        );
    }
}
