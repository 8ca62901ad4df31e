//! Durable small-file operations, written once.
//!
//! A file that must survive a crash whole (a snapshot, a checkpoint, a node's identity) is
//! replaced, never rewritten in place: the new bytes go to `NAME.tmp`, are fsynced, renamed
//! over `NAME`, and the directory is fsynced so the rename itself is durable. A crash at any
//! point leaves either the old file or the new one, plus perhaps a stale `NAME.tmp` that the
//! next replacement truncates.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Fsyncs a directory, so file creations, renames and removals inside it survive a crash.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temporary file [`replace`] writes before renaming it over `dir/name`.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tmp"))
}

/// Replaces `dir/name` with `bytes` atomically and durably (see the crate docs).
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(dir, name);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_leaves_only_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        replace(dir.path(), "state", b"one").unwrap();
        // A stale temp file from a crash mid-replacement is truncated, not appended to.
        std::fs::write(temp_path(dir.path(), "state"), b"leftover from a crash").unwrap();
        replace(dir.path(), "state", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("state")).unwrap(), b"two");
        assert!(!temp_path(dir.path(), "state").exists());
    }

    #[test]
    fn replace_in_a_missing_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(replace(&dir.path().join("missing"), "state", b"x").is_err());
    }
}
