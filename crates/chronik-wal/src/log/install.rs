//! Whole-segment transfer, for replicas that are far behind: a leader hands out the file of a
//! sealed segment ([`PartitionLog::sealed_segment_at`]); a follower whose log ends exactly at
//! that segment's base writes the bytes to a side file ([`SegmentInstall`]), verifies every
//! frame ([`PartitionLog::verify_install`]) and installs the file as its own segment
//! ([`PartitionLog::finish_install`]), byte-identical to the leader's, instead of appending its
//! batches one by one.
//!
//! Invariants, enforced in `finish_install` under `maintenance` then `inner`:
//! * The installed file starts exactly at this log's end, holds whole frames with good CRCs and
//!   contiguous offsets from its header's base offset (gaps only if its header marks it cleaned:
//!   a compacted leader's segment), and was fdatasynced before it is renamed
//!   into place; the directory entry is synced by the next commit pass, before `committed`
//!   moves past it (the follower reports only committed offsets as durable).
//! * It becomes a sealed segment: the active segment is rolled first (if not empty) and again
//!   after, so appends never go into an installed file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use super::{now_ms, PartitionLog, MAX_PENDING_SEALS};
use crate::error::WalError;
use crate::file_cache::FileId;
use crate::segment::{
    scan_segment, ScanOutcome, SegmentHeader, CLEANED_HEADER_BYTES, MAX_SEGMENT_FILE_BYTES,
};

/// What a replica fetching from some offset should get ([`PartitionLog::catch_up_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// The whole sealed segment starting there, as a file.
    WholeSegment,
    /// Batches from the offset up to (not including) this one.
    ReadTo(i64),
}

/// Whether `segments[i]` can be shipped whole: sealed (not the active one) and its seal
/// finished (data synced, file trimmed, index persisted).
fn shippable(inner: &super::Inner, i: usize) -> bool {
    let seg = &inner.segments[i];
    i + 1 < inner.segments.len() && seg.persisted && !inner.pending_seals.contains(&seg.base_offset)
}

/// A sealed segment as a leader ships it: synced, trimmed to its data, index persisted.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub base_offset: i64,
    /// End of its offset range (the next segment's base); its batches may end before it when
    /// its tail was compacted away.
    pub next_offset: i64,
    /// File length: the header plus whole frames.
    pub size_bytes: u64,
    /// Kept open by this handle (taken from the file cache, whose eviction does not close it),
    /// so retention deleting the segment meanwhile does not cut a transfer short.
    pub file: Arc<File>,
}

impl SealedSegment {
    /// Reads up to `buf.len()` bytes at `pos` (short only at the end of the file).
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.size_bytes.saturating_sub(pos) as usize).min(buf.len());
        crate::io_priority::read_segment_at(&self.file, &mut buf[..want], pos)?;
        Ok(want)
    }
}

/// A segment being received: bytes go to a side file next to the log's segments. Dropping it
/// without [`PartitionLog::finish_install`] removes the side file.
#[derive(Debug)]
pub struct SegmentInstall {
    base_offset: i64,
    path: PathBuf,
    file: Option<File>,
    written: u64,
}

impl SegmentInstall {
    /// Appends the next piece of the file. Fails once the file would exceed the largest
    /// segment a log accepts.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), WalError> {
        let next = self.written + chunk.len() as u64;
        if next > MAX_SEGMENT_FILE_BYTES {
            return Err(WalError::InvalidConfig(format!(
                "incoming segment at offset {} exceeds {MAX_SEGMENT_FILE_BYTES} bytes",
                self.base_offset
            )));
        }
        let file = self.file.as_mut().ok_or(WalError::Closed)?;
        file.write_all(chunk)
            .map_err(WalError::io("write incoming segment", &self.path))?;
        self.written = next;
        Ok(())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Bytes received so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl Drop for SegmentInstall {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An incoming segment that was synced and verified, ready for [`PartitionLog::finish_install`].
#[derive(Debug)]
pub struct VerifiedInstall {
    install: SegmentInstall,
    header: SegmentHeader,
    scan: ScanOutcome,
}

impl VerifiedInstall {
    /// Offset after the segment's last batch: the log's end once installed.
    pub fn next_offset(&self) -> i64 {
        self.scan.next_offset
    }

    /// `(leader epoch, first offset)` of each epoch in the segment, in order.
    pub fn epochs(&self) -> &[(i32, i64)] {
        &self.scan.epochs
    }
}

impl PartitionLog {
    /// The sealed segment that starts exactly at `base_offset`, once its seal finished (data
    /// synced, file trimmed, index persisted). `None` for the active segment, a segment still
    /// being sealed, or no segment starting there.
    ///
    /// May block briefly: the segment's file is opened if the file cache does not hold it.
    pub fn sealed_segment_at(&self, base_offset: i64) -> Option<SealedSegment> {
        let s = &*self.shared;
        let (next_offset, size_bytes, id, path, own) = {
            let inner = s.lock();
            let i = inner
                .segments
                .iter()
                .position(|s| s.base_offset == base_offset)?;
            if !shippable(&inner, i) {
                return None;
            }
            let seg = &inner.segments[i];
            let own = seg.own_file.clone();
            (
                seg.next_offset,
                seg.size_bytes,
                seg.file_id,
                seg.path.clone(),
                own,
            )
        };
        let file = match own {
            Some(f) => f,
            None => match s.sealed_file(base_offset, id, &path) {
                Ok(f) => f?, // None: it left the log meanwhile
                Err(e) => {
                    warn!(topic = %s.topic, partition = s.partition, segment = base_offset,
                        error = %e, "cannot open a sealed segment to ship it");
                    return None;
                }
            },
        };
        Some(SealedSegment {
            base_offset,
            next_offset,
            size_bytes,
            file,
        })
    }

    /// How a replica fetching from `offset` catches up, decided under one lock (it runs for
    /// every partition of every replication fetch): the whole segment when `offset` is the base
    /// of a shippable sealed one; inside a sealed segment, batches up to that segment's end, so
    /// the next fetch starts at the next base; otherwise batches up to the log end. When no
    /// batch of the segment lies at or after `offset` (its tail was compacted away), up to the
    /// end of the next segment holding a batch, so the read is never empty before the end.
    pub fn catch_up_plan(&self, offset: i64) -> CatchUp {
        let inner = self.shared.lock();
        if offset < inner.segments[0].base_offset || offset >= inner.active().base_offset {
            return CatchUp::ReadTo(inner.log_end);
        }
        let i = inner.segment_index_for(offset);
        let seg = &inner.segments[i];
        // A segment compacted down to no batch is not worth a transfer (nor installable).
        if seg.base_offset == offset && shippable(&inner, i) && seg.batches_end > offset {
            return CatchUp::WholeSegment;
        }
        if offset < seg.batches_end {
            return CatchUp::ReadTo(seg.next_offset);
        }
        // At most segments.len() steps; the active segment's batches end at the log end.
        let next = inner
            .segments
            .range(i + 1..)
            .find(|s| s.batches_end > s.base_offset);
        CatchUp::ReadTo(next.map_or(inner.log_end, |s| s.next_offset))
    }

    /// Starts receiving a whole segment that will begin at `base_offset`, which must be this
    /// log's end (`ReplicaGap` otherwise).
    pub fn begin_install(&self, base_offset: i64) -> Result<SegmentInstall, WalError> {
        let s = &*self.shared;
        {
            let inner = s.lock();
            s.check_open(&inner)?;
            if inner.log_end != base_offset {
                return Err(WalError::ReplicaGap {
                    log_end: inner.log_end,
                    got: base_offset,
                });
            }
        }
        let path = s.dir.join(format!(
            "wal_{}_{:020}.log.incoming",
            s.partition, base_offset
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(WalError::io("create incoming segment", &path))?;
        Ok(SegmentInstall {
            base_offset,
            path,
            file: Some(file),
            written: 0,
        })
    }

    /// Syncs the received file and checks all of it: a segment header naming the expected
    /// base offset, then whole frames with good CRCs and increasing offsets (a compacted
    /// segment has gaps), nothing after.
    /// Blocking (fdatasync and a full read); takes no lock of this log.
    pub fn verify_install(&self, mut install: SegmentInstall) -> Result<VerifiedInstall, WalError> {
        let path = install.path.clone();
        let corrupt = |position: u64, reason: String| WalError::Corrupt {
            path: path.clone(),
            position,
            reason,
        };
        let file = install.file.as_mut().ok_or(WalError::Closed)?;
        file.sync_data()
            .map_err(WalError::io("sync incoming segment", &path))?;
        let len = install.written;
        let mut head = [0u8; CLEANED_HEADER_BYTES as usize];
        let n = len.min(CLEANED_HEADER_BYTES) as usize;
        file.read_exact_at(&mut head[..n], 0)
            .map_err(WalError::io("read incoming segment", &path))?;
        let header = SegmentHeader::decode(&head[..n])
            .map_err(|e| corrupt(0, format!("segment header: {e:?}")))?;
        if header.base_offset != install.base_offset {
            return Err(corrupt(
                0,
                format!(
                    "segment starts at offset {}, expected {}",
                    header.base_offset, install.base_offset
                ),
            ));
        }
        let interval = self.shared.lock().config.index_interval_bytes;
        let scan = scan_segment(file, len, &header, interval, i64::MAX)
            .map_err(WalError::io("scan incoming segment", &path))?;
        if let Some((pos, problem)) = &scan.problem {
            return Err(corrupt(*pos, format!("{problem:?}")));
        }
        if scan.valid_len != len || scan.frames == 0 {
            return Err(corrupt(
                scan.valid_len,
                format!(
                    "{} bytes after the last whole frame, {} frames",
                    len - scan.valid_len,
                    scan.frames
                ),
            ));
        }
        Ok(VerifiedInstall {
            install,
            header,
            scan,
        })
    }

    /// Makes a verified segment part of this log, at its end: rolls the active segment if it
    /// holds data, renames the file into place as a sealed segment and opens a new active
    /// segment after it. `ReplicaGap` if the log no longer ends at the segment's base (it was
    /// truncated or appended to meanwhile); nothing changes then.
    pub fn finish_install(&self, verified: VerifiedInstall) -> Result<(), WalError> {
        let VerifiedInstall {
            mut install,
            header,
            scan,
        } = verified;
        let s = &*self.shared;
        let _m = s.lock_maintenance();
        let mut guard = s.lock();
        let inner = &mut *guard;
        s.check_open(inner)?;
        let base = header.base_offset;
        if inner.log_end != base {
            return Err(WalError::ReplicaGap {
                log_end: inner.log_end,
                got: base,
            });
        }
        // Two rolls: before (unless the active segment is empty) and after the install.
        if inner.pending_seals.len() + 2 > MAX_PENDING_SEALS {
            return Err(WalError::SegmentFull {
                size_bytes: inner.active().size_bytes,
            });
        }
        let now = now_ms();
        if !inner.active().is_empty() {
            s.roll(inner, now, "segment install")?;
        }
        let len = install.written;
        let from = install.path.clone();
        let (to, old_size) = {
            let active = inner.active();
            debug_assert!(active.is_empty() && active.base_offset == base);
            (active.path.to_path_buf(), active.size_bytes)
        };
        // The empty active segment's file is replaced by the received one (same name).
        if let Err(e) = std::fs::rename(&from, &to) {
            // The empty active segment is untouched: the log stays as it was.
            return Err(WalError::Io {
                op: "rename incoming segment",
                path: to,
                source: e,
            });
        }
        install.file = None; // renamed: nothing to remove on drop
        let file = match OpenOptions::new().read(true).write(true).open(&to) {
            Ok(f) => f,
            Err(e) => {
                s.poison(
                    inner,
                    format!("cannot open installed segment {}: {e}", to.display()),
                );
                return Err(WalError::Io {
                    op: "open installed segment",
                    path: to,
                    source: e,
                });
            }
        };
        let file_id = match FileId::of(&file) {
            Ok(id) => id,
            Err(e) => {
                s.poison(
                    inner,
                    format!("cannot stat installed segment {}: {e}", to.display()),
                );
                return Err(WalError::io("stat installed segment", &to)(e));
            }
        };
        {
            let seg = inner
                .segments
                .back_mut()
                .expect("partition log has no segment");
            // Another file under the same name: a new identity.
            seg.file_id = file_id;
            seg.own_file = Some(Arc::new(file));
            seg.size_bytes = len;
            seg.allocated_bytes = len;
            seg.next_offset = scan.next_offset;
            seg.batches_end = scan.next_offset;
            // A cleaned segment stays one (its header came with it).
            seg.cleaned_to = header.cleaned_to;
            seg.max_timestamp = scan.max_timestamp;
            seg.created_ms = header.created_ms;
            seg.roll_clock_ms = Some(now);
            seg.index = Arc::new(scan.index);
            seg.persisted = false;
            seg.cache_dropped_to = 0;
            seg.synced_bytes = len;
        }
        inner.total_bytes = inner.total_bytes - old_size + len;
        inner.log_end = scan.next_offset;
        s.end_tx.send_replace(inner.log_end);
        inner.dir_gen += 1;
        // Seals the installed segment (the commit task persists its index and syncs the
        // directory) and starts a new active one after it.
        s.roll(inner, now, "after segment install")?;
        inner.check_invariants();
        info!(topic = %s.topic, partition = s.partition, base_offset = base,
            next_offset = inner.log_end, bytes = len, frames = scan.frames,
            "installed a whole segment from the leader");
        Ok(())
    }
}
