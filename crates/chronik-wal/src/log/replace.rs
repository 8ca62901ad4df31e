//! Replacing a run of sealed segments with a cleaned one (log compaction): the cleaner (which
//! decides what to keep) writes the surviving batches, unchanged in their offsets, into a
//! [`SegmentReplacement`]; [`PartitionLog::replace_segments`] then swaps it in atomically, as
//! Kafka's `LocalLog.replaceSegments` does. The file names of each step and what recovery does
//! after a crash at any of them are in `swap.rs` (and `docs/wal-format.md`).
//!
//! Invariants:
//! * Only consecutive sealed segments whose seal finished (synced, index persisted) are
//!   replaced, never the active one; the cleaned segment takes the first one's base offset and
//!   covers exactly their offset range, so the log start and log end do not move.
//! * Its batches increase in offset (gaps are the records removed) and lie inside that range.
//! * Its header is version 2 (`segment/header.rs`): it marks the segment cleaned and names the
//!   range end, so recovery accepts its gaps, including one at its end, from the segment file
//!   alone, whatever happened to its index files.
//! * It is fdatasynced with its index files before anything is renamed; the heavy syncs run
//!   without any lock of the log, and so does unlinking the old files at the end. Only the
//!   renames and three directory fsyncs hold `maintenance` (which holds back commit passes for
//!   those few milliseconds), and only the swap of the in-memory list holds `inner`. Readers in flight keep their `Arc<File>` of the old files
//!   (renamed, then unlinked: the data lives until they drop it) and resume by offset.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use super::{PartitionLog, Shared};
use crate::batch::{verify_batch_crc, BatchError, BatchHeader};
use crate::error::WalError;
use crate::file_cache::{segment_files, FileId};
use crate::index::{write_index_at, IndexMeta, SegmentIndex};
use crate::recovery::fsync_dir;
use crate::segment::{
    frame_header, write_frame, Segment, SegmentHeader, FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES,
    MAX_RELATIVE_OFFSET, MAX_SEGMENT_FILE_BYTES,
};
use crate::swap::{remove_if_exists, rename_if_exists, segment_paths, CLEANED, DELETED, SWAP};

/// The failure a replacement that broke after its commit point leaves: memory and disk
/// disagree until recovery finishes the replacement, so the partition does not heal in place.
pub(super) const REPLACE_FAILURE: &str = "segment replacement failed after its commit point";

/// A cleaned segment being written ([`PartitionLog::begin_replace`]): append the surviving
/// batches in offset order, then hand it to [`PartitionLog::replace_segments`]. Dropping it
/// instead removes its files.
#[derive(Debug)]
pub struct SegmentReplacement {
    /// The replaced segments: base offsets and files (to notice if they changed meanwhile).
    bases: Vec<i64>,
    originals: Vec<FileId>,
    /// The last replaced segment's file name (the cleaned file takes its modification time).
    last_path: Arc<Path>,
    /// `Inner::rewrites` at the start: a truncation since then refuses the swap.
    rewrites: u64,
    base_offset: i64,
    range_end: i64,
    created_ms: i64,
    paths: [PathBuf; 3],
    file: Option<File>,
    written: u64,
    batches_end: i64,
    max_timestamp: i64,
    index: SegmentIndex,
    index_interval_bytes: u32,
    frames: u64,
}

/// What [`PartitionLog::replace_segments`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedSegments {
    /// The cleaned segment's base offset (the first replaced segment's).
    pub base_offset: i64,
    /// The end of its offset range (the next segment's base).
    pub next_offset: i64,
    /// Base offsets of the segments it replaced.
    pub replaced: Vec<i64>,
    /// Bytes of the replaced segment files, and of the cleaned one.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Batches in the cleaned segment.
    pub batches: u64,
}

/// One segment as a cleaner plans with it ([`PartitionLog::segments`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// End of its offset range: the next segment's base, or the log end for the active one.
    pub next_offset: i64,
    /// Offset after its last batch (below `next_offset` when its tail was compacted away).
    pub batches_end: i64,
    pub size_bytes: u64,
    /// Largest batch `max_timestamp` (`i64::MIN` when it holds no batch).
    pub max_timestamp: i64,
    /// Sealed and its seal finished: [`PartitionLog::begin_replace`] accepts it.
    pub replaceable: bool,
}

impl SegmentReplacement {
    /// Appends the next surviving batch, unchanged (its base offset, leader epoch, producer
    /// fields and timestamps are the original's; a rewritten batch needs a correct CRC32C).
    /// It must start at or above the end of the previous one (`base_offset()` for the first)
    /// and end below [`range_end`](Self::range_end); `InvalidReplacement` otherwise, and the
    /// replacement stays usable.
    pub fn append(&mut self, batch: &[u8]) -> Result<(), WalError> {
        if batch.len() > MAX_FRAME_PAYLOAD_BYTES {
            return Err(WalError::BatchTooLarge {
                size: batch.len(),
                max: MAX_FRAME_PAYLOAD_BYTES,
            });
        }
        let h = BatchHeader::parse(batch)?;
        if h.total_size() != batch.len() {
            return Err(WalError::InvalidBatch(BatchError::TrailingBytes {
                expected: h.total_size(),
                actual: batch.len(),
            }));
        }
        verify_batch_crc(batch)?;
        let last = h.base_offset.checked_add(i64::from(h.last_offset_delta));
        let refuse = |why: String| Err(WalError::InvalidReplacement(why));
        if h.base_offset < self.batches_end {
            return refuse(format!(
                "batch at offset {} is below the end of the previous one ({})",
                h.base_offset, self.batches_end
            ));
        }
        let Some(last) = last.filter(|l| *l < self.range_end) else {
            return refuse(format!(
                "batch at offset {} (last offset delta {}) does not end below the replaced range's end {}",
                h.base_offset, h.last_offset_delta, self.range_end
            ));
        };
        if last - self.base_offset > MAX_RELATIVE_OFFSET {
            return refuse(format!(
                "batch ending at {last} is too far from the base offset"
            ));
        }
        let frame_bytes = FRAME_HEADER_BYTES + batch.len() as u64;
        if self.written + frame_bytes > MAX_SEGMENT_FILE_BYTES {
            return Err(WalError::SegmentFull {
                size_bytes: self.written,
            });
        }
        let file = self.file.as_ref().ok_or(WalError::Closed)?;
        write_frame(file, &frame_header(batch), batch)
            .map_err(WalError::io("write cleaned segment", &self.paths[0]))?;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.index.on_append(
            self.index_interval_bytes,
            (h.base_offset - self.base_offset) as u32,
            self.written as u32,
            frame_bytes,
            self.max_timestamp,
        );
        self.written += frame_bytes;
        self.batches_end = last + 1;
        self.frames += 1;
        Ok(())
    }

    /// The cleaned segment's base offset: the first replaced segment's.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The end of the replaced range: every batch must end below it.
    pub fn range_end(&self) -> i64 {
        self.range_end
    }

    /// Bytes written so far, header included.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn meta(&self) -> IndexMeta {
        IndexMeta {
            base_offset: self.base_offset,
            next_offset: self.range_end,
            batches_end: self.batches_end,
            segment_bytes: self.written,
            max_timestamp: self.max_timestamp,
        }
    }

    /// Forgets the files without removing them (a simulated crash leaves them behind).
    #[cfg(test)]
    fn abandon(&mut self) {
        self.file = None;
    }
}

impl Drop for SegmentReplacement {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            for p in [&self.paths[0], &self.paths[1], &self.paths[2]] {
                let _ = std::fs::remove_file(p);
            }
            let [_, oix, tix] = &self.paths;
            for p in [oix, tix] {
                let _ = std::fs::remove_file(swap_of(p));
            }
        }
    }
}

/// `X.cleaned` -> `X.swap`.
fn swap_of(cleaned: &std::path::Path) -> PathBuf {
    cleaned.with_extension(SWAP)
}

impl PartitionLog {
    /// Every segment, oldest first, the active one last (`replaceable: false`).
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let inner = self.shared.lock();
        let n = inner.segments.len();
        inner
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                batches_end: s.batches_end,
                size_bytes: s.size_bytes,
                max_timestamp: s.max_timestamp,
                replaceable: i + 1 < n
                    && s.persisted
                    && !inner.pending_seals.contains(&s.base_offset),
            })
            .collect()
    }

    /// Starts a replacement of the consecutive sealed segments based at `bases` (ascending,
    /// as listed by the log, never the active one, each one's seal finished): creates the
    /// cleaned segment file `wal_P_B.log.cleaned` with the first one's base offset. Refused with
    /// `InvalidReplacement` otherwise, or while another replacement starting there is under
    /// way. Blocking (creates a file).
    pub fn begin_replace(&self, bases: &[i64]) -> Result<SegmentReplacement, WalError> {
        let s = &*self.shared;
        let (originals, last_path, rewrites, range_end, created_ms, interval) = {
            let inner = s.lock();
            s.check_open(&inner)?;
            let run = s.sealed_run(&inner, bases)?;
            let first = &inner.segments[run.start];
            let last = &inner.segments[run.end - 1];
            let originals = inner.segments.range(run).map(|seg| seg.file_id).collect();
            let last_path = last.path.clone();
            if last.next_offset - first.base_offset > MAX_RELATIVE_OFFSET + 1 {
                return Err(WalError::InvalidReplacement(format!(
                    "segments {}..{} span more offsets than one segment may",
                    first.base_offset, last.next_offset
                )));
            }
            (
                originals,
                last_path,
                inner.rewrites,
                last.next_offset,
                first.created_ms,
                inner.config.index_interval_bytes,
            )
        };
        let base = bases[0];
        let paths = segment_paths(&s.dir, s.partition, base, CLEANED);
        // create_new: a second replacement starting at the same base must not clobber the
        // first one's file (recovery removes one a crash left behind).
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&paths[0])
            .map_err(WalError::io("create cleaned segment", &paths[0]))?;
        // The version-2 header marks it cleaned and names its range end: recovery accepts
        // its gaps, and a missing tail up to that end, on the header's word alone.
        let header = SegmentHeader {
            base_offset: base,
            created_ms,
            cleaned_to: Some(range_end),
        };
        if let Err(e) = file.write_all(&header.encode()) {
            let _ = std::fs::remove_file(&paths[0]);
            return Err(WalError::io("write cleaned segment", &paths[0])(e));
        }
        Ok(SegmentReplacement {
            bases: bases.to_vec(),
            originals,
            last_path,
            rewrites,
            base_offset: base,
            range_end,
            created_ms,
            paths,
            file: Some(file),
            written: header.data_start(),
            batches_end: base,
            max_timestamp: i64::MIN,
            index: SegmentIndex::default(),
            index_interval_bytes: interval,
            frames: 0,
        })
    }

    /// [`begin_replace`](Self::begin_replace), every batch of `batches` appended in order, then
    /// [`replace_segments`](Self::replace_segments). Blocking.
    pub fn replace_segments_with(
        &self,
        bases: &[i64],
        batches: &[&[u8]],
    ) -> Result<ReplacedSegments, WalError> {
        let mut r = self.begin_replace(bases)?;
        for b in batches {
            r.append(b)?;
        }
        self.replace_segments(r)
    }

    /// Swaps a written replacement in, atomically: syncs the cleaned segment and writes its
    /// index files (no lock held), then under `maintenance` checks that the replaced segments
    /// are still the same files, renames the index files and then the log to `.swap` (the
    /// commit point), renames the old files to `.deleted`, the swap files to their final
    /// names, fsyncs the directory, swaps the in-memory segment list, and removes the old
    /// files. Before the commit point a failure removes the new files and leaves the log as it
    /// was; after it, the partition fails until it is reopened (recovery finishes the swap).
    /// Blocking.
    pub fn replace_segments(
        &self,
        mut r: SegmentReplacement,
    ) -> Result<ReplacedSegments, WalError> {
        let s = &*self.shared;
        let mut steps = Steps::new(s);
        let meta = r.meta();
        if meta.next_offset - meta.batches_end > i64::from(u32::MAX) {
            return Err(WalError::InvalidReplacement(
                "an empty replacement of more than 2^32 offsets".into(),
            ));
        }
        let [log_c, oix_c, tix_c] = r.paths.clone();
        {
            let file = r.file.as_ref().ok_or(WalError::Closed)?;
            // Retention falls back to the file's modification time for batches without
            // timestamps: the cleaned file keeps the last replaced one's, as in Kafka.
            // By name (sealed segments hold no descriptor): if a concurrent change replaced
            // or removed it, the check under `maintenance` below refuses the swap anyway.
            if let Ok(t) = std::fs::metadata(&r.last_path).and_then(|m| m.modified()) {
                file.set_modified(t)
                    .map_err(WalError::io("set cleaned segment time", &log_c))?;
            }
            file.sync_all()
                .map_err(WalError::io("fsync cleaned segment", &log_c))?;
            let n = write_index_at([&oix_c, &tix_c], &meta, &r.index)
                .map_err(WalError::io("write cleaned index", &oix_c))?;
            s.count_fsyncs(1 + n);
        }
        steps.step(&mut r)?;
        let maintenance = s.lock_maintenance();
        let old_bytes = {
            let inner = s.lock();
            s.check_open(&inner)?;
            let run = s.sealed_run(&inner, &r.bases)?;
            let same = inner
                .segments
                .range(run.clone())
                .zip(&r.originals)
                .all(|(seg, id)| seg.file_id == *id);
            if !same
                || inner.rewrites != r.rewrites
                || inner.segments[run.end - 1].next_offset != r.range_end
            {
                return Err(WalError::InvalidReplacement(
                    "the segments changed since the replacement began".into(),
                ));
            }
            inner
                .segments
                .range(run)
                .map(|seg| seg.size_bytes)
                .sum::<u64>()
        };
        // Index first, the log last: a `.log.swap` always has its `.index.swap` (the range).
        for from in [&oix_c, &tix_c] {
            std::fs::rename(from, swap_of(from))
                .map_err(WalError::io("rename cleaned index", from))?;
            steps.step(&mut r)?;
        }
        s.sync_dir()?;
        std::fs::rename(&log_c, swap_of(&log_c))
            .map_err(WalError::io("rename cleaned segment", &log_c))?;
        // From here on, the replacement happens: recovery would finish it.
        let file = r.file.take().ok_or(WalError::Closed)?;
        let result = s
            .sync_dir()
            .and_then(|()| steps.check())
            .and_then(|()| self.swap_in(&r, file, &mut steps));
        if let Err(e) = &result {
            let mut inner = s.lock();
            s.poison(&mut inner, format!("{REPLACE_FAILURE}: {e}"));
        }
        result?;
        // The old files are out of the log; unlinking them (which frees their blocks, slow for
        // large files) does not hold back commit passes.
        drop(maintenance);
        self.remove_replaced(&r, &mut steps)?;
        info!(topic = %s.topic, partition = s.partition, base_offset = r.base_offset,
            next_offset = r.range_end, replaced = ?r.bases, bytes_before = old_bytes,
            bytes_after = r.written, batches = r.frames, "replaced segments with a cleaned one");
        Ok(ReplacedSegments {
            base_offset: r.base_offset,
            next_offset: r.range_end,
            replaced: r.bases.clone(),
            bytes_before: old_bytes,
            bytes_after: r.written,
            batches: r.frames,
        })
    }

    /// The part after the commit point: old files to `.deleted`, swap files to their final
    /// names, the directory synced, the in-memory list swapped.
    fn swap_in(
        &self,
        r: &SegmentReplacement,
        file: File,
        steps: &mut Steps,
    ) -> Result<(), WalError> {
        let s = &*self.shared;
        for &b in &r.bases {
            let finals = segment_paths(&s.dir, s.partition, b, "");
            let deleted = segment_paths(&s.dir, s.partition, b, DELETED);
            for (from, to) in finals.iter().zip(&deleted) {
                rename_if_exists(from, to)?;
                steps.check()?;
            }
        }
        let finals = segment_paths(&s.dir, s.partition, r.base_offset, "");
        for (cleaned, to) in r.paths.iter().zip(&finals) {
            let from = swap_of(cleaned);
            std::fs::rename(&from, to).map_err(WalError::io("rename swap file", &from))?;
            steps.check()?;
        }
        s.sync_dir()?;
        let file_id =
            FileId::of(&file).map_err(WalError::io("stat cleaned segment", &finals[0]))?;
        drop(file);
        {
            let mut inner = s.lock();
            let run = s.sealed_run(&inner, &r.bases)?;
            let seg = Segment {
                base_offset: r.base_offset,
                next_offset: r.range_end,
                batches_end: r.batches_end,
                cleaned_to: Some(r.range_end),
                size_bytes: r.written,
                allocated_bytes: r.written,
                max_timestamp: r.max_timestamp,
                created_ms: r.created_ms,
                roll_clock_ms: Some(r.created_ms),
                // Its seal is done: no descriptor of its own (reads go through the cache).
                file_id,
                own_file: None,
                path: Arc::from(finals[0].as_path()),
                index: Arc::new(r.index.clone()),
                persisted: true,
                cache_dropped_to: 0,
                synced_bytes: r.written,
            };
            let old: Vec<Segment> = inner.segments.drain(run.clone()).collect();
            // Their cached handles go now; readers holding one resume by offset.
            segment_files().remove(old.iter().map(|o| o.file_id));
            let old: u64 = old.iter().map(|o| o.size_bytes).sum();
            inner.segments.insert(run.start, seg);
            inner.total_bytes = inner.total_bytes - old + r.written;
            inner.check_invariants();
        }
        Ok(())
    }

    /// Removes the replaced segments' `.deleted` files. A failure is only logged: the log is
    /// whole without them, and recovery removes what is left.
    fn remove_replaced(&self, r: &SegmentReplacement, steps: &mut Steps) -> Result<(), WalError> {
        let s = &*self.shared;
        for &b in &r.bases {
            for p in segment_paths(&s.dir, s.partition, b, DELETED) {
                if let Err(e) = remove_if_exists(&p) {
                    warn!(topic = %s.topic, partition = s.partition, error = %e,
                        "cannot remove a replaced segment file; the next open will");
                }
                steps.check()?;
            }
        }
        if let Err(e) = s.sync_dir() {
            warn!(topic = %s.topic, partition = s.partition, error = %e,
                "cannot sync the directory after removing replaced segments");
        }
        Ok(())
    }
}

impl Shared {
    /// The index range of the segments based at `bases` if they are consecutive sealed
    /// segments whose seal finished, `InvalidReplacement` otherwise.
    fn sealed_run(
        &self,
        inner: &super::Inner,
        bases: &[i64],
    ) -> Result<std::ops::Range<usize>, WalError> {
        let refuse = |why: String| Err(WalError::InvalidReplacement(why));
        let Some(&first) = bases.first() else {
            return refuse("no segment to replace".into());
        };
        let Some(start) = inner.segments.iter().position(|s| s.base_offset == first) else {
            return refuse(format!("no segment starts at offset {first}"));
        };
        let end = start + bases.len();
        if end >= inner.segments.len() {
            return refuse("the active segment is never replaced".into());
        }
        for (seg, &b) in inner.segments.range(start..end).zip(bases) {
            if seg.base_offset != b {
                return refuse(format!(
                    "segments {bases:?} are not consecutive segments of the log"
                ));
            }
            if !seg.persisted || inner.pending_seals.contains(&b) {
                return refuse(format!("segment {b} is still being sealed"));
            }
        }
        Ok(start..end)
    }

    fn sync_dir(&self) -> Result<(), WalError> {
        fsync_dir(&self.dir).map_err(WalError::io("fsync directory", &self.dir))?;
        self.count_fsyncs(1);
        Ok(())
    }
}

/// Fault injection for the crash tests: stops the sequence after the `n`th step, leaving the
/// files as a crash would (`Shared::crash_replace_at`, test builds only).
struct Steps {
    #[cfg(test)]
    crash_at: u32,
    #[cfg(test)]
    done: u32,
}

impl Steps {
    fn new(_s: &Shared) -> Self {
        Steps {
            #[cfg(test)]
            crash_at: _s
                .crash_replace_at
                .load(std::sync::atomic::Ordering::SeqCst),
            #[cfg(test)]
            done: 0,
        }
    }

    /// A step before the commit point: the replacement's own files are left behind.
    fn step(&mut self, _r: &mut SegmentReplacement) -> Result<(), WalError> {
        #[cfg(test)]
        if self.check().is_err() {
            _r.abandon();
            return Err(WalError::Failed("injected crash".into()));
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), WalError> {
        #[cfg(test)]
        {
            self.done += 1;
            if self.done == self.crash_at {
                return Err(WalError::Failed("injected crash".into()));
            }
        }
        Ok(())
    }
}
