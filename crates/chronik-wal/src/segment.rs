//! Segment files: naming, the versioned segment header, frames, and sequential frame scanning.
//!
//! ## Segment file (`wal_{partition}_{base:020}.log`)
//!
//! ```text
//! [segment header, 32 bytes][frame][frame]...
//! ```
//!
//! Segment header, version 1 (little-endian), written for every segment the log creates:
//!
//! | bytes  | field        | notes |
//! |--------|--------------|-------|
//! | 0..8   | magic        | `b"CHRNKWAL"` |
//! | 8..10  | version      | u16, 1 |
//! | 10..12 | header_len   | u16, 32 for version 1 (lets later versions grow the header) |
//! | 12..20 | base_offset  | i64, offset of the first batch; equals the number in the file name |
//! | 20..28 | created_ms   | i64, wall clock when the segment was created |
//! | 28..32 | header_crc   | u32, CRC32 (IEEE, `crc32fast`) of bytes 0..28 |
//!
//! Version 2 (48 bytes) marks a *cleaned* segment: one written by a segment replacement
//! (compaction), or a replica's segment holding a compacted leader's batches. Its batches may
//! have gaps between them; bytes 0..28 are as in version 1 (version 2, header_len 48), then:
//!
//! | bytes  | field        | notes |
//! |--------|--------------|-------|
//! | 28..36 | range_end    | i64, the segment's batches may end before the next segment's base only if that base is at most this (the replaced range's end) |
//! | 36..40 | flags        | u32, bit 0 (cleaned) set; other bits zero |
//! | 40..44 | reserved     | u32, zero |
//! | 44..48 | header_crc   | u32, CRC32 of bytes 0..44 |
//!
//! Frames start right after the header (`header_len`). A segment without the version-2 header
//! never has a gap: recovery treats a missing end as a torn tail, reads treat a gap as corrupt.
//!
//! Frame (little-endian):
//!
//! ```text
//! [payload_len u32][crc32 u32 = crc32fast(payload)][payload = one Kafka v2 RecordBatch]
//! ```
//!
//! The payload's base offset and partition leader epoch are already patched in. `payload_len` is
//! at least 61 (a batch header) and at most [`MAX_FRAME_PAYLOAD_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BatchError, BatchHeader};
use crate::file_cache::FileId;
use crate::index::{IndexMeta, SegmentIndex};

mod header;
pub use header::{HeaderError, SegmentHeader, CLEANED_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// `[payload_len u32][crc32 u32]`.
pub const FRAME_HEADER_BYTES: u64 = 8;
/// Largest batch (frame payload) the log accepts: 64 MiB.
pub const MAX_FRAME_PAYLOAD_BYTES: usize = 64 << 20;
/// Smallest possible frame: frame header plus a bare batch header.
pub const MIN_FRAME_BYTES: u64 = FRAME_HEADER_BYTES + BatchHeader::SIZE as u64;
/// Largest `segment.bytes` (2 GiB, Kafka's limit). With one oversized frame on top a segment file
/// stays below 4 GiB, so file positions fit the u32 entries of the offset index.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 31;
/// Hard bound on a segment file's size; appends beyond it are refused.
pub const MAX_SEGMENT_FILE_BYTES: u64 = u32::MAX as u64;
/// The active segment is kept ahead of its data by zeros written in steps of this size.
/// Overwriting already-written blocks lets fdatasync skip the metadata writes an appending
/// write needs (new blocks, new file size): on ext4 that cut fdatasync latency by
/// about a third here. Zeros are never data: a frame length of 0 is invalid, and recovery
/// trims an all-zero tail.
pub const PREALLOC_STEP_BYTES: u64 = 512 * 1024;
/// The first step of a fresh segment. Steps grow with the segment's data (see
/// [`prealloc_step`]): a node with 10,000 partitions that each take one message would
/// otherwise write 5 GB of zeros (512 KiB each) before the first acknowledgements, which took
/// 46 s here; growing from one block costs such a partition 4 KiB.
pub const PREALLOC_MIN_STEP_BYTES: u64 = 4 * 1024;

/// How many zeros to keep ahead of a segment holding `data_bytes`: the data's size rounded up
/// to a power of two, between [`PREALLOC_MIN_STEP_BYTES`] and [`PREALLOC_STEP_BYTES`]. Zeros
/// are extended once fewer than half a step is left ahead of the data. A partition that writes
/// a lot reaches the full step after its first half MiB; one that writes little never writes
/// more zeros than it has data.
pub fn prealloc_step(data_bytes: u64) -> u64 {
    data_bytes
        .max(1)
        .next_power_of_two()
        .clamp(PREALLOC_MIN_STEP_BYTES, PREALLOC_STEP_BYTES)
}
/// No zeros are written after a commit pass that synced at least this much: every byte of
/// zeros is a byte the disk writes twice, which halves the bandwidth left for a fast writer,
/// while the metadata write the zeros save is one block per fdatasync, small next to a pass
/// this large. Slow writers (small passes, where that block dominates) keep the zeros.
pub const PREALLOC_MAX_PASS_BYTES: u64 = 64 * 1024;
/// Largest offset span of one segment: relative offsets are stored as u32.
pub const MAX_RELATIVE_OFFSET: i64 = u32::MAX as i64;

/// File-name kinds inside a partition directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Log,
    OffsetIndex,
    TimeIndex,
}

impl FileKind {
    fn ext(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::OffsetIndex => "index",
            FileKind::TimeIndex => "timeindex",
        }
    }
}

/// `{dir}/wal_{partition}_{base:020}.{ext}`.
pub fn segment_file_path(dir: &Path, partition: i32, base_offset: i64, kind: FileKind) -> PathBuf {
    dir.join(format!("wal_{partition}_{base_offset:020}.{}", kind.ext()))
}

/// Parses a file name made by [`segment_file_path`]; returns `(partition, base_offset, kind)`.
pub fn parse_file_name(name: &str) -> Option<(i32, i64, FileKind)> {
    let rest = name.strip_prefix("wal_")?;
    let (stem, ext) = rest.rsplit_once('.')?;
    let kind = match ext {
        "log" => FileKind::Log,
        "index" => FileKind::OffsetIndex,
        "timeindex" => FileKind::TimeIndex,
        _ => return None,
    };
    let (p, base) = stem.split_once('_')?;
    if base.len() != 20 || !base.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let partition: i32 = p.parse().ok()?;
    let base: i64 = base.parse().ok()?;
    Some((partition, base, kind))
}

/// Creates (or truncates) a segment file and writes its header. Not synced: the caller fsyncs the
/// file and the directory before any of its data is reported committed. The file cursor is left
/// at the end of the header, where the first frame goes.
pub fn create_segment_file(path: &Path, header: SegmentHeader) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(&header.encode())?;
    Ok(file)
}

/// Writes `len` zero bytes at `pos` (positioned writes; the file cursor does not move).
pub fn write_zeros(file: &File, mut pos: u64, len: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let end = pos + len;
    while pos < end {
        let n = (end - pos).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// True if every byte of `pos..end` is zero: preallocated space, not a torn frame.
pub fn is_zero_tail(file: &File, mut pos: u64, end: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 64 * 1024];
    while pos < end {
        let n = (end - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Starts writeback of `pos..pos+len` without waiting for it, so a later fdatasync finds
/// those pages already on their way. Advisory: errors surface at that fdatasync.
pub fn start_writeback(file: &File, pos: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the fd is open for the
    // lifetime of `file`.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            pos as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// How much of a partition's newest synced data stays in the page cache. Older synced bytes of
/// the active segment are dropped from it after each commit pass (in steps of
/// [`CACHE_DROP_STEP_BYTES`]), so a writer's page-cache footprint stays bounded and new writes
/// reuse recently freed pages instead of taking fresh ones: on this VM, touching a page the
/// guest has not used recently costs ~2.5 ms per MiB (a host fault), ten times the copy itself.
pub const CACHE_KEEP_BYTES: u64 = 32 * 1024 * 1024;
/// Smallest range dropped at once, so passes do not each make a syscall.
pub const CACHE_DROP_STEP_BYTES: u64 = 4 * 1024 * 1024;

/// Drops `pos..pos+len` (synced, so clean) from the page cache. Advisory: a failure only
/// leaves the pages cached.
pub fn drop_cached(file: &File, pos: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is open for the lifetime
    // of `file`.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            pos as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

/// Encodes a frame header for `payload`.
pub fn frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_BYTES as usize] {
    debug_assert!(payload.len() <= MAX_FRAME_PAYLOAD_BYTES);
    let mut h = [0u8; FRAME_HEADER_BYTES as usize];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

/// Writes a frame at the file cursor with `writev` (normally one syscall). Loops on short writes;
/// each iteration makes progress, so the loop runs at most `payload.len() + 8` times.
pub fn write_frame(file: &File, header: &[u8], payload: &[u8]) -> io::Result<()> {
    let mut bufs = [IoSlice::new(header), IoSlice::new(payload)];
    let mut slices: &mut [IoSlice<'_>] = &mut bufs;
    let mut writer = file;
    while !slices.is_empty() {
        match writer.write_vectored(slices) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why a frame could not be accepted during a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameProblem {
    /// The file ends inside the frame (torn write).
    Torn { needed: u64, available: u64 },
    /// `payload_len` is outside `[61, MAX_FRAME_PAYLOAD_BYTES]`.
    BadLength(u32),
    /// The frame CRC does not match the payload.
    CrcMismatch { stored: u32, computed: u32 },
    /// The payload is not a valid batch header.
    BadBatch(BatchError),
    /// The batch's own length disagrees with the frame length.
    LengthMismatch { frame: u32, batch: usize },
    /// The batch does not continue the offset sequence.
    OffsetMismatch { expected: i64, found: i64 },
    /// The batch's offsets do not fit this segment (relative offset > u32 or i64 overflow).
    OffsetSpan { base_offset: i64, last_offset: i64 },
    /// The frame would end beyond [`MAX_SEGMENT_FILE_BYTES`].
    FileTooLarge { end: u64 },
}

impl std::fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameProblem::Torn { needed, available } => {
                write!(f, "torn frame: need {needed} bytes, file has {available}")
            }
            FrameProblem::BadLength(l) => write!(f, "frame length {l} out of bounds"),
            FrameProblem::CrcMismatch { stored, computed } => write!(
                f,
                "frame CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FrameProblem::BadBatch(e) => write!(f, "bad batch header: {e}"),
            FrameProblem::LengthMismatch { frame, batch } => {
                write!(f, "frame length {frame} but batch length {batch}")
            }
            FrameProblem::OffsetMismatch { expected, found } => {
                write!(f, "expected base offset {expected}, found {found}")
            }
            FrameProblem::OffsetSpan {
                base_offset,
                last_offset,
            } => write!(
                f,
                "batch offsets {base_offset}..={last_offset} do not fit the segment"
            ),
            FrameProblem::FileTooLarge { end } => {
                write!(
                    f,
                    "frame would end at byte {end}, beyond the segment size limit"
                )
            }
        }
    }
}

/// Sequential positional reader over one segment file with a read-ahead window, so scanning many
/// small frames costs one `pread` per window rather than two per frame. Never reads at or beyond
/// `limit` (the end of valid data captured under the partition lock).
pub struct FrameReader<'a> {
    file: &'a File,
    limit: u64,
    read_ahead: usize,
    window: Vec<u8>,
    window_pos: u64,
}

/// Default read-ahead for sequential scans.
pub const SCAN_READ_AHEAD: usize = 64 * 1024;

/// A frame located by [`FrameReader::frame_at`].
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub position: u64,
    pub payload_len: u32,
    pub crc: u32,
    pub header: BatchHeader,
}

impl FrameInfo {
    pub fn end(&self) -> u64 {
        self.position + FRAME_HEADER_BYTES + u64::from(self.payload_len)
    }
}

/// What went wrong reading a frame: the bytes on disk, or the read itself.
#[derive(Debug)]
pub enum ReadFrameError {
    Problem(FrameProblem),
    Io(io::Error),
}

impl From<io::Error> for ReadFrameError {
    fn from(e: io::Error) -> Self {
        ReadFrameError::Io(e)
    }
}

impl<'a> FrameReader<'a> {
    pub fn new(file: &'a File, limit: u64, read_ahead: usize) -> Self {
        FrameReader {
            file,
            limit,
            read_ahead: read_ahead.max(MIN_FRAME_BYTES as usize),
            window: Vec::new(),
            window_pos: 0,
        }
    }

    /// Returns `len` bytes at `pos`; the caller guarantees `pos + len <= limit`.
    pub fn bytes(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let end = pos + len as u64;
        if end > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of {len} bytes at {pos} beyond limit {}", self.limit),
            ));
        }
        let win_end = self.window_pos + self.window.len() as u64;
        if pos < self.window_pos || end > win_end {
            let want = (len.max(self.read_ahead) as u64).min(self.limit - pos) as usize;
            debug_assert!(want >= len);
            self.window.resize(want, 0);
            self.window_pos = pos;
            if let Err(e) = crate::io_priority::read_segment_at(self.file, &mut self.window, pos) {
                self.window.clear();
                return Err(e);
            }
        }
        let start = (pos - self.window_pos) as usize;
        Ok(&self.window[start..start + len])
    }

    /// Reads and sanity-checks the frame header and batch header at `pos` (no CRC check).
    pub fn frame_at(&mut self, pos: u64) -> Result<FrameInfo, ReadFrameError> {
        let available = self.limit.saturating_sub(pos);
        if available < FRAME_HEADER_BYTES {
            return Err(ReadFrameError::Problem(FrameProblem::Torn {
                needed: FRAME_HEADER_BYTES,
                available,
            }));
        }
        let fh = self.bytes(pos, FRAME_HEADER_BYTES as usize)?;
        let payload_len = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]);
        let crc = u32::from_le_bytes([fh[4], fh[5], fh[6], fh[7]]);
        if (payload_len as usize) < BatchHeader::SIZE
            || payload_len as usize > MAX_FRAME_PAYLOAD_BYTES
        {
            return Err(ReadFrameError::Problem(FrameProblem::BadLength(
                payload_len,
            )));
        }
        let needed = FRAME_HEADER_BYTES + u64::from(payload_len);
        if pos + needed > MAX_SEGMENT_FILE_BYTES {
            return Err(ReadFrameError::Problem(FrameProblem::FileTooLarge {
                end: pos + needed,
            }));
        }
        if available < needed {
            return Err(ReadFrameError::Problem(FrameProblem::Torn {
                needed,
                available,
            }));
        }
        let hb = self.bytes(pos + FRAME_HEADER_BYTES, BatchHeader::SIZE)?;
        // The rest of the payload is present (checked above); its length is compared with the
        // batch's own length right below.
        let header = BatchHeader::parse_prefix(hb)
            .map_err(|e| ReadFrameError::Problem(FrameProblem::BadBatch(e)))?;
        if header.total_size() != payload_len as usize {
            return Err(ReadFrameError::Problem(FrameProblem::LengthMismatch {
                frame: payload_len,
                batch: header.total_size(),
            }));
        }
        Ok(FrameInfo {
            position: pos,
            payload_len,
            crc,
            header,
        })
    }

    /// The payload of a frame found by [`frame_at`](Self::frame_at).
    pub fn payload(&mut self, frame: &FrameInfo) -> io::Result<&[u8]> {
        self.bytes(
            frame.position + FRAME_HEADER_BYTES,
            frame.payload_len as usize,
        )
    }
}

/// Result of scanning a segment's frames.
#[derive(Debug)]
pub struct ScanOutcome {
    /// Offset after the last good batch (`base_offset` if there is none).
    pub next_offset: i64,
    /// Byte length of the good prefix (header + good frames).
    pub valid_len: u64,
    /// Largest batch max_timestamp among good frames (`i64::MIN` if none).
    pub max_timestamp: i64,
    /// Sparse indexes rebuilt from the good frames.
    pub index: SegmentIndex,
    /// First bad frame: its position and what is wrong with it. `None` if the scan reached
    /// `limit` (or `stop_offset`) cleanly.
    pub problem: Option<(u64, FrameProblem)>,
    /// Number of good frames.
    pub frames: u64,
    /// Where each leader epoch starts among the good frames: `(epoch, first offset)`, one entry
    /// per change, in order (a replica rebuilds its epoch cache from it).
    pub epochs: Vec<(i32, i64)>,
}

/// Scans frames from the end of the segment header to `limit`, verifying length sanity, the
/// frame CRC, that the payload is a batch whose length matches, and that offsets are contiguous
/// from the header's base offset; in a cleaned segment (version-2 header) they only have to
/// increase (gaps are the records compaction removed; a batch below the previous one's end is
/// never legal). Stops
/// cleanly before the first frame whose base offset is >= `stop_offset`. Rebuilds the sparse
/// indexes as appends would. Only I/O errors are returned as `Err`; bad data ends the scan with
/// `problem` set. Never panics on file contents.
pub fn scan_segment(
    file: &File,
    limit: u64,
    header: &SegmentHeader,
    index_interval_bytes: u32,
    stop_offset: i64,
) -> io::Result<ScanOutcome> {
    let base_offset = header.base_offset;
    let data_start = header.data_start();
    let gaps = header.cleaned_to.is_some();
    let mut out = ScanOutcome {
        next_offset: base_offset,
        valid_len: data_start.min(limit),
        max_timestamp: i64::MIN,
        index: SegmentIndex::default(),
        problem: None,
        frames: 0,
        epochs: Vec::new(),
    };
    if limit < data_start {
        return Ok(out);
    }
    let mut reader = FrameReader::new(file, limit, SCAN_READ_AHEAD);
    let mut pos = data_start;
    // Each iteration consumes at least MIN_FRAME_BYTES, so at most limit / 69 iterations.
    while pos < limit {
        let frame = match reader.frame_at(pos) {
            Ok(f) => f,
            Err(ReadFrameError::Problem(p)) => {
                out.problem = Some((pos, p));
                break;
            }
            Err(ReadFrameError::Io(e)) => return Err(e),
        };
        let h = frame.header;
        if h.base_offset >= stop_offset {
            break;
        }
        let payload = reader.payload(&frame)?;
        let computed = crc32fast::hash(payload);
        if computed != frame.crc {
            out.problem = Some((
                pos,
                FrameProblem::CrcMismatch {
                    stored: frame.crc,
                    computed,
                },
            ));
            break;
        }
        // Gaps only in a cleaned segment (compaction removed records); overlaps never.
        if h.base_offset < out.next_offset || (!gaps && h.base_offset > out.next_offset) {
            out.problem = Some((
                pos,
                FrameProblem::OffsetMismatch {
                    expected: out.next_offset,
                    found: h.base_offset,
                },
            ));
            break;
        }
        let last = h.base_offset.checked_add(i64::from(h.last_offset_delta));
        let Some(last) = last.filter(|l| *l < i64::MAX && *l - base_offset <= MAX_RELATIVE_OFFSET)
        else {
            out.problem = Some((
                pos,
                FrameProblem::OffsetSpan {
                    base_offset: h.base_offset,
                    last_offset: h.last_offset(),
                },
            ));
            break;
        };
        out.max_timestamp = out.max_timestamp.max(h.max_timestamp);
        if out
            .epochs
            .last()
            .is_none_or(|(e, _)| *e != h.partition_leader_epoch)
        {
            out.epochs.push((h.partition_leader_epoch, h.base_offset));
        }
        out.index.on_append(
            index_interval_bytes,
            (h.base_offset - base_offset) as u32,
            pos as u32,
            frame.end() - pos,
            out.max_timestamp,
        );
        out.next_offset = last + 1;
        pos = frame.end();
        out.valid_len = pos;
        out.frames += 1;
    }
    Ok(out)
}

/// In-memory state of one segment file. Owned by the partition log under its lock.
#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    /// End of the offsets this segment covers: the next segment's base for a sealed segment,
    /// the log end for the active one (== `base_offset` when empty). Every batch lies below it.
    pub next_offset: i64,
    /// Offset after the segment's last batch (`base_offset` if it holds none). Below
    /// `next_offset` only when the records at the end of the range are gone (compaction, or a
    /// truncation that ended inside a gap); always equal for the active segment.
    pub batches_end: i64,
    /// `Some(range_end)` for a cleaned segment (version-2 header, see
    /// [`SegmentHeader::cleaned_to`]): gaps between its batches are legal, and so is a gap at
    /// its end up to `range_end`. `None`: offsets are contiguous, `batches_end == next_offset`.
    pub cleaned_to: Option<i64>,
    /// Length of the data: header plus whole frames. Appends go here.
    pub size_bytes: u64,
    /// File length: `size_bytes` plus preallocated zeros (see [`prealloc_step`]).
    /// Invariant: `size_bytes <= allocated_bytes` while the segment is active, and the bytes
    /// in `size_bytes..allocated_bytes` are zeros. Sealed segments are trimmed to
    /// `size_bytes` before their index is written, so their file length is exact.
    pub allocated_bytes: u64,
    /// Largest batch `max_timestamp` (`i64::MIN` when empty).
    pub max_timestamp: i64,
    pub created_ms: i64,
    /// Start of the `segment.ms` age clock: first append (or creation time for a recovered
    /// non-empty segment); `None` while empty.
    pub roll_clock_ms: Option<i64>,
    /// The segment's own handle, read-write: the active segment's and those of segments whose
    /// seal has not finished (the commit path writes and syncs them). `None` once the seal
    /// finished: reads open the file through the process's bounded file cache
    /// (`crate::file_cache`), so sealed segments hold no descriptor.
    pub own_file: Option<Arc<File>>,
    /// Which file this is: never the same for two files, even under one name (a replacement
    /// or install puts a new file under the old name).
    pub file_id: FileId,
    pub path: Arc<Path>,
    /// Copy-on-write so the commit task can persist a sealed segment's index without holding the
    /// partition lock.
    pub index: Arc<SegmentIndex>,
    /// Index files on disk describe exactly this segment (sealed and synced).
    pub persisted: bool,
    /// File bytes below this were synced and then dropped from the page cache (see
    /// [`CACHE_KEEP_BYTES`]). Only ever grows; reads below it go to the disk.
    pub cache_dropped_to: u64,
    /// File bytes known durable (the active segment's data as of the last fdatasync).
    pub synced_bytes: u64,
}

impl Segment {
    /// The segment's own handle. Only the active segment and those whose seal has not finished
    /// have one (`Inner::check_invariants`); the log never writes or syncs any other.
    pub fn file(&self) -> &Arc<File> {
        self.own_file
            .as_ref()
            .expect("a sealed segment has no file of its own")
    }

    /// The seal finished (data synced, index files written): the segment gives up its own
    /// descriptor. Readers that hold it keep it until they finish.
    pub fn mark_persisted(&mut self) {
        self.persisted = true;
        self.own_file = None;
    }

    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }

    /// What the segment's header says (its creation time, whether it is cleaned).
    pub fn header(&self) -> SegmentHeader {
        SegmentHeader {
            base_offset: self.base_offset,
            created_ms: self.created_ms,
            cleaned_to: self.cleaned_to,
        }
    }

    /// Where the first frame starts.
    pub fn data_start(&self) -> u64 {
        self.header().data_start()
    }

    /// File position from which to scan for the batch containing `relative_offset`.
    pub fn position_for(&self, relative_offset: u32) -> u64 {
        self.index
            .position_for(relative_offset)
            .unwrap_or(self.data_start())
    }

    /// Whether the offsets `from..to` may hold no batch of this segment: in a cleaned segment,
    /// up to its range end; in a plain one, never (empty ranges aside).
    pub fn gap_allowed(&self, from: i64, to: i64) -> bool {
        from >= to || self.cleaned_to.is_some_and(|end| to <= end)
    }

    pub fn meta(&self) -> IndexMeta {
        IndexMeta {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            batches_end: self.batches_end,
            segment_bytes: self.size_bytes,
            max_timestamp: self.max_timestamp,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let dir = Path::new("/d");
        let p = segment_file_path(dir, 3, 42, FileKind::Log);
        assert_eq!(p, Path::new("/d/wal_3_00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_file_name(name), Some((3, 42, FileKind::Log)));
        let p = segment_file_path(dir, 0, i64::MAX, FileKind::TimeIndex);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            parse_file_name(name),
            Some((0, i64::MAX, FileKind::TimeIndex))
        );
        for bad in [
            "wal_1_42.log",
            "wal__00000000000000000042.log",
            "wal_1_00000000000000000042.txt",
            "x_1_00000000000000000042.log",
            "wal_1_99999999999999999999.log",
            "wal_-1_00000000000000000042.log",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_header_round_trip_and_damage() {
        for h in [
            SegmentHeader::plain(77, 123456),
            SegmentHeader {
                base_offset: 77,
                created_ms: 123456,
                cleaned_to: Some(500),
            },
        ] {
            let enc = h.encode();
            assert_eq!(enc.len() as u64, h.data_start());
            assert_eq!(SegmentHeader::decode(&enc).unwrap(), h);
            for i in 0..enc.len() {
                let mut d = enc.clone();
                d[i] ^= 0x10;
                assert!(SegmentHeader::decode(&d).is_err(), "byte {i}");
            }
            assert!(SegmentHeader::decode(&enc[..enc.len() - 1]).is_err());
            let mut d = enc.clone();
            d[3] ^= 1;
            assert!(matches!(
                SegmentHeader::decode(&d),
                Err(HeaderError::Damaged(_))
            ));
            // The frames that follow a header never change how it decodes.
            let mut longer = enc.clone();
            longer.extend_from_slice(&[0xab; 16]);
            assert_eq!(
                SegmentHeader::decode(&longer[..longer.len().min(48)]).unwrap(),
                h
            );
        }
        assert!(SegmentHeader::decode(&[]).is_err());
        // An intact header of another version is "unsupported", not "damaged".
        assert!(matches!(
            SegmentHeader::decode(&future_header(77)),
            Err(HeaderError::Unsupported(_))
        ));
        // Version 2 laid out as version 1 (length 32, CRC at 28): not understood, refused.
        let mut v2_short = SegmentHeader::plain(77, 1).encode();
        v2_short[8..10].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32fast::hash(&v2_short[0..28]);
        v2_short[28..32].copy_from_slice(&crc.to_le_bytes());
        v2_short.extend_from_slice(&[7; 16]);
        assert!(matches!(
            SegmentHeader::decode(&v2_short),
            Err(HeaderError::Unsupported(_))
        ));
        // A version-2 header with an unknown flag, CRC intact: written on purpose, refused.
        let mut v2 = SegmentHeader {
            base_offset: 77,
            created_ms: 1,
            cleaned_to: Some(80),
        }
        .encode();
        v2[36] |= 2;
        let crc = crc32fast::hash(&v2[0..44]);
        v2[44..48].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            SegmentHeader::decode(&v2),
            Err(HeaderError::Unsupported(_))
        ));
    }

    /// A well-formed header of a hypothetical format version 3.
    pub(crate) fn future_header(base_offset: i64) -> Vec<u8> {
        let mut h = SegmentHeader::plain(base_offset, 1).encode();
        h[8..10].copy_from_slice(&3u16.to_le_bytes());
        let crc = crc32fast::hash(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }
}
