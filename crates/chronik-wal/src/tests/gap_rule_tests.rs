//! Which gaps a log accepts: only those a cleaned segment's own header vouches for. A plain
//! segment whose batches end before the next segment's base lost an unsynced tail in a crash
//! (recovery deletes every later segment, so the log stays contiguous); a gap inside a plain
//! segment is corruption.

use super::*;
use crate::index::{write_index_files, IndexMeta, SegmentIndex};
use crate::WalError;

/// Where the torn segment's index files stand when the log reopens.
#[derive(Debug, Clone, Copy)]
enum IndexState {
    /// As the seal wrote them (they describe the uncut file).
    Stale,
    Removed,
    /// Valid files that name the missing tail as a gap (as a compacted segment's would).
    ClaimingAGap,
}

/// Appends until at least three segments are sealed, waits for their seals, closes.
async fn three_sealed(root: &Path) -> (Vec<Stored>, Vec<i64>) {
    let (log, stored) = with_sealed_segments(root).await;
    log.close().await.unwrap();
    (stored, segment_bases(root))
}

#[tokio::test]
async fn a_torn_tail_of_a_plain_sealed_segment_deletes_every_later_segment() {
    for state in [
        IndexState::Stale,
        IndexState::Removed,
        IndexState::ClaimingAGap,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (stored, bases) = three_sealed(dir.path()).await;
        // Segment 1 loses its last two batches, whole frames, as a crash loses unsynced
        // appends; segments 2.. stay on disk (the commit pass synced them first).
        let in_seg1: Vec<&Stored> = stored
            .iter()
            .filter(|s| (bases[1]..bases[2]).contains(&s.base))
            .collect();
        assert!(in_seg1.len() > 2, "{state:?}");
        let lost = &in_seg1[in_seg1.len() - 2..];
        let path = log_path(dir.path(), bases[1]);
        let len = std::fs::metadata(&path).unwrap().len();
        let cut: u64 = lost.iter().map(|s| 8 + s.bytes.len() as u64).sum();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - cut).unwrap();
        drop(file);
        let batches_end = lost[0].base;
        match state {
            IndexState::Stale => {}
            IndexState::Removed => {
                for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
                    std::fs::remove_file(index_path(dir.path(), bases[1], kind)).unwrap();
                }
            }
            IndexState::ClaimingAGap => {
                let meta = IndexMeta {
                    base_offset: bases[1],
                    next_offset: bases[2],
                    batches_end,
                    segment_bytes: len - cut,
                    max_timestamp: i64::MIN,
                };
                write_index_files(
                    &part_dir(dir.path()),
                    PARTITION,
                    &meta,
                    &SegmentIndex::default(),
                )
                .unwrap();
            }
        }

        let log = open(dir.path(), small_config()).await;
        assert_eq!(segment_bases(dir.path()), bases[..2].to_vec(), "{state:?}");
        assert_eq!(log.log_end_offset(), batches_end, "{state:?}");
        let kept: Vec<Stored> = stored
            .iter()
            .filter(|s| s.base < batches_end)
            .cloned()
            .collect();
        assert_eq!(read_all(&log, 0), concat(&kept), "{state:?}");
        // The log goes on from the end of what survived, without a hole.
        let a = log
            .append(&mut crate::batch::test_util::batch(1, 10), 3)
            .unwrap();
        assert_eq!(a.base_offset, batches_end, "{state:?}");
        log.close().await.unwrap();
    }
}

/// A sealed segment 0 holding offsets 0..=2 and 6..=8 (a gap of three) with a valid index, and
/// an empty segment 9 after it: the log opens without scanning segment 0.
fn segment_with_a_gap(root: &Path, cleaned_to: Option<i64>) {
    use crate::segment::{create_segment_file, frame_header, write_frame, SegmentHeader};
    std::fs::create_dir_all(part_dir(root)).unwrap();
    let header = SegmentHeader {
        base_offset: 0,
        created_ms: 0,
        cleaned_to,
    };
    let file = create_segment_file(&log_path(root, 0), header).unwrap();
    for base in [0, 6] {
        let mut b = crate::batch::test_util::batch(3, 20);
        crate::set_base_offset(&mut b, base);
        write_frame(&file, &frame_header(&b), &b).unwrap();
    }
    file.sync_all().unwrap();
    let meta = IndexMeta {
        base_offset: 0,
        next_offset: 9,
        batches_end: 9,
        segment_bytes: file.metadata().unwrap().len(),
        max_timestamp: i64::MIN,
    };
    write_index_files(&part_dir(root), PARTITION, &meta, &SegmentIndex::default()).unwrap();
    drop(create_segment_file(&log_path(root, 9), SegmentHeader::plain(9, 0)).unwrap());
}

#[tokio::test]
async fn a_walk_through_a_gap_inside_a_plain_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    segment_with_a_gap(dir.path(), None);
    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_end_offset(), 9);
    let r = log.read(0, usize::MAX, i64::MAX);
    match r {
        Err(WalError::Corrupt { reason, .. }) => {
            assert!(
                reason.contains("expected base offset 3, found 6"),
                "{reason}"
            )
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let r = log.scan_headers(0, &mut |_| {});
    assert!(matches!(r, Err(WalError::Corrupt { .. })), "{r:?}");
    log.close().await.unwrap();

    // The same file with a cleaned segment's header reads both batches.
    let dir = tempfile::tempdir().unwrap();
    segment_with_a_gap(dir.path(), Some(9));
    let log = open(dir.path(), small_config()).await;
    let r = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!((r.batches, r.first_offset), (2, Some(0)));
    let mut seen = Vec::new();
    log.scan_headers(0, &mut |h| seen.push(h.base_offset))
        .unwrap();
    assert_eq!(seen, [0, 6]);
    log.close().await.unwrap();
}
