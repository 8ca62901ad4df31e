//! The one error type of the crate's public boundary.

use std::path::{Path, PathBuf};

use crate::batch::BatchError;

/// Everything a `PartitionLog` operation can fail with. Each variant is something the caller can
/// act on: map to a Kafka error code, retry, or stop using the partition.
#[derive(thiserror::Error, Debug)]
pub enum WalError {
    /// An I/O operation failed. When it was a write or sync on the data path the partition is
    /// also poisoned (see [`WalError::Failed`]).
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The partition was sealed with `seal()`; appends are refused until `resume()`.
    #[error("partition {topic}-{partition} is sealed")]
    Sealed { topic: String, partition: i32 },
    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        log_end: i64,
    },
    /// On-disk data is inconsistent in a way recovery could not (or, on the read path, does not)
    /// repair.
    #[error("corrupt log data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// The log was closed (or is closing); nothing more can be appended or awaited.
    #[error("partition log is closed")]
    Closed,
    /// The partition is poisoned after a failed write or fsync ("fsyncgate"): the state of the
    /// page cache vs. the disk is unknown, so every later append and every waiter fails until the
    /// partition heals (cut back to its last synced offset once the disk takes writes again) or
    /// is reopened (which re-runs recovery). Also a wait for a batch a heal cut away.
    #[error("partition log failed: {0}")]
    Failed(String),
    /// The buffer handed to `append` is not exactly one valid v2 record batch.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch is larger than the maximum frame payload.
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    /// Assigning offsets to this batch would overflow the i64 offset space.
    #[error("offset overflow: log end {log_end} + last offset delta {last_offset_delta}")]
    OffsetOverflow {
        log_end: i64,
        last_offset_delta: i32,
    },
    /// A replicated batch does not start at this log's end.
    #[error("replicated batch starts at offset {got}, but the log ends at {log_end}")]
    ReplicaGap { log_end: i64, got: i64 },
    /// `truncate_to` was asked to cut inside a batch.
    #[error("offset {offset} is not a batch boundary")]
    NotBatchBoundary { offset: i64 },
    /// The active segment reached the hard file-size bound while rotation is held back by
    /// pending segment seals; retry after the commit task catches up.
    #[error("active segment is full ({size_bytes} bytes) and rotation is deferred")]
    SegmentFull { size_bytes: u64 },
    /// A segment replacement (compaction) was refused: the segments are not consecutive sealed
    /// ones, they changed meanwhile, or a batch is out of order or outside their range.
    #[error("invalid segment replacement: {0}")]
    InvalidReplacement(String),
    /// A `LogConfig` field, topic name or partition number is outside its bounds.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.to_path_buf();
        move |source| WalError::Io { op, path, source }
    }
}
