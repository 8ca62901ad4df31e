use super::*;
use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::TimestampType;

const NOW: i64 = 1_700_000_000_000;

fn records(n: usize, timestamp: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h"),
                Some(Bytes::from(format!("v{i}"))),
            );
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 42,
                producer_epoch: 3,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: 7 + i as i32,
                timestamp: timestamp + i as i64,
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'x'; 100 + i])),
                headers,
            }
        })
        .collect()
}

fn batch(records: &[Record], codec: Compression) -> Vec<u8> {
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .unwrap();
    out.to_vec()
}

fn decoded(b: &[u8]) -> (Compression, Vec<Record>) {
    let set = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(b)).unwrap();
    (set.compression, set.records)
}

fn policy(codec: Option<Compression>) -> Policy {
    Policy {
        codec,
        ..Policy::default()
    }
}

#[test]
fn recompresses_into_the_topic_codec_keeping_every_field() {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let recs = records(20, NOW);
    for from in codecs {
        for to in codecs {
            let input = batch(&recs, from);
            let out = apply(&input, &policy(Some(to)), NOW).unwrap();
            assert_eq!(out.log_append_time_ms, None);
            let Some(stored) = out.batch else {
                assert_eq!(from, to, "{from:?} -> {to:?} was not rewritten");
                continue;
            };
            assert_ne!(from, to, "{from:?} rewritten into itself");
            let (codec, back) = decoded(&stored);
            assert_eq!(codec, to);
            assert_eq!(back, recs, "{from:?} -> {to:?}");
            // Producer id, epoch and base sequence sit at the same header bytes.
            assert_eq!(stored[43..57], input[43..57]);
        }
    }
    // 'producer' keeps any codec as sent, without a copy.
    let input = batch(&recs, Compression::Lz4);
    assert_eq!(
        apply(&input, &policy(None), NOW).unwrap(),
        Outcome::default()
    );
}

#[test]
fn log_append_time_stamps_the_batch_and_keeps_deltas() {
    let recs = records(3, NOW - 5_000);
    for (codec, target) in [
        (Compression::None, None),
        (Compression::Lz4, Some(Compression::Zstd)),
    ] {
        let input = batch(&recs, codec);
        let p = Policy {
            log_append_time: true,
            // Not applied to LogAppendTime topics.
            after_max_ms: 0,
            before_max_ms: 0,
            ..policy(target)
        };
        let out = apply(&input, &p, NOW).unwrap();
        assert_eq!(out.log_append_time_ms, Some(NOW));
        let stored = out.batch.unwrap();
        assert_ne!(
            read_i16(&stored, ATTRIBUTES_AT).unwrap() & ATTR_LOG_APPEND_TIME,
            0
        );
        assert_eq!(read_i64(&stored, MAX_TIMESTAMP_AT), Some(NOW));
        // The CRC is valid again (the decoder checks it), the records are unchanged.
        let (_, back) = decoded(&stored);
        assert!(back
            .iter()
            .all(|r| r.timestamp_type == TimestampType::LogAppend));
        assert_eq!(back.len(), 3);
    }
}

#[test]
fn a_producer_may_not_claim_log_append_time() {
    let mut input = batch(&records(1, NOW), Compression::None);
    stamp_log_append_time(&mut input, NOW).unwrap();
    let e = apply(&input, &Policy::default(), NOW).unwrap_err();
    assert_eq!(e.code(), ResponseError::InvalidTimestamp);
}

#[test]
fn timestamps_outside_the_window_are_refused() {
    let p = Policy {
        before_max_ms: 60_000,
        after_max_ms: 1_000,
        ..Policy::default()
    };
    for codec in [None, Some(Compression::Gzip)] {
        let p = Policy { codec, ..p.clone() };
        for (ts, ok) in [
            (NOW, true),
            (NOW - 60_000, true),
            (NOW - 60_001, false),
            (NOW + 1_001, false),
        ] {
            let input = batch(&records(1, ts), Compression::None);
            let r = apply(&input, &p, NOW);
            assert_eq!(r.is_ok(), ok, "{ts} with {codec:?}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.code(), ResponseError::InvalidTimestamp);
                assert!(e.to_string().contains("out of range"), "{e}");
            }
        }
    }
    // Every refused record is named, by its index in the batch, as Kafka's record_errors;
    // every record is read whether or not the batch is recompressed.
    let old = batch(&records(3, NOW - 120_000), Compression::Gzip);
    for (codec, want) in [
        (Some(Compression::Lz4), vec![0, 1, 2]),
        (None, vec![0, 1, 2]),
    ] {
        let Err(BatchError::InvalidTimestamp(errors)) =
            apply(&old, &Policy { codec, ..p.clone() }, NOW)
        else {
            panic!("accepted");
        };
        let got: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(got, want, "{codec:?}");
    }
    // No timestamp (-1) is never out of range.
    let input = batch(&records(1, -1), Compression::None);
    assert!(apply(&input, &p, NOW).is_ok());
}

#[test]
fn bombs_and_garbage_get_kafka_errors() {
    let mut recs = records(1, NOW);
    recs[0].value = Some(Bytes::from(vec![0u8; 8 << 20]));
    let input = batch(&recs, Compression::Zstd);
    let p = Policy {
        max_decompressed_bytes: 1 << 20,
        ..policy(Some(Compression::Lz4))
    };
    assert_eq!(
        apply(&input, &p, NOW).unwrap_err().code(),
        ResponseError::InvalidRecord
    );
    // Flip bytes inside the compressed records: a CRC or codec failure, never a panic.
    let small = batch(&records(5, NOW), Compression::Gzip);
    for i in HEADER_SIZE..small.len() {
        let mut bad = small.clone();
        bad[i] ^= 0x5a;
        let e = apply(&bad, &policy(Some(Compression::Lz4)), NOW).unwrap_err();
        assert_eq!(e.code(), ResponseError::CorruptMessage);
    }
    for n in 0..HEADER_SIZE {
        assert!(apply(&small[..n], &policy(Some(Compression::Lz4)), NOW).is_err());
    }
}

#[test]
fn a_repeated_header_key_keeps_the_producer_batch() {
    // Built by hand: kafka-protocol's Record cannot hold two headers with one key. One
    // record: key null, value "v", headers [("h","1"),("h","2")].
    let mut body = Vec::new();
    let rec: &[u8] = &[0, 0, 0, 1, 2, b'v', 4, 2, b'h', 2, b'1', 2, b'h', 2, b'2'];
    body.push((rec.len() as u8) << 1); // zigzag varint length
    body.extend_from_slice(rec);
    let mut b = vec![0u8; HEADER_SIZE];
    b[8..12].copy_from_slice(&((HEADER_SIZE - 12 + body.len()) as i32).to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[27..35].copy_from_slice(&NOW.to_be_bytes());
    b[35..43].copy_from_slice(&NOW.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[CRC_COVERED_FROM..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let out = apply(&b, &policy(Some(Compression::Zstd)), NOW).unwrap();
    assert_eq!(out.batch, None, "the batch was rewritten and lost a header");
}

/// A batch whose header max timestamp the producer wrote wrong.
fn with_header_max(mut b: Vec<u8>, max: i64) -> Vec<u8> {
    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_COVERED_FROM..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn a_record_out_of_range_behind_honest_header_timestamps_is_found() {
    // First and last record in range, the middle one a day old: the header (first timestamp,
    // max timestamp) cannot show it; Kafka reads every record.
    let p = Policy {
        before_max_ms: 60_000,
        ..Policy::default()
    };
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let mut recs = records(3, NOW);
        recs[1].timestamp = NOW - 86_400_000;
        let Err(BatchError::InvalidTimestamp(errors)) = apply(&batch(&recs, codec), &p, NOW) else {
            panic!("{codec:?}: accepted");
        };
        let got: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(got, vec![1], "{codec:?}");
    }
}

#[test]
fn the_header_max_timestamp_is_set_from_the_records() {
    for codec in [Compression::None, Compression::Gzip] {
        let honest = batch(&records(3, NOW), codec);
        // Kept as sent when it is right: no copy.
        assert_eq!(apply(&honest, &Policy::default(), NOW).unwrap().batch, None);
        for lie in [NOW - 5_000, NOW + 500_000, -1] {
            let out = apply(
                &with_header_max(honest.clone(), lie),
                &Policy::default(),
                NOW,
            )
            .unwrap()
            .batch
            .expect("header corrected");
            assert_eq!(read_i64(&out, MAX_TIMESTAMP_AT), Some(NOW + 2), "{codec:?}");
            // A valid CRC, and the records untouched.
            let (c, recs) = decoded(&out);
            assert_eq!((c, recs.len()), (codec, 3));
            assert_eq!(
                &out[MAX_TIMESTAMP_AT + 8..],
                &honest[MAX_TIMESTAMP_AT + 8..]
            );
        }
    }
}

#[test]
fn a_damaged_batch_is_never_given_a_fresh_crc() {
    let mut damaged = batch(&records(2, NOW), Compression::None);
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    for p in [
        Policy::default(),
        Policy {
            log_append_time: true,
            ..Policy::default()
        },
    ] {
        let e = apply(&damaged, &p, NOW).unwrap_err();
        assert_eq!(e.code(), ResponseError::CorruptMessage, "{p:?}: {e}");
    }
}

#[test]
fn inline_work_is_bounded_and_large_batches_are_heavy() {
    let p = Policy::default();
    let small = batch(&records(3, NOW), Compression::Lz4);
    assert!(!p.is_heavy(&small));
    assert!(!p.is_heavy(&batch(&records(300, NOW), Compression::None)));
    // A small compressed batch that expands past the in-place bound: TooLarge in place,
    // accepted under the topic's own bound.
    let mut recs = records(1, NOW);
    recs[0].value = Some(Bytes::from(vec![0u8; 2 * INLINE_EXPANDED_BYTES]));
    let bomb = batch(&recs, Compression::Zstd);
    assert!(bomb.len() <= INLINE_COMPRESSED_BYTES && !p.is_heavy(&bomb));
    let e = apply(&bomb, &p.inline_bounded(&bomb), NOW).unwrap_err();
    assert!(matches!(e, BatchError::TooLarge(_)), "{e}");
    assert!(apply(&bomb, &p, NOW).is_ok());
    // Uncompressed batches are never bounded in place (nothing expands).
    let plain = batch(&recs, Compression::None);
    assert_eq!(p.inline_bounded(&plain), p);
    // Large compressed batches, and any recompression, are heavy.
    // Values that do not compress (a xorshift stream).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    let mut big = records(200, NOW);
    for r in &mut big {
        r.value = Some(Bytes::from((0..400).map(|_| noise()).collect::<Vec<u8>>()));
    }
    assert!(p.is_heavy(&batch(&big, Compression::Gzip)));
    let zstd = Policy {
        codec: Some(Compression::Zstd),
        ..Policy::default()
    };
    assert!(zstd.is_heavy(&small));
    // LogAppendTime without recompression reads no records at all.
    let lat = Policy {
        log_append_time: true,
        ..Policy::default()
    };
    assert!(!lat.is_heavy(&batch(&big, Compression::Gzip)));
}
