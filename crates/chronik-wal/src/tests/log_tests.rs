use std::time::Duration;

use super::*;
use crate::batch::test_util::{batch, batch_at, build, Spec};
use crate::batch::BatchHeader;
use crate::{BatchError, RetentionReason, WalError};

#[tokio::test]
async fn append_assigns_contiguous_offsets_and_patches_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.topic(), TOPIC);
    assert_eq!(log.partition(), PARTITION);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let mut b = batch(5, 30);
    let a = log.append(&mut b, 9).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 4));
    let h = BatchHeader::parse(&b).unwrap();
    assert_eq!(h.base_offset, 0);
    assert_eq!(h.partition_leader_epoch, 9);
    crate::verify_batch_crc(&b).unwrap();
    let mut b2 = batch(3, 0);
    let a2 = log.append(&mut b2, 9).unwrap();
    assert_eq!((a2.base_offset, a2.last_offset), (5, 7));
    assert_eq!(log.log_end_offset(), 8);
    log.wait_committed(8).await.unwrap();
    assert_eq!(log.committed_offset(), 8);
    let r = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(r.batches, 2);
    assert_eq!(r.first_offset, Some(0));
    let mut expect = b.clone();
    expect.extend_from_slice(&b2);
    assert_eq!(&r.data[..], &expect[..]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn append_rejects_invalid_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let mut bad_crc = batch(1, 10);
    bad_crc[70] ^= 0xff;
    assert!(matches!(
        log.append(&mut bad_crc, 0),
        Err(WalError::InvalidBatch(BatchError::CrcMismatch { .. }))
    ));
    let mut two = batch(1, 10);
    two.extend_from_slice(&batch(1, 10));
    assert!(matches!(
        log.append(&mut two, 0),
        Err(WalError::InvalidBatch(BatchError::TrailingBytes { .. }))
    ));
    let mut short = batch(1, 10);
    short.truncate(40);
    assert!(matches!(
        log.append(&mut short, 0),
        Err(WalError::InvalidBatch(_))
    ));
    let mut huge = build(Spec {
        payload_bytes: crate::MAX_FRAME_PAYLOAD_BYTES,
        ..Spec::default()
    });
    assert!(matches!(
        log.append(&mut huge, 0),
        Err(WalError::BatchTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    log.close().await.unwrap();
}

#[tokio::test]
async fn rotation_by_size_and_reads_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 60, 3);
    let end = stored.last().unwrap().last + 1;
    log.wait_committed(end).await.unwrap();
    assert!(log.segment_count() > 5, "segments: {}", log.segment_count());
    // Every segment file respects segment_bytes (each holds at least one batch).
    for base in segment_bases(dir.path()) {
        let len = std::fs::metadata(log_path(dir.path(), base)).unwrap().len();
        assert!(len <= 1024, "segment {base} is {len} bytes");
    }
    // A read at every offset starts with the batch containing it.
    for s in &stored {
        for off in s.base..=s.last {
            let r = log.read(off, 1, i64::MAX).unwrap();
            assert_eq!(r.first_offset, Some(s.base), "offset {off}");
            assert_eq!(r.batches, 1);
            assert_eq!(&r.data[..], &s.bytes[..]);
        }
    }
    assert_eq!(read_all(&log, 0), concat(&stored));
    // The active segment may carry preallocated zeros; a clean close trims them, so the
    // files then hold exactly the data.
    let size = log.size_bytes();
    log.close().await.unwrap();
    assert_eq!(
        size,
        segment_bases(dir.path())
            .iter()
            .map(|b| std::fs::metadata(log_path(dir.path(), *b)).unwrap().len())
            .sum::<u64>()
    );
}

#[tokio::test]
async fn oversized_batch_goes_into_an_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 100,
        ..small_config()
    };
    let log = open(dir.path(), cfg).await;
    let mut big = batch(1, 500);
    log.append(&mut big, 0).unwrap();
    assert_eq!(log.segment_count(), 1);
    let mut big2 = batch(1, 500);
    log.append(&mut big2, 0).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(read_all(&log, 0), [big, big2].concat());
    log.close().await.unwrap();
}

#[tokio::test]
async fn rotation_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 150,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = open(dir.path(), cfg).await;
    // An empty active segment never rolls, however old.
    tokio::time::sleep(Duration::from_millis(200)).await;
    append_many(&log, 3, 1);
    assert_eq!(log.segment_count(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    append_many(&log, 1, 1);
    assert_eq!(log.segment_count(), 2);
    append_many(&log, 1, 1);
    assert_eq!(log.segment_count(), 2);
    log.wait_committed(log.log_end_offset()).await.unwrap();
    log.close().await.unwrap();
}

#[tokio::test]
async fn read_limits_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 20, 2);
    let end = log.log_end_offset();
    // max_bytes smaller than the first batch still returns it.
    let r = log.read(0, 0, i64::MAX).unwrap();
    assert_eq!(r.batches, 1);
    // Stops before exceeding max_bytes.
    let budget = stored[0].bytes.len() + stored[1].bytes.len() + stored[2].bytes.len() - 1;
    let r = log.read(0, budget, i64::MAX).unwrap();
    assert_eq!(r.batches, 2);
    assert!(r.data.len() <= budget);
    // Never includes a batch whose last offset is >= max_offset_exclusive.
    let r = log.read(0, usize::MAX, stored[5].last).unwrap();
    assert_eq!(r.batches, 5);
    let r = log.read(0, usize::MAX, stored[5].last + 1).unwrap();
    assert_eq!(r.batches, 6);
    let r = log
        .read(stored[3].base, usize::MAX, stored[3].base)
        .unwrap();
    assert_eq!(r.batches, 0);
    // At log end: empty. Beyond: out of range.
    let r = log.read(end, 100, i64::MAX).unwrap();
    assert_eq!((r.batches, r.first_offset, r.data.len()), (0, None, 0));
    assert!(matches!(
        log.read(end + 1, 100, i64::MAX),
        Err(WalError::OffsetOutOfRange { requested, log_start: 0, log_end }) if requested == end + 1 && log_end == end
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX),
        Err(WalError::OffsetOutOfRange { .. })
    ));
    log.close().await.unwrap();
}

#[tokio::test]
async fn find_batch_by_timestamp_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    // Mostly increasing timestamps with some going backwards, across many segments.
    let mut stored = Vec::new();
    for i in 0..80i64 {
        let ts = 1_000 + i * 10 - if i % 7 == 3 { 45 } else { 0 };
        stored.push((
            ts,
            append_spec(
                &log,
                Spec {
                    payload_bytes: (i as usize * 13) % 90,
                    base_timestamp: ts - 1,
                    max_timestamp: ts,
                    ..Spec::default()
                },
            ),
        ));
    }
    assert!(log.segment_count() > 3);
    for q in (900..1_900).step_by(3) {
        let expect = stored
            .iter()
            .find(|(ts, _)| *ts >= q)
            .map(|(_, s)| s.bytes.clone());
        let got = log
            .find_batch_by_timestamp(q)
            .await
            .unwrap()
            .map(|b| b.to_vec());
        assert_eq!(got, expect, "ts {q}");
    }
    assert_eq!(log.find_batch_by_timestamp(i64::MAX).await.unwrap(), None);
    log.close().await.unwrap();
}

/// `scan_batches` hands over, byte for byte as stored, exactly the batches it is asked for
/// (across segments), and only headers for the others.
#[tokio::test]
async fn scan_batches_reads_only_the_selected_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 30, 4);
    assert!(log.segment_count() > 1, "the scan must cross segments");
    let mut bodies = Vec::new();
    let mut headers = 0;
    log.scan_batches(0, &|h| h.base_offset % 3 == 0, &mut |h, body| {
        headers += 1;
        if let Some(b) = body {
            bodies.push((h.base_offset, b.to_vec()));
        }
    })
    .unwrap();
    assert_eq!(headers, stored.len());
    let expect: Vec<(i64, Vec<u8>)> = stored
        .iter()
        .filter(|s| s.base % 3 == 0)
        .map(|s| (s.base, s.bytes.clone()))
        .collect();
    assert!(!expect.is_empty());
    assert_eq!(bodies, expect);
    log.close().await.unwrap();
}

#[tokio::test]
async fn scan_headers_from_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 30, 4);
    for from in [-5, 0, 1, 17, 40, stored[29].base, stored[29].last] {
        let mut seen = Vec::new();
        log.scan_headers(from, &mut |h| seen.push(h.base_offset))
            .unwrap();
        let expect: Vec<i64> = stored
            .iter()
            .filter(|s| s.last >= from)
            .map(|s| s.base)
            .collect();
        assert_eq!(seen, expect, "from {from}");
    }
    let mut n = 0;
    log.scan_headers(log.log_end_offset(), &mut |_| n += 1)
        .unwrap();
    assert_eq!(n, 0);
    log.close().await.unwrap();
}

#[tokio::test]
async fn retention_by_time_advances_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: Some(1_000),
        ..small_config()
    };
    let log = open(dir.path(), cfg).await;
    let mut stored = Vec::new();
    for i in 0..40i64 {
        stored.push(append_spec(
            &log,
            Spec {
                payload_bytes: 100,
                base_timestamp: i * 100,
                max_timestamp: i * 100,
                ..Spec::default()
            },
        ));
    }
    log.wait_committed(40).await.unwrap();
    let segs_before = log.segment_count();
    assert!(segs_before > 4);
    // now - retention = 1500: segments whose newest batch is < 1500 go.
    let out = log.enforce_retention(2_500).unwrap();
    assert!(out.deleted_segments() > 0);
    assert!(out
        .deleted
        .iter()
        .all(|d| d.reason == RetentionReason::Time));
    let first_kept = stored
        .iter()
        .find(|s| s.base == out.log_start_offset)
        .expect("log start is a batch boundary");
    assert_eq!(log.log_start_offset(), out.log_start_offset);
    // Every batch before the new start had ts < 1500, and the segment holding 1500 is kept.
    assert!(
        stored
            .iter()
            .filter(|s| s.base < out.log_start_offset)
            .count()
            <= 15
    );
    assert!(BatchHeader::parse(&first_kept.bytes).unwrap().max_timestamp <= 1_500);
    assert_eq!(log.segment_count(), segs_before - out.deleted_segments());
    assert_eq!(segment_bases(dir.path()).len(), log.segment_count());
    assert!(matches!(
        log.read(0, 100, i64::MAX),
        Err(WalError::OffsetOutOfRange { .. })
    ));
    let kept: Vec<Stored> = stored
        .iter()
        .filter(|s| s.base >= out.log_start_offset)
        .cloned()
        .collect();
    assert_eq!(read_all(&log, out.log_start_offset), concat(&kept));
    // Far in the future, everything but the active segment goes.
    let out = log.enforce_retention(1_000_000).unwrap();
    assert!(out.deleted_segments() > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        log.enforce_retention(1_000_000).unwrap().deleted_segments(),
        0
    );
    log.close().await.unwrap();
    // Reopen: the log start persists.
    let log2 = open(dir.path(), small_config()).await;
    assert_eq!(log2.log_start_offset(), out.log_start_offset);
    assert_eq!(log2.log_end_offset(), 40);
    log2.close().await.unwrap();
}

#[tokio::test]
async fn retention_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: Some(3_000),
        ..small_config()
    };
    let log = open(dir.path(), cfg).await;
    append_many(&log, 60, 1);
    log.wait_committed(60).await.unwrap();
    let before = log.size_bytes();
    assert!(before > 3_000);
    let out = log.enforce_retention(0).unwrap();
    assert!(out.deleted_segments() > 0);
    assert!(out
        .deleted
        .iter()
        .all(|d| d.reason == RetentionReason::Size));
    assert_eq!(log.size_bytes(), before - out.deleted_bytes());
    assert!(log.size_bytes() >= 3_000, "kept {}", log.size_bytes());
    // Deleting one more segment would go below the bound.
    let oldest = std::fs::metadata(log_path(dir.path(), log.log_start_offset()))
        .unwrap()
        .len();
    assert!(log.size_bytes() - oldest < 3_000);
    assert_eq!(log.log_start_offset(), out.log_start_offset);
    log.close().await.unwrap();
}

#[tokio::test]
async fn retention_never_deletes_uncommitted_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: Some(1),
        ..small_config()
    };
    let log = open(dir.path(), cfg).await;
    append_many(&log, 30, 1);
    // The commit task has not run yet on this current-thread runtime: nothing is committed.
    assert_eq!(log.committed_offset(), 0);
    assert_eq!(log.enforce_retention(0).unwrap().deleted_segments(), 0);
    log.wait_committed(30).await.unwrap();
    let out = log.enforce_retention(0).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(out.deleted_segments() > 0);
    log.close().await.unwrap();
}

#[tokio::test]
async fn seal_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    append_many(&log, 2, 1);
    log.seal();
    assert!(log.is_sealed());
    let mut b = batch(1, 1);
    assert!(matches!(
        log.append(&mut b, 0),
        Err(WalError::Sealed { partition: 0, .. })
    ));
    // Reads still work while sealed.
    assert_eq!(log.read(0, 1000, i64::MAX).unwrap().batches, 2);
    log.resume();
    assert!(!log.is_sealed());
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, 2);
    log.close().await.unwrap();
}

#[tokio::test]
async fn truncate_to_batch_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 40, 2);
    log.wait_committed(80).await.unwrap();
    let segs = log.segment_count();
    assert!(segs > 3);
    // Inside a batch: refused, nothing changes.
    assert!(matches!(
        log.truncate_to(stored[30].base + 1),
        Err(WalError::NotBatchBoundary { .. })
    ));
    assert!(matches!(
        log.truncate_to(81),
        Err(WalError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.log_end_offset(), 80);
    // Within the active segment.
    log.truncate_to(stored[38].base).unwrap();
    assert_eq!(log.log_end_offset(), stored[38].base);
    assert_eq!(log.committed_offset(), stored[38].base);
    // Across segments, onto a segment's interior boundary.
    log.truncate_to(stored[11].base).unwrap();
    assert_eq!(log.log_end_offset(), stored[11].base);
    assert!(log.segment_count() < segs);
    assert_eq!(segment_bases(dir.path()).len(), log.segment_count());
    assert_eq!(read_all(&log, 0), concat(&stored[..11]));
    // Appends continue from the new end and are readable.
    let more = append_many(&log, 5, 2);
    assert_eq!(more[0].base, stored[11].base);
    log.wait_committed(log.log_end_offset()).await.unwrap();
    let mut expect = stored[..11].to_vec();
    expect.extend(more.iter().cloned());
    assert_eq!(read_all(&log, 0), concat(&expect));
    // Truncating to a segment base keeps that segment as the (empty) active one.
    let base2 = segment_bases(dir.path())[1];
    log.truncate_to(base2).unwrap();
    assert_eq!(log.log_end_offset(), base2);
    assert_eq!(log.segment_count(), 2);
    log.truncate_to(0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.read(0, 100, i64::MAX).unwrap().batches, 0);
    log.close().await.unwrap();
    // The truncation is durable.
    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_end_offset(), 0);
    log.close().await.unwrap();
}

#[tokio::test]
async fn close_and_reopen_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 50, 3);
    let (start, end, size, count) = (
        log.log_start_offset(),
        log.log_end_offset(),
        log.size_bytes(),
        log.segment_count(),
    );
    let ts = log.find_batch_by_timestamp(0).await.unwrap();
    log.close().await.unwrap();
    log.close().await.unwrap(); // idempotent
    let mut b = batch(1, 1);
    assert!(matches!(log.append(&mut b, 0), Err(WalError::Closed)));
    assert!(matches!(
        log.wait_committed(end + 1).await,
        Err(WalError::Closed)
    ));
    assert!(log.wait_committed(end).await.is_ok());
    drop(log);
    // Every segment, the active one included, has valid index files after close.
    for base in segment_bases(dir.path()) {
        for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
            assert!(
                index_path(dir.path(), base, kind).exists(),
                "{base} {kind:?}"
            );
        }
    }

    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.committed_offset(), end);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.segment_count(), count);
    assert_eq!(read_all(&log, 0), concat(&stored));
    assert_eq!(log.find_batch_by_timestamp(0).await.unwrap(), ts);
    for s in stored.iter().step_by(7) {
        assert_eq!(
            log.read(s.last, 1, i64::MAX).unwrap().first_offset,
            Some(s.base)
        );
    }
    let more = append_many(&log, 3, 1);
    assert_eq!(more[0].base, end);
    log.close().await.unwrap();
}

#[tokio::test]
async fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    append_many(&log, 10, 1);
    log.delete().await.unwrap();
    assert!(!part_dir(dir.path()).exists());
    assert!(!dir.path().join(TOPIC).exists());
    assert!(matches!(log.read(0, 10, i64::MAX), Err(WalError::Closed)));
    log.delete().await.unwrap();
}

#[tokio::test]
async fn set_config_applies_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    append_many(&log, 10, 1);
    assert_eq!(log.segment_count(), 1);
    log.set_config(small_config());
    assert_eq!(log.config(), small_config());
    append_many(&log, 20, 1);
    assert!(log.segment_count() > 1);
    // Invalid configs are refused and the old one stays.
    let bad = LogConfig {
        segment_bytes: 0,
        ..small_config()
    };
    assert!(log.try_set_config(bad.clone()).is_err());
    log.set_config(bad);
    assert_eq!(log.config(), small_config());
    log.close().await.unwrap();
}

#[tokio::test]
async fn invalid_names_and_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for topic in ["", ".", "..", "a/b", "a b"] {
        assert!(matches!(
            PartitionLog::open(dir.path(), topic, 0, LogConfig::default()).await,
            Err(WalError::InvalidConfig(_))
        ));
    }
    assert!(
        PartitionLog::open(dir.path(), "t", -1, LogConfig::default())
            .await
            .is_err()
    );
    let bad = LogConfig {
        segment_bytes: 0,
        ..LogConfig::default()
    };
    assert!(PartitionLog::open(dir.path(), "t", 0, bad).await.is_err());
}

#[tokio::test]
async fn timestamps_of_a_batch_written_at_time() {
    // find_batch_by_timestamp returns the whole batch so the caller can pick the record.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let mut a = batch_at(100, 10);
    let mut b = batch_at(200, 10);
    log.append(&mut a, 0).unwrap();
    log.append(&mut b, 0).unwrap();
    assert_eq!(
        log.find_batch_by_timestamp(150)
            .await
            .unwrap()
            .unwrap()
            .to_vec(),
        b
    );
    assert_eq!(
        log.find_batch_by_timestamp(100)
            .await
            .unwrap()
            .unwrap()
            .to_vec(),
        a
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn roll_starts_a_segment_that_the_front_can_be_cut_at() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = open(dir.path(), cfg.clone()).await;
    let first = append_many(&log, 10, 2);
    log.roll().unwrap();
    let second = append_many(&log, 5, 1);
    let end = second.last().unwrap().last + 1;
    log.wait_committed(end).await.unwrap();
    assert_eq!(log.segment_count(), 2);
    // Rolling an empty active segment does nothing.
    log.roll().unwrap();
    log.roll().unwrap();
    assert!(log.segment_count() <= 3);

    let boundary = second[0].base;
    let out = log.advance_log_start(boundary).unwrap();
    assert_eq!(out.deleted.len(), 1);
    assert_eq!(out.log_start_offset, boundary);
    assert_eq!(log.log_start_offset(), boundary);
    assert_eq!(read_all(&log, boundary), concat(&second));
    assert!(first.iter().all(|s| s.last < boundary));
    log.close().await.unwrap();
    // The deletion is durable and the rest reopens intact.
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_start_offset(), boundary);
    assert_eq!(read_all(&log, boundary), concat(&second));
    log.close().await.unwrap();
}

/// `read_async` returns what `read` returns, whether it reads inline (the active segment's
/// cached end) or on the blocking pool (sealed segments), across segment boundaries, and with
/// more reads than cold-read slots in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_async_matches_read_inline_and_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 60, 2);
    log.wait_committed(log.log_end_offset()).await.unwrap();
    assert!(
        log.segment_count() > 3,
        "tiny segments: most data is sealed"
    );
    let end = log.log_end_offset();
    let mut reads = Vec::new();
    for b in stored.iter().step_by(3) {
        for max_bytes in [1, 300, usize::MAX] {
            let log = log.clone();
            let from = b.base;
            reads.push(tokio::spawn(async move {
                let got = log.read_async(from, max_bytes, end).await.unwrap();
                (got, log.read(from, max_bytes, end).unwrap())
            }));
        }
    }
    assert!(reads.len() > crate::MAX_COLD_READS);
    for r in reads {
        let (got, want) = r.await.unwrap();
        assert!(got.batches > 0);
        assert_eq!(got, want);
    }
    assert_eq!(
        log.read_async(end, 100, i64::MAX).await.unwrap(),
        crate::ReadResult::default()
    );
    assert!(matches!(
        log.read_async(end + 1, 100, i64::MAX).await,
        Err(WalError::OffsetOutOfRange { .. })
    ));
    log.close().await.unwrap();
}

/// `take_rewritten_from` reports the lowest offset the log was cut back to since the last
/// take: at first its log end at open, then truncations and resets, once each.
#[tokio::test]
async fn the_lowest_cut_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let log = open(dir.path(), cfg.clone()).await;
    assert_eq!(
        log.take_rewritten_from(),
        Some(0),
        "a new log: its end at open"
    );
    assert_eq!(log.take_rewritten_from(), None);
    let stored = append_many(&log, 20, 2);
    let end = stored.last().unwrap().last + 1;
    log.wait_committed(end).await.unwrap();
    assert_eq!(log.take_rewritten_from(), None, "appends are not cuts");
    log.truncate_to(stored[15].base).unwrap();
    log.truncate_to(stored[5].base).unwrap();
    append_many(&log, 3, 2);
    assert_eq!(
        log.take_rewritten_from(),
        Some(stored[5].base),
        "the lowest of two cuts"
    );
    assert_eq!(log.take_rewritten_from(), None);
    let reopened_end = log.log_end_offset();
    log.wait_committed(reopened_end).await.unwrap();
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(
        log.take_rewritten_from(),
        Some(reopened_end),
        "its end at open"
    );
    log.reset_to(100).unwrap();
    assert_eq!(log.take_rewritten_from(), Some(100));
    log.close().await.unwrap();
}
