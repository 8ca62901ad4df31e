//! The replay that rebuilds committed offsets, against a real partition log on disk: what a
//! restarted (or newly leading) coordinator sees is exactly what was committed, last write
//! wins, tombstones delete, and a damaged record costs only itself.

use bytes::{BufMut, Bytes, BytesMut};
use chronik_groups::{encode_offsets_batch, encode_raw_batch, OffsetKey, OffsetStore, OffsetValue};
use chronik_wal::{LogConfig, PartitionLog};

fn key(group: &str, topic: &str, partition: i32) -> OffsetKey {
    OffsetKey {
        group: group.into(),
        topic: topic.into(),
        partition,
    }
}

fn value(offset: i64, metadata: &str) -> OffsetValue {
    OffsetValue {
        offset,
        leader_epoch: 2,
        metadata: metadata.into(),
        commit_timestamp_ms: 1_000,
    }
}

/// A batch of raw (key, value) records, for tombstones and damaged records.
fn raw_batch(records: &[(&[u8], Option<&[u8]>)]) -> BytesMut {
    let raw: Vec<(Bytes, Option<Bytes>)> = records
        .iter()
        .map(|(k, v)| (Bytes::copy_from_slice(k), v.map(Bytes::copy_from_slice)))
        .collect();
    encode_raw_batch(&raw, 1).unwrap()
}

async fn append(log: &PartitionLog, mut batch: BytesMut) {
    let a = log.append(&mut batch, 0).unwrap();
    log.wait_committed(a.last_offset + 1).await.unwrap();
}

#[tokio::test]
async fn replay_rebuilds_exactly_what_the_log_says() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), "__consumer_offsets", 3, LogConfig::default())
        .await
        .unwrap();
    append(
        &log,
        encode_offsets_batch(
            &[
                (key("g1", "t", 0), Some(value(10, "a"))),
                (key("g1", "t", 1), Some(value(20, ""))),
                (key("g2", "t", 0), Some(value(5, "x"))),
            ],
            1,
        )
        .unwrap(),
    )
    .await;
    // A later commit of the same key wins.
    append(
        &log,
        encode_offsets_batch(&[(key("g1", "t", 0), Some(value(11, "b")))], 2).unwrap(),
    )
    .await;
    // A tombstone deletes; a damaged key and a damaged value are skipped, not fatal; a
    // group-metadata key (version 2) is not an offset.
    let tomb = key("g2", "t", 0).encode().unwrap();
    let mut bad_key = BytesMut::new();
    bad_key.put_i16(1);
    bad_key.put_i16(300); // string length beyond the record
    let good_key = key("g1", "u", 0).encode().unwrap();
    append(
        &log,
        raw_batch(&[
            (&tomb, None),
            (&bad_key, Some(&[0, 3])),
            (&good_key, Some(&[0, 42, 1])),
            (&[0, 2, 0, 1, b'g'], Some(b"group metadata")),
        ]),
    )
    .await;
    log.close().await.unwrap();

    // Rebuild from the reopened log, as a restarted broker does.
    let log = PartitionLog::open(dir.path(), "__consumer_offsets", 3, LogConfig::default())
        .await
        .unwrap();
    let store = OffsetStore::rebuild(&log).unwrap();
    assert_eq!(store.get("g1", "t", 0), Some(&value(11, "b")));
    assert_eq!(store.get("g1", "t", 1), Some(&value(20, "")));
    assert_eq!(store.get("g2", "t", 0), None, "tombstoned");
    assert_eq!(store.get("g1", "u", 0), None, "damaged value skipped");
    let all: Vec<_> = store
        .group("g1")
        .into_iter()
        .map(|(t, p, v)| (t.to_string(), p, v.offset))
        .collect();
    assert_eq!(all, vec![("t".into(), 0, 11), ("t".into(), 1, 20)]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn replay_of_an_empty_log_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), "__consumer_offsets", 0, LogConfig::default())
        .await
        .unwrap();
    let store = OffsetStore::rebuild(&log).unwrap();
    assert!(store.group("any").is_empty());
    log.close().await.unwrap();
}
