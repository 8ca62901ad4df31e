//! Cleaning whole logs of batches built with kafka-protocol's encoder, read back with its
//! decoder: what Kafka's LogCleanerTest checks, in the cases the task names.

mod schedule;
mod txn;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::batch::{BatchHeader, ATTR_DELETE_HORIZON};
use crate::{
    filter_batch, AbortedTxn, ActiveProducers, FilterContext, FilterStats, Filtered, Indexed,
    OffsetMap, TxnTracker,
};

const T0: i64 = 1_700_000_000_000;
const LIMIT: usize = 1 << 20;
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy)]
struct Opts {
    codec: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    leader_epoch: i32,
    transactional: bool,
    control: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            codec: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            leader_epoch: 5,
            transactional: false,
            control: false,
        }
    }
}

/// One batch at `base`: each entry is (key, value); record i is at offset base + i with
/// timestamp T0 + base + i and a header naming its offset.
fn batch(base: i64, recs: &[(Option<&str>, Option<&str>)], o: Opts) -> Vec<u8> {
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let offset = base + i as i64;
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("at"),
                Some(Bytes::from(offset.to_string())),
            );
            Record {
                transactional: o.transactional,
                control: o.control,
                delete_horizon: false,
                partition_leader_epoch: o.leader_epoch,
                producer_id: o.producer_id,
                producer_epoch: o.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: o.base_sequence.wrapping_add(i as i32),
                timestamp: T0 + offset,
                key: k.map(|k| Bytes::from(k.to_string())),
                value: v.map(|v| Bytes::from(v.to_string())),
                headers,
            }
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: o.codec,
        },
    )
    .unwrap();
    out.to_vec()
}

fn kv(pairs: &[(&'static str, &'static str)]) -> Vec<(Option<&'static str>, Option<&'static str>)> {
    pairs.iter().map(|(k, v)| (Some(*k), Some(*v))).collect()
}

fn decode_all(buf: &[u8]) -> Vec<Record> {
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::copy_from_slice(buf)).unwrap();
    sets.into_iter().flat_map(|s| s.records).collect()
}

/// (key, value, offset) of every record of a log.
fn contents(log: &[Vec<u8>]) -> Vec<(String, Option<String>, i64)> {
    decode_all(&log.concat())
        .into_iter()
        .map(|r| {
            let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
            (s(r.key).unwrap_or_default(), s(r.value), r.offset)
        })
        .collect()
}

fn last_offset(log: &[Vec<u8>]) -> i64 {
    log.iter()
        .map(|b| BatchHeader::parse(b).unwrap().last_offset())
        .max()
        .unwrap()
}

/// The broker's loop over passes, as Kafka's `doClean`: index from the first dirty offset
/// until the map is full, filter every batch that starts below the map's end, repeat from
/// that end. Returns the cleaned log and the number of passes.
fn clean(
    log: &[Vec<u8>],
    budget: usize,
    now_ms: i64,
    producers: &ActiveProducers,
    stats: &mut FilterStats,
) -> (Vec<Vec<u8>>, usize) {
    clean_txn(log, budget, now_ms, producers, &[], stats)
}

/// [`clean`] of a log whose aborted-transaction index is `aborted`.
fn clean_txn(
    log: &[Vec<u8>],
    budget: usize,
    now_ms: i64,
    producers: &ActiveProducers,
    aborted: &[AbortedTxn],
    stats: &mut FilterStats,
) -> (Vec<Vec<u8>>, usize) {
    let mut map = OffsetMap::new(budget).unwrap();
    let mut log = log.to_vec();
    let end_of_log = last_offset(&log) + 1;
    let mut first_dirty = 0;
    let mut passes = 0;
    while first_dirty < end_of_log {
        passes += 1;
        map.clear();
        let mut walk = TxnTracker::new(aborted.to_vec());
        for b in &log {
            if BatchHeader::parse(b).unwrap().last_offset() < first_dirty {
                continue;
            }
            if map.index_batch(b, first_dirty, LIMIT, &mut walk).unwrap() == Indexed::Full {
                break;
            }
        }
        let end = map.end_offset().unwrap();
        assert!(end > first_dirty, "a pass always makes progress");
        let ctx = FilterContext {
            map: &map,
            now_ms,
            delete_retention_ms: DAY_MS,
            producers,
            max_decompressed_bytes: LIMIT,
        };
        let mut next = Vec::new();
        let mut walk = TxnTracker::new(aborted.to_vec());
        for b in &log {
            if BatchHeader::parse(b).unwrap().base_offset >= end {
                next.push(b.clone());
                continue;
            }
            match filter_batch(b, &ctx, &mut walk, stats).unwrap() {
                Filtered::Unchanged => next.push(b.clone()),
                Filtered::Rewritten(n) | Filtered::Emptied(n) => next.push(n),
                Filtered::Removed => {}
            }
        }
        log = next;
        first_dirty = end;
    }
    (log, passes)
}

fn clean_once(log: &[Vec<u8>], now_ms: i64) -> Vec<Vec<u8>> {
    clean(
        log,
        1 << 20,
        now_ms,
        &ActiveProducers::new(),
        &mut FilterStats::default(),
    )
    .0
}

#[test]
fn superseded_versions_go_and_the_latest_stays() {
    let log = vec![
        batch(
            0,
            &kv(&[("a", "a0"), ("b", "b0"), ("c", "c0")]),
            Opts::default(),
        ),
        batch(3, &kv(&[("a", "a1"), ("b", "b1")]), Opts::default()),
        batch(5, &kv(&[("a", "a2"), ("d", "d0")]), Opts::default()),
    ];
    let mut stats = FilterStats::default();
    let (out, passes) = clean(&log, 1 << 20, T0, &ActiveProducers::new(), &mut stats);
    assert_eq!(passes, 1);
    let got = contents(&out);
    let want = [
        ("c", "c0", 2),
        ("b", "b1", 4),
        ("a", "a2", 5),
        ("d", "d0", 6),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((k, v, o), (wk, wv, wo)) in got.iter().zip(want) {
        assert_eq!((k.as_str(), v.as_deref(), *o), (wk, Some(wv), wo));
    }
    assert_eq!(stats.superseded, 3);
    assert_eq!(stats.records_read, 7);
    assert_eq!(stats.records_kept, 4);
    assert!(stats.bytes_written < stats.bytes_read);
    // Cleaning a clean log changes nothing.
    assert_eq!(clean_once(&out, T0), out);
}

#[test]
fn keyless_records_are_dropped() {
    let log = vec![batch(
        0,
        &[(None, Some("x")), (Some("k"), Some("v")), (None, Some("y"))],
        Opts::default(),
    )];
    let mut stats = FilterStats::default();
    let (out, _) = clean(&log, 1 << 20, T0, &ActiveProducers::new(), &mut stats);
    let got = contents(&out);
    assert_eq!(got, vec![("k".to_string(), Some("v".to_string()), 1)]);
    assert_eq!(stats.keyless_removed, 2);
    let h = BatchHeader::parse(&out[0]).unwrap();
    assert_eq!((h.base_offset, h.last_offset(), h.record_count), (0, 2, 1));
}

#[test]
fn tombstones_stay_until_their_delete_horizon_then_go() {
    let log = vec![
        batch(0, &kv(&[("a", "a0"), ("b", "b0")]), Opts::default()),
        batch(
            2,
            &[(Some("a"), None), (Some("c"), Some("c0"))],
            Opts::default(),
        ),
    ];
    let first_clean = T0 + 10_000;
    let out = clean_once(&log, first_clean);
    assert_eq!(
        contents(&out),
        vec![
            ("b".to_string(), Some("b0".to_string()), 1),
            ("a".to_string(), None, 2),
            ("c".to_string(), Some("c0".to_string()), 3),
        ]
    );
    // KIP-534: the batch keeping the tombstone now carries its horizon in the base
    // timestamp, and its records keep their own timestamps.
    let h = BatchHeader::parse(&out[1]).unwrap();
    assert_ne!(h.attributes & ATTR_DELETE_HORIZON, 0);
    assert_eq!(h.delete_horizon_ms(), Some(first_clean + DAY_MS));
    let recs = decode_all(&out[1]);
    assert_eq!(
        recs.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
        [T0 + 2, T0 + 3]
    );
    assert!(recs.iter().all(|r| r.delete_horizon));
    assert_eq!(h.max_timestamp, T0 + 3);
    // The batch without a tombstone got no horizon.
    assert_eq!(
        BatchHeader::parse(&out[0]).unwrap().delete_horizon_ms(),
        None
    );

    // Before the horizon a clean keeps the tombstone and the horizon stays.
    let again = clean_once(&out, first_clean + DAY_MS - 1);
    assert_eq!(again, out);
    // At the horizon it goes; the rest of its batch keeps offsets and timestamps.
    let late = clean_once(&out, first_clean + DAY_MS);
    assert_eq!(
        contents(&late),
        vec![
            ("b".to_string(), Some("b0".to_string()), 1),
            ("c".to_string(), Some("c0".to_string()), 3),
        ]
    );
    let recs = decode_all(&late[1]);
    assert_eq!(recs[0].timestamp, T0 + 3);
    let h = BatchHeader::parse(&late[1]).unwrap();
    assert_eq!((h.base_offset, h.last_offset()), (2, 3));
}

#[test]
fn a_rewritten_batch_keeps_offsets_timestamps_and_producer_fields() {
    let producer = Opts {
        producer_id: 77,
        producer_epoch: 4,
        base_sequence: 1000,
        leader_epoch: 9,
        ..Opts::default()
    };
    let first = batch(
        0,
        &kv(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
        producer,
    );
    let later = batch(4, &kv(&[("a", "5"), ("d", "6")]), Opts::default());
    let before = decode_all(&first);
    let out = clean_once(&[first.clone(), later], T0);
    let h0 = BatchHeader::parse(&first).unwrap();
    let h = BatchHeader::parse(&out[0]).unwrap();
    // Kafka's buildRetainedRecordsInto: base offset, last offset (overrideLastOffset), base
    // sequence and the producer's fields stay, so the producer's last sequence survives.
    assert_eq!(h.base_offset, 0);
    assert_eq!(h.last_offset(), 3);
    assert_eq!(h.base_sequence, 1000);
    assert_eq!((h.producer_id, h.producer_epoch), (77, 4));
    assert_eq!(h.partition_leader_epoch, 9);
    assert_eq!(h.base_timestamp, h0.base_timestamp);
    assert_eq!(h.record_count, 2);
    assert_eq!(h.max_timestamp, T0 + 2);
    // Each kept record is the same record: offset, sequence, timestamp, key, value, headers.
    let after = decode_all(&out[0]);
    assert_eq!(after, vec![before[1].clone(), before[2].clone()]);
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn every_codec_round_trips_and_is_kept() {
    for codec in CODECS {
        let o = Opts {
            codec,
            ..Opts::default()
        };
        let pairs: Vec<(String, String)> = (0..200)
            .map(|i| {
                (
                    format!("k{}", i % 50),
                    format!("value-{i}-{}", "x".repeat(40)),
                )
            })
            .collect();
        let recs: Vec<(Option<&str>, Option<&str>)> = pairs
            .iter()
            .map(|(k, v)| (Some(k.as_str()), Some(v.as_str())))
            .collect();
        let mut recs_with_tombstone = recs.clone();
        recs_with_tombstone.push((Some("k0"), None));
        let log = vec![
            batch(0, &recs[..100], o),
            batch(100, &recs_with_tombstone[100..], o),
        ];
        let out = clean_once(&log, T0);
        for b in &out {
            let h = BatchHeader::parse(b).unwrap();
            assert_eq!(h.codec().unwrap(), codec, "{codec:?}");
        }
        let got = contents(&out);
        // k0's latest is the tombstone; k1..k49 their last version.
        assert_eq!(got.len(), 50, "{codec:?}");
        assert_eq!(got.iter().find(|(k, ..)| k == "k0").unwrap().1, None);
        let k7 = got.iter().find(|(k, ..)| k == "k7").unwrap();
        assert_eq!((k7.1.as_deref(), k7.2), (Some(pairs[157].1.as_str()), 157));
        assert_eq!(
            clean_once(&out, T0),
            out,
            "{codec:?}: a second clean is a no-op"
        );
    }
}

#[test]
fn a_small_map_cleans_in_passes_to_the_same_result() {
    // 40 keys, 3 versions each, 5 keys per batch; the small map holds 9 keys.
    let mut log = Vec::new();
    let mut offset = 0;
    for version in 0..3 {
        for chunk in 0..(40 / 5) {
            let owned: Vec<(String, String)> = (0..5)
                .map(|i| (format!("k{}", chunk * 5 + i), format!("v{version}")))
                .collect();
            let recs: Vec<_> = owned
                .iter()
                .map(|(k, v)| (Some(k.as_str()), Some(v.as_str())))
                .collect();
            log.push(batch(offset, &recs, Opts::default()));
            offset += 5;
        }
    }
    let (big, big_passes) = clean(
        &log,
        1 << 20,
        T0,
        &ActiveProducers::new(),
        &mut FilterStats::default(),
    );
    assert_eq!(big_passes, 1);
    let (small, small_passes) = clean(
        &log,
        24 * 10,
        T0,
        &ActiveProducers::new(),
        &mut FilterStats::default(),
    );
    assert!(small_passes >= 5, "{small_passes} passes");
    assert_eq!(contents(&small), contents(&big));
    assert_eq!(contents(&big).len(), 40);
    assert!(contents(&big)
        .iter()
        .all(|(_, v, o)| v.as_deref() == Some("v2") && *o >= 80));
}

#[test]
fn a_full_map_stops_mid_batch_and_reports_its_end() {
    let mut map = OffsetMap::new(24 * 4).unwrap(); // 3 keys
    let b = batch(
        10,
        &kv(&[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("d", "5")]),
        Opts::default(),
    );
    assert_eq!(
        map.index_batch(&b, 0, LIMIT, &mut TxnTracker::default())
            .unwrap(),
        Indexed::Full
    );
    assert_eq!(
        map.end_offset(),
        Some(14),
        "a, b, a, c indexed; d did not fit"
    );
    let mut again = OffsetMap::new(24 * 4).unwrap();
    // Records before the first dirty offset are not indexed.
    assert_eq!(
        again
            .index_batch(&b, 13, LIMIT, &mut TxnTracker::default())
            .unwrap(),
        Indexed::Continue
    );
    assert_eq!((again.len(), again.end_offset()), (2, Some(15)));
    assert_eq!(again.get(b"a"), None);
}

#[test]
fn an_idempotent_producers_last_batch_stays_empty() {
    let producer = Opts {
        producer_id: 9,
        producer_epoch: 2,
        base_sequence: 40,
        ..Opts::default()
    };
    let theirs = batch(0, &kv(&[("a", "1"), ("b", "2")]), producer);
    let later = batch(2, &kv(&[("a", "3"), ("b", "4")]), Opts::default());
    let mut producers = ActiveProducers::new();
    producers.observe(&BatchHeader::parse(&theirs).unwrap());
    producers.observe(&BatchHeader::parse(&later).unwrap());
    let mut stats = FilterStats::default();
    let (out, _) = clean(
        &[theirs.clone(), later.clone()],
        1 << 20,
        T0,
        &producers,
        &mut stats,
    );
    assert_eq!(out.len(), 2);
    let h0 = BatchHeader::parse(&theirs).unwrap();
    let h = BatchHeader::parse(&out[0]).unwrap();
    assert_eq!(out[0].len(), crate::batch::HEADER_SIZE);
    assert_eq!(h.record_count, 0);
    assert_eq!((h.base_offset, h.last_offset()), (0, 1));
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (9, 2, 40)
    );
    assert_eq!(
        (h.base_timestamp, h.max_timestamp),
        (h0.max_timestamp, h0.max_timestamp)
    );
    assert!(
        decode_all(&out[0]).is_empty(),
        "kafka-protocol reads it as an empty batch"
    );
    // Once another batch of that producer is its last, the empty one goes.
    let (gone, _) = clean(
        &[theirs, later],
        1 << 20,
        T0,
        &ActiveProducers::new(),
        &mut stats,
    );
    assert_eq!(gone.len(), 1);
}

#[test]
fn log_append_time_batches_keep_their_max_timestamp() {
    let mut first = batch(0, &kv(&[("a", "1"), ("b", "2")]), Opts::default());
    chronik_protocol::batch::stamp_log_append_time(&mut first, T0 + 999).unwrap();
    let later = batch(2, &kv(&[("a", "3")]), Opts::default());
    let out = clean_once(&[first, later], T0);
    let h = BatchHeader::parse(&out[0]).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!((h.max_timestamp, h.record_count), (T0 + 999, 1));
}

#[test]
fn damaged_batches_are_errors_not_panics() {
    let good = batch(
        0,
        &kv(&[("a", "1")]),
        Opts {
            codec: Compression::Zstd,
            ..Opts::default()
        },
    );
    let map = OffsetMap::new(1 << 16).unwrap();
    let producers = ActiveProducers::new();
    let ctx = FilterContext {
        map: &map,
        now_ms: T0,
        delete_retention_ms: DAY_MS,
        producers: &producers,
        max_decompressed_bytes: LIMIT,
    };
    let mut stats = FilterStats::default();
    for cut in [0, 10, 60, good.len() - 1] {
        assert!(
            filter_batch(&good[..cut], &ctx, &mut TxnTracker::default(), &mut stats).is_err(),
            "cut at {cut}"
        );
    }
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    assert!(filter_batch(&flipped, &ctx, &mut TxnTracker::default(), &mut stats).is_err());
    // A batch expanding past the bound is refused.
    let big: Vec<(Option<&str>, Option<&str>)> = vec![(Some("k"), Some("x")); 5000];
    let bomb = batch(
        0,
        &big,
        Opts {
            codec: Compression::Zstd,
            ..Opts::default()
        },
    );
    let tight = FilterContext {
        max_decompressed_bytes: 1000,
        ..ctx
    };
    assert!(matches!(
        filter_batch(&bomb, &tight, &mut TxnTracker::default(), &mut stats),
        Err(crate::CleanError::Codec(_))
    ));
}

#[test]
fn a_repeated_header_key_survives_a_rewrite() {
    // kafka-protocol keeps headers in a map, so build "h1" and "h2", then rename "h2" to "h1"
    // in the bytes (same length; new CRC): the record carries the key twice, as Kafka allows.
    let mut headers = IndexMap::new();
    headers.insert(
        StrBytes::from_static_str("h1"),
        Some(Bytes::from_static(b"one")),
    );
    headers.insert(
        StrBytes::from_static_str("h2"),
        Some(Bytes::from_static(b"two")),
    );
    let mut records = decode_all(&batch(
        0,
        &kv(&[("a", "old"), ("b", "keep")]),
        Opts::default(),
    ));
    records[1].headers = headers;
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
    let mut first = out.to_vec();
    let at = first.windows(2).rposition(|w| w == b"h2").unwrap();
    first[at + 1] = b'1';
    let crc = crc32c::crc32c(&first[21..]);
    first[17..21].copy_from_slice(&crc.to_be_bytes());
    let later = batch(2, &kv(&[("a", "new")]), Opts::default());
    let cleaned = clean_once(&[first.clone(), later], T0);
    assert_eq!(BatchHeader::parse(&cleaned[0]).unwrap().record_count, 1);
    let kept = &cleaned[0][crate::batch::HEADER_SIZE..];
    let original_record = &first[first.len() - kept.len()..];
    assert_eq!(kept, original_record, "b's record is copied byte for byte");
    assert_eq!(kept.windows(2).filter(|w| *w == b"h1").count(), 2);
}
