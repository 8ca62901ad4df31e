//! Deleting whole segments from the front of the log: retention by time and size.

use std::time::UNIX_EPOCH;

use tracing::info;

use super::{now_ms, PartitionLog, MAX_PENDING_SEALS};
use crate::config::LogConfig;
use crate::error::WalError;
use crate::file_cache::segment_files;
use crate::recovery::{fsync_dir, remove_segment_files};
use crate::segment::Segment;

/// Why a segment was deleted by retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionReason {
    /// Its newest timestamp is older than `retention_ms`.
    Time,
    /// The partition is larger than `retention_bytes`.
    Size,
    /// It ends at or below the log start offset (`advance_log_start`).
    LogStartOffset,
}

/// One segment removed by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    pub reason: RetentionReason,
}

/// What [`PartitionLog::enforce_retention`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted: Vec<DeletedSegment>,
    /// Log start offset after the deletions.
    pub log_start_offset: i64,
}

impl RetentionOutcome {
    pub fn deleted_segments(&self) -> usize {
        self.deleted.len()
    }

    pub fn deleted_bytes(&self) -> u64 {
        self.deleted.iter().map(|d| d.size_bytes).sum()
    }
}

impl PartitionLog {
    /// Deletes whole non-active, fully committed segments, oldest first, while the oldest one's
    /// newest timestamp is older than `now_ms - retention_ms` or the partition minus that segment
    /// is still at least `retention_bytes`; advances the log start. Segments without timestamps (all batches
    /// at -1) use the file's modification time.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome, WalError> {
        self.delete_front(|config, total_bytes, seg| {
            let by_time = config.retention_ms.is_some_and(|r| {
                segment_time(seg) < now_ms.saturating_sub(i64::try_from(r).unwrap_or(i64::MAX))
            });
            let by_size = config
                .retention_bytes
                .is_some_and(|r| total_bytes - seg.size_bytes >= r);
            match (by_time, by_size) {
                (true, _) => Some(RetentionReason::Time),
                (false, true) => Some(RetentionReason::Size),
                (false, false) => None,
            }
        })
    }

    /// Starts a new active segment now (if the active one holds data), so that everything
    /// written so far is in sealed segments (which retention and the cleaner may take).
    pub fn roll(&self) -> Result<(), WalError> {
        let s = &*self.shared;
        let mut guard = s.lock();
        let inner = &mut *guard;
        s.check_open(inner)?;
        if inner.active().is_empty() || inner.pending_seals.len() >= MAX_PENDING_SEALS {
            return Ok(());
        }
        s.roll(inner, now_ms(), "requested")?;
        inner.check_invariants();
        Ok(())
    }

    /// Deletes front segments while `decide` names a reason, oldest first. The active segment
    /// and data above the committed offset are never deleted.
    pub(super) fn delete_front(
        &self,
        decide: impl Fn(&LogConfig, u64, &Segment) -> Option<RetentionReason>,
    ) -> Result<RetentionOutcome, WalError> {
        let s = &*self.shared;
        let _m = s.lock_maintenance();
        let (removed, log_start) = {
            let mut guard = s.lock();
            let inner = &mut *guard;
            s.check_open(inner)?;
            let mut removed = Vec::new();
            // At most segments.len() - 1 iterations: the active segment is never deleted.
            let committed = s.committed();
            while inner.segments.len() > 1 {
                let Some(seg) = inner.segments.front() else {
                    break;
                };
                if seg.next_offset > committed {
                    // Like Kafka, never delete data above the high watermark.
                    break;
                }
                let Some(reason) = decide(&inner.config, inner.total_bytes, seg) else {
                    break;
                };
                let Some(seg) = inner.segments.pop_front() else {
                    break;
                };
                inner.total_bytes -= seg.size_bytes;
                inner.pending_seals.retain(|b| *b != seg.base_offset);
                removed.push((
                    DeletedSegment {
                        base_offset: seg.base_offset,
                        next_offset: seg.next_offset,
                        size_bytes: seg.size_bytes,
                        reason,
                    },
                    seg,
                ));
            }
            if let Some(first) = inner.segments.front() {
                // Never backwards: the log start may lie inside the first segment
                // (`advance_log_start`).
                inner.log_start = inner.log_start.max(first.base_offset);
            }
            inner.check_invariants();
            (removed, inner.log_start)
        };
        // Out of the log: close their cached handles, so the deletions below free the blocks.
        segment_files().remove(removed.iter().map(|(_, seg)| seg.file_id));
        for (d, seg) in &removed {
            info!(topic = %s.topic, partition = s.partition, segment = d.base_offset,
                next_offset = d.next_offset, size_bytes = d.size_bytes, reason = ?d.reason,
                "deleted segment");
            remove_segment_files(&s.dir, s.partition, &[seg.base_offset])?;
            // One directory fsync per segment, oldest first: a crash never leaves a gap.
            fsync_dir(&s.dir).map_err(WalError::io("fsync directory", &s.dir))?;
            s.count_fsyncs(1);
        }
        Ok(RetentionOutcome {
            deleted: removed.into_iter().map(|(d, _)| d).collect(),
            log_start_offset: log_start,
        })
    }
}

/// The timestamp retention compares against: the newest batch timestamp, or the file's
/// modification time when the segment has no real timestamps.
fn segment_time(seg: &Segment) -> i64 {
    if seg.max_timestamp >= 0 {
        return seg.max_timestamp;
    }
    // By path: a sealed segment holds no descriptor. Retention holds `maintenance`, so the
    // name is this segment's file.
    std::fs::metadata(&seg.path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(i64::MAX, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        })
}
