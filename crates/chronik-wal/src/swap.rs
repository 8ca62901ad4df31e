//! File names of a segment replacement (compaction) and how recovery finishes or rolls back one
//! that a crash interrupted. The sequence itself is in `log/replace.rs`; Kafka's
//! `LogCleaner`/`LocalLog.replaceSegments` does the same.
//!
//! A replacement of the consecutive sealed segments `[B, E)` by one cleaned segment based at
//! `B` goes through these states (each step is one or more renames, then a directory fsync):
//!
//! 1. `wal_P_B.{log,index,timeindex}.cleaned`: written and fdatasynced. The index files name
//!    the range end `E` (`next_offset`).
//! 2. The index files renamed to `.swap`, then the log renamed to `.log.swap`. **The rename of
//!    the log is the commit point**: from then on the replacement happens, whatever follows.
//! 3. Every replaced segment's files renamed to `.deleted`.
//! 4. `wal_P_B.log.swap` renamed to `wal_P_B.log`, then its index files to their final names.
//! 5. The `.deleted` files removed.
//!
//! Recovery, before it lists the segments ([`recover_replacements`]):
//! * `.cleaned` files are removed (the replacement had not committed).
//! * For each `wal_P_B.log.swap`: the range end `E` is read from its segment header (version 2,
//!   written and synced before the commit point; its `.index.swap` names it too and is the
//!   fallback); every segment with a base in `[B, E)` is removed, then the swap files take
//!   their final names. With neither readable (damaged disk), `E` falls back to the end of the
//!   swap's batches and an error is logged.
//! * Index `.swap` files without a `.log.swap` are removed (before the commit point, or after
//!   the log took its final name: then its index is rebuilt by scanning).
//! * `.deleted` files are removed.
//!
//! A crash during recovery leaves one of these states again, so running it twice is safe.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::error::WalError;
use crate::index::load_index_at;
use crate::recovery::{fsync_dir, remove_segment_files};
use crate::segment::{
    parse_file_name, scan_segment, segment_file_path, FileKind, SegmentHeader, CLEANED_HEADER_BYTES,
};

/// A replacement segment being written (step 1).
pub(crate) const CLEANED: &str = "cleaned";
/// A committed replacement segment not yet in place (step 2).
pub(crate) const SWAP: &str = "swap";
/// A replaced segment's file waiting for removal (step 3).
pub(crate) const DELETED: &str = "deleted";

/// `wal_P_B.{ext}.{suffix}`.
pub(crate) fn suffixed_path(
    dir: &Path,
    partition: i32,
    base: i64,
    kind: FileKind,
    suffix: &str,
) -> PathBuf {
    let mut p = segment_file_path(dir, partition, base, kind).into_os_string();
    p.push(".");
    p.push(suffix);
    PathBuf::from(p)
}

/// The three files of a segment (log, offset index, time index) with `suffix` ("" for the
/// final names).
pub(crate) fn segment_paths(dir: &Path, partition: i32, base: i64, suffix: &str) -> [PathBuf; 3] {
    [FileKind::Log, FileKind::OffsetIndex, FileKind::TimeIndex].map(|k| {
        if suffix.is_empty() {
            segment_file_path(dir, partition, base, k)
        } else {
            suffixed_path(dir, partition, base, k, suffix)
        }
    })
}

/// Parses `wal_P_B.{ext}.{suffix}` for one of the three replacement suffixes.
pub(crate) fn parse_suffixed(name: &str) -> Option<(i32, i64, FileKind, &'static str)> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let suffix = [CLEANED, SWAP, DELETED]
        .into_iter()
        .find(|s| *s == suffix)?;
    let (p, base, kind) = parse_file_name(stem)?;
    Some((p, base, kind, suffix))
}

/// Removes `path` if it exists.
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool, WalError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(WalError::io("remove file", path)(e)),
    }
}

/// Renames `from` to `to` if `from` exists.
pub(crate) fn rename_if_exists(from: &Path, to: &Path) -> Result<bool, WalError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(WalError::io("rename file", from)(e)),
    }
}

/// Finishes (from the commit point on) or rolls back (before it) every replacement a crash
/// interrupted, as the module docs describe. Returns the fsyncs issued and whether the
/// directory changed (the caller fsyncs it at the end of recovery; this fsyncs it itself
/// between the steps that must be ordered).
pub(crate) fn recover_replacements(
    dir: &Path,
    topic: &str,
    partition: i32,
) -> Result<(u64, bool), WalError> {
    let mut found: Vec<(i64, FileKind, &'static str, PathBuf)> = Vec::new();
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(WalError::io("list partition directory", dir))? {
        let entry = entry.map_err(WalError::io("list partition directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_suffixed(name) {
            Some((p, base, kind, suffix)) if p == partition => {
                found.push((base, kind, suffix, entry.path()))
            }
            _ => {
                if let Some((p, base, FileKind::Log)) = parse_file_name(name) {
                    if p == partition {
                        logs.push(base);
                    }
                }
            }
        }
    }
    if found.is_empty() {
        return Ok((0, false));
    }
    let mut fsyncs = 0;
    // Not committed: the originals are intact.
    for (_, _, _, path) in found.iter().filter(|f| f.2 == CLEANED) {
        warn!(topic, partition, file = %path.display(), "removing an unfinished cleaned segment");
        remove_if_exists(path)?;
    }
    let swaps: Vec<i64> = found
        .iter()
        .filter(|f| f.2 == SWAP && f.1 == FileKind::Log)
        .map(|f| f.0)
        .collect();
    for (base, kind, _, path) in found.iter().filter(|f| f.2 == SWAP) {
        if *kind != FileKind::Log && !swaps.contains(base) {
            warn!(topic, partition, file = %path.display(), "removing an index of an uncommitted or finished replacement");
            remove_if_exists(path)?;
        }
    }
    for base in swaps {
        let end = swap_range_end(dir, topic, partition, base)?;
        let replaced: Vec<i64> = logs
            .iter()
            .copied()
            .filter(|b| (base..end).contains(b))
            .collect();
        info!(topic, partition, base_offset = base, next_offset = end, replaced = ?replaced,
            "finishing an interrupted segment replacement");
        remove_segment_files(dir, partition, &replaced)?;
        // The originals are gone durably before the replacement takes their name.
        fsync_dir(dir).map_err(WalError::io("fsync directory", dir))?;
        fsyncs += 1;
        let [swap_log, swap_oix, swap_tix] = segment_paths(dir, partition, base, SWAP);
        let [log, oix, tix] = segment_paths(dir, partition, base, "");
        rename_if_exists(&swap_log, &log)?;
        rename_if_exists(&swap_oix, &oix)?;
        rename_if_exists(&swap_tix, &tix)?;
    }
    for (_, _, _, path) in found.iter().filter(|f| f.2 == DELETED) {
        remove_if_exists(path)?;
    }
    fsync_dir(dir).map_err(WalError::io("fsync directory", dir))?;
    fsyncs += 1;
    Ok((fsyncs, true))
}

/// The end of the range a committed replacement at `base` covers: from the swap segment's
/// header (a cleaned segment's names it), else from its `.index.swap` files, else (damaged
/// disk) the end of its batches.
fn swap_range_end(dir: &Path, topic: &str, partition: i32, base: i64) -> Result<i64, WalError> {
    let [log, oix, tix] = segment_paths(dir, partition, base, SWAP);
    let file = File::open(&log).map_err(WalError::io("open swap segment", &log))?;
    let len = file
        .metadata()
        .map_err(WalError::io("stat swap segment", &log))?
        .len();
    let mut head = [0u8; CLEANED_HEADER_BYTES as usize];
    let n = len.min(CLEANED_HEADER_BYTES) as usize;
    file.read_exact_at(&mut head[..n], 0)
        .map_err(WalError::io("read swap segment", &log))?;
    let header = SegmentHeader::decode(&head[..n])
        .ok()
        .filter(|h| h.base_offset == base);
    if let Some(end) = header.and_then(|h| h.cleaned_to) {
        return Ok(end);
    }
    match load_index_at([&oix, &tix], base, None, len) {
        Ok((_, meta)) => Ok(meta.next_offset),
        Err(reason) => {
            let header = header.unwrap_or(SegmentHeader::plain(base, 0));
            let scan = scan_segment(&file, len, &header, u32::MAX, i64::MAX)
                .map_err(WalError::io("scan swap segment", &log))?;
            error!(topic, partition, base_offset = base, %reason, batches_end = scan.next_offset,
                "neither the header nor the index of a committed segment replacement names its range; replacing only the segments below the end of its batches");
            Ok(scan.next_offset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixed_names_round_trip() {
        let p = suffixed_path(Path::new("/d"), 3, 42, FileKind::TimeIndex, SWAP);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "wal_3_00000000000000000042.timeindex.swap");
        assert_eq!(
            parse_suffixed(name),
            Some((3, 42, FileKind::TimeIndex, SWAP))
        );
        assert_eq!(parse_suffixed("wal_3_00000000000000000042.log.other"), None);
        assert_eq!(parse_suffixed("wal_3_00000000000000000042.log"), None);
        assert_eq!(
            parse_suffixed("wal_3_00000000000000000042.log.incoming"),
            None
        );
    }
}
