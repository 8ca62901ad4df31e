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
