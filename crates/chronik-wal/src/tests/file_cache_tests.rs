//! Sealed segments read through the process's file cache (`file_cache`, `log/files.rs`): they
//! hold no descriptor, a read after eviction opens the file again, and no operation that
//! replaces, deletes or cuts a segment file lets a cached or racing handle serve its bytes.
//!
//! The cache is process-wide and shared with the tests running in parallel, which may evict
//! these tests' entries at any time: assertions only ever rely on what eviction cannot change
//! (entries of segments that left the log are gone; reads return the right bytes).

use std::time::Duration;

use super::*;
use crate::file_cache::segment_files;
use crate::WalError;

/// Waits until every segment but the active one finished its seal and gave up its descriptor.
async fn wait_all_sealed(log: &PartitionLog) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let files = log.segment_file_ids();
        let (active, sealed) = files.split_last().unwrap();
        if active.2 && sealed.iter().all(|(_, _, own)| !own) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "seals never finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A log of several sealed segments, all of them through their seal.
async fn sealed_log(root: &Path) -> (Arc<PartitionLog>, Vec<Stored>) {
    let (log, stored) = with_sealed_segments(root).await;
    wait_all_sealed(&log).await;
    assert!(log.segment_count() >= 4);
    (log, stored)
}

#[tokio::test]
async fn sealed_segments_hold_no_descriptor_and_read_back_after_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = sealed_log(dir.path()).await;
    let ids = log.segment_file_ids();
    // Evicted (as by other partitions' reads): every read opens its segment again.
    segment_files().remove(ids.iter().map(|(_, id, _)| *id));
    assert_eq!(read_all(&log, 0), concat(&stored));
    for s in &stored {
        let one = log.read(s.base, 1, i64::MAX).unwrap();
        assert_eq!(one.data.as_ref(), s.bytes.as_slice(), "read at {}", s.base);
        segment_files().remove(ids.iter().map(|(_, id, _)| *id));
    }
    // Reopened after a close: the recovered sealed segments hold none either.
    log.close().await.unwrap();
    assert!(ids.iter().all(|(_, id, _)| !segment_files().contains(*id)));
    let log = open(dir.path(), small_config()).await;
    let (active, sealed) = log
        .segment_file_ids()
        .split_last()
        .map(|(a, s)| (*a, s.to_vec()))
        .unwrap();
    assert!(active.2 && sealed.iter().all(|(_, _, own)| !own));
    assert_eq!(read_all(&log, 0), concat(&stored));
    // A whole-segment transfer reads through a handle of its own, which eviction leaves open.
    let ship = log.sealed_segment_at(sealed[1].0).unwrap();
    segment_files().remove([sealed[1].1]);
    let mut buf = vec![0; ship.size_bytes as usize];
    assert_eq!(ship.read_at(0, &mut buf).unwrap(), buf.len());
    assert_eq!(
        buf,
        std::fs::read(log_path(dir.path(), sealed[1].0)).unwrap()
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn compaction_never_lets_the_replaced_file_serve_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = sealed_log(dir.path()).await;
    let bases = segment_bases(dir.path());
    assert_eq!(read_all(&log, 0), concat(&stored)); // caches every sealed file
    let old = log.segment_file_ids();
    // Segment 1 keeps every other batch: same name, another file.
    let in_1: Vec<&Stored> = stored
        .iter()
        .filter(|s| (bases[1]..bases[2]).contains(&s.base))
        .collect();
    let kept: Vec<&[u8]> = in_1.iter().step_by(2).map(|s| s.bytes.as_slice()).collect();
    let want: Vec<Stored> = stored
        .iter()
        .filter(|s| !(bases[1]..bases[2]).contains(&s.base) || kept.contains(&s.bytes.as_slice()))
        .cloned()
        .collect();
    // A read that located segment 1 before the swap and opens it after: it finds the
    // cleaned file by offset, never the old bytes through a stale handle.
    let got = log
        .read_racing(in_1[1].base, usize::MAX, || {
            log.replace_segments_with(&bases[1..2], &kept).unwrap();
        })
        .unwrap();
    let from = want.iter().position(|s| s.last >= in_1[1].base).unwrap();
    assert_eq!(got.data.as_ref(), concat(&want[from..]).as_slice());
    assert!(
        !segment_files().contains(old[1].1),
        "the replaced file stays cached"
    );
    let new = log.segment_file_ids();
    assert_ne!(new[1].1, old[1].1);
    assert_eq!(read_all(&log, 0), concat(&want));
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_name_that_is_another_file_is_never_read_as_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _stored) = sealed_log(dir.path()).await;
    let bases = segment_bases(dir.path());
    let ids = log.segment_file_ids();
    segment_files().remove([ids[1].1]);
    // Something outside the log put another file under segment 1's name (a copy: same bytes,
    // another inode). The log's identity check refuses it rather than trust the name.
    let path = log_path(dir.path(), bases[1]);
    let copy = dir.path().join("copy");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::rename(&copy, &path).unwrap();
    let err = log.sealed_file_of(bases[1]).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { .. }), "{err:?}");
    assert!(!segment_files().contains(ids[1].1));
    log.close().await.unwrap();
}

#[tokio::test]
async fn retention_closes_cached_handles_and_a_racing_read_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = sealed_log(dir.path()).await;
    let bases = segment_bases(dir.path());
    assert_eq!(read_all(&log, 0), concat(&stored));
    let old = log.segment_file_ids();
    // A read that located offset 0 and opens its file only after retention deleted it.
    let got = log.read_racing(0, usize::MAX, || {
        let cut = log.advance_log_start(bases[2]).unwrap();
        assert_eq!(cut.deleted_segments(), 2);
    });
    assert!(
        matches!(got, Err(WalError::OffsetOutOfRange { .. })),
        "{got:?}"
    );
    assert!(old[..2]
        .iter()
        .all(|(_, id, _)| !segment_files().contains(*id)));
    let from = stored.iter().position(|s| s.base == bases[2]).unwrap();
    assert_eq!(read_all(&log, bases[2]), concat(&stored[from..]));
    log.close().await.unwrap();
}

#[tokio::test]
async fn truncation_into_a_sealed_segment_writes_through_its_own_handle() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = sealed_log(dir.path()).await;
    let bases = segment_bases(dir.path());
    assert_eq!(read_all(&log, 0), concat(&stored));
    let old = log.segment_file_ids();
    // Cut inside segment 1 (sealed, cached): it becomes the active segment again.
    let keep = stored
        .iter()
        .position(|s| s.base > bases[1] && s.base < bases[2])
        .unwrap();
    log.truncate_to(stored[keep].base).unwrap();
    let now = log.segment_file_ids();
    assert_eq!(now.len(), 2);
    assert!(
        now[1].2,
        "the cut segment writes through a handle of its own"
    );
    assert!(old[1..]
        .iter()
        .all(|(_, id, _)| !segment_files().contains(*id)));
    // New data lands in the cut file, and reads see it, never the old bytes past the cut.
    let more = append_many(&log, 5, 2);
    log.wait_committed(log.log_end_offset()).await.unwrap();
    let mut want = stored[..keep].to_vec();
    want.extend(more);
    assert_eq!(read_all(&log, 0), concat(&want));
    log.close().await.unwrap();
    let log = open(dir.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), concat(&want));
    log.close().await.unwrap();
}
