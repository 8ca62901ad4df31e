//! One clean of one log (Kafka's `Cleaner.doClean`), run on a cleaner thread (blocking I/O,
//! never on a tokio worker): passes over the dirty section, each building the offset map as
//! far as it holds keys, then rewriting every segment below the pass's end through
//! `chronik_cleaner::filter_batch` into replacement segments the WAL swaps in atomically.
//!
//! Reads go through the log's own read path by offset, so they cross the gaps earlier cleans
//! left; what a replacement keeps keeps its offsets. Every byte read or written is paid to
//! the I/O budget first.

use std::collections::HashMap;

use chronik_cleaner::{
    filter_batch, group_segments, split_batches, ActiveProducers, BatchHeader, CleanError,
    FilterContext, FilterStats, Filtered, Indexed, OffsetMap, SegmentFacts,
};
use chronik_wal::{PartitionLog, ReplacedSegments, SegmentInfo, WalError};

use super::throttle::Throttle;
use crate::shutdown::Shutdown;

/// Bytes asked of one read: whole batches, at least one.
const READ_CHUNK: usize = 1 << 20;

/// What one clean works with besides the log.
pub struct CleanInput<'a> {
    /// Where the dirty section starts (the checkpoint) and where cleaning stops (the active
    /// segment, the high watermark, `min.compaction.lag.ms`; segment-aligned).
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    pub delete_retention_ms: i64,
    /// The topic's segment size: cleaned segments merge up to it.
    pub segment_bytes: u64,
    pub max_decompressed_bytes: usize,
    pub now_ms: i64,
    pub throttle: Option<&'a Throttle>,
    /// The broker is stopping: the clean ends at the next segment group (what it swapped in
    /// so far stays; the checkpoint is not moved).
    pub stop: Option<&'a Shutdown>,
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
    let producers = active_producers(log, input.now_ms)?;
    let mut out = CleanOutcome {
        cleaned_up_to: input.first_dirty,
        ..CleanOutcome::default()
    };
    while out.cleaned_up_to < input.first_uncleanable {
        map.clear();
        let Some(end) = build_map(log, input, out.cleaned_up_to, map, &mut out)? else {
            // No batch left in the dirty section: it is clean as it is.
            out.cleaned_up_to = input.first_uncleanable;
            break;
        };
        let ctx = FilterContext {
            map,
            now_ms: input.now_ms,
            delete_retention_ms: input.delete_retention_ms,
            producers: &producers,
            max_decompressed_bytes: input.max_decompressed_bytes,
        };
        let infos = log.segments();
        for group in group_segments(&facts(&infos), input.segment_bytes, end) {
            input.check_stop()?;
            let bases: Vec<i64> = infos[group].iter().map(|s| s.base_offset).collect();
            if let Some(done) = clean_group(log, input, &bases, &ctx, &mut out.filter)? {
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

/// The last data batch of every producer in the log that wrote within
/// [`PRODUCER_ID_EXPIRATION_MS`] of `now_ms` (Kafka's `lastRecordsOfActiveProducers`), from the
/// batch headers: each such batch stays, emptied if need be, so a producer's last sequence
/// survives the clean on a leader and a follower alike.
fn active_producers(log: &PartitionLog, now_ms: i64) -> Result<ActiveProducers, WalError> {
    let mut last: HashMap<i64, (i64, i64)> = HashMap::new();
    log.scan_headers(log.log_start_offset(), &mut |h| {
        if h.producer_id >= 0 && !h.is_control() {
            last.insert(h.producer_id, (h.last_offset(), h.max_timestamp));
        }
    })?;
    let mut producers = ActiveProducers::new();
    let since = now_ms.saturating_sub(PRODUCER_ID_EXPIRATION_MS);
    for (id, (offset, ts)) in last {
        if ts >= since {
            producers.insert(id, offset);
        }
    }
    Ok(producers)
}

/// Indexes the dirty section from `from` into `map` until it ends or the map is full; the end
/// of what was indexed: the end of the dirty section when the map held it all (its last
/// segment may end in a gap), else the map's end (`None`: nothing was indexed).
fn build_map(
    log: &PartitionLog,
    input: &CleanInput<'_>,
    from: i64,
    map: &mut OffsetMap,
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
            if map.index_batch(batch, from, input.max_decompressed_bytes)? == Indexed::Full {
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
    stats: &mut FilterStats,
) -> Result<Option<ReplacedSegments>, CleanFailure> {
    let mut r = log.begin_replace(bases)?;
    let from = bases[0].max(log.log_start_offset());
    let mut changed = bases.len() > 1;
    for_each_batch(log, from, r.range_end(), input.throttle, &mut |batch| {
        match filter_batch(batch, ctx, stats)? {
            Filtered::Unchanged => r.append(batch)?,
            Filtered::Rewritten(b) | Filtered::Emptied(b) => {
                changed = true;
                r.append(&b)?;
            }
            Filtered::Removed => changed = true,
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
