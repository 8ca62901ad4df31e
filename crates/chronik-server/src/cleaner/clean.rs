//! One clean of one log (Kafka's `Cleaner.doClean`), run on a cleaner thread (blocking I/O,
//! never on a tokio worker): passes over the dirty section, each building the offset map as
//! far as it holds keys, then rewriting every segment below the pass's end through
//! `chronik_cleaner::filter_batch` into replacement segments the WAL swaps in atomically.
//!
//! Reads go through the log's own read path by offset, so they cross the gaps earlier cleans
//! left; what a replacement keeps keeps its offsets. Every byte read or written is paid to
//! the I/O budget first.
//!
//! Transactions: one scan of the log (headers, plus the one record of each control batch:
//! what a partition's own rebuild reads) gives the active producers, the aborted transactions
//! and the last stable offset as this replica's log has them, so a follower (which keeps no
//! transaction state) cleans by the same rules as its leader. An aborted transaction's
//! batches are dropped; markers go once their transaction has no batch left and their delete
//! horizon passed (`chronik_cleaner::txn`). Before a replacement that drops abort markers is
//! swapped in, the partition forgets their aborted-index entries: their data went in an
//! earlier clean, so no fetch can miss an entry it needs, and none gets an entry whose marker
//! is gone (a read_committed consumer would skip that producer's later transactions).

use std::collections::HashMap;

use chronik_cleaner::{
    filter_batch, group_segments, split_batches, AbortedTxn, ActiveProducers, BatchHeader,
    CleanError, FilterContext, FilterStats, Filtered, Indexed, OffsetMap, SegmentFacts, TxnTracker,
};
use chronik_wal::{PartitionLog, ReplacedSegments, SegmentInfo, WalError};

use super::throttle::Throttle;
use crate::shutdown::Shutdown;
use crate::txn::{control, TxnState};

/// Bytes asked of one read: whole batches, at least one.
const READ_CHUNK: usize = 1 << 20;

/// Called with the offsets of the control batches a replacement drops, before it is swapped
/// in.
pub type MarkersRemoved<'a> = &'a (dyn Fn(&[i64]) + Sync);

/// What one clean works with besides the log.
#[derive(Clone, Copy)]
pub struct CleanInput<'a> {
    /// Where the dirty section starts (the checkpoint) and where cleaning stops (the active
    /// segment, the high watermark, `min.compaction.lag.ms`; segment-aligned).
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    /// The replica's high watermark: with the log's transactions, its last stable offset,
    /// which bounds the clean too.
    pub high_watermark: i64,
    pub delete_retention_ms: i64,
    /// The topic's segment size: cleaned segments merge up to it.
    pub segment_bytes: u64,
    pub max_decompressed_bytes: usize,
    pub now_ms: i64,
    pub throttle: Option<&'a Throttle>,
    /// The broker is stopping: the clean ends at the next segment group (what it swapped in
    /// so far stays; the checkpoint is not moved).
    pub stop: Option<&'a Shutdown>,
    /// Where the partition hears of removed markers (its aborted index drops them).
    pub markers_removed: Option<MarkersRemoved<'a>>,
}

impl CleanInput<'_> {
    fn check_stop(&self) -> Result<(), CleanFailure> {
        match self.stop {
            Some(s) if s.is_triggered() => Err(CleanFailure::Stopped),
            _ => Ok(()),
        }
    }
}

/// What one clean did.
#[derive(Debug, Default)]
pub struct CleanOutcome {
    pub filter: FilterStats,
    /// Bytes read to build offset maps (the filter's reads are in `filter`).
    pub map_bytes_read: u64,
    pub passes: u32,
    pub segments_replaced: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The new checkpoint: everything below is clean.
    pub cleaned_up_to: i64,
}

impl CleanOutcome {
    pub fn bytes_read(&self) -> u64 {
        self.map_bytes_read + self.filter.bytes_read
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CleanFailure {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Batch(#[from] CleanError),
    #[error("the broker is stopping")]
    Stopped,
}

/// What the clean learns of the log's producers and transactions from one scan.
struct LogTxns {
    producers: ActiveProducers,
    aborted: Vec<AbortedTxn>,
    /// The last stable offset of this replica's log.
    last_stable_offset: i64,
}

/// Cleans `log` from `input.first_dirty` to `input.first_uncleanable`, in as many passes as
/// `map` needs.
pub fn clean(
    log: &PartitionLog,
    input: &CleanInput<'_>,
    map: &mut OffsetMap,
) -> Result<CleanOutcome, CleanFailure> {
    // The header scan reads the whole log: paid to the budget up front.
    if let Some(t) = input.throttle {
        t.take(log.size_bytes());
    }
    let txns = scan_log(log, input.now_ms, input.high_watermark)?;
    // Never at or past an open transaction (Kafka's rule, kept on a follower too).
    let input = &CleanInput {
        first_uncleanable: input
            .first_uncleanable
            .min(txns.last_stable_offset.max(input.first_dirty)),
        ..*input
    };
    let producers = &txns.producers;
    let mut out = CleanOutcome {
        cleaned_up_to: input.first_dirty,
        ..CleanOutcome::default()
    };
    while out.cleaned_up_to < input.first_uncleanable {
        map.clear();
        let mut walk = TxnTracker::new(txns.aborted.clone());
        let Some(end) = build_map(log, input, out.cleaned_up_to, map, &mut walk, &mut out)? else {
            // No batch left in the dirty section: it is clean as it is.
            out.cleaned_up_to = input.first_uncleanable;
            break;
        };
        let ctx = FilterContext {
            map,
            now_ms: input.now_ms,
            delete_retention_ms: input.delete_retention_ms,
            producers,
            max_decompressed_bytes: input.max_decompressed_bytes,
        };
        // The filter's walk starts at the log start: a marker is judged against every batch
        // before it.
        let mut walk = TxnTracker::new(txns.aborted.clone());
        let infos = log.segments();
        for group in group_segments(&facts(&infos), input.segment_bytes, end) {
            input.check_stop()?;
            let bases: Vec<i64> = infos[group].iter().map(|s| s.base_offset).collect();
            if let Some(done) = clean_group(log, input, &bases, &ctx, &mut walk, &mut out.filter)? {
                out.segments_replaced += done.replaced.len();
                out.bytes_before += done.bytes_before;
                out.bytes_after += done.bytes_after;
            }
        }
        out.passes += 1;
        out.cleaned_up_to = end.max(out.cleaned_up_to + 1);
    }
    Ok(out)
}

/// How long a producer stays active after its last batch: Kafka's default
/// `producer.id.expiration.ms` (one day). Chronik's producer table does not expire producers
/// yet; the cleaner does, so that the empty batch each producer leaves does not stay forever.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// One scan of the log: the batch holding each producer's state, for every producer that wrote
/// within [`PRODUCER_ID_EXPIRATION_MS`] of `now_ms` (Kafka's `lastRecordsOfActiveProducers`:
/// it stays, emptied if need be, so its sequence and epoch survive the clean on a leader and a
/// follower alike), and the transactions as the partition's own rebuild reads them (the
/// aborted index, and the last stable offset given the high watermark `hw`).
fn scan_log(log: &PartitionLog, now_ms: i64, hw: i64) -> Result<LogTxns, WalError> {
    let mut producers = ActiveProducers::new();
    let mut last_write: HashMap<i64, i64> = HashMap::new();
    let mut txns = TxnState::default();
    let start = log.log_start_offset();
    log.scan_batches(start, &|h| h.is_control(), &mut |h, body| {
        if h.producer_id >= 0 {
            producers.observe_batch(
                h.producer_id,
                h.producer_epoch,
                h.last_offset(),
                h.is_control(),
            );
            let t = last_write.entry(h.producer_id).or_insert(h.max_timestamp);
            *t = (*t).max(h.max_timestamp);
        }
        match body {
            None => txns.on_data(h, h.base_offset),
            // Not a marker (never in a data partition): ends nothing, as in the rebuild.
            Some(b) => {
                if let Ok(m) = control::decode_marker(b) {
                    txns.on_marker(m.producer_id, m.marker, h.base_offset, hw);
                }
            }
        }
    })?;
    let since = now_ms.saturating_sub(PRODUCER_ID_EXPIRATION_MS);
    for (id, ts) in last_write {
        if ts < since {
            producers.remove(id);
        }
    }
    let aborted = txns
        .aborted()
        .into_iter()
        .map(|a| AbortedTxn {
            producer_id: a.producer_id,
            first_offset: a.first_offset,
            last_offset: a.last_offset,
        })
        .collect();
    Ok(LogTxns {
        producers,
        aborted,
        last_stable_offset: txns.last_stable_offset(hw),
    })
}

/// Indexes the dirty section from `from` into `map` until it ends or the map is full; the end
/// of what was indexed: the end of the dirty section when the map held it all (its last
/// segment may end in a gap), else the map's end (`None`: nothing was indexed).
fn build_map(
    log: &PartitionLog,
    input: &CleanInput<'_>,
    from: i64,
    map: &mut OffsetMap,
    walk: &mut TxnTracker,
    out: &mut CleanOutcome,
) -> Result<Option<i64>, CleanFailure> {
    let mut full = false;
    for_each_batch(
        log,
        from,
        input.first_uncleanable,
        input.throttle,
        &mut |batch| {
            out.map_bytes_read += batch.len() as u64;
            if map.index_batch(batch, from, input.max_decompressed_bytes, walk)? == Indexed::Full {
                full = true;
            }
            Ok(!full)
        },
    )?;
    Ok(match map.end_offset() {
        Some(_) if !full => Some(input.first_uncleanable),
        end => end,
    })
}

/// Rewrites the segments based at `bases` into one, keeping what the filter keeps; `None`
/// when a single segment would come out unchanged (nothing to gain from the swap).
fn clean_group(
    log: &PartitionLog,
    input: &CleanInput<'_>,
    bases: &[i64],
    ctx: &FilterContext<'_>,
    walk: &mut TxnTracker,
    stats: &mut FilterStats,
) -> Result<Option<ReplacedSegments>, CleanFailure> {
    let mut r = log.begin_replace(bases)?;
    let from = bases[0].max(log.log_start_offset());
    let mut changed = bases.len() > 1;
    let mut markers_removed = Vec::new();
    for_each_batch(log, from, r.range_end(), input.throttle, &mut |batch| {
        match filter_batch(batch, ctx, walk, stats)? {
            Filtered::Unchanged => r.append(batch)?,
            Filtered::Rewritten(b) | Filtered::Emptied(b) => {
                changed = true;
                r.append(&b)?;
            }
            Filtered::Removed => {
                changed = true;
                let h = BatchHeader::parse(batch)?;
                if h.is_control() {
                    markers_removed.push(h.base_offset);
                }
            }
        }
        Ok(true)
    })?;
    if !changed {
        // Dropping the replacement removes its file.
        return Ok(None);
    }
    if let Some(t) = input.throttle {
        t.take(r.written());
    }
    if let (Some(f), false) = (input.markers_removed, markers_removed.is_empty()) {
        f(&markers_removed);
    }
    Ok(Some(log.replace_segments(r)?))
}

/// Calls `f` with every batch of `[from, to)` in offset order (reading by offset across
/// gaps), paying each read to the budget first, until `f` answers `false`.
fn for_each_batch(
    log: &PartitionLog,
    from: i64,
    to: i64,
    throttle: Option<&Throttle>,
    f: &mut dyn FnMut(&[u8]) -> Result<bool, CleanFailure>,
) -> Result<(), CleanFailure> {
    let mut offset = from;
    while offset < to {
        let read = log.read(offset, READ_CHUNK, to)?;
        if read.data.is_empty() {
            return Ok(());
        }
        if let Some(t) = throttle {
            t.take(read.data.len() as u64);
        }
        for batch in split_batches(&read.data) {
            let batch = batch?;
            let next = BatchHeader::parse(batch)?.last_offset() + 1;
            if !f(batch)? {
                return Ok(());
            }
            offset = next;
        }
    }
    Ok(())
}

/// The scheduler's view of the log's segments. A sealed segment whose seal has not finished
/// cannot be replaced yet: it counts as active, so neither it nor anything after it is
/// cleaned this time.
pub fn facts(infos: &[SegmentInfo]) -> Vec<SegmentFacts> {
    let mut active = false;
    infos
        .iter()
        .map(|s| {
            active |= !s.replaceable;
            SegmentFacts {
                base_offset: s.base_offset,
                size_bytes: s.size_bytes,
                largest_timestamp_ms: s.max_timestamp,
                first_batch_timestamp_ms: -1,
                is_active: active,
            }
        })
        .collect()
}

/// Fills in each cleanable segment's first batch timestamp from `first_dirty` on (for
/// `max.compaction.lag.ms`): one small read per segment.
pub fn first_batch_timestamps(
    log: &PartitionLog,
    infos: &[SegmentInfo],
    facts: &mut [SegmentFacts],
    first_dirty: i64,
) {
    for (info, fact) in infos.iter().zip(facts.iter_mut()) {
        if fact.is_active || info.next_offset <= first_dirty {
            continue;
        }
        let from = info.base_offset.max(log.log_start_offset());
        if let Ok(read) = log.read(from, 1, info.next_offset) {
            if let Some(Ok(batch)) = split_batches(&read.data).next() {
                if let Ok(h) = BatchHeader::parse(batch) {
                    fact.first_batch_timestamp_ms = h.max_timestamp;
                }
            }
        }
    }
}
