//! Leader epochs of one log: where each epoch's batches start. Kafka's leader-epoch cache.
//!
//! Invariant (enforced by [`EpochCache::record`]): epochs and start offsets both strictly
//! increase along the list, because a log only ever receives batches from leaders of
//! non-decreasing epochs.

/// (epoch, first offset of that epoch's batches), in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

/// Bound on remembered epochs; the oldest are dropped past it (they only matter for a
/// follower diverging that far back, which then truncates to the oldest kept start).
const MAX_EPOCHS: usize = 10_000;

impl EpochCache {
    /// Notes a batch of leader epoch `epoch` at `offset`. A batch of an epoch already known
    /// (or older, which a valid log never holds) changes nothing.
    pub fn record(&mut self, epoch: i32, offset: i64) {
        if epoch < 0 {
            return;
        }
        if self.entries.last().is_some_and(|(e, _)| *e >= epoch) {
            return;
        }
        if self.entries.len() == MAX_EPOCHS {
            self.entries.remove(0);
        }
        self.entries.push((epoch, offset));
    }

    /// The epoch of the last batch, -1 for an empty log.
    pub fn last_epoch(&self) -> i32 {
        self.entries.last().map_or(-1, |(e, _)| *e)
    }

    /// Forgets epochs whose batches all lie at or after `offset` (the log was cut there).
    pub fn truncate_from(&mut self, offset: i64) {
        self.entries.retain(|(_, start)| *start < offset);
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch `<= epoch` in this log and the offset
    /// where it ends (the start of the next epoch, or `log_end` for the last one). `None` when
    /// the log holds no such epoch.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|(e, _)| *e <= epoch);
        if i == 0 {
            return None;
        }
        let (e, _) = self.entries[i - 1];
        let end = self.entries.get(i).map_or(log_end, |(_, start)| *start);
        Some((e, end))
    }

    /// Start offset of the oldest remembered epoch.
    pub fn first_start(&self) -> Option<i64> {
        self.entries.first().map(|(_, s)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka() {
        let mut c = EpochCache::default();
        assert_eq!(c.end_offset_for(3, 0), None);
        c.record(1, 0);
        c.record(1, 5);
        c.record(3, 10);
        c.record(2, 12); // older epoch: ignored
        c.record(4, 20);
        assert_eq!(c.last_epoch(), 4);
        assert_eq!(c.end_offset_for(0, 30), None);
        assert_eq!(c.end_offset_for(1, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(2, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(9, 30), Some((4, 30)));
        c.truncate_from(20);
        assert_eq!(c.last_epoch(), 3);
        assert_eq!(c.end_offset_for(9, 15), Some((3, 15)));
        c.truncate_from(0);
        assert_eq!(c.last_epoch(), -1);
    }
}
