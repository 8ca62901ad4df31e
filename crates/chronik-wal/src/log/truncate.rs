//! Cutting the log back: [`PartitionLog::truncate_to`] (a follower's divergent tail) and the
//! cut a poisoned partition makes to its last synced offset before it reopens (`heal`).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::info;

use super::{now_ms, Inner, PartitionLog, Segment, Shared, MAX_PENDING_SEALS};
use crate::error::WalError;
use crate::file_cache::segment_files;
use crate::recovery::{fsync_dir, remove_index_files_durably, remove_segment_files};
use crate::segment::{scan_segment, ScanOutcome, SegmentHeader};

impl PartitionLog {
    /// Truncates the log so that `log_end_offset() == offset`: removes whole later segments and
    /// cuts the containing one at a batch boundary or inside a gap (`NotBatchBoundary` inside
    /// a batch). In a gap, the cut segment is sealed and an empty one starts at `offset`. The cut
    /// segment is rescanned to rebuild its in-memory index (cost bounded by `segment_bytes`).
    /// Lowers `committed` if needed. I/O failures poison the partition.
    pub fn truncate_to(&self, offset: i64) -> Result<(), WalError> {
        let s = &*self.shared;
        let _m = s.lock_maintenance();
        let mut guard = s.lock();
        let inner = &mut *guard;
        s.check_open(inner)?;
        if offset == inner.log_end {
            return Ok(());
        }
        s.cut_to(inner, offset)
    }

    /// The lowest offset this log was cut back to (by truncation, a heal or a reset) since the
    /// last call, or since it opened (then: its log end at open), and forgets it. Whoever
    /// remembers facts about offsets of this log (the cleaner's "clean up to" checkpoint) must
    /// forget those at or above it: that data may have been replaced. One taker per log.
    pub fn take_rewritten_from(&self) -> Option<i64> {
        let from = self.shared.rewritten_from.swap(i64::MAX, Ordering::AcqRel);
        (from != i64::MAX).then_some(from)
    }
}

impl Shared {
    /// The disk part of [`cut_to`](Self::cut_to): removes the segments after `idx` and the cut
    /// segment's index, cuts its file to `valid_len` (rewriting its header to `cut_header` for a
    /// cleaned one) and syncs it.
    fn cut_files(
        &self,
        inner: &Inner,
        idx: usize,
        file: &File,
        valid_len: u64,
        cut_header: Option<&SegmentHeader>,
    ) -> Result<(), WalError> {
        let later: Vec<i64> = inner
            .segments
            .range(idx + 1..)
            .map(|s| s.base_offset)
            .collect();
        remove_segment_files(&self.dir, self.partition, &later)?;
        let seg = &inner.segments[idx];
        // Later segments and the cut segment's index are gone durably before its data
        // changes, so no stale index can ever describe the cut file.
        self.count_fsyncs(remove_index_files_durably(
            &self.dir,
            self.partition,
            seg.base_offset,
        )?);
        file.set_len(valid_len)
            .map_err(WalError::io("truncate segment", &seg.path))?;
        // Same length: the frames stay where they are. Synced with the cut below.
        if let Some(h) = cut_header {
            file.write_all_at(&h.encode(), 0)
                .map_err(WalError::io("rewrite segment header", &seg.path))?;
        }
        file.sync_all()
            .map_err(WalError::io("fsync segment", &seg.path))?;
        (&*file)
            .seek(SeekFrom::Start(valid_len))
            .map_err(WalError::io("seek segment", &seg.path))?;
        self.count_fsyncs(1);
        Ok(())
    }

    /// Cuts the log so that `log_end == offset` (see `truncate_to`), on disk and in memory;
    /// with `offset == log_end` it still trims the active segment's file to its data, which
    /// drops whatever a failed write left past it. The caller holds `maintenance` and `inner`.
    /// An I/O failure after the checks leaves memory and disk disagreeing: it poisons.
    pub(super) fn cut_to(&self, inner: &mut Inner, offset: i64) -> Result<(), WalError> {
        if offset < inner.log_start || offset > inner.log_end {
            return Err(WalError::OffsetOutOfRange {
                requested: offset,
                log_start: inner.log_start,
                log_end: inner.log_end,
            });
        }
        // Before any byte changes: a reader of the mark never misses a cut.
        self.rewritten_from.fetch_min(offset, Ordering::AcqRel);
        let idx = inner.segment_index_for(offset);
        let seg = &inner.segments[idx];
        // The cut segment becomes the active one, which writes through a handle of its own; a
        // sealed one gave its up (`maintenance` is held: the name is this segment's file).
        let file = writable_file(seg)?;
        let header = seg.header();
        let out = scan_segment(
            &file,
            seg.size_bytes,
            &header,
            inner.config.index_interval_bytes,
            offset,
        )
        .map_err(WalError::io("scan segment", &seg.path))?;
        if let Some((pos, problem)) = out.problem {
            return Err(WalError::Corrupt {
                path: seg.path.to_path_buf(),
                position: pos,
                reason: problem.to_string(),
            });
        }
        let in_gap = cut_in_gap(seg, &header, &out, offset)?;
        // A cleaned segment's range now ends at `offset`: a gap up to it (in_gap) stays legal,
        // and nothing appended after it may end early unnoticed (recovery would take a torn
        // tail of the rest for a compacted one).
        let cut_header = header.cleaned_to.map(|_| SegmentHeader {
            cleaned_to: Some(offset),
            ..header
        });
        if in_gap
            && inner
                .pending_seals
                .iter()
                .filter(|b| **b < seg.base_offset)
                .count()
                >= MAX_PENDING_SEALS
        {
            return Err(WalError::SegmentFull {
                size_bytes: seg.size_bytes,
            });
        }

        inner.rewrites += 1;
        let result = self.cut_files(inner, idx, &file, out.valid_len, cut_header.as_ref());

        let removed: Vec<Segment> = inner.segments.drain(idx + 1..).collect();
        let seg = &mut inner.segments[idx];
        // The cut one reads through its own handle again, the later ones are gone.
        segment_files().remove(removed.iter().map(|s| s.file_id).chain([seg.file_id]));
        seg.own_file = Some(file);
        let cut_bytes = seg.size_bytes - out.valid_len;
        seg.size_bytes = out.valid_len;
        seg.allocated_bytes = out.valid_len;
        seg.synced_bytes = seg.synced_bytes.min(out.valid_len);
        seg.cache_dropped_to = seg.cache_dropped_to.min(out.valid_len);
        seg.next_offset = out.next_offset;
        seg.batches_end = out.next_offset;
        if let Some(h) = &cut_header {
            seg.cleaned_to = h.cleaned_to;
        }
        seg.max_timestamp = out.max_timestamp;
        seg.index = Arc::new(out.index);
        seg.persisted = false;
        seg.roll_clock_ms = (out.frames > 0).then_some(seg.created_ms);
        let active_base = seg.base_offset;
        inner.pending_seals.retain(|b| *b < active_base);
        inner.total_bytes -= cut_bytes + removed.iter().map(|s| s.size_bytes).sum::<u64>();
        inner.log_end = out.next_offset;
        let synced_before = inner.synced_end;
        inner.synced_end = synced_before.min(out.next_offset);
        let result = result.and_then(|()| {
            if !in_gap {
                return Ok(());
            }
            inner.segments[idx].next_offset = offset;
            inner.log_end = offset;
            self.roll(inner, now_ms(), "truncation into a gap")?;
            // The new segment's name is the log end: durable before this returns.
            fsync_dir(&self.dir).map_err(WalError::io("fsync directory", &self.dir))?;
            self.count_fsyncs(1);
            inner.synced_end = synced_before.min(offset);
            Ok(())
        });
        self.end_tx.send_replace(inner.log_end);
        if self.committed() > inner.log_end {
            self.publish_committed(inner, inner.log_end);
        }
        inner.check_invariants();
        if let Err(e) = result {
            self.poison(inner, format!("truncate_to({offset}) failed: {e}"));
            return Err(e);
        }
        info!(topic = %self.topic, partition = self.partition, offset,
            removed_segments = removed.len(), cut_bytes, "truncated log");
        Ok(())
    }
}

/// The handle a cut segment writes through as the active one: its own, or (a sealed segment
/// gave its up; `maintenance` is held, so the name is this segment's file) a new one.
fn writable_file(seg: &Segment) -> Result<Arc<File>, WalError> {
    if let Some(f) = &seg.own_file {
        return Ok(f.clone());
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg.path)
        .map_err(WalError::io("open segment", &seg.path))?;
    Ok(Arc::new(file))
}

/// Whether `offset` lies in a gap after the cut segment's last batch below it (compaction:
/// the log then ends there, and a new empty segment at `offset` keeps that end across a
/// restart); an error if it is inside a batch, or in a gap of a segment that has none.
fn cut_in_gap(
    seg: &Segment,
    header: &SegmentHeader,
    out: &ScanOutcome,
    offset: i64,
) -> Result<bool, WalError> {
    if out.next_offset > offset {
        return Err(WalError::NotBatchBoundary { offset });
    }
    let in_gap = out.next_offset < offset;
    if in_gap && header.cleaned_to.is_none() {
        // Only a cleaned segment has gaps (the scan checked its batches, `gap_allowed` its end).
        return Err(WalError::Corrupt {
            path: seg.path.to_path_buf(),
            position: out.valid_len,
            reason: format!(
                "offset {offset} lies after the last batch ({}) of a segment without gaps",
                out.next_offset
            ),
        });
    }
    Ok(in_gap)
}
