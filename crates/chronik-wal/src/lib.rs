//! Chronik's per-partition write-ahead log.
//!
//! Each partition is a directory of segment files holding CRC-framed Kafka v2 record batches,
//! with sparse offset and time indexes, group commit under an explicit [`FsyncPolicy`], crash
//! recovery, retention and truncation. The on-disk format and the recovery rules are documented
//! in `docs/wal-format.md` and next to the code that writes each file (`segment`, `index`).
//!
//! The WAL knows nothing of Kafka requests, Raft or the network; it only knows the v2
//! `RecordBatch` header layout ([`batch`]) because that is the stored payload.
//!
//! Bounds: a batch is at most [`MAX_FRAME_PAYLOAD_BYTES`] (64 MiB); `segment_bytes` is at most
//! [`MAX_SEGMENT_BYTES`] (2 GiB); at most [`MAX_PENDING_SEALS`] rolled segments wait for their
//! seal; the write path is one `writev` under the partition lock, so its work is bounded by the
//! caller holding that lock for one batch.
//! Sealed segments hold no file descriptor: reads open them through one process-wide cache of
//! at most [`max_open_segment_files`] handles (`file_cache`), so a partition costs one
//! descriptor (its active segment) whatever its segment count.

pub mod batch;
mod clean_shutdown;
mod config;
mod error;
mod file_cache;
mod index;
pub mod io_priority;
mod log;
mod recovery;
mod segment;
mod swap;
mod sync_rounds;

#[cfg(test)]
mod tests;

pub use batch::{
    set_base_offset, set_partition_leader_epoch, split_batches, verify_batch_crc, BatchError,
    BatchHeader,
};
pub use clean_shutdown::{mark_clean_shutdown, take_clean_shutdown, CLEAN_SHUTDOWN_FILE};
pub use config::{FsyncPolicy, LogConfig, ParseFsyncPolicyError};
pub use error::WalError;
pub use file_cache::{
    max_open_segment_files, open_segment_files, set_max_open_segment_files,
    DEFAULT_MAX_OPEN_SEGMENT_FILES,
};
pub use io_priority::disk_space;
pub use log::{
    heals_in_process, Appended, CatchUp, DeletedSegment, PartitionLog, ReadResult,
    ReplacedSegments, RetentionOutcome, RetentionReason, SealedSegment, SegmentInfo,
    SegmentInstall, SegmentReplacement, VerifiedInstall, MAX_COLD_READS, MAX_PENDING_SEALS,
};
pub use segment::{
    segment_file_path, FileKind, FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES, MAX_SEGMENT_BYTES,
    SEGMENT_HEADER_BYTES,
};

/// Names of the metrics the WAL records through the `metrics` facade. The WAL installs no
/// exporter: the binary that embeds it decides where they go (chronik-server serves them as
/// Prometheus text).
pub mod metric_names {
    /// Seconds one fdatasync of an active segment took (histogram).
    pub const FSYNC_SECONDS: &str = "chronik_wal_fsync_seconds";
    /// Bytes one commit pass made durable (histogram): the group-commit batch size.
    pub const COMMIT_BYTES: &str = "chronik_wal_commit_bytes";
    /// Filesystem-wide sync rounds run (counter): one `syncfs` each, for many partitions'
    /// commit passes at once (see `sync_rounds`).
    pub const SYNC_ROUNDS: &str = "chronik_wal_sync_rounds_total";
    /// Reads sent to the blocking pool because they may miss the page cache (counter).
    pub const COLD_READS: &str = "chronik_wal_cold_reads_total";
    /// Sealed-segment files opened because the file cache did not hold them (counter).
    pub const SEGMENT_FILE_OPENS: &str = "chronik_wal_segment_file_opens_total";
    /// Sealed-segment files the file cache closed to stay within its bound (counter).
    pub const SEGMENT_FILE_EVICTIONS: &str = "chronik_wal_segment_file_evictions_total";
}
