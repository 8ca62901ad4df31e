//! Sparse per-segment indexes, kept in memory and persisted for sealed segments.
//!
//! * Offset index: `(relative_offset u32, position u32)` for the batch that starts at `position`,
//!   added every `index_interval_bytes` of frames. A lookup returns the last entry at or before
//!   the wanted offset; the reader then scans at most about one interval of frames.
//! * Time index: `(max_timestamp i64, relative_offset u32)`, added at the same points when the
//!   segment's running max timestamp grew. An entry `(T, O)` means every batch up to and including
//!   the one at `O` has `max_timestamp <= T`, so a search for `ts` can start at the last entry
//!   with `T < ts`.
//!
//! ## Index files (`.index`, `.timeindex`)
//!
//! Written only after the segment's data was fdatasynced (on rotation, or for the active segment
//! on close), so a valid index file always describes synced data. Layout (little-endian):
//!
//! | bytes  | field          | notes |
//! |--------|----------------|-------|
//! | 0..8   | magic          | `b"CHRNKIDX"` |
//! | 8..10  | version        | u16, currently 1 |
//! | 10..12 | kind           | u16: 1 = offset index, 2 = time index |
//! | 12..16 | entry_count    | u32 |
//! | 16..24 | base_offset    | i64, the segment's base offset |
//! | 24..32 | next_offset    | i64, end of the segment's range (the next segment's base) |
//! | 32..40 | segment_bytes  | u64, size of the `.log` file the index describes |
//! | 40..48 | max_timestamp  | i64, largest batch max_timestamp in the segment (i64::MIN if none) |
//! | 48..52 | tail_gap       | u32, `next_offset` minus the offset after the last batch: 0 unless |
//! |        |                | the segment's last records were compacted away (0 in older files); |
//! |        |                | a cache: recovery trusts it only if the segment header vouches too |
//! | 52..56 | crc            | u32, CRC32 (crc32fast) of bytes 0..52 followed by all entries |
//!
//! followed by `entry_count` entries: offset index `[relative_offset u32][position u32]` (8 bytes),
//! time index `[timestamp i64][relative_offset u32]` (12 bytes).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::segment::{
    segment_file_path, FileKind, MAX_SEGMENT_FILE_BYTES, MIN_FRAME_BYTES, SEGMENT_HEADER_BYTES,
};

pub const INDEX_MAGIC: [u8; 8] = *b"CHRNKIDX";
pub const INDEX_VERSION: u16 = 1;
pub const INDEX_HEADER_BYTES: usize = 56;
const KIND_OFFSET: u16 = 1;
const KIND_TIME: u16 = 2;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// In-memory sparse indexes of one segment. Entry counts are bounded by the number of frames,
/// i.e. by `segment size / 69`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Frame bytes appended since the last offset index entry.
    pub bytes_since_entry: u64,
}

impl SegmentIndex {
    /// Records a batch appended at `position` with relative base offset `relative_offset`.
    /// `running_max_ts` is the segment's max timestamp including this batch.
    pub fn on_append(
        &mut self,
        interval_bytes: u32,
        relative_offset: u32,
        position: u32,
        frame_bytes: u64,
        running_max_ts: i64,
    ) {
        if self.bytes_since_entry >= u64::from(interval_bytes) {
            debug_assert!(self
                .offsets
                .last()
                .is_none_or(|e| e.relative_offset < relative_offset && e.position < position));
            self.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
            if self
                .times
                .last()
                .is_none_or(|t| running_max_ts > t.timestamp)
            {
                self.times.push(TimeEntry {
                    timestamp: running_max_ts,
                    relative_offset,
                });
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += frame_bytes;
    }

    /// File position from which to scan for the batch containing `relative_offset`; `None`:
    /// from the first frame (the end of the segment header, see `Segment::position_for`).
    pub fn position_for(&self, relative_offset: u32) -> Option<u64> {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1)
            .map(|i| u64::from(self.offsets[i].position))
    }

    /// Relative offset from which to scan for the first batch with `max_timestamp >= ts`.
    pub fn scan_start_for_timestamp(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.timestamp < ts);
        match i.checked_sub(1) {
            Some(i) => self.times[i].relative_offset,
            None => 0,
        }
    }
}

/// Segment facts stored in both index file headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexMeta {
    pub base_offset: i64,
    /// End of the segment's offset range (the next segment's base).
    pub next_offset: i64,
    /// Offset after the segment's last batch; below `next_offset` when its tail was compacted
    /// away. Stored as the difference (`tail_gap`), which fits a u32: a segment spans at most
    /// `u32::MAX + 1` offsets and a non-empty tail gap means it is not full to the end.
    pub batches_end: i64,
    pub segment_bytes: u64,
    pub max_timestamp: i64,
}

fn encode(kind: u16, meta: &IndexMeta, count: usize, entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + entries.len());
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&meta.base_offset.to_le_bytes());
    out.extend_from_slice(&meta.next_offset.to_le_bytes());
    out.extend_from_slice(&meta.segment_bytes.to_le_bytes());
    out.extend_from_slice(&meta.max_timestamp.to_le_bytes());
    let tail_gap = meta.next_offset - meta.batches_end;
    debug_assert!((0..=i64::from(u32::MAX)).contains(&tail_gap));
    out.extend_from_slice(&(tail_gap.clamp(0, i64::from(u32::MAX)) as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out);
    h.update(entries);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    debug_assert_eq!(out.len(), INDEX_HEADER_BYTES);
    out.extend_from_slice(entries);
    out
}

pub fn encode_offset_index(meta: &IndexMeta, entries: &[OffsetEntry]) -> Vec<u8> {
    let mut e = Vec::with_capacity(entries.len() * OFFSET_ENTRY_BYTES);
    for x in entries {
        e.extend_from_slice(&x.relative_offset.to_le_bytes());
        e.extend_from_slice(&x.position.to_le_bytes());
    }
    encode(KIND_OFFSET, meta, entries.len(), &e)
}

pub fn encode_time_index(meta: &IndexMeta, entries: &[TimeEntry]) -> Vec<u8> {
    let mut e = Vec::with_capacity(entries.len() * TIME_ENTRY_BYTES);
    for x in entries {
        e.extend_from_slice(&x.timestamp.to_le_bytes());
        e.extend_from_slice(&x.relative_offset.to_le_bytes());
    }
    encode(KIND_TIME, meta, entries.len(), &e)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(x)
}

/// Checks the header and CRC; returns the meta and the raw entry bytes.
fn decode(kind: u16, entry_bytes: usize, buf: &[u8]) -> Result<(IndexMeta, &[u8]), String> {
    if buf.len() < INDEX_HEADER_BYTES {
        return Err(format!(
            "file is {} bytes, shorter than the header",
            buf.len()
        ));
    }
    if buf[0..8] != INDEX_MAGIC {
        return Err("bad magic".into());
    }
    let version = u16::from_le_bytes([buf[8], buf[9]]);
    if version != INDEX_VERSION {
        return Err(format!("unsupported index version {version}"));
    }
    let k = u16::from_le_bytes([buf[10], buf[11]]);
    if k != kind {
        return Err(format!("index kind {k}, expected {kind}"));
    }
    let count = le_u32(buf, 12) as usize;
    let expected_len = count
        .checked_mul(entry_bytes)
        .and_then(|n| n.checked_add(INDEX_HEADER_BYTES));
    if expected_len != Some(buf.len()) {
        return Err(format!(
            "{count} entries do not match file length {}",
            buf.len()
        ));
    }
    let stored = le_u32(buf, 52);
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[0..52]);
    h.update(&buf[INDEX_HEADER_BYTES..]);
    let computed = h.finalize();
    if stored != computed {
        return Err(format!(
            "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let next_offset = le_i64(buf, 24);
    let meta = IndexMeta {
        base_offset: le_i64(buf, 16),
        next_offset,
        // Checked against the base offset by the caller.
        batches_end: next_offset.saturating_sub(i64::from(le_u32(buf, 48))),
        segment_bytes: le_i64(buf, 32) as u64,
        max_timestamp: le_i64(buf, 40),
    };
    Ok((meta, &buf[INDEX_HEADER_BYTES..]))
}

/// Largest plausible index file for a segment of `segment_bytes` (one entry per frame at most).
fn max_index_file_bytes(segment_bytes: u64, entry_bytes: usize) -> u64 {
    INDEX_HEADER_BYTES as u64 + (segment_bytes / MIN_FRAME_BYTES + 1) * entry_bytes as u64
}

fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = f.metadata().map_err(|e| format!("cannot stat: {e}"))?.len();
    if len > max_bytes {
        return Err(format!("{len} bytes, more than the bound {max_bytes}"));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // take() bounds the read even if the file grows concurrently.
    Read::by_ref(&mut f)
        .take(max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > max_bytes {
        return Err("file grew past its bound while reading".into());
    }
    Ok(buf)
}

/// Loads and fully validates the two index files of a sealed segment. `expected_next_offset` is
/// the base offset of the following segment and `segment_bytes` the current size of the `.log`
/// file; an index that disagrees with either is stale. The error explains why the index is not
/// trusted (the caller then rebuilds it by scanning).
pub fn load_index_files(
    dir: &Path,
    partition: i32,
    base_offset: i64,
    expected_next_offset: i64,
    segment_bytes: u64,
) -> Result<(SegmentIndex, IndexMeta), String> {
    let opath = segment_file_path(dir, partition, base_offset, FileKind::OffsetIndex);
    let tpath = segment_file_path(dir, partition, base_offset, FileKind::TimeIndex);
    load_index_at(
        [&opath, &tpath],
        base_offset,
        Some(expected_next_offset),
        segment_bytes,
    )
}

/// [`load_index_files`] from explicit paths (offset index, time index), e.g. the `.swap` files
/// of a segment replacement. `expected_next_offset`: `None` to accept the range end the files
/// name (still checked for plausibility).
pub fn load_index_at(
    [opath, tpath]: [&Path; 2],
    base_offset: i64,
    expected_next_offset: Option<i64>,
    segment_bytes: u64,
) -> Result<(SegmentIndex, IndexMeta), String> {
    let obuf = read_bounded(
        opath,
        max_index_file_bytes(segment_bytes, OFFSET_ENTRY_BYTES),
    )
    .map_err(|e| format!("offset index: {e}"))?;
    let tbuf = read_bounded(tpath, max_index_file_bytes(segment_bytes, TIME_ENTRY_BYTES))
        .map_err(|e| format!("time index: {e}"))?;
    let (ometa, oentries) =
        decode(KIND_OFFSET, OFFSET_ENTRY_BYTES, &obuf).map_err(|e| format!("offset index: {e}"))?;
    let (tmeta, tentries) =
        decode(KIND_TIME, TIME_ENTRY_BYTES, &tbuf).map_err(|e| format!("time index: {e}"))?;
    if ometa != tmeta {
        return Err("offset and time index headers disagree".into());
    }
    let meta = ometa;
    if meta.base_offset != base_offset {
        return Err(format!(
            "base offset {} does not match segment {base_offset}",
            meta.base_offset
        ));
    }
    if let Some(expected) = expected_next_offset.filter(|e| *e != meta.next_offset) {
        return Err(format!(
            "next offset {} does not match the next segment's base {expected}",
            meta.next_offset
        ));
    }
    if meta.batches_end < meta.base_offset {
        return Err(format!("implausible end of batches {}", meta.batches_end));
    }
    if meta.segment_bytes != segment_bytes {
        return Err(format!(
            "describes {} bytes but the segment file has {segment_bytes}",
            meta.segment_bytes
        ));
    }
    if !(SEGMENT_HEADER_BYTES..=MAX_SEGMENT_FILE_BYTES).contains(&segment_bytes) {
        return Err(format!("implausible segment size {segment_bytes}"));
    }
    let span = meta.next_offset.checked_sub(meta.base_offset);
    if !span.is_some_and(|s| (0..=i64::from(u32::MAX) + 1).contains(&s)) {
        return Err("implausible offset span".into());
    }
    // Entries name batches, which all lie below the end of the batches.
    let span = meta.batches_end - meta.base_offset;

    let mut index = SegmentIndex::default();
    for e in oentries.chunks_exact(OFFSET_ENTRY_BYTES) {
        let entry = OffsetEntry {
            relative_offset: le_u32(e, 0),
            position: le_u32(e, 4),
        };
        if i64::from(entry.relative_offset) >= span
            || u64::from(entry.position) < SEGMENT_HEADER_BYTES
            || u64::from(entry.position) >= segment_bytes
        {
            return Err(format!("offset entry {entry:?} out of bounds"));
        }
        if let Some(prev) = index.offsets.last() {
            if prev.relative_offset >= entry.relative_offset || prev.position >= entry.position {
                return Err(format!("offset entry {entry:?} not increasing"));
            }
        }
        index.offsets.push(entry);
    }
    for e in tentries.chunks_exact(TIME_ENTRY_BYTES) {
        let entry = TimeEntry {
            timestamp: le_i64(e, 0),
            relative_offset: le_u32(e, 8),
        };
        if i64::from(entry.relative_offset) >= span || entry.timestamp > meta.max_timestamp {
            return Err(format!("time entry {entry:?} out of bounds"));
        }
        if let Some(prev) = index.times.last() {
            if prev.timestamp >= entry.timestamp || prev.relative_offset > entry.relative_offset {
                return Err(format!("time entry {entry:?} not increasing"));
            }
        }
        index.times.push(entry);
    }
    Ok((index, meta))
}

/// Writes both index files of a segment and fdatasyncs them. The caller must have synced the
/// segment's data first and fsyncs the directory afterwards. Returns the number of fsyncs issued.
pub fn write_index_files(
    dir: &Path,
    partition: i32,
    meta: &IndexMeta,
    index: &SegmentIndex,
) -> io::Result<u64> {
    write_index_files_with(dir, partition, meta, index, true)
}

/// [`write_index_files`], synced or not (`sync` false: the caller syncs the filesystem later,
/// see `clean_shutdown`). Returns the fsyncs issued.
pub fn write_index_files_with(
    dir: &Path,
    partition: i32,
    meta: &IndexMeta,
    index: &SegmentIndex,
    sync: bool,
) -> io::Result<u64> {
    let opath = segment_file_path(dir, partition, meta.base_offset, FileKind::OffsetIndex);
    let tpath = segment_file_path(dir, partition, meta.base_offset, FileKind::TimeIndex);
    write_index_paths([&opath, &tpath], meta, index, sync)
}

/// [`write_index_files`] to explicit paths (offset index, time index).
pub fn write_index_at(
    paths: [&Path; 2],
    meta: &IndexMeta,
    index: &SegmentIndex,
) -> io::Result<u64> {
    write_index_paths(paths, meta, index, true)
}

fn write_index_paths(
    paths: [&Path; 2],
    meta: &IndexMeta,
    index: &SegmentIndex,
    sync: bool,
) -> io::Result<u64> {
    let files = [
        encode_offset_index(meta, &index.offsets),
        encode_time_index(meta, &index.times),
    ];
    for (path, bytes) in paths.iter().zip(&files) {
        let mut f = File::create(path)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_data()?;
        }
    }
    Ok(if sync { files.len() as u64 } else { 0 })
}

/// Removes a segment's index files; missing files are fine.
pub fn remove_index_files(dir: &Path, partition: i32, base_offset: i64) -> io::Result<()> {
    for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
        match std::fs::remove_file(segment_file_path(dir, partition, base_offset, kind)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (IndexMeta, SegmentIndex) {
        let mut ix = SegmentIndex::default();
        let mut pos = SEGMENT_HEADER_BYTES as u32;
        let mut max_ts = i64::MIN;
        for i in 0..100u32 {
            max_ts = max_ts.max(1000 + i64::from(i % 7) * 10);
            ix.on_append(100, i * 2, pos, 80, max_ts);
            pos += 80;
        }
        let meta = IndexMeta {
            base_offset: 500,
            next_offset: 700,
            // Offsets 699 and 700..: a compacted tail (the last batch is at 698).
            batches_end: 699,
            segment_bytes: u64::from(pos),
            max_timestamp: max_ts,
        };
        (meta, ix)
    }

    #[test]
    fn sparse_entries_and_lookup() {
        let (_, ix) = sample();
        // An entry every second 80-byte frame (interval 100).
        assert_eq!(ix.offsets.len(), 49);
        assert_eq!(ix.position_for(0), None);
        assert_eq!(ix.position_for(3), None);
        assert_eq!(ix.position_for(4), Some(u64::from(ix.offsets[0].position)));
        assert!(ix.times.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        assert_eq!(ix.scan_start_for_timestamp(0), 0);
    }

    #[test]
    fn index_file_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, ix) = sample();
        write_index_files(dir.path(), 1, &meta, &ix).unwrap();
        let (loaded, m) = load_index_files(dir.path(), 1, 500, 700, meta.segment_bytes).unwrap();
        assert_eq!(m, meta);
        assert_eq!(loaded.offsets, ix.offsets);
        assert_eq!(loaded.times, ix.times);
        // Stale descriptions are refused.
        assert!(load_index_files(dir.path(), 1, 500, 701, meta.segment_bytes).is_err());
        assert!(load_index_files(dir.path(), 1, 500, 700, meta.segment_bytes + 1).is_err());
        // Any flipped byte is detected.
        let p = segment_file_path(dir.path(), 1, 500, FileKind::OffsetIndex);
        let good = std::fs::read(&p).unwrap();
        for i in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&p, &bad).unwrap();
            assert!(
                load_index_files(dir.path(), 1, 500, 700, meta.segment_bytes).is_err(),
                "byte {i}"
            );
        }
        std::fs::write(&p, &good[..good.len() - 3]).unwrap();
        assert!(load_index_files(dir.path(), 1, 500, 700, meta.segment_bytes).is_err());
        std::fs::remove_file(&p).unwrap();
        assert!(load_index_files(dir.path(), 1, 500, 700, meta.segment_bytes).is_err());
    }
}
