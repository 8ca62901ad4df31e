//! The clean-shutdown marker (Kafka's `.kafka_cleanshutdown`): one file in the WAL root saying
//! that every partition log under it was closed cleanly and made durable. A start that finds it
//! trusts each partition's files as they are ([`crate::PartitionLog::open_after_clean_shutdown`]):
//! no scan of the active segment, no fdatasync of it. A start that does not find it recovers
//! every partition in full.
//!
//! Order that makes it safe:
//! * Shutdown: every log is closed with its syncs deferred
//!   ([`crate::PartitionLog::close_deferred_sync`]), then one `syncfs` makes the whole
//!   filesystem durable, then the marker is written and synced. Ten thousand partitions cost one
//!   filesystem sync instead of four fsyncs each. A crash anywhere before the marker is durable
//!   leaves no marker: full recovery.
//! * Start: the marker is removed (durably) before any partition is opened, so a crash after
//!   this start wrote anything is never mistaken for a clean shutdown.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::recovery::fsync_dir;
use crate::sync_rounds::syncfs;

/// The marker's name in the WAL root.
pub const CLEAN_SHUTDOWN_FILE: &str = ".chronik_cleanshutdown";

/// True if the previous run left the marker; removes it durably either way, before the caller
/// opens any partition. A root that does not exist yet had no previous run.
pub fn take_clean_shutdown(root: &Path) -> io::Result<bool> {
    match std::fs::remove_file(root.join(CLEAN_SHUTDOWN_FILE)) {
        Ok(()) => {
            fsync_dir(root)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes everything written under `root` durable with one `syncfs`, then writes the marker.
/// Call it only after every partition log under `root` was closed without error.
pub fn mark_clean_shutdown(root: &Path) -> io::Result<()> {
    syncfs(&File::open(root)?)?;
    let marker = File::create(root.join(CLEAN_SHUTDOWN_FILE))?;
    marker.sync_all()?;
    fsync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!take_clean_shutdown(dir.path()).unwrap());
        mark_clean_shutdown(dir.path()).unwrap();
        assert!(take_clean_shutdown(dir.path()).unwrap());
        assert!(!take_clean_shutdown(dir.path()).unwrap());
    }
}
