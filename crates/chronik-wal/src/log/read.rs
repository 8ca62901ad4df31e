//! The read side: walking frames across segments without holding the partition lock, and
//! keeping reads that may miss the page cache off the async runtime.
//!
//! A `pread` of data that is not in the page cache blocks its thread for the disk's latency
//! times the size (a 64 MiB fetch of old data: tens of milliseconds or more). On a tokio worker
//! that stalls every connection and commit wake-up scheduled on it, so one consumer reading old
//! data would delay everyone's acknowledgements. [`PartitionLog::read_async`] therefore reads
//! on the cold-read threads (`cold_readers`, at a lower priority) unless the read starts in the newest [`CACHE_KEEP_BYTES`] of the active
//! segment, which the commit task keeps cached (unsynced data is cached anyway): a tail read is
//! a memory copy and stays inline, sparing it two thread hand-offs.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{PartitionLog, ReadResult, SealedSegment, Shared};
use crate::batch::BatchHeader;
use crate::error::WalError;
use crate::file_cache::FileId;
use crate::segment::{
    FrameInfo, FrameReader, ReadFrameError, Segment, CACHE_KEEP_BYTES, SCAN_READ_AHEAD,
};

/// Largest read-ahead window used by `read`.
const MAX_READ_AHEAD: usize = 1 << 20;

use super::cold_readers::run as off_runtime;
pub use super::cold_readers::MAX_COLD_READS;

/// The lowest offset a read may start at.
#[derive(Debug, Clone, Copy)]
enum Floor {
    /// The log start offset (clients).
    LogStart,
    /// The first segment's base (replicas copying the log).
    FirstSegment,
}

/// Where a read starts, found under the partition lock.
enum Located {
    /// Nothing to read (at the end, or at the limit).
    Empty,
    At {
        view: SegmentView,
        pos: u64,
        /// Starts in the newest [`CACHE_KEEP_BYTES`] of the active segment.
        cached: bool,
    },
}

impl PartitionLog {
    /// Reads whole batches starting with the batch that contains `start_offset`, never including
    /// a batch whose last offset is >= `max_offset_exclusive`. Returns at least one batch when one
    /// is available (even if larger than `max_bytes`), otherwise stops before exceeding
    /// `max_bytes`. `OffsetOutOfRange` when `start_offset` is outside `[log_start, log_end]`.
    /// Uses the sparse index plus a short scan. Blocking: from async code use
    /// [`read_async`](Self::read_async).
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, WalError> {
        self.shared.read(
            Floor::LogStart,
            start_offset,
            max_bytes,
            max_offset_exclusive,
        )
    }

    /// [`read`](Self::read) for async callers: inline when the read starts near the log end
    /// (page cache), otherwise on a cold-read thread, at most [`MAX_COLD_READS`] at a time.
    pub async fn read_async(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, WalError> {
        self.read_async_from(
            Floor::LogStart,
            start_offset,
            max_bytes,
            max_offset_exclusive,
        )
        .await
    }

    /// [`read_async`](Self::read_async) for a replica copying this log: it may also read below
    /// the log start offset, down to the first segment's base, so a follower whose log ends
    /// inside the first segment can still catch up (the segment containing the log start is
    /// kept whole, and the follower moves its own log start afterwards).
    pub async fn read_replica_async(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, WalError> {
        self.read_async_from(
            Floor::FirstSegment,
            start_offset,
            max_bytes,
            max_offset_exclusive,
        )
        .await
    }

    async fn read_async_from(
        &self,
        floor: Floor,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, WalError> {
        let s = &self.shared;
        match s.locate_read(floor, start_offset, max_offset_exclusive)? {
            Located::Empty => return Ok(ReadResult::default()),
            Located::At {
                view,
                pos,
                cached: true,
            } => return s.read_from(view, pos, start_offset, max_bytes, max_offset_exclusive),
            Located::At { cached: false, .. } => {}
        }
        let shared = s.clone();
        // Located again on the blocking thread: the log may have changed while this waited.
        off_runtime(move || shared.read(floor, start_offset, max_bytes, max_offset_exclusive)).await
    }

    /// Calls `f` with the header of every batch from the one containing `from_offset` (clamped
    /// to the log start) to the end of the log as of the call, reading sequentially. Blocking:
    /// call it from a blocking context for large logs.
    pub fn scan_headers(
        &self,
        from_offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), WalError> {
        self.scan_batches(from_offset, &|_| false, &mut |h, _| f(h))
    }

    /// [`scan_headers`](Self::scan_headers) that also hands `f` the whole batch (header
    /// included, frame header stripped) of each batch `wants_payload` selects, e.g. the
    /// control batches a rebuild of transaction state must read. Payloads are read only for
    /// the batches selected, so a scan selecting none costs what a header scan costs.
    pub fn scan_batches(
        &self,
        from_offset: i64,
        wants_payload: &dyn Fn(&BatchHeader) -> bool,
        f: &mut dyn FnMut(&BatchHeader, Option<&[u8]>),
    ) -> Result<(), WalError> {
        let s = &*self.shared;
        let (view, pos, from, end) = {
            let inner = s.lock();
            s.check_readable(&inner)?;
            let from = from_offset.max(inner.log_start);
            if from >= inner.log_end {
                return Ok(());
            }
            let seg = &inner.segments[inner.segment_index_for(from)];
            let pos = seg.position_for((from - seg.base_offset) as u32);
            (SegmentView::of(seg), pos, from, inner.log_end)
        };
        s.walk(view, pos, SCAN_READ_AHEAD, &mut |ctx| {
            let h = *ctx.header();
            if h.base_offset >= end {
                return Ok(false);
            }
            if h.last_offset() >= from {
                if wants_payload(&h) {
                    f(&h, Some(ctx.payload()?));
                } else {
                    f(&h, None);
                }
            }
            Ok(true)
        })
    }

    /// First batch (in offset order) whose `max_timestamp >= ts_ms`, returned whole. Uses the
    /// per-segment max timestamp, the time index and a short scan. `None` if there is none.
    /// The batch may be anywhere in the log, so it is read on a cold-read thread.
    pub async fn find_batch_by_timestamp(&self, ts_ms: i64) -> Result<Option<Bytes>, WalError> {
        let shared = self.shared.clone();
        off_runtime(move || shared.find_batch_by_timestamp(ts_ms)).await
    }
}

#[cfg(test)]
impl PartitionLog {
    /// Test hook: [`read`](Self::read) of a reader that located `start_offset` and then lost
    /// the race with `between` (it ran before the reader opened any file).
    pub(crate) fn read_racing(
        &self,
        start_offset: i64,
        max_bytes: usize,
        between: impl FnOnce(),
    ) -> Result<ReadResult, WalError> {
        let s = &self.shared;
        match s.locate_read(Floor::LogStart, start_offset, i64::MAX)? {
            Located::Empty => Ok(ReadResult::default()),
            Located::At { view, pos, .. } => {
                between();
                s.read_from(view, pos, start_offset, max_bytes, i64::MAX)
            }
        }
    }
}

/// A cheap clone of what a reader needs from one segment.
pub(super) struct SegmentView {
    base_offset: i64,
    /// A cleaned segment: gaps between its batches are legal.
    cleaned: bool,
    size_bytes: u64,
    id: FileId,
    /// The segment's own handle (active, or being sealed); `None`: a sealed segment, read
    /// through the file cache (`files.rs`).
    file: Option<Arc<File>>,
    path: Arc<Path>,
}

impl SegmentView {
    pub(super) fn of(s: &Segment) -> Self {
        SegmentView {
            base_offset: s.base_offset,
            cleaned: s.cleaned_to.is_some(),
            size_bytes: s.size_bytes,
            id: s.file_id,
            file: s.own_file.clone(),
            path: s.path.clone(),
        }
    }
}

/// Most times one walk finds the segment it was about to read gone (compaction, retention or
/// truncation took it meanwhile) and looks for its offset again. Each time the log changed;
/// a walk that keeps losing the race gives up with an I/O error the client retries.
const MAX_RELOCATIONS: u32 = 16;

impl SealedSegment {
    /// Reads up to `max_len` bytes at `pos` (fewer only at the end of the file) on the blocking
    /// pool, sharing the [`MAX_COLD_READS`] slots: a whole-segment transfer reads old data.
    pub async fn read_chunk(&self, pos: u64, max_len: usize) -> Result<Bytes, WalError> {
        let seg = self.clone();
        off_runtime(move || {
            let mut buf = vec![0u8; max_len];
            let n = seg.read_at(pos, &mut buf).map_err(|e| WalError::Io {
                op: "read sealed segment",
                path: std::path::PathBuf::from(format!("segment at offset {}", seg.base_offset)),
                source: e,
            })?;
            buf.truncate(n);
            Ok(Bytes::from(buf))
        })
        .await
    }
}

impl Shared {
    fn find_batch_by_timestamp(&self, ts_ms: i64) -> Result<Option<Bytes>, WalError> {
        let (view, pos, log_start) = {
            let inner = self.lock();
            self.check_readable(&inner)?;
            let Some(seg) = inner.segments.iter().find(|s| s.max_timestamp >= ts_ms) else {
                return Ok(None);
            };
            let rel = seg.index.scan_start_for_timestamp(ts_ms);
            (SegmentView::of(seg), seg.position_for(rel), inner.log_start)
        };
        let mut found = None;
        self.walk(view, pos, SCAN_READ_AHEAD, &mut |ctx| {
            // Batches wholly below the log start are deleted records (`advance_log_start`).
            if ctx.header().max_timestamp < ts_ms || ctx.header().last_offset() < log_start {
                return Ok(true);
            }
            found = Some(Bytes::copy_from_slice(ctx.payload()?));
            Ok(false)
        })?;
        Ok(found)
    }

    fn read(
        &self,
        floor: Floor,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, WalError> {
        match self.locate_read(floor, start_offset, max_offset_exclusive)? {
            Located::Empty => Ok(ReadResult::default()),
            Located::At { view, pos, .. } => {
                self.read_from(view, pos, start_offset, max_bytes, max_offset_exclusive)
            }
        }
    }

    /// Finds where a read of `start_offset` begins, under the partition lock.
    fn locate_read(
        &self,
        floor: Floor,
        start_offset: i64,
        max_offset_exclusive: i64,
    ) -> Result<Located, WalError> {
        let inner = self.lock();
        self.check_readable(&inner)?;
        let lowest = match floor {
            Floor::LogStart => inner.log_start,
            Floor::FirstSegment => inner.segments[0].base_offset,
        };
        if start_offset < lowest || start_offset > inner.log_end {
            return Err(WalError::OffsetOutOfRange {
                requested: start_offset,
                log_start: inner.log_start,
                log_end: inner.log_end,
            });
        }
        if start_offset == inner.log_end || start_offset >= max_offset_exclusive {
            return Ok(Located::Empty);
        }
        let i = inner.segment_index_for(start_offset);
        let seg = &inner.segments[i];
        let pos = seg.position_for((start_offset - seg.base_offset) as u32);
        let cached =
            i + 1 == inner.segments.len() && seg.size_bytes.saturating_sub(pos) <= CACHE_KEEP_BYTES;
        Ok(Located::At {
            view: SegmentView::of(seg),
            pos,
            cached,
        })
    }

    /// The batches of a read located at `pos` in `view`.
    fn read_from(
        &self,
        view: SegmentView,
        pos: u64,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, WalError> {
        let mut out = BytesMut::new();
        let mut first_offset = None;
        let mut batches = 0usize;
        let mut records = 0u64;
        let read_ahead = max_bytes.clamp(SCAN_READ_AHEAD / 16, MAX_READ_AHEAD);
        self.walk(view, pos, read_ahead, &mut |ctx| {
            let h = *ctx.header();
            if h.last_offset() < start_offset {
                return Ok(true);
            }
            if h.last_offset() >= max_offset_exclusive {
                return Ok(false);
            }
            let len = h.total_size();
            if batches > 0 && out.len() + len > max_bytes {
                return Ok(false);
            }
            let payload = ctx.payload()?;
            if out.is_empty() {
                out.reserve(len.max(max_bytes.min(MAX_READ_AHEAD)));
            }
            out.extend_from_slice(payload);
            first_offset.get_or_insert(h.base_offset);
            batches += 1;
            records += u64::try_from(h.records_count).unwrap_or(0);
            Ok(out.len() < max_bytes)
        })?;
        Ok(ReadResult {
            data: out.freeze(),
            first_offset,
            batches,
            records,
        })
    }

    /// Where a reader that finished `view` up to `pos` continues, `next` being the offset after
    /// the last batch it saw: the rest of the same file if it grew, else the segment holding
    /// `next`, found by offset rather than by file: a replacement (compaction) may have put
    /// another file in place of the one being read, whose batches below `next` the walk then
    /// skips. `None` at the end of the log.
    fn resume(&self, view: &SegmentView, pos: u64, next: i64) -> Option<(SegmentView, u64)> {
        let inner = self.lock();
        let mut i = inner.segment_index_for(next);
        let seg = &inner.segments[i];
        if seg.file_id == view.id {
            if seg.size_bytes > pos {
                return Some((SegmentView::of(seg), pos));
            }
            i += 1;
            return inner
                .segments
                .get(i)
                .map(|s| (SegmentView::of(s), s.data_start()));
        }
        let pos = match u32::try_from(next - seg.base_offset) {
            Ok(rel) => seg.position_for(rel),
            Err(_) => seg.data_start(), // `next` below the first segment: from its start
        };
        Some((SegmentView::of(seg), pos))
    }

    /// Walks frames from `pos` in `view` and then the following segments, calling `visit` for
    /// each until it returns `false`. Offsets must be contiguous, except that a cleaned segment
    /// (compaction) may have gaps between its batches; a gap inside any other segment, or a
    /// batch overlapping an earlier one, is `Corrupt`. (A gap at the end of a segment was
    /// checked against its header when the log was opened or the segment was written.) Used by every read-side operation; the
    /// partition lock is only taken to step to the next segment.
    pub(super) fn walk(
        &self,
        mut view: SegmentView,
        mut pos: u64,
        read_ahead: usize,
        visit: &mut dyn FnMut(&mut FrameCtx<'_, '_>) -> Result<bool, WalError>,
    ) -> Result<(), WalError> {
        let mut expected: Option<i64> = None;
        // After stepping into another file by offset (`resume`): batches below `expected`
        // were already seen in the file it replaced.
        let mut skipping = false;
        let mut relocations = 0;
        loop {
            let file = match &view.file {
                Some(f) => Some(f.clone()),
                None => self.sealed_file(view.base_offset, view.id, &view.path)?,
            };
            let Some(file) = file else {
                // The segment left the log before this walk read it: continue from the offset
                // reached, in whichever segment holds it now (`resume` finds it by offset).
                relocations += 1;
                if relocations > MAX_RELOCATIONS {
                    return Err(WalError::Io {
                        op: "read segment",
                        path: view.path.to_path_buf(),
                        source: std::io::Error::other("segments replaced repeatedly during a read"),
                    });
                }
                let next = expected.map_or(view.base_offset, |e| e.max(view.base_offset));
                match self.resume(&view, pos, next) {
                    // Nothing read yet and no segment holds those offsets any more: retention
                    // deleted what this read was to start with.
                    Some((v, _)) if expected.is_none() && v.base_offset > next => {
                        let inner = self.lock();
                        return Err(WalError::OffsetOutOfRange {
                            requested: next,
                            log_start: inner.log_start,
                            log_end: inner.log_end,
                        });
                    }
                    Some((v, p)) => {
                        skipping = true;
                        view = v;
                        pos = p;
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            let mut reader = FrameReader::new(&file, view.size_bytes, read_ahead);
            // Each iteration advances pos by at least one minimal frame.
            while pos < view.size_bytes {
                let frame = reader
                    .frame_at(pos)
                    .map_err(|e| frame_error(&view.path, pos, e))?;
                let h = frame.header;
                let floor = expected.unwrap_or(i64::MIN).max(view.base_offset);
                if skipping && h.last_offset() < floor {
                    pos = frame.end();
                    continue;
                }
                skipping = false;
                // A walk may start at any batch (`expected` unknown); after that, only a
                // cleaned segment may skip offsets.
                let gap = expected.is_some() && h.base_offset > floor && !view.cleaned;
                if h.base_offset < floor || gap {
                    let above = if view.cleaned { " or above" } else { "" };
                    return Err(WalError::Corrupt {
                        path: view.path.to_path_buf(),
                        position: pos,
                        reason: format!(
                            "expected base offset {floor}{above}, found {}",
                            h.base_offset
                        ),
                    });
                }
                expected = Some(h.last_offset().saturating_add(1));
                let mut ctx = FrameCtx {
                    reader: &mut reader,
                    frame,
                    path: &view.path,
                };
                if !visit(&mut ctx)? {
                    return Ok(());
                }
                pos = frame.end();
            }
            // Never behind this segment: the walk already reached it (an earlier segment's
            // tail gap ends here).
            let next = expected.map_or(view.base_offset, |e| e.max(view.base_offset));
            match self.resume(&view, pos, next) {
                Some((v, p)) => {
                    skipping = v.id != view.id;
                    view = v;
                    pos = p;
                }
                None => return Ok(()),
            }
        }
    }
}

/// One frame seen by [`Shared::walk`]: its header, and its payload on demand.
pub(super) struct FrameCtx<'r, 'f> {
    reader: &'r mut FrameReader<'f>,
    frame: FrameInfo,
    path: &'r Path,
}

impl FrameCtx<'_, '_> {
    pub(super) fn header(&self) -> &BatchHeader {
        &self.frame.header
    }

    pub(super) fn payload(&mut self) -> Result<&[u8], WalError> {
        let path = self.path;
        self.reader.payload(&self.frame).map_err(|e| WalError::Io {
            op: "read segment",
            path: path.to_path_buf(),
            source: e,
        })
    }
}

fn frame_error(path: &Path, pos: u64, e: ReadFrameError) -> WalError {
    match e {
        ReadFrameError::Problem(p) => WalError::Corrupt {
            path: path.to_path_buf(),
            position: pos,
            reason: p.to_string(),
        },
        ReadFrameError::Io(e) => WalError::Io {
            op: "read segment",
            path: path.to_path_buf(),
            source: e,
        },
    }
}
