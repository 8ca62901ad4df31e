use std::time::Duration;

use super::*;
use crate::batch::test_util::batch;
use crate::WalError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fdatasyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let before = log.fsync_count();
    const PRODUCERS: usize = 64;
    const PER_PRODUCER: usize = 40;
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..PER_PRODUCER {
                let mut b = batch(2, 20 + (p + i) % 50);
                let a = log.append(&mut b, 1).unwrap();
                log.wait_committed(a.last_offset + 1).await.unwrap();
                assert!(log.committed_offset() > a.last_offset);
                offsets.push(a.base_offset);
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let appends = (PRODUCERS * PER_PRODUCER) as u64;
    all.sort();
    all.dedup();
    assert_eq!(all.len() as u64, appends, "offsets are unique");
    assert_eq!(log.log_end_offset(), 2 * appends as i64);
    assert_eq!(log.committed_offset(), log.log_end_offset());
    let syncs = log.fsync_count() - before;
    eprintln!("group commit: {syncs} fdatasyncs for {appends} appends");
    assert!(
        syncs * 10 < appends,
        "{syncs} fdatasyncs for {appends} appends"
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn always_policy_commits_only_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let mut rx = log.subscribe();
    let before = log.fsync_count();
    let a = append_many(&log, 1, 1).remove(0);
    // Nothing has run the commit task yet on this current-thread runtime.
    assert_eq!(log.committed_offset(), 0);
    log.wait_committed(a.last + 1).await.unwrap();
    assert!(log.fsync_count() > before);
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), 1);
    log.close().await.unwrap();
}

#[tokio::test]
async fn never_and_interval_commit_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = open(dir.path(), cfg.clone()).await;
    let before = log.fsync_count();
    append_many(&log, 20, 1);
    assert_eq!(log.committed_offset(), 20);
    log.wait_committed(20).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(log.fsync_count(), before, "never policy does not sync");
    log.close().await.unwrap();
    assert!(log.fsync_count() > before, "close syncs");

    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Interval(Duration::from_millis(10)),
        ..cfg
    };
    let log = open(dir.path(), cfg).await;
    let before = log.fsync_count();
    append_many(&log, 5, 1);
    assert_eq!(log.committed_offset(), 5);
    let mut waited_ms = 0;
    while log.fsync_count() == before {
        assert!(waited_ms < 5_000, "interval policy never synced dirty data");
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited_ms += 5;
    }
    let after = log.fsync_count();
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(log.fsync_count(), after, "no sync when clean");
    log.close().await.unwrap();
}

#[tokio::test]
async fn rotation_syncs_and_indexes_old_segment_under_never() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Never,
        ..small_config()
    };
    let log = open(dir.path(), cfg).await;
    append_many(&log, 30, 1);
    let bases = segment_bases(dir.path());
    assert!(bases.len() > 2);
    // Let the commit task seal the rolled segments.
    for _ in 0..200 {
        if bases[..bases.len() - 1]
            .iter()
            .all(|b| index_path(dir.path(), *b, FileKind::TimeIndex).exists())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (i, b) in bases.iter().enumerate().take(bases.len() - 1) {
        let size = std::fs::metadata(log_path(dir.path(), *b)).unwrap().len();
        crate::index::load_index_files(&part_dir(dir.path()), PARTITION, *b, bases[i + 1], size)
            .unwrap();
    }
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_failure_poisons_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let first = append_many(&log, 1, 1).remove(0);
    log.wait_committed(first.last + 1).await.unwrap();

    log.hold_heal(true);
    log.inject_sync_failure();
    let mut b = batch(1, 10);
    let a = log.append(&mut b, 0).unwrap();
    let r = log.wait_committed(a.last_offset + 1).await;
    assert!(matches!(r, Err(WalError::Failed(_))), "{r:?}");
    assert_eq!(
        log.committed_offset(),
        first.last + 1,
        "unsynced data never committed"
    );
    let mut b = batch(1, 10);
    assert!(matches!(log.append(&mut b, 0), Err(WalError::Failed(_))));
    assert!(matches!(
        log.wait_committed(100).await,
        Err(WalError::Failed(_))
    ));
    // Offsets committed before the failure stay committed.
    log.wait_committed(first.last + 1).await.unwrap();
    assert!(matches!(log.truncate_to(0), Err(WalError::Failed(_))));
    assert!(matches!(log.close().await, Err(WalError::Failed(_))));

    // Reopening recovers: the data written before the failure is still there.
    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.log_end_offset(), 2);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_partition_heals_back_to_its_synced_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let first = append_many(&log, 1, 3).remove(0);
    log.wait_committed(first.last + 1).await.unwrap();

    log.hold_heal(true);
    log.inject_sync_failure();
    let mut b = batch(3, 10);
    let lost = log.append(&mut b, 0).unwrap();
    assert!(log
        .wait_appended(lost.last_offset + 1, lost.generation)
        .await
        .is_err());
    assert!(log.failure().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(log.failure().is_some(), "held heals must not reopen");
    assert_eq!(log.generation(), 0);

    log.hold_heal(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.failure().is_some() {
        assert!(std::time::Instant::now() < deadline, "never healed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.generation(), 1);
    assert_eq!(
        log.log_end_offset(),
        first.last + 1,
        "cut to the synced end"
    );
    assert_eq!(log.committed_offset(), first.last + 1);

    // New data refills the lost batch's offsets; the lost batch's wait still fails.
    let mut b = batch(3, 10);
    let refill = log.append(&mut b, 0).unwrap();
    assert_eq!(refill.base_offset, lost.base_offset);
    log.wait_appended(refill.last_offset + 1, refill.generation)
        .await
        .unwrap();
    assert!(log
        .wait_appended(lost.last_offset + 1, lost.generation)
        .await
        .is_err());
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(r.records, 6);
    log.close().await.unwrap();

    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.log_end_offset(), refill.last_offset + 1);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_completes_queued_appends_and_releases_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    let stored = append_many(&log, 30, 1);
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_committed(30).await })
    };
    let stuck = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_committed(1_000).await })
    };
    log.close().await.unwrap();
    assert_eq!(log.committed_offset(), 30);
    waiter.await.unwrap().unwrap();
    assert!(matches!(stuck.await.unwrap(), Err(WalError::Closed)));
    let log = open(dir.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), concat(&stored));
    log.close().await.unwrap();
}

#[tokio::test]
async fn switching_policy_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config()).await;
    append_many(&log, 3, 1);
    assert_eq!(log.committed_offset(), 0);
    log.set_config(LogConfig {
        fsync: FsyncPolicy::Never,
        ..small_config()
    });
    assert_eq!(log.committed_offset(), 3);
    log.set_config(small_config());
    append_many(&log, 1, 1);
    log.wait_committed(4).await.unwrap();
    log.close().await.unwrap();
}

/// Polls `f` until it holds or the deadline passes (commit passes run on the blocking pool and
/// write zeros after they publish).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn zeros_follow_small_passes_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config_with(8 << 20)).await;
    let path = log_path(dir.path(), 0);
    let file_len = || std::fs::metadata(&path).unwrap().len();
    // One pass that syncs more than PREALLOC_MAX_PASS_BYTES: no zeros after it.
    let mut big = batch(1, 2 * crate::segment::PREALLOC_MAX_PASS_BYTES as usize);
    let a = log.append(&mut big, 1).unwrap();
    log.wait_committed(a.last_offset + 1).await.unwrap();
    // A small pass afterwards: zeros appear ahead of the data.
    let small = append_many(&log, 1, 1).remove(0);
    log.wait_committed(small.last + 1).await.unwrap();
    let data = log.size_bytes();
    eventually("zeros after the small pass", || {
        file_len() >= data + crate::segment::prealloc_step(data) / 2
    })
    .await;
    log.close().await.unwrap();
    assert_eq!(file_len(), data, "close trims the zeros");

    // The big pass alone left the file exactly its data.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config_with(8 << 20)).await;
    let path = log_path(dir.path(), 0);
    let mut big = batch(1, 2 * crate::segment::PREALLOC_MAX_PASS_BYTES as usize);
    let a = log.append(&mut big, 1).unwrap();
    log.wait_committed(a.last_offset + 1).await.unwrap();
    // Give a (wrong) preallocation the time it would take, then check none happened.
    let data = log.size_bytes();
    let deadline = std::time::Instant::now() + Duration::from_millis(200);
    while std::time::Instant::now() < deadline {
        assert_eq!(std::fs::metadata(&path).unwrap().len(), data);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    log.close().await.unwrap();
}

fn small_config_with(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        ..small_config()
    }
}

#[tokio::test]
async fn synced_data_far_behind_the_end_leaves_the_page_cache_and_reads_back() {
    use crate::segment::{CACHE_DROP_STEP_BYTES, CACHE_KEEP_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config_with(1 << 30)).await;
    let mut stored = Vec::new();
    let mut last = 0;
    while log.size_bytes() < CACHE_KEEP_BYTES + 2 * CACHE_DROP_STEP_BYTES {
        let mut b = batch(4, 64 * 1024);
        let a = log.append(&mut b, 1).unwrap();
        last = a.last_offset;
        stored.push(Stored {
            base: a.base_offset,
            last: a.last_offset,
            bytes: b,
        });
    }
    log.wait_committed(last + 1).await.unwrap();
    // One more pass, so the drop runs after a sync that covers everything above.
    let more = append_many(&log, 1, 1);
    log.wait_committed(more[0].last + 1).await.unwrap();
    let dropped = log.active_cache_dropped_to();
    assert!(
        dropped >= CACHE_DROP_STEP_BYTES && dropped + CACHE_KEEP_BYTES <= log.size_bytes(),
        "dropped to {dropped} of {}",
        log.size_bytes()
    );
    stored.extend(more);
    assert_eq!(read_all(&log, 0), concat(&stored));
    log.close().await.unwrap();
}

#[test]
fn zero_steps_grow_with_the_data() {
    use crate::segment::{prealloc_step, PREALLOC_MIN_STEP_BYTES, PREALLOC_STEP_BYTES};
    assert_eq!(prealloc_step(0), PREALLOC_MIN_STEP_BYTES);
    assert_eq!(prealloc_step(300), PREALLOC_MIN_STEP_BYTES);
    assert_eq!(prealloc_step(5_000), 8 * 1024);
    assert_eq!(prealloc_step(100_000), 128 * 1024);
    assert_eq!(prealloc_step(10 << 20), PREALLOC_STEP_BYTES);
}

#[tokio::test]
async fn a_partition_with_one_small_message_writes_few_zeros() {
    // 10,000 such partitions wrote 512 KiB of zeros each before their first acknowledgement.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config_with(8 << 20)).await;
    let path = log_path(dir.path(), 0);
    let one = append_many(&log, 1, 1).remove(0);
    log.wait_committed(one.last + 1).await.unwrap();
    let data = log.size_bytes();
    eventually("zeros ahead of the first message", || {
        std::fs::metadata(&path).unwrap().len() > data
    })
    .await;
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(
        len <= data + 8 * 1024,
        "file {len} for {data} bytes of data"
    );
    log.close().await.unwrap();
}

/// Many partitions syncing at once share `syncfs` rounds instead of one fdatasync each, and
/// every append is still committed only once durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_share_sync_rounds() {
    let dir = tempfile::tempdir().unwrap();
    const PARTITIONS: i32 = 48;
    let mut logs = Vec::new();
    for p in 0..PARTITIONS {
        logs.push(
            PartitionLog::open(dir.path(), TOPIC, p, LogConfig::default())
                .await
                .unwrap(),
        );
    }
    let rounds = crate::sync_rounds::SyncRounds::for_root(dir.path()).unwrap();
    let before = rounds.rounds_ended();
    let tasks: Vec<_> = logs
        .iter()
        .map(|log| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let a = log.append(&mut batch(1, 10 + i), 1).unwrap();
                    log.wait_committed(a.last_offset + 1).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for log in &logs {
        assert_eq!(log.committed_offset(), 20);
        log.close().await.unwrap();
    }
    assert!(
        rounds.rounds_ended() > before,
        "no sync round ran for {PARTITIONS} partitions syncing at once"
    );
}
