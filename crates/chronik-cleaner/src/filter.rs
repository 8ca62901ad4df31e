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
//! Control and transactional batches are kept untouched: Chronik does not produce
//! transactions yet, and dropping a marker or a transaction's records needs the
//! transaction state Kafka's `CleanedTransactionMetadata` tracks.

use std::collections::HashMap;

use crate::batch::{decode, rebase_timestamp, BatchHeader, CleanError, ATTR_DELETE_HORIZON};
use crate::offset_map::OffsetMap;

/// Producers whose state must outlive their records: producer id → the last offset of its
/// last data batch (Kafka's `lastRecordsOfActiveProducers`, from the producer state manager).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveProducers {
    last_offsets: HashMap<i64, i64>,
}

impl ActiveProducers {
    pub fn new() -> ActiveProducers {
        ActiveProducers::default()
    }

    /// `producer_id`'s last data batch ends at `last_offset`.
    pub fn insert(&mut self, producer_id: i64, last_offset: i64) {
        self.last_offsets.insert(producer_id, last_offset);
    }

    /// Learns from a batch header read in log order: a data batch with a producer id becomes
    /// that producer's last (for callers that rebuild this from the log rather than from their
    /// producer state).
    pub fn observe(&mut self, header: &BatchHeader) {
        if header.has_producer_id() && !header.is_control() {
            self.insert(header.producer_id, header.last_offset());
        }
    }

    /// Whether `header` is the last data batch of its producer.
    pub fn is_last_batch(&self, header: &BatchHeader) -> bool {
        header.has_producer_id()
            && self.last_offsets.get(&header.producer_id) == Some(&header.last_offset())
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
}

/// Filters one batch (exactly one v2 batch) against the pass's map.
pub fn filter_batch(
    batch: &[u8],
    ctx: &FilterContext<'_>,
    stats: &mut FilterStats,
) -> Result<Filtered, CleanError> {
    stats.batches_read += 1;
    stats.bytes_read += batch.len() as u64;
    let header = BatchHeader::parse(batch)?;
    if header.is_control() || header.is_transactional() {
        stats.bytes_written += batch.len() as u64;
        return Ok(Filtered::Unchanged);
    }
    let decoded = decode(batch, &header, ctx.max_decompressed_bytes)?;
    let horizon = header.delete_horizon_ms();
    let retain_deletes = horizon.is_none_or(|h| ctx.now_ms < h);
    let latest = ctx.map.latest_offset().unwrap_or(-1);
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
    let out = if kept.is_empty() {
        if ctx.producers.is_last_batch(&header) {
            Filtered::Emptied(empty_batch(&header)?)
        } else {
            Filtered::Removed
        }
    } else {
        let has_tombstone = kept.iter().any(|&i| decoded.records[i].value.is_none());
        let set_horizon = has_tombstone && horizon.is_none();
        if kept.len() == decoded.records.len() && !set_horizon {
            Filtered::Unchanged
        } else {
            let horizon = set_horizon.then(|| ctx.now_ms.saturating_add(ctx.delete_retention_ms));
            Filtered::Rewritten(rewrite(&header, &decoded, &kept, horizon)?)
        }
    };
    stats.bytes_written += match &out {
        Filtered::Unchanged => batch.len(),
        Filtered::Rewritten(b) | Filtered::Emptied(b) => b.len(),
        Filtered::Removed => 0,
    } as u64;
    Ok(out)
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
    stats: &mut FilterStats,
) -> Result<Vec<u8>, CleanError> {
    let mut out = Vec::with_capacity(buf.len());
    for batch in crate::batch::split_batches(buf) {
        let batch = batch?;
        match filter_batch(batch, ctx, stats)? {
            Filtered::Unchanged => out.extend_from_slice(batch),
            Filtered::Rewritten(b) | Filtered::Emptied(b) => out.extend_from_slice(&b),
            Filtered::Removed => {}
        }
    }
    Ok(out)
}
