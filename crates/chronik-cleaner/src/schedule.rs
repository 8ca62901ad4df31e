//! Which part of a log may be cleaned, how dirty it is, and which log to clean next: Kafka's
//! `LogCleanerManager.cleanableOffsets`, `calculateCleanableBytes`, `maxCompactionDelay`,
//! `LogToClean` and `grabFilthiestCompactedLog`, as pure functions over facts the caller
//! reads from its segments.

use crate::config::CompactionConfig;

/// What the scheduler needs of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFacts {
    pub base_offset: i64,
    pub size_bytes: u64,
    /// The largest record timestamp in it (Kafka's `LogSegment.largestTimestamp`), for
    /// `min.compaction.lag.ms`.
    pub largest_timestamp_ms: i64,
    /// The max timestamp of its first batch (Kafka's `getFirstBatchTimestampForSegments`),
    /// for `max.compaction.lag.ms`; -1 when unknown or empty.
    pub first_batch_timestamp_ms: i64,
    pub is_active: bool,
}

/// One partition's log as the scheduler sees it.
#[derive(Debug, Clone, Copy)]
pub struct LogFacts<'a> {
    /// In offset order; the last one is the active segment.
    pub segments: &'a [SegmentFacts],
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Nothing at or past it is cleaned (Kafka's last stable offset: the high watermark while
    /// there are no open transactions).
    pub last_stable_offset: i64,
    /// Where the last clean ended (Kafka's cleaner-offset-checkpoint), if any.
    pub cleaned_up_to: Option<i64>,
}

/// The dirty section a clean may cover (Kafka's `OffsetsToClean`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanableRange {
    pub first_dirty_offset: i64,
    /// Cleaning stops before it: the active segment, the last stable offset, and the first
    /// segment newer than `min.compaction.lag.ms`, whichever is first.
    pub first_uncleanable_offset: i64,
    /// The checkpoint was outside the log (below its start or past its end) and was reset to
    /// the log start: the caller should store the new one.
    pub checkpoint_reset: bool,
}

/// Kafka's `cleanableOffsets`.
pub fn cleanable_range(
    log: &LogFacts<'_>,
    config: &CompactionConfig,
    now_ms: i64,
) -> CleanableRange {
    let checkpoint = log.cleaned_up_to.unwrap_or(log.log_start_offset);
    let (first_dirty, checkpoint_reset) =
        if checkpoint < log.log_start_offset || checkpoint > log.log_end_offset {
            (log.log_start_offset, true)
        } else {
            (checkpoint, false)
        };
    let active_base = log
        .segments
        .iter()
        .find(|s| s.is_active)
        .map_or(log.log_end_offset, |s| s.base_offset);
    let mut uncleanable = log.last_stable_offset.min(active_base);
    let min_lag_ms = config.min_compaction_lag_ms.max(0);
    if min_lag_ms > 0 {
        let too_new = non_active_from(log.segments, first_dirty)
            .find(|s| s.largest_timestamp_ms > now_ms.saturating_sub(min_lag_ms));
        if let Some(s) = too_new {
            uncleanable = uncleanable.min(s.base_offset);
        }
    }
    CleanableRange {
        first_dirty_offset: first_dirty,
        first_uncleanable_offset: uncleanable.max(first_dirty),
        checkpoint_reset,
    }
}

/// Non-active segments from the one holding `offset` on (Kafka's `nonActiveLogSegmentsFrom`).
fn non_active_from(segments: &[SegmentFacts], offset: i64) -> impl Iterator<Item = &SegmentFacts> {
    let start = floor_index(segments, offset);
    segments[start..].iter().filter(|s| !s.is_active)
}

/// Index of the segment holding `offset` (the last with base ≤ offset), or 0.
fn floor_index(segments: &[SegmentFacts], offset: i64) -> usize {
    segments
        .iter()
        .rposition(|s| s.base_offset <= offset)
        .unwrap_or(0)
}

/// Segments overlapping `[from, to)` (Kafka's `logSegments(from, to)`): from the one holding
/// `from` to the last with a base offset below `to`.
fn overlapping(
    segments: &[SegmentFacts],
    from: i64,
    to: i64,
) -> impl Iterator<Item = &SegmentFacts> {
    let start = floor_index(segments, from);
    segments[start..]
        .iter()
        .take_while(move |s| s.base_offset < to)
}

/// The byte counts behind a log's dirty ratio (Kafka's `LogToClean`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirtiness {
    /// Bytes of the segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the segments from the first dirty offset to the first uncleanable segment.
    pub cleanable_bytes: u64,
    /// Base offset of the segment holding the first uncleanable offset (Kafka rounds down).
    pub first_uncleanable_offset: i64,
    /// cleanable / (clean + cleanable); 0 for an empty log.
    pub ratio: f64,
}

impl Dirtiness {
    pub fn total_bytes(&self) -> u64 {
        self.clean_bytes + self.cleanable_bytes
    }
}

/// Kafka's `LogToClean` sizes and `calculateCleanableBytes`.
pub fn dirtiness(segments: &[SegmentFacts], range: &CleanableRange) -> Dirtiness {
    let clean_bytes = overlapping(segments, -1, range.first_dirty_offset)
        .map(|s| s.size_bytes)
        .sum::<u64>();
    // Kafka: `nonActiveLogSegmentsFrom(uncleanable).headOption.getOrElse(activeSegment)`.
    let u = range.first_uncleanable_offset;
    let active_base = segments.iter().find(|s| s.is_active).map(|s| s.base_offset);
    let first_uncleanable = match active_base {
        Some(a) if u >= a => a,
        _ => segments
            .get(floor_index(segments, u))
            .map_or(u, |s| s.base_offset),
    };
    let cleanable_bytes = overlapping(
        segments,
        range.first_dirty_offset.min(first_uncleanable),
        first_uncleanable,
    )
    .map(|s| s.size_bytes)
    .sum::<u64>();
    let total = clean_bytes + cleanable_bytes;
    Dirtiness {
        clean_bytes,
        cleanable_bytes,
        first_uncleanable_offset: first_uncleanable,
        ratio: if total == 0 {
            0.0
        } else {
            cleanable_bytes as f64 / total as f64
        },
    }
}

/// How far past `max.compaction.lag.ms` the oldest dirty record is (Kafka's
/// `maxCompactionDelay`, KIP-354): 0 while none is overdue. Only the first batch timestamp of
/// each non-active dirty segment counts, as in Kafka; non-positive timestamps are unknown.
pub fn max_compaction_delay_ms(
    segments: &[SegmentFacts],
    first_dirty_offset: i64,
    config: &CompactionConfig,
    now_ms: i64,
) -> i64 {
    let earliest = non_active_from(segments, first_dirty_offset)
        .map(|s| s.first_batch_timestamp_ms)
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(i64::MAX);
    let clean_until = now_ms.saturating_sub(config.max_compaction_lag_ms.max(0));
    if earliest < clean_until {
        clean_until - earliest
    } else {
        0
    }
}

/// One log's standing for the next clean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    pub range: CleanableRange,
    pub dirtiness: Dirtiness,
    /// See [`max_compaction_delay_ms`]; above 0 the log must be cleaned now.
    pub compaction_delay_ms: i64,
    /// The log's `min.cleanable.dirty.ratio`.
    pub min_ratio: f64,
}

impl Assessment {
    /// Whether the log is a candidate at all (Kafka's `grabFilthiestCompactedLog` filter):
    /// not empty, and dirtier than its minimum ratio or overdue with bytes to clean.
    pub fn is_cleanable(&self) -> bool {
        self.dirtiness.total_bytes() > 0
            && ((self.compaction_delay_ms > 0 && self.dirtiness.cleanable_bytes > 0)
                || self.dirtiness.ratio > self.min_ratio)
    }
}

/// Everything the scheduler decides about one log.
pub fn assess(log: &LogFacts<'_>, config: &CompactionConfig, now_ms: i64) -> Assessment {
    let range = cleanable_range(log, config, now_ms);
    Assessment {
        range,
        dirtiness: dirtiness(log.segments, &range),
        compaction_delay_ms: max_compaction_delay_ms(
            log.segments,
            range.first_dirty_offset,
            config,
            now_ms,
        ),
        min_ratio: config.min_cleanable_dirty_ratio,
    }
}

/// The log to clean next among `candidates` (logs not being cleaned already): the dirtiest
/// of those [`Assessment::is_cleanable`], as Kafka's `grabFilthiestCompactedLog` (an overdue
/// log qualifies whatever its ratio, then ranks by ratio like the others). Ties go to the
/// first given.
pub fn pick_filthiest<Id>(
    candidates: impl IntoIterator<Item = (Id, Assessment)>,
) -> Option<(Id, Assessment)> {
    let mut best: Option<(Id, Assessment)> = None;
    for (id, a) in candidates {
        if !a.is_cleanable() {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(_, b)| a.dirtiness.ratio > b.dirtiness.ratio)
        {
            best = Some((id, a));
        }
    }
    best
}

/// KIP-354: on a compacted topic the active segment rolls after
/// min(`segment.ms`, `max.compaction.lag.ms`), so no record waits in the never-cleaned active
/// segment past its lag (Kafka's `LogConfig.maxSegmentMs`).
pub fn max_segment_ms(config: &CompactionConfig, compacted: bool) -> i64 {
    if compacted && config.max_compaction_lag_ms > 0 {
        config.max_compaction_lag_ms.min(config.segment_ms)
    } else {
        config.segment_ms
    }
}

/// Which segments a pass rewrites together (Kafka's `Cleaner.groupSegmentsBySize`): the
/// segments below `end_offset` (the pass's [`crate::OffsetMap::end_offset`]), in runs of
/// consecutive segments whose sizes sum to at most `segment_bytes` and whose offsets span at
/// most `i32::MAX` (a record's offset must fit the index's 32-bit delta), so cleaned segments
/// merge instead of shrinking one by one. Each run is a range of indexes into `segments`;
/// the active segment is never in one. Kafka's extra bound on the summed index sizes does not
/// apply: Chronik's indexes are sparse and rebuilt with the segment.
pub fn group_segments(
    segments: &[SegmentFacts],
    segment_bytes: u64,
    end_offset: i64,
) -> Vec<std::ops::Range<usize>> {
    let upto = segments
        .iter()
        .position(|s| s.is_active || s.base_offset >= end_offset)
        .unwrap_or(segments.len());
    // The last offset a segment can hold: up to the next one's base (or the pass's end).
    let last_offset = |i: usize| {
        segments
            .get(i + 1)
            .map_or(end_offset, |n| n.base_offset.min(end_offset))
            - 1
    };
    let mut groups = Vec::new();
    let mut start = 0;
    while start < upto {
        let mut end = start + 1;
        let mut bytes = segments[start].size_bytes;
        while end < upto
            && bytes + segments[end].size_bytes <= segment_bytes
            && (segments[end].size_bytes == 0
                || last_offset(end) - segments[start].base_offset <= i64::from(i32::MAX))
        {
            bytes += segments[end].size_bytes;
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}
