use std::io::Write;

use super::*;
use crate::batch::test_util::batch;
use crate::index::load_index_files;
use crate::segment::SegmentHeader;
use crate::WalError;

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[tokio::test]
async fn deleted_or_damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 60, 2);
    log.close().await.unwrap();
    let bases = segment_bases(dir.path());
    assert!(bases.len() >= 5);
    let read_index = |b: i64| {
        (
            std::fs::read(index_path(dir.path(), b, FileKind::OffsetIndex)).unwrap(),
            std::fs::read(index_path(dir.path(), b, FileKind::TimeIndex)).unwrap(),
        )
    };
    let originals: Vec<_> = bases.iter().map(|b| read_index(*b)).collect();

    std::fs::remove_file(index_path(dir.path(), bases[1], FileKind::OffsetIndex)).unwrap();
    std::fs::write(
        index_path(dir.path(), bases[2], FileKind::TimeIndex),
        b"garbage garbage garbage garbage garbage garbage garbage garbage",
    )
    .unwrap();
    let p = index_path(dir.path(), bases[3], FileKind::OffsetIndex);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&p, bytes).unwrap();
    std::fs::remove_file(index_path(dir.path(), bases[0], FileKind::TimeIndex)).unwrap();

    let log = open(dir.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), concat(&stored));
    for s in &stored {
        assert_eq!(
            log.read(s.last, 1, i64::MAX).unwrap().first_offset,
            Some(s.base)
        );
    }
    // Rebuilt files are valid and identical to what the log wrote originally.
    for (i, b) in bases.iter().enumerate().take(bases.len() - 1) {
        let size = std::fs::metadata(log_path(dir.path(), *b)).unwrap().len();
        load_index_files(&part_dir(dir.path()), PARTITION, *b, bases[i + 1], size).unwrap();
        assert_eq!(read_index(*b), originals[i], "segment {b}");
    }
    log.close().await.unwrap();
}

#[tokio::test]
async fn torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 10, 1);
    let end = log.log_end_offset();
    log.close().await.unwrap();
    let last = *segment_bases(dir.path()).last().unwrap();
    let path = log_path(dir.path(), last);
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A partial frame header, then a frame that claims more bytes than exist.
    let mut partial = batch(1, 50);
    partial.truncate(30);
    let mut tail = (100u32).to_le_bytes().to_vec();
    tail.extend_from_slice(&[1, 2, 3, 4]);
    tail.extend_from_slice(&partial);
    append_bytes(&path, &tail);

    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(read_all(&log, 0), concat(&stored));
    let more = append_many(&log, 1, 1);
    assert_eq!(more[0].base, end);
    log.close().await.unwrap();
}

#[tokio::test]
async fn corruption_in_a_middle_segment_deletes_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 40, 1);
    log.close().await.unwrap();
    let bases = segment_bases(dir.path());
    assert!(bases.len() >= 4);
    let victim = bases[1];
    // Damage the second frame of segment 1 and drop its index so it is scanned.
    let path = log_path(dir.path(), victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let first_frame_len = 8 + u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
    let second = 32 + first_frame_len;
    bytes[second + 8 + 30] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_file(index_path(dir.path(), victim, FileKind::OffsetIndex)).unwrap();

    let log = open(dir.path(), small_config()).await;
    // Segment 1 keeps only its first batch; later segments are gone.
    assert_eq!(log.log_end_offset(), victim + 1);
    assert_eq!(segment_bases(dir.path()), vec![bases[0], victim]);
    assert_eq!(log.segment_count(), 2);
    let kept: Vec<Stored> = stored
        .iter()
        .filter(|s| s.base <= victim)
        .cloned()
        .collect();
    assert_eq!(read_all(&log, 0), concat(&kept));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), second as u64);
    append_many(&log, 3, 1);
    log.close().await.unwrap();
}

#[tokio::test]
async fn damaged_segment_header_is_rewritten_and_frames_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 30, 1);
    log.close().await.unwrap();
    let bases = segment_bases(dir.path());
    // Damage the header of a middle segment and of the last one.
    for b in [bases[1], *bases.last().unwrap()] {
        let path = log_path(dir.path(), b);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0..8].copy_from_slice(b"XXXXXXXX");
        std::fs::write(&path, &bytes).unwrap();
    }
    let log = open(dir.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), concat(&stored));
    assert_eq!(segment_bases(dir.path()), bases);
    log.close().await.unwrap();
}

#[tokio::test]
async fn empty_and_garbage_segment_files_are_recovered_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 5, 1);
    let end = log.log_end_offset();
    log.close().await.unwrap();

    // A zero-length file where the next segment would go (crash right after creation).
    std::fs::write(log_path(dir.path(), end), b"").unwrap();
    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(read_all(&log, 0), concat(&stored));
    append_many(&log, 1, 1);
    log.close().await.unwrap();

    // A segment file full of garbage.
    let end = end + 1;
    let junk: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(log_path(dir.path(), end), junk).unwrap();
    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(
        std::fs::metadata(log_path(dir.path(), end)).unwrap().len(),
        crate::SEGMENT_HEADER_BYTES
    );
    append_many(&log, 1, 1);
    assert_eq!(log.log_end_offset(), end + 1);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_fresh_directory_with_only_garbage_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(part_dir(dir.path())).unwrap();
    std::fs::write(log_path(dir.path(), 0), vec![0xffu8; 3]).unwrap();
    let log = open(dir.path(), small_config()).await;
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    append_many(&log, 2, 1);
    log.close().await.unwrap();
}

#[tokio::test]
async fn misplaced_segment_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(part_dir(dir.path())).unwrap();
    let header = SegmentHeader::plain(7, 0);
    std::fs::write(log_path(dir.path(), 0), header.encode()).unwrap();
    let r = PartitionLog::open(dir.path(), TOPIC, PARTITION, small_config()).await;
    assert!(matches!(r, Err(WalError::Corrupt { .. })), "{:?}", r.err());
}

#[tokio::test]
async fn drop_without_close_keeps_written_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: crate::FsyncPolicy::Never,
        ..small_config()
    };
    let log = open(dir.path(), cfg.clone()).await;
    let stored = append_many(&log, 25, 1);
    drop(log);
    let log = open(dir.path(), cfg).await;
    assert_eq!(read_all(&log, 0), concat(&stored));
    log.close().await.unwrap();
}

#[tokio::test]
async fn unknown_and_orphan_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    append_many(&log, 3, 1);
    log.close().await.unwrap();
    let pd = part_dir(dir.path());
    std::fs::write(pd.join("README"), b"hello").unwrap();
    let orphan = index_path(dir.path(), 999, FileKind::OffsetIndex);
    std::fs::write(&orphan, b"x").unwrap();
    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_end_offset(), 3);
    assert!(!orphan.exists());
    assert!(pd.join("README").exists());
    log.close().await.unwrap();
}

#[tokio::test]
async fn stale_index_of_a_later_rolled_segment_is_not_trusted() {
    // Close writes the active segment's index; after reopening, more appends go into that same
    // segment and then it rolls. If the process dies before the roll's seal pass, the old index
    // (describing a shorter file) must not be trusted.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = open(dir.path(), cfg.clone()).await;
    let mut stored = append_many(&log, 5, 1);
    log.close().await.unwrap();
    let log = open(dir.path(), cfg.clone()).await;
    stored.extend(append_many(&log, 5, 1));
    drop(log);
    // Simulate the roll that crashed before its seal: a new, empty segment after the old one.
    let f =
        crate::segment::create_segment_file(&log_path(dir.path(), 10), SegmentHeader::plain(10, 0))
            .unwrap();
    drop(f);
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(read_all(&log, 0), concat(&stored));
    log.close().await.unwrap();
}

#[tokio::test]
async fn segment_of_an_unknown_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    append_many(&log, 3, 1);
    log.close().await.unwrap();
    let path = log_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..32].copy_from_slice(&crate::segment::tests::future_header(0));
    std::fs::write(&path, &bytes).unwrap();
    let r = PartitionLog::open(dir.path(), TOPIC, PARTITION, small_config()).await;
    assert!(matches!(r, Err(WalError::Corrupt { .. })), "{:?}", r.err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn preallocated_zeros_are_kept_ahead_and_trimmed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 4 << 20,
        ..small_config()
    };
    let log = open(dir.path(), cfg.clone()).await;
    let stored = append_many(&log, 50, 2);
    log.wait_committed(stored.last().unwrap().last + 1)
        .await
        .unwrap();
    let path = log_path(dir.path(), 0);
    let data_len = log.size_bytes();
    // A commit pass ran, so zeros now lie ahead of the data.
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert!(
        file_len >= data_len + crate::segment::prealloc_step(data_len) / 2,
        "file {file_len} data {data_len}"
    );
    // Crash: no close, so the zeros stay on disk.
    drop(log);
    let log = open(dir.path(), cfg.clone()).await;
    assert_eq!(read_all(&log, 0), concat(&stored));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), data_len);
    // Appends continue where the data ended, not after the zeros.
    let more = append_many(&log, 5, 1);
    assert_eq!(more[0].base, stored.last().unwrap().last + 1);
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(
        read_all(&log, 0),
        concat(&stored.iter().chain(&more).cloned().collect::<Vec<_>>())
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn zeros_after_a_sealed_segment_are_not_corruption() {
    // A crash after a roll but before the old segment was trimmed and indexed leaves zeros
    // after its last frame: recovery must keep it and every later segment.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 40, 1);
    log.close().await.unwrap();
    let bases = segment_bases(dir.path());
    assert!(bases.len() >= 4);
    let victim = bases[1];
    append_bytes(&log_path(dir.path(), victim), &[0u8; 3000]);
    std::fs::remove_file(index_path(dir.path(), victim, FileKind::OffsetIndex)).unwrap();

    let log = open(dir.path(), small_config()).await;
    assert_eq!(segment_bases(dir.path()), bases);
    assert_eq!(read_all(&log, 0), concat(&stored));
    log.close().await.unwrap();
}

#[tokio::test]
async fn zeros_with_any_other_byte_are_still_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 3, 1);
    log.close().await.unwrap();
    let path = log_path(dir.path(), 0);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut tail = vec![0u8; 500];
    tail[400] = 1;
    append_bytes(&path, &tail);
    let log = open(dir.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), concat(&stored));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    log.close().await.unwrap();
}

async fn open_clean(root: &Path, config: LogConfig) -> Arc<PartitionLog> {
    PartitionLog::open_after_clean_shutdown(root, TOPIC, PARTITION, config)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_clean_shutdown_is_trusted_without_a_scan_or_a_sync() {
    let root = tempfile::tempdir().unwrap();
    let log = open(root.path(), small_config()).await;
    let stored = append_many(&log, 30, 2);
    log.wait_committed(stored.last().unwrap().last + 1)
        .await
        .unwrap();
    log.close_deferred_sync().await.unwrap();
    crate::mark_clean_shutdown(root.path()).unwrap();
    assert!(crate::take_clean_shutdown(root.path()).unwrap());
    let log = open_clean(root.path(), small_config()).await;
    assert_eq!(log.fsync_count(), 0, "a trusted open syncs nothing");
    assert_eq!(read_all(&log, 0), concat(&stored));
    assert_eq!(log.log_end_offset(), stored.last().unwrap().last + 1);
    // It goes on as if it had never stopped, and recovers in full after a crash.
    let more = append_many(&log, 5, 2);
    log.wait_committed(more.last().unwrap().last + 1)
        .await
        .unwrap();
    drop(log);
    let log = open(root.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), [concat(&stored), concat(&more)].concat());
}

#[tokio::test]
async fn an_active_segment_that_changed_after_its_close_is_scanned_anyway() {
    let root = tempfile::tempdir().unwrap();
    let log = open(root.path(), small_config()).await;
    let stored = append_many(&log, 3, 2);
    log.close().await.unwrap();
    // Bytes past what the close indexed (a torn frame): the index no longer matches the file.
    let bases = segment_bases(root.path());
    append_bytes(&log_path(root.path(), *bases.last().unwrap()), &[7u8; 13]);
    let log = open_clean(root.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), concat(&stored));
    assert_eq!(log.log_end_offset(), stored.last().unwrap().last + 1);
}
