//! A real partition log cleaned by `clean::clean`: keys end at their latest value with their
//! offsets, tombstones go after their horizon, the map works in passes when small, and the
//! active segment is never touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chronik_cleaner::OffsetMap;
use chronik_wal::{FsyncPolicy, LogConfig, PartitionLog};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::clean::{clean, facts, CleanInput};

const NOW: i64 = 1_800_000_000_000;

fn batch(key: &str, value: Option<&str>, ts: i64) -> Vec<u8> {
    batch_of(key, value, ts, -1)
}

/// A batch of one record from `producer_id` (-1: none), sequence 0.
fn batch_of(key: &str, value: Option<&str>, ts: i64, producer_id: i64) -> Vec<u8> {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: if producer_id >= 0 { 0 } else { -1 },
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: if producer_id >= 0 { 0 } else { -1 },
        timestamp: ts,
        key: Some(Bytes::from(key.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: IndexMap::new(),
    };
    let mut out = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, &[record], &opts).unwrap();
    out.to_vec()
}

/// Every record of the log from its start: offset -> (key, value).
fn read_all(log: &PartitionLog) -> BTreeMap<i64, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
        if r.data.is_empty() {
            break;
        }
        let mut buf = r.data.clone();
        while !buf.is_empty() {
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            for rec in set.records {
                let k = String::from_utf8(rec.key.unwrap().to_vec()).unwrap();
                let v = rec.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                out.insert(rec.offset, (k, v));
                offset = rec.offset + 1;
            }
        }
    }
    out
}

async fn log_with(dir: &std::path::Path, versions: usize) -> Arc<PartitionLog> {
    let config = LogConfig {
        segment_bytes: 2048,
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir, "t", 0, config).await.unwrap();
    for v in 0..versions {
        for k in 0..10 {
            let value = format!("v{v}");
            // Key 9's last version is a tombstone.
            let value = (k != 9 || v + 1 < versions).then_some(value.as_str());
            let mut b = batch(&format!("k{k}"), value, NOW - 1000);
            let a = log.append(&mut b, 0).unwrap();
            log.wait_committed(a.last_offset + 1).await.unwrap();
        }
    }
    roll_and_wait_replaceable(&log).await;
    log
}

fn input(log: &PartitionLog, now_ms: i64) -> CleanInput<'static> {
    let segs = facts(&log.segments());
    CleanInput {
        first_dirty: 0,
        first_uncleanable: segs.iter().find(|s| s.is_active).unwrap().base_offset,
        high_watermark: i64::MAX,
        delete_retention_ms: 60_000,
        segment_bytes: 2048,
        max_decompressed_bytes: 1 << 20,
        now_ms,
        throttle: None,
        stop: None,
        markers_removed: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_values_keep_their_offsets_and_tombstones_expire() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 30).await;
    let before = read_all(&log);
    let (end, segments) = (log.log_end_offset(), log.segments().len());
    assert!(segments > 10, "{segments} segments");
    let size = |l: &PartitionLog| l.segments().iter().map(|s| s.size_bytes).sum::<u64>();
    let bytes = size(&log);
    let l = log.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut map = OffsetMap::new(1 << 20).unwrap();
        clean(&l, &input(&l, NOW), &mut map).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.cleaned_up_to, end);
    assert_eq!(out.passes, 1);
    assert_eq!(log.log_end_offset(), end);
    let after = read_all(&log);
    // One record per key, at the offset its latest version had; the tombstone stays.
    assert_eq!(after.len(), 10, "{after:?}");
    for (offset, (k, v)) in &after {
        assert_eq!(before.get(offset), Some(&(k.clone(), v.clone())));
        let last = before
            .iter()
            .filter(|(_, (bk, _))| bk == k)
            .map(|(o, _)| *o)
            .max();
        assert_eq!(Some(*offset), last, "{k}");
    }
    assert!(after.values().any(|(k, v)| k == "k9" && v.is_none()));
    assert!(size(&log) < bytes / 5, "{} of {bytes} bytes", size(&log));
    // Past the horizon a clean drops the tombstone.
    let l = log.clone();
    tokio::task::spawn_blocking(move || {
        let mut map = OffsetMap::new(1 << 20).unwrap();
        clean(&l, &input(&l, NOW + 120_000), &mut map).unwrap()
    })
    .await
    .unwrap();
    let last = read_all(&log);
    assert_eq!(last.len(), 9);
    // The second clean merged the small cleaned segments.
    assert!(log.segments().len() < segments, "{:?}", log.segments());
    assert!(last.values().all(|(k, _)| k != "k9"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_map_cleans_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 10).await;
    let before = read_all(&log);
    let l = log.clone();
    let out = tokio::task::spawn_blocking(move || {
        // Room for 4 keys of the 10: three passes.
        let mut map = OffsetMap::new(24 * 5).unwrap();
        clean(&l, &input(&l, NOW), &mut map).unwrap()
    })
    .await
    .unwrap();
    assert!(out.passes >= 3, "{out:?}");
    let after = read_all(&log);
    assert_eq!(after.len(), 10, "{after:?}");
    for (offset, rec) in &after {
        assert_eq!(before.get(offset), Some(rec));
    }
}

/// A producer's last batch stays (emptied) while the producer is active, and goes once it is
/// older than producer.id.expiration.ms.
#[tokio::test(flavor = "multi_thread")]
async fn a_producers_last_batch_stays_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), "t", 0, config)
        .await
        .unwrap();
    // Producer 7 writes k once (offset 0); keyless producers then supersede it.
    let mut first = batch_of("k", Some("old"), NOW - 1000, 7);
    log.append(&mut first, 0).unwrap();
    for v in 0..40 {
        let mut b = batch("k", Some(&format!("v{v}")), NOW - 1000);
        let a = log.append(&mut b, 0).unwrap();
        log.wait_committed(a.last_offset + 1).await.unwrap();
    }
    roll_and_wait_replaceable(&log).await;
    let first_batch = |l: &PartitionLog| {
        let r = l.read(0, 1 << 20, i64::MAX).unwrap();
        let h = chronik_wal::BatchHeader::parse(&r.data).unwrap();
        (h.base_offset, h.producer_id, h.records_count)
    };
    let run = |now: i64| {
        let l = log.clone();
        tokio::task::spawn_blocking(move || {
            let mut map = OffsetMap::new(1 << 20).unwrap();
            clean(&l, &input(&l, now), &mut map).unwrap()
        })
    };
    run(NOW).await.unwrap();
    // Its record is superseded, its batch stays as an empty header: its sequence survives.
    assert_eq!(first_batch(&log), (0, 7, 0));
    run(NOW + super::clean::PRODUCER_ID_EXPIRATION_MS)
        .await
        .unwrap();
    let (base, producer, _) = first_batch(&log);
    assert!(base > 0 && producer == -1, "{base} {producer}");
}

/// Rolls the active segment and waits (bounded) until every sealed segment is replaceable:
/// seals finish in the background.
async fn roll_and_wait_replaceable(log: &PartitionLog) {
    log.roll().unwrap();
    for _ in 0..200 {
        let segs = log.segments();
        if segs[..segs.len() - 1].iter().all(|s| s.replaceable) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("sealed segments never became replaceable");
}

/// A batch of `records` (key, value) from transactional producer `pid` at sequence `seq`.
fn txn_batch(records: &[(&str, &str)], pid: i64, seq: i32) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: NOW - 1000,
            key: Some(Bytes::from(k.to_string())),
            value: Some(Bytes::from(v.to_string())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut out = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, &records, &opts).unwrap();
    out.to_vec()
}

async fn open_partition(dir: &std::path::Path) -> Arc<crate::partition::Partition> {
    let config = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir, "t", 0, config).await.unwrap();
    let produce = crate::topic_config::ProduceConfig {
        policy: Default::default(),
        max_message_bytes: 1 << 20,
        min_insync_replicas: 1,
        compaction: None,
    };
    let p = crate::partition::Partition::open(log, 1, None, produce)
        .await
        .unwrap();
    p.replica.set_role(chronik_replication::Role::Leader {
        epoch: 0,
        isr: vec![1],
        min_isr: 1,
    });
    p
}

/// Transactions on a real partition: the aborted record goes, the committed one compacts by
/// key, nothing at or past the open transaction is touched (the clean's bound comes from the
/// log's own transactions, as on a follower), and the aborted index the partition answers with
/// stays what a rebuild from the cleaned log answers, also once the abort marker is removed.
#[tokio::test(flavor = "multi_thread")]
async fn transactions_are_cleaned_and_the_aborted_index_stays_truthful() {
    use crate::txn::{EndTxnMarker, MarkerType};
    let dir = tempfile::tempdir().unwrap();
    let p = open_partition(dir.path()).await;
    let marker = |pid, marker| EndTxnMarker {
        producer_id: pid,
        producer_epoch: 0,
        marker,
        coordinator_epoch: 0,
    };
    let append = |b: Vec<u8>| p.append(&b, 1 << 20, 0).unwrap().base_offset;
    assert_eq!(append(txn_batch(&[("a", "c1"), ("c", "c1")], 1, 0)), 0);
    assert_eq!(
        append(txn_batch(&[("a", "aborted"), ("c", "aborted")], 2, 0)),
        2
    );
    p.append_marker(&marker(2, MarkerType::Abort), 0).unwrap();
    p.append_marker(&marker(1, MarkerType::Commit), 0).unwrap();
    assert_eq!(append(batch("a", Some("plain"), NOW - 1000)), 6);
    p.log.roll().unwrap();
    assert_eq!(append(txn_batch(&[("a", "open")], 3, 0)), 7);
    append(batch("a", Some("after-open"), NOW - 1000));
    roll_and_wait_replaceable(&p.log).await;
    p.log.wait_committed(p.log.log_end_offset()).await.unwrap();
    p.replica.update_high_watermark();
    assert_eq!(p.last_stable_offset(), 7);
    let before = read_all(&p.log);
    let run = |now: i64| {
        let p = p.clone();
        tokio::task::spawn_blocking(move || {
            let forget = |offsets: &[i64]| p.forget_aborted_markers(offsets);
            let input = CleanInput {
                high_watermark: p.replica.high_watermark(),
                markers_removed: Some(&forget),
                ..input(&p.log, now)
            };
            let mut map = OffsetMap::new(1 << 20).unwrap();
            clean(&p.log, &input, &mut map).unwrap()
        })
    };
    let out = run(NOW).await.unwrap();
    assert_eq!(out.cleaned_up_to, 7, "bounded by the open transaction");
    assert_eq!(out.filter.aborted_removed, 2);
    let after = read_all(&p.log);
    let kept: Vec<_> = after
        .iter()
        .map(|(o, (k, v))| (*o, k.as_str(), v.as_deref()))
        .collect();
    const ABORT: &str = "\0\0\0\0";
    const COMMIT: &str = "\0\0\0\u{1}";
    const MARKER: Option<&str> = Some("\0\0\0\0\0\0");
    assert_eq!(
        kept,
        vec![
            (1, "c", Some("c1")),
            (4, ABORT, MARKER),
            (5, COMMIT, MARKER),
            (6, "a", Some("plain")),
            (7, "a", Some("open")),
            (8, "a", Some("after-open"))
        ]
    );
    assert_eq!(before.get(&7), after.get(&7));
    let reopened_answers = |dir: std::path::PathBuf| async move {
        let q = open_partition(&dir).await;
        q.replica.update_high_watermark();
        let answer = (q.aborted_transactions(0, 9), q.last_stable_offset());
        q.log.close().await.unwrap();
        answer
    };
    // Producer 2's emptied last batch (at 2) and its abort marker stay.
    assert_eq!(p.aborted_transactions(0, 9), vec![(2, 2)]);
    // Once the producers expired: the empty batch goes; then the marker gets its horizon; a
    // clean past it removes the marker, and the partition forgets the entry.
    let later = NOW + 2 * super::clean::PRODUCER_ID_EXPIRATION_MS;
    run(later).await.unwrap();
    run(later + 1).await.unwrap();
    assert_eq!(p.aborted_transactions(0, 9), vec![(2, 2)]);
    let out = run(later + 120_000).await.unwrap();
    assert_eq!(out.filter.markers_removed, 1, "{out:?}");
    assert_eq!(p.aborted_transactions(0, 9), vec![]);
    // The commit marker (5) stays: its transaction's record at 1 does.
    let mut without_abort = after.clone();
    without_abort.remove(&4);
    assert_eq!(read_all(&p.log), without_abort);
    let dir_path = dir.path().to_path_buf();
    p.log.close().await.unwrap();
    drop(p);
    assert_eq!(reopened_answers(dir_path).await, (vec![], 7));
}
