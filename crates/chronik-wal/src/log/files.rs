//! How readers get the file of a sealed segment, which holds no descriptor of its own (see
//! `crate::file_cache`): from the process's file cache, or opened by name and cached.
//!
//! Opening by name races with the operations that rename or delete segment files
//! (compaction, retention, truncation, installs, resets): the name may meanwhile be another
//! file, or none. A handle is cached only if both hold:
//! * the opened file is the inode recorded in the segment's [`FileId`], and
//! * under the partition lock, after the open, the segment is still in the log.
//!
//! Together they prove it is the segment's file: every operation removes a segment from the
//! list (under `inner`) before, or in the same critical section as, it unlinks its file, and
//! an id never re-enters the list; so the inode was alive during the open, and no other file
//! can have had its number. The same critical section that removes a segment then removes its
//! cache entry, or the insert comes after and is refused, so nothing stale stays cached.
//!
//! When the name is not the segment's file while the segment is still listed, a replacement
//! is between its renames; all of those happen under `maintenance`, so one more try under it
//! sees the log and the directory agree. That wait is rare (a few milliseconds, when a read
//! meets a compaction's swap) and keeps the lock order: `maintenance`, `inner`, then the
//! cache's own lock, which is taken last everywhere.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use super::{Inner, LifeState, Shared};
use crate::error::WalError;
use crate::file_cache::{segment_files, FileId};

/// What one attempt to open a sealed segment's file found.
enum Opened {
    File(Arc<File>),
    /// The segment is no longer in the log.
    Gone,
    /// The segment is listed, but its name is another file or none (mid-rename).
    Moving,
}

impl Shared {
    /// The file of the segment based at `base` whose identity is `id`, for reading: cached,
    /// or opened and cached. `Ok(None)`: the segment left the log since the caller looked
    /// (the caller finds its offset again). Blocking (an `open` on a cache miss).
    pub(super) fn sealed_file(
        &self,
        base: i64,
        id: FileId,
        path: &Path,
    ) -> Result<Option<Arc<File>>, WalError> {
        if let Some(f) = segment_files().get(id) {
            return Ok(Some(f));
        }
        metrics::counter!(crate::metric_names::SEGMENT_FILE_OPENS).increment(1);
        match self.open_checked(base, id, path)? {
            Opened::File(f) => return Ok(Some(f)),
            Opened::Gone => return Ok(None),
            Opened::Moving => {}
        }
        let _m = self.lock_maintenance();
        match self.open_checked(base, id, path)? {
            Opened::File(f) => Ok(Some(f)),
            Opened::Gone => Ok(None),
            // Under `maintenance` a listed segment's name is its file.
            Opened::Moving => Err(WalError::Corrupt {
                path: path.to_path_buf(),
                position: 0,
                reason: "the segment's file is missing or was replaced outside the log".into(),
            }),
        }
    }

    fn open_checked(&self, base: i64, id: FileId, path: &Path) -> Result<Opened, WalError> {
        let file = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(WalError::io("open segment", path)(e)),
        };
        let same = match &file {
            Some(f) => id
                .same_inode(f)
                .map_err(WalError::io("stat segment", path))?,
            None => false,
        };
        let inner = self.lock();
        if inner.state == LifeState::Closed {
            return Err(WalError::Closed);
        }
        let seg = &inner.segments[inner.segment_index_for(base)];
        if seg.file_id != id {
            return Ok(Opened::Gone);
        }
        // Truncated back into, it is the active segment again: its own handle.
        if let Some(own) = &seg.own_file {
            return Ok(Opened::File(own.clone()));
        }
        match file {
            Some(f) if same => Ok(Opened::File(segment_files().insert(id, Arc::new(f)))),
            _ => Ok(Opened::Moving),
        }
    }

    /// The close's last pass (`finish_close`), then the cached handles of this log's
    /// segments are closed: nothing reads a closed log.
    pub(super) fn close_files(&self, defer_sync: bool) -> Result<(), WalError> {
        let result = self.finish_close(defer_sync);
        let ids: Vec<FileId> = self.lock().segments.iter().map(|s| s.file_id).collect();
        segment_files().remove(ids);
        result
    }
}

/// A new identity for a segment file just created or opened at `path`.
pub(super) fn file_id(file: &File, path: &Path) -> Result<FileId, WalError> {
    FileId::of(file).map_err(WalError::io("stat segment", path))
}

/// The descriptor invariant `Inner::check_invariants` asserts: the active segment has its own
/// handle, and only a sealed segment whose seal finished gave its up.
pub(super) fn descriptors_as_designed(inner: &Inner) -> bool {
    inner.active().own_file.is_some()
        && inner
            .segments
            .iter()
            .all(|s| s.own_file.is_some() || s.persisted)
}

#[cfg(test)]
impl super::PartitionLog {
    /// Test view: each segment's base offset, file identity, and whether it holds a
    /// descriptor of its own.
    pub(crate) fn segment_file_ids(&self) -> Vec<(i64, FileId, bool)> {
        let inner = self.shared.lock();
        inner
            .segments
            .iter()
            .map(|s| (s.base_offset, s.file_id, s.own_file.is_some()))
            .collect()
    }

    /// Test hook: [`Shared::sealed_file`] of the segment at `base` as listed now.
    pub(crate) fn sealed_file_of(&self, base: i64) -> Result<Option<Arc<File>>, WalError> {
        let (id, path) = {
            let inner = self.shared.lock();
            let s = &inner.segments[inner.segment_index_for(base)];
            (s.file_id, s.path.clone())
        };
        self.shared.sealed_file(base, id, &path)
    }
}
