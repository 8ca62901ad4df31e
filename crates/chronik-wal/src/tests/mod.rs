//! Crate tests that exercise `PartitionLog` end to end on real files.

mod commit_tests;
mod compaction_tests;
mod file_cache_tests;
mod gap_rule_tests;
mod install_tests;
mod log_start_tests;
mod log_tests;
mod prop_tests;
mod recovery_tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::test_util::{batch, build, Spec};
use crate::{FileKind, FsyncPolicy, LogConfig, PartitionLog};

pub const TOPIC: &str = "t";
pub const PARTITION: i32 = 0;

/// A config with tiny segments and dense indexes so tests cross segment and index boundaries.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: 3_600_000,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes: 200,
        fsync: FsyncPolicy::Always,
    }
}

pub async fn open(root: &Path, config: LogConfig) -> Arc<PartitionLog> {
    PartitionLog::open(root, TOPIC, PARTITION, config)
        .await
        .expect("open")
}

pub fn part_dir(root: &Path) -> PathBuf {
    root.join(TOPIC).join(PARTITION.to_string())
}

pub fn log_path(root: &Path, base: i64) -> PathBuf {
    crate::segment_file_path(&part_dir(root), PARTITION, base, FileKind::Log)
}

pub fn index_path(root: &Path, base: i64, kind: FileKind) -> PathBuf {
    crate::segment_file_path(&part_dir(root), PARTITION, base, kind)
}

/// Base offsets of the segment files on disk, ascending.
pub fn segment_bases(root: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(part_dir(root))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            match crate::segment::parse_file_name(&name) {
                Some((_, base, FileKind::Log)) => Some(base),
                _ => None,
            }
        })
        .collect();
    v.sort();
    v
}

/// One appended batch as the log stores it (offsets patched).
#[derive(Debug, Clone)]
pub struct Stored {
    pub base: i64,
    pub last: i64,
    pub bytes: Vec<u8>,
}

/// Appends a batch built from `spec` and returns it as stored.
pub fn append_spec(log: &PartitionLog, spec: Spec) -> Stored {
    let mut b = build(spec);
    let a = log.append(&mut b, 3).expect("append");
    Stored {
        base: a.base_offset,
        last: a.last_offset,
        bytes: b,
    }
}

/// Appends `n` batches of `records` records each with varied payload sizes.
pub fn append_many(log: &PartitionLog, n: usize, records: i32) -> Vec<Stored> {
    (0..n)
        .map(|i| {
            let mut b = batch(records, 10 + (i * 37) % 150);
            let a = log.append(&mut b, 3).expect("append");
            Stored {
                base: a.base_offset,
                last: a.last_offset,
                bytes: b,
            }
        })
        .collect()
}

/// Reads everything from `from` and returns the raw bytes.
pub fn read_all(log: &PartitionLog, from: i64) -> Vec<u8> {
    log.read(from, usize::MAX, i64::MAX).unwrap().data.to_vec()
}

pub fn concat(batches: &[Stored]) -> Vec<u8> {
    batches
        .iter()
        .flat_map(|b| b.bytes.iter().copied())
        .collect()
}

/// A log (small segments) with 60 appended batches and at least three sealed (and persisted)
/// segments.
pub async fn with_sealed_segments(root: &Path) -> (Arc<PartitionLog>, Vec<Stored>) {
    let log = open(root, small_config()).await;
    let stored = append_many(&log, 60, 3);
    log.wait_committed(log.log_end_offset()).await.unwrap();
    // Seals finish in the commit task; wait for the first three to be shippable.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bases = segment_bases(root);
        if bases.len() > 3
            && bases[..3]
                .iter()
                .all(|b| log.sealed_segment_at(*b).is_some())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segments never sealed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (log, stored)
}
