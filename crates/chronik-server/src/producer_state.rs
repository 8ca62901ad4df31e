//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! metadata of its last few batches, so that a retried batch is recognised as a duplicate
//! and answered with its original offsets, and a gap in sequence numbers is refused.
//!
//! Rules (Kafka's): an unknown producer may start at any sequence; a new epoch must start
//! at sequence 0; an older epoch is fenced; within an epoch the next batch must start at
//! the last sequence + 1 (wrapping after i32::MAX).

use std::collections::{HashMap, VecDeque};

use chronik_wal::BatchHeader;

/// How many recent batches are remembered per producer (Kafka keeps 5, matching the
/// client's max.in.flight.requests.per.connection limit for idempotence).
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Kafka's RecordBatch.NO_SEQUENCE.
const NO_SEQUENCE: i32 = -1;
/// Bound on producers tracked per partition; the least recently written is evicted first.
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// Offset of the last batch written, for eviction order.
    last_offset: i64,
    /// Max timestamp of the last batch written (DescribeProducers' last_timestamp).
    last_timestamp: i64,
    /// Epoch of the transaction coordinator that wrote this producer's last marker (-1: none
    /// yet); a marker from an older coordinator is fenced.
    coordinator_epoch: i32,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// Epoch of the coordinator of its last transaction marker (-1: none).
    pub coordinator_epoch: i32,
    /// First offset of its ongoing transaction (-1: none); filled in by the partition.
    pub current_txn_start_offset: i64,
}

/// The verdict on a transaction marker (Kafka's `ProducerAppendInfo.appendEndTxnMarker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerCheck {
    Append,
    /// The marker's producer epoch is older than the producer's (INVALID_PRODUCER_EPOCH).
    Fenced {
        current: i16,
        got: i16,
    },
    /// Written by an older coordinator than the last marker (TRANSACTION_COORDINATOR_FENCED).
    CoordinatorFenced {
        current: i32,
        got: i32,
    },
}

/// The verdict on an incoming batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqCheck {
    /// Not idempotent, or next in sequence: append it.
    Append,
    /// Already written: answer with these offsets without writing again.
    Duplicate(BatchMeta),
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    /// The producer's epoch is older than one already seen.
    Fenced {
        current: i16,
        got: i16,
    },
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

/// The sequence number after `seq`, wrapping like Kafka.
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The last sequence number of a batch, wrapping like Kafka.
fn last_seq(header: &BatchHeader) -> i32 {
    let last = header.base_sequence as i64 + header.last_offset_delta as i64;
    if last > i32::MAX as i64 {
        (last - i32::MAX as i64 - 1) as i32
    } else {
        last as i32
    }
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a batch before it is appended. Batches without a producer id always pass.
    pub fn check(&self, h: &BatchHeader) -> SeqCheck {
        if h.producer_id < 0 {
            return SeqCheck::Append;
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return SeqCheck::Append;
        };
        let (first, last) = (h.base_sequence, last_seq(h));
        if h.producer_epoch < entry.epoch {
            return SeqCheck::Fenced {
                current: entry.epoch,
                got: h.producer_epoch,
            };
        }
        // A transactional batch without a sequence is a coordinator's (TxnOffsetCommit's
        // offsets): Kafka checks only the epoch of coordinator-origin appends.
        if first == NO_SEQUENCE && h.is_transactional() {
            return SeqCheck::Append;
        }
        if h.producer_epoch > entry.epoch {
            return if first == 0 {
                SeqCheck::Append
            } else {
                SeqCheck::OutOfOrder {
                    expected: 0,
                    got: first,
                }
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return SeqCheck::Duplicate(*dup);
        }
        // No batch in this epoch yet (a marker bumped it): it starts at 0, as in Kafka.
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(0);
        if first == expected {
            SeqCheck::Append
        } else {
            SeqCheck::OutOfOrder {
                expected,
                got: first,
            }
        }
    }

    /// Records a batch that was appended at `base_offset..=last_offset` (or replayed
    /// from the log on start).
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_id < 0 {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset,
            last_offset: base_offset + h.last_offset_delta as i64,
        };
        if !self.producers.contains_key(&h.producer_id)
            && self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
        {
            self.evict_oldest();
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER),
                last_offset: meta.last_offset,
                last_timestamp: h.max_timestamp,
                coordinator_epoch: -1,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
        entry.last_offset = meta.last_offset;
        entry.last_timestamp = h.max_timestamp;
    }

    /// Checks a marker the coordinator writes for `producer_id` before it is appended.
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> MarkerCheck {
        let Some(entry) = self.producers.get(&producer_id) else {
            return MarkerCheck::Append;
        };
        if epoch < entry.epoch {
            return MarkerCheck::Fenced {
                current: entry.epoch,
                got: epoch,
            };
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return MarkerCheck::CoordinatorFenced {
                current: entry.coordinator_epoch,
                got: coordinator_epoch,
            };
        }
        MarkerCheck::Append
    }

    /// Records a marker appended at `offset` (or replayed from the log). A marker may carry a
    /// newer epoch than the transaction's data (the coordinator aborts a fenced producer's
    /// transaction with the bumped epoch): the producer's next batch then starts at 0.
    pub fn record_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
        offset: i64,
        timestamp: i64,
    ) {
        if !self.producers.contains_key(&producer_id)
            && self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
        {
            self.evict_oldest();
        }
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER),
                last_offset: offset,
                last_timestamp: timestamp,
                coordinator_epoch,
            });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(coordinator_epoch);
        entry.last_offset = offset;
        entry.last_timestamp = timestamp;
    }

    /// Every tracked producer, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| ActiveProducer {
                producer_id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: -1,
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    fn evict_oldest(&mut self) {
        if let Some((&pid, _)) = self.producers.iter().min_by_key(|(_, e)| e.last_offset) {
            self.producers.remove(&pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn sequences_duplicates_and_fencing() {
        let mut t = ProducerStateTable::default();
        assert_eq!(t.check(&h(1, 0, 0, 3)), SeqCheck::Append);
        t.record(&h(1, 0, 0, 3), 10);
        assert_eq!(t.check(&h(1, 0, 3, 2)), SeqCheck::Append);
        t.record(&h(1, 0, 3, 2), 13);
        // Retry of the first batch: duplicate with its original offsets.
        assert_eq!(
            t.check(&h(1, 0, 0, 3)),
            SeqCheck::Duplicate(BatchMeta {
                first_seq: 0,
                last_seq: 2,
                base_offset: 10,
                last_offset: 12
            })
        );
        assert_eq!(
            t.check(&h(1, 0, 9, 1)),
            SeqCheck::OutOfOrder {
                expected: 5,
                got: 9
            }
        );
        assert_eq!(t.check(&h(1, 1, 0, 1)), SeqCheck::Append);
        assert_eq!(
            t.check(&h(1, 1, 4, 1)),
            SeqCheck::OutOfOrder {
                expected: 0,
                got: 4
            }
        );
        t.record(&h(1, 1, 0, 1), 15);
        assert_eq!(
            t.check(&h(1, 0, 5, 1)),
            SeqCheck::Fenced { current: 1, got: 0 }
        );
        // Non-idempotent batches always pass.
        assert_eq!(t.check(&h(-1, -1, -1, 1)), SeqCheck::Append);
    }

    #[test]
    fn only_recent_batches_are_duplicates_and_sequence_wraps() {
        let mut t = ProducerStateTable::default();
        for i in 0..7 {
            t.record(&h(2, 0, i, 1), i as i64);
        }
        assert_eq!(
            t.check(&h(2, 0, 0, 1)),
            SeqCheck::OutOfOrder {
                expected: 7,
                got: 0
            }
        );
        assert!(matches!(t.check(&h(2, 0, 6, 1)), SeqCheck::Duplicate(_)));
        t.record(&h(3, 0, i32::MAX - 1, 2), 0);
        assert_eq!(t.check(&h(3, 0, 0, 1)), SeqCheck::Append);
    }

    #[test]
    fn markers_are_fenced_by_producer_and_coordinator_epochs() {
        let mut t = ProducerStateTable::default();
        // Unknown producer: a marker passes (Kafka writes one to every partition of the
        // transaction, including those it wrote nothing to).
        assert_eq!(t.check_marker(1, 0, 0), MarkerCheck::Append);
        t.record(&h(1, 2, 0, 1), 0);
        assert_eq!(
            t.check_marker(1, 1, 0),
            MarkerCheck::Fenced { current: 2, got: 1 }
        );
        assert_eq!(t.check_marker(1, 2, 5), MarkerCheck::Append);
        t.record_marker(1, 2, 5, 1, 0);
        assert_eq!(
            t.check_marker(1, 2, 4),
            MarkerCheck::CoordinatorFenced { current: 5, got: 4 }
        );
        // The next transaction goes on in sequence.
        assert_eq!(t.check(&h(1, 2, 1, 1)), SeqCheck::Append);
        // A marker with a bumped epoch (a fenced producer's transaction aborted): the
        // producer's next batch must start at sequence 0.
        t.record_marker(1, 3, 5, 2, 0);
        assert_eq!(
            t.check(&h(1, 3, 1, 1)),
            SeqCheck::OutOfOrder {
                expected: 0,
                got: 1
            }
        );
        assert_eq!(t.check(&h(1, 3, 0, 1)), SeqCheck::Append);
        assert_eq!(
            t.check(&h(1, 2, 2, 1)),
            SeqCheck::Fenced { current: 3, got: 2 }
        );
    }
}
