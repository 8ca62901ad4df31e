//! `advance_log_start`: the log start moves inside a segment, reads below it are refused,
//! whole segments below it go, and it survives a reopen.

use super::*;
use crate::WalError;

#[tokio::test]
async fn advance_log_start_moves_inside_a_segment_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let log = open(dir.path(), cfg.clone()).await;
    let stored = append_many(&log, 40, 2);
    let end = stored.last().unwrap().last + 1;
    log.wait_committed(end).await.unwrap();
    assert!(log.segment_count() > 3, "the test needs several segments");
    let bases_before = segment_bases(dir.path());

    // Beyond the committed offset: refused, nothing changes.
    assert!(matches!(
        log.advance_log_start(end + 1),
        Err(WalError::OffsetOutOfRange { .. })
    ));
    // Inside the third segment, not at a batch boundary (offset 1 of a 2-record batch).
    let target = bases_before[2] + 3;
    let out = log.advance_log_start(target).unwrap();
    assert_eq!(
        (out.log_start_offset, log.log_start_offset()),
        (target, target)
    );
    assert_eq!(out.deleted.len(), 2, "the two segments below it go");
    assert_eq!(segment_bases(dir.path())[0], bases_before[2]);
    // Reads below it are refused; at it, the batch containing it comes back whole.
    assert!(matches!(
        log.read(target - 1, usize::MAX, i64::MAX),
        Err(WalError::OffsetOutOfRange { .. })
    ));
    let r = log.read(target, usize::MAX, i64::MAX).unwrap();
    assert_eq!(r.first_offset, Some(target - 1));
    // A replica may still read from the first segment's base.
    let r = log
        .read_replica_async(bases_before[2], usize::MAX, i64::MAX)
        .await
        .unwrap();
    assert_eq!(r.first_offset, Some(bases_before[2]));
    // Never backwards, and retention keeps it where it is.
    assert_eq!(log.advance_log_start(1).unwrap().log_start_offset, target);
    assert_eq!(log.enforce_retention(0).unwrap().log_start_offset, target);
    log.close().await.unwrap();

    let log = open(dir.path(), cfg.clone()).await;
    assert_eq!(log.log_start_offset(), target);
    assert!(log.read(target - 1, 1, i64::MAX).is_err());
    // Up to the end: the active segment stays, everything before it goes.
    let out = log.advance_log_start(end).unwrap();
    assert_eq!(out.log_start_offset, end);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.read(end, 1, i64::MAX).unwrap().batches, 0);
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_between_checkpoint_and_deletion_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let log = open(dir.path(), cfg.clone()).await;
    let stored = append_many(&log, 30, 2);
    log.wait_committed(stored.last().unwrap().last + 1)
        .await
        .unwrap();
    log.close().await.unwrap();
    let bases = segment_bases(dir.path());
    // As if the checkpoint was written and the process died before deleting.
    std::fs::write(
        part_dir(dir.path()).join("log-start-offset-checkpoint"),
        format!("0\n{}\n", bases[1] + 1),
    )
    .unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_start_offset(), bases[1] + 1);
    assert_eq!(segment_bases(dir.path())[0], bases[1]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn reset_to_empties_the_log_and_starts_it_again_at_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let log = open(dir.path(), cfg.clone()).await;
    let stored = append_many(&log, 20, 2);
    log.wait_committed(stored.last().unwrap().last + 1)
        .await
        .unwrap();
    let start = 1000;
    log.reset_to(start).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.committed_offset()
        ),
        (start, start, start)
    );
    assert_eq!(segment_bases(dir.path()), vec![start]);
    // A replica appends its leader's batches from there on.
    let mut b = crate::batch::test_util::batch(3, 10);
    crate::set_base_offset(&mut b, start);
    let a = log.append_replica(&mut b).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (start, start + 2));
    log.wait_committed(start + 3).await.unwrap();
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (start, start + 3)
    );
    assert_eq!(log.read(start, usize::MAX, i64::MAX).unwrap().batches, 1);
    log.close().await.unwrap();
}

#[tokio::test]
async fn advance_log_start_syncs_first_under_an_interval_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: crate::FsyncPolicy::Interval(std::time::Duration::from_secs(3600)),
        ..small_config()
    };
    let log = open(dir.path(), cfg).await;
    let stored = append_many(&log, 10, 2);
    let end = stored.last().unwrap().last + 1;
    log.wait_committed(end).await.unwrap();
    let before = log.fsync_count();
    assert_eq!(log.advance_log_start(end).unwrap().log_start_offset, end);
    assert!(
        log.fsync_count() > before + 2,
        "the data was synced before the start moved"
    );
    log.close().await.unwrap();
}
