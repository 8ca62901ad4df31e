//! Moving the log start offset forward on request (Kafka's DeleteRecords, and a follower
//! following its leader's log start), and keeping it across restarts.
//!
//! The log start offset may lie inside the first segment: the segment containing it stays (a
//! segment is deleted whole or not at all), reads below it are refused, and it is persisted in
//! a small checkpoint file in the partition directory (Kafka's log-start-offset-checkpoint),
//! replaced atomically (write a side file, fdatasync, rename, fsync the directory). On open the
//! log start is the larger of the first segment's base and the checkpoint.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::{now_ms, PartitionLog, RetentionOutcome, RetentionReason};
use crate::error::WalError;
use crate::recovery::{fsync_dir, remove_segment_files};
use crate::segment::{Segment, SEGMENT_HEADER_BYTES};

/// The checkpoint file in the partition directory.
pub(crate) const CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
/// Its side file while it is replaced (`chronik_durable::temp_path`); left over only by a
/// crash, and then ignored.
pub(crate) const CHECKPOINT_TMP: &str = "log-start-offset-checkpoint.tmp";
/// First line of the file, so a future format can be told apart.
const CHECKPOINT_VERSION: &str = "0";

impl PartitionLog {
    /// Moves the log start offset forward to `offset` (never backwards: a smaller offset
    /// changes nothing) and deletes the whole segments below it. `offset` must not pass the
    /// committed offset (`OffsetOutOfRange` otherwise); the caller bounds it further (Kafka:
    /// the high watermark). The new start is durable before this returns, so a restart keeps
    /// it. Returns the log start afterwards and the segments deleted.
    pub fn advance_log_start(&self, offset: i64) -> Result<RetentionOutcome, WalError> {
        let s = &*self.shared;
        // Never past what is durable: a heal cuts the log back to its last synced offset, and
        // the start must stay inside the log. Under fsync=interval or never, sync now.
        if offset > s.lock().synced_end {
            s.run_pass(true);
        }
        {
            let _m = s.lock_maintenance();
            let current = {
                let inner = s.lock();
                s.check_open(&inner)?;
                let committed = s.committed().min(inner.synced_end);
                if offset > committed || offset < 0 {
                    return Err(WalError::OffsetOutOfRange {
                        requested: offset,
                        log_start: inner.log_start,
                        log_end: committed,
                    });
                }
                inner.log_start
            };
            if offset <= current {
                return Ok(RetentionOutcome {
                    deleted: Vec::new(),
                    log_start_offset: current,
                });
            }
            // Durable before anyone reads the new start: a crash after a client was told
            // must not bring the records back. Under `maintenance`, so checkpoints are
            // written in order.
            write_checkpoint(&s.dir, offset)?;
            s.count_fsyncs(2);
            let mut inner = s.lock();
            inner.log_start = inner.log_start.max(offset);
            inner.check_invariants();
            info!(topic = %s.topic, partition = s.partition, log_start_offset = offset,
                "advanced the log start offset");
        }
        self.delete_below_log_start()
    }

    /// Empties the log and starts it again at `offset` (Kafka's truncateFullyAndStartAt): for
    /// a replica whose log ends below everything its leader still holds, which can only
    /// continue from there. Every segment is deleted, one empty segment at `offset` is
    /// created, and log start, log end and committed offset all become `offset`; the log start
    /// checkpoint is written first, so a crash midway leaves either the old log or the new
    /// start. A failure after the first deletion poisons the partition.
    pub fn reset_to(&self, offset: i64) -> Result<(), WalError> {
        if offset < 0 {
            return Err(WalError::InvalidConfig(format!(
                "cannot start a log at {offset}"
            )));
        }
        let s = &*self.shared;
        let _m = s.lock_maintenance();
        let mut guard = s.lock();
        let inner = &mut *guard;
        s.check_open(inner)?;
        s.rewritten_from.fetch_min(offset, Ordering::AcqRel);
        write_checkpoint(&s.dir, offset)?;
        let old: Vec<i64> = inner.segments.iter().map(|seg| seg.base_offset).collect();
        let fresh = if old.contains(&offset) {
            None // its file is about to be removed and recreated below
        } else {
            Some(s.fresh_segment(offset, now_ms(), None)?)
        };
        let result = (|| -> Result<super::Segment, WalError> {
            remove_segment_files(&s.dir, s.partition, &old)?;
            let seg = match fresh {
                Some(seg) => seg,
                None => s.fresh_segment(offset, now_ms(), None)?,
            };
            fsync_dir(&s.dir).map_err(WalError::io("fsync directory", &s.dir))?;
            Ok(seg)
        })();
        let seg = match result {
            Ok(seg) => seg,
            Err(e) => {
                s.poison(inner, format!("reset_to({offset}) failed: {e}"));
                return Err(e);
            }
        };
        s.count_fsyncs(3);
        let old_files: Vec<_> = inner.segments.drain(..).map(|seg| seg.file_id).collect();
        crate::file_cache::segment_files().remove(old_files);
        inner.segments.push_back(seg);
        inner.rewrites += 1;
        inner.pending_seals.clear();
        inner.total_bytes = SEGMENT_HEADER_BYTES;
        inner.log_start = offset;
        inner.log_end = offset;
        inner.synced_end = offset;
        s.end_tx.send_replace(offset);
        s.publish_committed(inner, offset);
        inner.check_invariants();
        info!(topic = %s.topic, partition = s.partition, offset, removed_segments = old.len(),
            "emptied the log to start again at an offset");
        Ok(())
    }

    /// Deletes the whole segments that end at or below the log start offset (the segment
    /// containing it stays). Run after the start moved, and on open (a crash may have come
    /// between the checkpoint and the deletions).
    pub(crate) fn delete_below_log_start(&self) -> Result<RetentionOutcome, WalError> {
        let start = self.log_start_offset();
        self.delete_front(|_, _, seg| {
            (seg.next_offset <= start).then_some(RetentionReason::LogStartOffset)
        })
    }
}

/// Writes `offset` as the partition's log start checkpoint, replaced atomically and durably
/// (`chronik_durable::replace`).
fn write_checkpoint(dir: &Path, offset: i64) -> Result<(), WalError> {
    let path = dir.join(CHECKPOINT_FILE);
    chronik_durable::replace(
        dir,
        CHECKPOINT_FILE,
        format!("{CHECKPOINT_VERSION}\n{offset}\n").as_bytes(),
    )
    .map_err(WalError::io("replace log start checkpoint", &path))
}

/// The checkpointed log start offset of the partition in `dir`, if any. A checkpoint that
/// cannot be read or parsed is ignored with a warning: the log then starts at its first
/// segment, which shows deleted records again but loses nothing.
pub(crate) fn read_checkpoint(dir: &Path, topic: &str, partition: i32) -> Option<i64> {
    let path = dir.join(CHECKPOINT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(topic, partition, error = %e, "cannot read the log start checkpoint; ignored");
            return None;
        }
    };
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next()) {
        (Some(CHECKPOINT_VERSION), Some(n)) => n.trim().parse::<i64>().ok().filter(|n| *n >= 0),
        _ => None,
    };
    if parsed.is_none() {
        warn!(topic, partition, content = %text.escape_debug(),
            "malformed log start checkpoint; ignored");
    }
    parsed
}

/// The log start offset of a recovered log: its first segment's base, or the checkpointed
/// start if that is further (kept within the log: a checkpoint past the recovered end, which
/// only an unsynced tail lost under `fsync=never` can leave, starts the log at its end).
pub(super) fn start_after_recovery(
    segments: &VecDeque<Segment>,
    checkpoint: Option<i64>,
    log_end: i64,
    topic: &str,
    partition: i32,
) -> i64 {
    let first = segments.front().map_or(0, |s| s.base_offset);
    let Some(cp) = checkpoint.filter(|cp| *cp > first) else {
        return first;
    };
    if cp > log_end {
        warn!(
            topic,
            partition,
            checkpoint = cp,
            log_end,
            "log start checkpoint beyond the recovered log end; starting at the end"
        );
        return log_end;
    }
    cp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_knows_the_side_file_replace_writes() {
        let side = chronik_durable::temp_path(Path::new(""), CHECKPOINT_FILE);
        assert_eq!(side, Path::new(CHECKPOINT_TMP));
    }
}
