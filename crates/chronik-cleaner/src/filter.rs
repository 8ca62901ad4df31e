//! What a cleaned log keeps of each batch: Kafka's `MemoryRecords.filterTo` driven by the
//! cleaner's `checkBatchRetention` and `shouldRetainRecord` (LogCleaner.scala).
//!
//! A record is kept when it lies past the map's latest offset (this pass did not index that
//! far), or when it has a key, no later offset for that key is in the map, and it has a value
//! or is a tombstone whose delete horizon has not passed. Keyless records are dropped (Kafka
//! refuses them at produce on compacted topics; the cleaner drops any it finds).
//!
//! KIP-534: a v2 batch that keeps a tombstone and has no delete horizon yet gets one:
//! attribute bit 6 and base timestamp = clean time + `delete.retention.ms` (every kept
//! record's timestamp delta is re-based so its timestamp stays). A later clean at or past that
//! time drops the tombstones (`now >= horizon`).
//!
//! A rewritten batch keeps its base offset, last offset delta, base sequence, producer id and
//! epoch, partition leader epoch, timestamp type and codec; each kept record keeps its offset,
//! timestamp, key, value, headers and attributes byte for byte; the CRC is new. CreateTime
//! batches get the kept records' largest timestamp as max timestamp (as Kafka's builder);
//! LogAppendTime batches keep theirs. A batch left with no record is dropped, unless it holds
//! the last offset of an active producer: Kafka then keeps an empty batch (the header only,
//! `DefaultRecordBatch.writeEmptyHeader`) so the producer's last sequence and epoch survive.
//!
//! Transactions (the walk's [`TxnTracker`], Kafka's `CleanedTransactionMetadata`): a batch of
//! an aborted transaction loses every record; a committed transaction's records are compacted
//! like any. A control batch keeps its record until its transaction has no batch left in the
//! log; then the marker gets a delete horizon (KIP-534, as a tombstone's batch: clean time +
//! `delete.retention.ms`), and a clean at or past it removes the marker. An empty control
//! batch goes at once. A marker that is its producer's last state (it bumped the epoch) stays.

use std::collections::HashMap;

use crate::batch::{decode, rebase_timestamp, BatchHeader, CleanError, ATTR_DELETE_HORIZON};
use crate::offset_map::OffsetMap;
use crate::txn::{ControlType, TxnTracker};

/// Producers whose state must outlive their records (Kafka's `lastRecordsOfActiveProducers`,
/// from the producer state manager): producer id → the last offset of the batch that holds
/// its state. That is its last data batch (its last sequence), or a later marker that bumped
/// its epoch (Kafka clears a producer's batch metadata when the epoch changes, so its last
/// record is then the marker, which carries the epoch a rebuild must fence with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveProducers {
    /// Producer id → (last offset of its state batch, that batch's epoch, whether it is a
    /// marker).
    last: HashMap<i64, (i64, i16, bool)>,
}

impl ActiveProducers {
    pub fn new() -> ActiveProducers {
        ActiveProducers::default()
    }

    /// `producer_id`'s state is in the batch ending at `last_offset`.
    pub fn insert(&mut self, producer_id: i64, last_offset: i64) {
        self.last
            .insert(producer_id, (last_offset, i16::MIN, false));
    }

    /// Forgets a producer (it expired: nothing of it needs to stay).
    pub fn remove(&mut self, producer_id: i64) {
        self.last.remove(&producer_id);
    }

    /// Learns from a batch header read in log order (for callers that rebuild this from the
    /// log rather than from their producer state).
    pub fn observe(&mut self, header: &BatchHeader) {
        self.observe_batch(
            header.producer_id,
            header.producer_epoch,
            header.last_offset(),
            header.is_control(),
        );
    }

    /// [`observe`](Self::observe) from the header fields: a data batch with a producer id
    /// becomes that producer's state batch; a marker does when it bumped the producer's epoch
    /// (or the producer has no data batch).
    pub fn observe_batch(&mut self, producer_id: i64, epoch: i16, last_offset: i64, control: bool) {
        if producer_id < 0 {
            return;
        }
        // A later marker of an epoch with no data batch yet holds the state too.
        let bumps = self
            .last
            .get(&producer_id)
            .is_none_or(|&(_, e, marker)| epoch > e || (marker && epoch == e));
        if !control || bumps {
            self.last.insert(producer_id, (last_offset, epoch, control));
        }
    }

    /// Whether `header` is the batch holding its producer's state.
    pub fn is_last_batch(&self, header: &BatchHeader) -> bool {
        header.has_producer_id()
            && self.last.get(&header.producer_id).map(|l| l.0) == Some(header.last_offset())
    }
}

/// Everything a batch's fate depends on besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct FilterContext<'a> {
    /// The map of this pass.
    pub map: &'a OffsetMap,
    /// The clean's time (Kafka's `currentTime`): horizons are set from it and compared to it.
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
    pub producers: &'a ActiveProducers,
    /// Most bytes one batch's records may decompress to.
    pub max_decompressed_bytes: usize,
}

/// What becomes of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Kept byte for byte.
    Unchanged,
    /// Replaced by this batch (same base offset and last offset).
    Rewritten(Vec<u8>),
    /// Every record went, but the batch is its producer's last: replaced by this header-only
    /// batch (no records, same offsets, producer fields and max timestamp).
    Emptied(Vec<u8>),
    /// Nothing of it stays.
    Removed,
}

/// Counters of a clean (Kafka's `CleanerStats`), summed over the batches filtered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    pub batches_read: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    /// Older versions of a key dropped.
    pub superseded: u64,
    /// Tombstones dropped after their delete horizon.
    pub tombstones_removed: u64,
    /// Keyless records dropped (Kafka's `invalidMessagesRead`).
    pub keyless_removed: u64,
    /// Records of aborted transactions dropped.
    pub aborted_removed: u64,
    /// Transaction markers (and empty control batches) removed.
    pub markers_removed: u64,
}

/// Filters one batch (exactly one v2 batch) against the pass's map; `txns` is the pass's walk,
/// which must see every batch from the log start in order.
pub fn filter_batch(
    batch: &[u8],
    ctx: &FilterContext<'_>,
    txns: &mut TxnTracker,
    stats: &mut FilterStats,
) -> Result<Filtered, CleanError> {
    stats.batches_read += 1;
    stats.bytes_read += batch.len() as u64;
    let header = BatchHeader::parse(batch)?;
    let out = if header.is_control() {
        filter_control(batch, &header, ctx, txns, stats)?
    } else {
        filter_data(batch, &header, ctx, txns, stats)?
    };
    stats.bytes_written += match &out {
        Filtered::Unchanged => batch.len(),
        Filtered::Rewritten(b) | Filtered::Emptied(b) => b.len(),
        Filtered::Removed => 0,
    } as u64;
    Ok(out)
}

/// The fate of a data batch: Kafka's `shouldRetainRecord` for each record, or nothing of it
/// if it belongs to an aborted transaction.
fn filter_data(
    batch: &[u8],
    header: &BatchHeader,
    ctx: &FilterContext<'_>,
    txns: &mut TxnTracker,
    stats: &mut FilterStats,
) -> Result<Filtered, CleanError> {
    let aborted = txns.on_batch(header);
    let latest = ctx.map.latest_offset().unwrap_or(-1);
    // Past the pass's end the batch waits for the pass that indexes it, aborted or not.
    if aborted && header.last_offset() <= latest {
        let count = u64::try_from(header.record_count).unwrap_or(0);
        stats.records_read += count;
        stats.aborted_removed += count;
        if count == 0 && ctx.producers.is_last_batch(header) {
            return Ok(Filtered::Unchanged);
        }
        return nothing_kept(header, ctx);
    }
    let decoded = decode(batch, header, ctx.max_decompressed_bytes)?;
    let horizon = header.delete_horizon_ms();
    let retain_deletes = horizon.is_none_or(|h| ctx.now_ms < h);
    let mut kept = Vec::with_capacity(decoded.records.len());
    for (i, record) in decoded.records.iter().enumerate() {
        stats.records_read += 1;
        if record.offset > latest {
            kept.push(i);
            continue;
        }
        let Some(key) = &record.key else {
            stats.keyless_removed += 1;
            continue;
        };
        if ctx.map.get(key).is_some_and(|o| o > record.offset) {
            stats.superseded += 1;
        } else if record.value.is_none() && !retain_deletes {
            stats.tombstones_removed += 1;
        } else {
            kept.push(i);
        }
    }
    stats.records_kept += kept.len() as u64;
    if kept.is_empty() {
        return nothing_kept(header, ctx);
    }
    let has_tombstone = kept.iter().any(|&i| decoded.records[i].value.is_none());
    let set_horizon = has_tombstone && horizon.is_none();
    if kept.len() == decoded.records.len() && !set_horizon {
        return Ok(Filtered::Unchanged);
    }
    let horizon = set_horizon.then(|| ctx.now_ms.saturating_add(ctx.delete_retention_ms));
    Ok(Filtered::Rewritten(rewrite(
        header, &decoded, &kept, horizon,
    )?))
}

/// A data batch none of whose records stays: removed, unless it is its producer's last batch,
/// which stays emptied so that the producer's sequence and epoch survive a rebuild.
fn nothing_kept(header: &BatchHeader, ctx: &FilterContext<'_>) -> Result<Filtered, CleanError> {
    Ok(match ctx.producers.is_last_batch(header) {
        true => Filtered::Emptied(empty_batch(header)?),
        false => Filtered::Removed,
    })
}

/// The fate of a control batch (Kafka's `checkBatchRetention` for control batches): kept
/// while its transaction has a batch in the log; then stamped with a delete horizon; removed
/// by a clean at or past that horizon.
fn filter_control(
    batch: &[u8],
    header: &BatchHeader,
    ctx: &FilterContext<'_>,
    txns: &mut TxnTracker,
    stats: &mut FilterStats,
) -> Result<Filtered, CleanError> {
    let decoded = decode(batch, header, ctx.max_decompressed_bytes)?;
    let control = decoded
        .records
        .first()
        .map(|r| ControlType::from_key(r.key.as_deref()));
    let discardable = txns.on_control(header, control);
    let latest = ctx.map.latest_offset().unwrap_or(-1);
    if !discardable || header.last_offset() > latest || ctx.producers.is_last_batch(header) {
        return Ok(Filtered::Unchanged);
    }
    if control.is_none() {
        stats.markers_removed += 1;
        return Ok(Filtered::Removed);
    }
    Ok(match header.delete_horizon_ms() {
        Some(h) if ctx.now_ms >= h => {
            stats.markers_removed += 1;
            Filtered::Removed
        }
        Some(_) => Filtered::Unchanged,
        None => {
            let all: Vec<usize> = (0..decoded.records.len()).collect();
            let horizon = ctx.now_ms.saturating_add(ctx.delete_retention_ms);
            Filtered::Rewritten(rewrite(header, &decoded, &all, Some(horizon))?)
        }
    })
}

/// The batch with only the records at `kept` (indexes into the decoded records), and, when
/// `new_horizon` is given, that delete horizon as its base timestamp.
fn rewrite(
    header: &BatchHeader,
    decoded: &crate::batch::Decoded,
    kept: &[usize],
    new_horizon: Option<i64>,
) -> Result<Vec<u8>, CleanError> {
    let mut h = *header;
    h.record_count = i32::try_from(kept.len()).map_err(|_| rewrite_error("too many records"))?;
    if !header.is_log_append_time() {
        h.max_timestamp = kept
            .iter()
            .map(|&i| decoded.records[i].timestamp)
            .max()
            .unwrap_or(header.max_timestamp);
    }
    let mut section = Vec::with_capacity(kept.iter().map(|&i| decoded.raw[i].len()).sum());
    match new_horizon {
        None => {
            for &i in kept {
                section.extend_from_slice(&decoded.raw[i]);
            }
        }
        Some(horizon) => {
            h.attributes |= ATTR_DELETE_HORIZON;
            h.base_timestamp = horizon;
            for &i in kept {
                let delta = decoded.records[i]
                    .timestamp
                    .checked_sub(horizon)
                    .ok_or_else(|| rewrite_error("timestamp delta overflows"))?;
                rebase_timestamp(&decoded.raw[i], delta, &mut section)?;
            }
        }
    }
    h.encode(&section)
}

/// Kafka's `DefaultRecordBatch.writeEmptyHeader`: same offsets, producer fields and leader
/// epoch; no codec, no delete horizon; base and max timestamp = the batch's max timestamp.
fn empty_batch(header: &BatchHeader) -> Result<Vec<u8>, CleanError> {
    let mut h = *header;
    h.attributes &= !(crate::batch::ATTR_CODEC | ATTR_DELETE_HORIZON);
    h.base_timestamp = header.max_timestamp;
    h.record_count = 0;
    h.encode(&[])
}

fn rewrite_error(what: &str) -> CleanError {
    CleanError::Corrupt(what.to_string())
}

/// Filters every batch of `buf` (consecutive batches, as a segment holds them) and returns
/// what the cleaned log keeps of them, in order.
pub fn filter_batches(
    buf: &[u8],
    ctx: &FilterContext<'_>,
    txns: &mut TxnTracker,
    stats: &mut FilterStats,
) -> Result<Vec<u8>, CleanError> {
    let mut out = Vec::with_capacity(buf.len());
    for batch in crate::batch::split_batches(buf) {
        let batch = batch?;
        match filter_batch(batch, ctx, txns, stats)? {
            Filtered::Unchanged => out.extend_from_slice(batch),
            Filtered::Rewritten(b) | Filtered::Emptied(b) => out.extend_from_slice(&b),
            Filtered::Removed => {}
        }
    }
    Ok(out)
}
