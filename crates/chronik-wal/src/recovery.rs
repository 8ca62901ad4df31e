//! Opening a partition directory: listing segments, trusting or rebuilding indexes, and cutting
//! torn or corrupt tails. The rules are written down in `docs/wal-format.md`; in short:
//!
//! * A non-last segment whose header is valid and whose two index files are valid (CRC, and they
//!   describe exactly the current file size and end at the next segment's base offset) is trusted
//!   without reading its frames: index files are written only after the data was synced.
//! * The last segment, and any segment without a trusted index, is scanned frame by frame. At the
//!   first bad frame the file is cut there (ftruncate + fsync). If that segment is not the last,
//!   every later segment is deleted too, because the log must stay contiguous. Offsets never
//!   overlap, and have gaps only in a cleaned segment (compaction; its version-2 header says
//!   so). A sealed segment whose batches end before the next one's base keeps its range up to
//!   it only if its header vouches for that gap (`range_end`); otherwise that is a torn tail (a
//!   crash lost unsynced batches there) and every later segment is deleted, as for a bad frame:
//!   a hole kept inside the log would let replicas that hold those offsets diverge unseen. The
//!   index's cached `tail_gap` is trusted only where the header vouches for it too.
//! * An interrupted segment replacement is finished or rolled back first (`swap.rs`).
//! * A damaged segment header (short, bad magic or CRC) is rewritten from the file name and the
//!   segment is scanned as above (garbage after it is cut). An intact header (valid CRC) that is
//!   not understood (other version) or whose base offset disagrees with the file name is reported
//!   as `WalError::Corrupt` and the file is left alone: that is not a crash artifact.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tracing::{debug, error, info, warn};

use crate::config::LogConfig;
use crate::error::WalError;
use crate::file_cache::FileId;
use crate::index::{load_index_files, remove_index_files, write_index_files};
use crate::segment::{
    create_segment_file, is_zero_tail, parse_file_name, scan_segment, segment_file_path, FileKind,
    HeaderError, Segment, SegmentHeader, CLEANED_HEADER_BYTES,
};

/// What recovery found, ready to become the partition's in-memory state.
pub(crate) struct Recovered {
    /// Contiguous segments in offset order; never empty. The last one is the active segment and
    /// its file cursor is at its end.
    pub segments: Vec<Segment>,
    /// fsync/fdatasync calls issued during recovery.
    pub fsyncs: u64,
}

pub(crate) use chronik_durable::fsync_dir;

/// Reads up to `buf.len()` bytes from the start of `file`; returns how many were read.
fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    // Each successful iteration reads at least one byte, so at most buf.len() iterations.
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Removes whole segments (log and index files), newest first so that a crash in the middle
/// leaves a contiguous prefix. The caller fsyncs the directory.
pub(crate) fn remove_segment_files(
    dir: &Path,
    partition: i32,
    bases_ascending: &[i64],
) -> Result<(), WalError> {
    for &base in bases_ascending.iter().rev() {
        remove_index_files(dir, partition, base)
            .map_err(WalError::io("remove index files", dir))?;
        let path = segment_file_path(dir, partition, base, FileKind::Log);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("remove segment", &path)(e)),
        }
    }
    Ok(())
}

/// Removes a segment's index files and fsyncs the directory, so that a stale index can never
/// describe data that is about to be modified (cut or rewritten). Returns the fsyncs issued.
pub(crate) fn remove_index_files_durably(
    dir: &Path,
    partition: i32,
    base_offset: i64,
) -> Result<u64, WalError> {
    remove_index_files(dir, partition, base_offset)
        .map_err(WalError::io("remove index files", dir))?;
    fsync_dir(dir).map_err(WalError::io("fsync directory", dir))?;
    Ok(1)
}

/// Opens or creates the partition directory and recovers it. Blocking; run it off the async
/// executor.
/// `clean`: the previous run closed this log cleanly ([`crate::take_clean_shutdown`]), so the
/// active segment's index files and size are trusted as well, and its data is already synced.
pub(crate) fn recover(
    dir: &Path,
    topic: &str,
    partition: i32,
    config: &LogConfig,
    now_ms: i64,
    clean: bool,
) -> Result<Recovered, WalError> {
    let mut r = Recovery {
        dir,
        topic,
        partition,
        config,
        now_ms,
        clean,
        created: false,
        fsyncs: 0,
        dir_changed: false,
    };
    r.ensure_dir()?;
    // An interrupted segment replacement (compaction) is finished or rolled back first, so the
    // listing below sees one consistent set of segments.
    let (fsyncs, changed) = crate::swap::recover_replacements(dir, topic, partition)?;
    r.fsyncs += fsyncs;
    r.dir_changed |= changed;
    let mut bases = r.list_segments()?;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut i = 0;
    // `bases` only shrinks inside the loop, so this runs at most bases.len() times.
    while i < bases.len() {
        let segment = r.open_segment(&mut bases, i)?;
        if let Some(prev) = segments.last() {
            // Guaranteed by the checks in open_segment (trusted indexes end at the next base).
            assert_eq!(
                prev.next_offset, segment.base_offset,
                "segments not contiguous"
            );
        }
        segments.push(segment);
        i += 1;
    }
    r.finish(segments)
}

/// The active segment's index files as a clean close left them: they must describe exactly
/// `file_len` bytes; the offset range they name is taken as the log's end.
fn load_active_index(
    dir: &Path,
    partition: i32,
    base: i64,
    file_len: u64,
) -> Result<(crate::index::SegmentIndex, crate::index::IndexMeta), String> {
    let opath = segment_file_path(dir, partition, base, FileKind::OffsetIndex);
    let tpath = segment_file_path(dir, partition, base, FileKind::TimeIndex);
    let (index, meta) = crate::index::load_index_at([&opath, &tpath], base, None, file_len)?;
    if meta.batches_end != meta.next_offset {
        return Err("the index names a gap at the active segment's end".into());
    }
    Ok((index, meta))
}

/// One recovery run: where, and what it did so far (fsyncs issued, directory entries changed).
struct Recovery<'a> {
    dir: &'a Path,
    topic: &'a str,
    partition: i32,
    config: &'a LogConfig,
    now_ms: i64,
    /// After a clean shutdown: trust the active segment too (see [`recover`]).
    clean: bool,
    /// The directory was empty and its first segment created (and synced) by this run.
    created: bool,
    fsyncs: u64,
    dir_changed: bool,
}

/// A segment file opened by recovery, with what its header says.
struct OpenedSegment {
    file: File,
    file_len: u64,
    /// Its header as found or rewritten (base offset, creation time, cleaned or not).
    header: SegmentHeader,
    /// False when the header had to be rewritten: the index may describe other data.
    trust_index: bool,
}

impl Recovery<'_> {
    /// Creates the partition directory if missing, durably (its entry in the topic directory
    /// and the topic directory's in the root).
    fn ensure_dir(&mut self) -> Result<(), WalError> {
        let dir = self.dir;
        if dir.is_dir() {
            return Ok(());
        }
        // The root's entry for the topic directory needs a sync only when this made it: the
        // other partitions of a new topic sync just the topic directory.
        let topic_dir_existed = dir.parent().is_some_and(Path::is_dir);
        std::fs::create_dir_all(dir).map_err(WalError::io("create partition directory", dir))?;
        let root = dir
            .parent()
            .and_then(Path::parent)
            .filter(|_| !topic_dir_existed);
        for p in [dir.parent(), root].into_iter().flatten() {
            fsync_dir(p).map_err(WalError::io("fsync directory", p))?;
            self.fsyncs += 1;
        }
        Ok(())
    }

    /// The base offsets of the partition's segments, ascending; creates the first segment of
    /// an empty directory. Removes unfinished transfers and index files without a segment.
    fn list_segments(&mut self) -> Result<Vec<i64>, WalError> {
        let (dir, topic, partition) = (self.dir, self.topic, self.partition);
        let mut logs = BTreeSet::new();
        let mut index_files = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(WalError::io("list partition directory", dir))?;
        for entry in entries {
            let entry = entry.map_err(WalError::io("list partition directory", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                warn!(topic, partition, file = ?name, "ignoring non-UTF-8 file in partition directory");
                continue;
            };
            match parse_file_name(name) {
                Some((p, base, FileKind::Log)) if p == partition => {
                    logs.insert(base);
                }
                Some((p, base, _)) if p == partition => index_files.push((base, entry.path())),
                Some((p, _, _)) => {
                    warn!(
                        topic,
                        partition,
                        file = name,
                        other_partition = p,
                        "ignoring file of another partition"
                    );
                }
                // A whole-segment transfer cut short by a crash: never part of the log.
                None if name.ends_with(".log.incoming") => {
                    warn!(
                        topic,
                        partition,
                        file = name,
                        "removing an unfinished segment transfer"
                    );
                    std::fs::remove_file(entry.path())
                        .map_err(WalError::io("remove unfinished transfer", &entry.path()))?;
                }
                // The log start checkpoint (log/log_start.rs) and its side file.
                None if name == crate::log::CHECKPOINT_FILE
                    || name == crate::log::CHECKPOINT_TMP => {}
                None => warn!(
                    topic,
                    partition,
                    file = name,
                    "ignoring unknown file in partition directory"
                ),
            }
        }
        for (base, path) in index_files {
            if logs.contains(&base) {
                continue;
            }
            warn!(topic, partition, file = %path.display(), "removing index file without a segment");
            match std::fs::remove_file(&path) {
                Ok(()) => self.dir_changed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io("remove orphan index", &path)(e)),
            }
        }
        let mut bases: Vec<i64> = logs.into_iter().collect();
        if bases.is_empty() {
            let path = segment_file_path(dir, partition, 0, FileKind::Log);
            let header = SegmentHeader::plain(0, self.now_ms);
            let f = create_segment_file(&path, header)
                .map_err(WalError::io("create segment", &path))?;
            f.sync_all().map_err(WalError::io("fsync segment", &path))?;
            self.fsyncs += 1;
            self.dir_changed = true;
            self.created = true;
            bases.push(0);
            info!(topic, partition, "created partition log");
        }
        Ok(bases)
    }

    /// Opens segment `bases[i]`: trusts its index files if it is sealed and they match, else
    /// scans it, cutting a torn or corrupt tail (and, for a sealed segment, every later one).
    fn open_segment(&mut self, bases: &mut Vec<i64>, i: usize) -> Result<Segment, WalError> {
        let base = bases[i];
        let next_base = bases.get(i + 1).copied();
        let path = segment_file_path(self.dir, self.partition, base, FileKind::Log);
        let opened = self.open_file(&path, base, next_base.is_some() || self.clean)?;
        let loaded = match next_base {
            _ if !opened.trust_index => None,
            Some(nb) => {
                match load_index_files(self.dir, self.partition, base, nb, opened.file_len) {
                    Ok(x) => Some(x),
                    Err(reason) => {
                        info!(topic = self.topic, partition = self.partition,
                            segment = %path.display(), %reason,
                            "segment index missing or invalid; rebuilding it by scanning the segment");
                        None
                    }
                }
            }
            // The active segment after a clean shutdown: its close wrote the index for the
            // file as it is (zeros trimmed); any other size means it was not that close.
            None => match load_active_index(self.dir, self.partition, base, opened.file_len) {
                Ok(x) => Some(x),
                Err(reason) => {
                    info!(topic = self.topic, partition = self.partition,
                        segment = %path.display(), %reason,
                        "active segment's index does not match after a clean shutdown; scanning it");
                    None
                }
            },
        };
        // The index may cache a gap at the segment's end, but only the segment's own header
        // can vouch for one: without it, the batches ending early is a torn tail.
        let loaded = loaded.filter(|(_, meta)| {
            let vouched = gap_vouched(&opened.header, meta.batches_end, meta.next_offset);
            if !vouched {
                info!(topic = self.topic, partition = self.partition, segment = %path.display(),
                    batches_end = meta.batches_end, next_offset = meta.next_offset,
                    "segment index names a gap at the segment's end that its header does not; scanning the segment");
            }
            vouched
        });
        let Some((index, meta)) = loaded else {
            return self.scan(opened, &path, bases, i);
        };
        let created_ms = opened.header.created_ms;
        let active = next_base.is_none();
        let file_id = FileId::of(&opened.file).map_err(WalError::io("stat segment", &path))?;
        Ok(Segment {
            base_offset: base,
            next_offset: meta.next_offset,
            batches_end: meta.batches_end,
            cleaned_to: opened.header.cleaned_to,
            size_bytes: opened.file_len,
            allocated_bytes: opened.file_len,
            max_timestamp: meta.max_timestamp,
            created_ms,
            // As the scan sets it: an empty active segment's roll clock starts at its first
            // append.
            roll_clock_ms: (!active || meta.batches_end > base).then_some(created_ms),
            file_id,
            // A sealed segment's seal is done: it gives its descriptor up (`file_cache`).
            own_file: active.then(|| Arc::new(opened.file)),
            path: Arc::from(path.as_path()),
            index: Arc::new(index),
            // The active segment's index changes with its next append: as after a scan, it is
            // persisted again when the segment is sealed or closed.
            persisted: !active,
            cache_dropped_to: 0,
            synced_bytes: opened.file_len,
        })
    }

    /// Opens a segment file and checks its header; a damaged header is rewritten from the
    /// file name (then the index is not trusted). `sealed`: a later segment exists.
    fn open_file(
        &mut self,
        path: &Path,
        base: i64,
        sealed: bool,
    ) -> Result<OpenedSegment, WalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(WalError::io("open segment", path))?;
        let mut file_len = file
            .metadata()
            .map_err(WalError::io("stat segment", path))?
            .len();
        let mut hbuf = [0u8; CLEANED_HEADER_BYTES as usize];
        let n = read_prefix(&file, &mut hbuf).map_err(WalError::io("read segment header", path))?;
        let corrupt = |position: u64, reason: String| WalError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason,
        };
        let header = match SegmentHeader::decode(&hbuf[..n]) {
            Ok(h) if h.base_offset == base => h,
            Ok(h) => {
                return Err(corrupt(
                    12,
                    format!(
                        "segment header says base offset {} but the file name says {base}",
                        h.base_offset
                    ),
                ))
            }
            Err(HeaderError::Unsupported(reason)) => return Err(corrupt(0, reason)),
            Err(HeaderError::Damaged(reason)) => {
                warn!(topic = self.topic, partition = self.partition, segment = %path.display(),
                    %reason, "segment header damaged; rewriting it and scanning the segment");
                self.fsyncs += remove_index_files_durably(self.dir, self.partition, base)?;
                let header = rebuilt_header(&hbuf[..n], file_len, base, self.now_ms);
                if file_len < header.data_start() {
                    file.set_len(0)
                        .map_err(WalError::io("truncate segment", path))?;
                }
                file.write_all_at(&header.encode(), 0)
                    .map_err(WalError::io("rewrite segment header", path))?;
                file.sync_all()
                    .map_err(WalError::io("fsync segment", path))?;
                self.fsyncs += 1;
                file_len = file_len.max(header.data_start());
                self.dir_changed = true;
                return Ok(OpenedSegment {
                    file,
                    file_len,
                    header,
                    trust_index: false,
                });
            }
        };
        Ok(OpenedSegment {
            file,
            file_len,
            header,
            trust_index: sealed,
        })
    }

    /// Scans segment `bases[i]` frame by frame and rebuilds its index; cuts it at its first
    /// bad frame, and drops every later segment if it then does not end where the next begins.
    fn scan(
        &mut self,
        opened: OpenedSegment,
        path: &Path,
        bases: &mut Vec<i64>,
        i: usize,
    ) -> Result<Segment, WalError> {
        let (dir, topic, partition) = (self.dir, self.topic, self.partition);
        let OpenedSegment {
            file,
            file_len,
            header,
            ..
        } = opened;
        let created_ms = header.created_ms;
        let base = bases[i];
        let seg_name = path.display().to_string();
        let out = scan_segment(
            &file,
            file_len,
            &header,
            self.config.index_interval_bytes,
            i64::MAX,
        )
        .map_err(WalError::io("scan segment", path))?;
        if let Some((pos, problem)) = &out.problem {
            // All zeros after the last frame is preallocated space: the data is whole.
            let zero_tail = is_zero_tail(&file, *pos, file_len)
                .map_err(WalError::io("read segment tail", path))?;
            if zero_tail {
                info!(topic, partition, segment = %seg_name, position = pos,
                    bytes = file_len - pos, "trimming preallocated zeros after the last frame");
            } else {
                warn!(topic, partition, segment = %seg_name, position = pos,
                    offset = out.next_offset, bytes_cut = file_len - pos, %problem,
                    "truncating segment at its first bad frame");
            }
            // Either way the file is cut to its whole frames, durably, before its index
            // is rebuilt.
            self.fsyncs += remove_index_files_durably(dir, partition, base)?;
            file.set_len(*pos)
                .map_err(WalError::io("truncate segment", path))?;
            file.sync_all()
                .map_err(WalError::io("fsync segment", path))?;
            self.fsyncs += 1;
            self.dir_changed = true;
            if !zero_tail && i + 1 < bases.len() {
                error!(topic, partition, segment = %seg_name, deleted_segments = bases.len() - i - 1,
                    "corruption in a non-last segment; deleting all later segments");
                remove_segment_files(dir, partition, &bases[i + 1..])?;
                bases.truncate(i + 1);
            }
        }
        if let Some(&nb) = bases.get(i + 1) {
            if gap_vouched(&header, out.next_offset, nb) {
                if out.next_offset < nb {
                    info!(topic, partition, segment = %seg_name, batches_end = out.next_offset,
                        next_segment_base = nb, "cleaned segment ends in a gap before the next one");
                }
            } else {
                // An overlap, or batches ending early in a segment whose header does not say
                // they were cleaned away: a crash lost its unsynced tail, so nothing after it
                // was committed, and keeping later segments would leave a hole in the log
                // that replicas holding those offsets never see.
                error!(topic, partition, segment = %seg_name, next_offset = out.next_offset,
                    next_segment_base = nb, deleted_segments = bases.len() - i - 1,
                    "segment does not end where the next one starts; deleting all later segments");
                remove_segment_files(dir, partition, &bases[i + 1..])?;
                bases.truncate(i + 1);
                self.dir_changed = true;
            }
        }
        let mut segment = Segment {
            base_offset: base,
            // A sealed segment covers the offsets up to the next one's base.
            next_offset: bases.get(i + 1).copied().unwrap_or(out.next_offset),
            batches_end: out.next_offset,
            cleaned_to: header.cleaned_to,
            size_bytes: out.valid_len,
            allocated_bytes: out.valid_len,
            max_timestamp: out.max_timestamp,
            created_ms,
            roll_clock_ms: (out.frames > 0).then_some(created_ms),
            file_id: FileId::of(&file).map_err(WalError::io("stat segment", path))?,
            own_file: Some(Arc::new(file)),
            path: Arc::from(path),
            index: Arc::new(out.index),
            persisted: false,
            cache_dropped_to: 0,
            synced_bytes: out.valid_len,
        };
        if i + 1 < bases.len() {
            // A sealed segment with a rebuilt index: sync its data, then persist the index.
            segment
                .file()
                .sync_data()
                .map_err(WalError::io("fdatasync segment", path))?;
            self.fsyncs += 1;
            self.fsyncs += write_index_files(dir, partition, &segment.meta(), &segment.index)
                .map_err(WalError::io("write index files", dir))?;
            segment.mark_persisted();
            self.dir_changed = true;
            info!(topic, partition, segment = %seg_name, "rebuilt segment index");
        }
        Ok(segment)
    }

    /// Makes everything recovered durable (it all counts as committed) and positions the
    /// active segment's cursor at its end.
    fn finish(mut self, segments: Vec<Segment>) -> Result<Recovered, WalError> {
        let Some(active) = segments.last() else {
            // bases was non-empty and only truncated to at least i + 1 elements.
            unreachable!("recovery produced no segment");
        };
        // A segment created by this run was synced whole when it was made.
        if !self.created && (!self.clean || self.dir_changed) {
            active
                .file()
                .sync_data()
                .map_err(WalError::io("fdatasync segment", &active.path))?;
            self.fsyncs += 1;
        }
        (&**active.file())
            .seek(SeekFrom::Start(active.size_bytes))
            .map_err(WalError::io("seek segment", &active.path))?;
        if self.dir_changed {
            fsync_dir(self.dir).map_err(WalError::io("fsync directory", self.dir))?;
            self.fsyncs += 1;
        }
        // Thousands of partitions reopened after a clean shutdown would log a line each: only
        // a recovery that had something to do says so at info.
        if self.clean && !self.dir_changed {
            debug!(
                topic = self.topic,
                partition = self.partition,
                segments = segments.len(),
                log_end_offset = active_end(&segments),
                "opened partition log after a clean shutdown"
            );
        } else {
            info!(
                topic = self.topic,
                partition = self.partition,
                segments = segments.len(),
                log_start_offset = segments[0].base_offset,
                log_end_offset = active_end(&segments),
                "recovered partition log"
            );
        }
        Ok(Recovered {
            segments,
            fsyncs: self.fsyncs,
        })
    }
}

/// Whether a segment whose batches end at `batches_end` may be followed by one at `next_base`:
/// exactly there, or, for a cleaned segment, in the gap its header vouches for (never past it).
fn gap_vouched(header: &SegmentHeader, batches_end: i64, next_base: i64) -> bool {
    batches_end == next_base
        || (batches_end < next_base && header.cleaned_to.is_some_and(|end| next_base <= end))
}

/// The header recovery writes over a damaged one. A version-2 header whose version and length
/// fields survived (a torn rewrite of its range end by a truncation changes only the bytes
/// after them) stays a cleaned one, its frames where they are, with its range end at its base:
/// its gaps stay legal, a gap at its end is not vouched for any more. Anything else becomes a
/// version-1 header, as before cleaned segments existed.
fn rebuilt_header(damaged: &[u8], file_len: u64, base: i64, now_ms: i64) -> SegmentHeader {
    let v2 = damaged.get(8..12) == Some(&[2, 0, CLEANED_HEADER_BYTES as u8, 0][..])
        && file_len >= CLEANED_HEADER_BYTES;
    SegmentHeader {
        base_offset: base,
        created_ms: now_ms,
        cleaned_to: v2.then_some(base),
    }
}

fn active_end(segments: &[Segment]) -> i64 {
    segments.last().map_or(0, |s| s.next_offset)
}
