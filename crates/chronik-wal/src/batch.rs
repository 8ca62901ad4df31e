//! A read-only view of the Kafka v2 `RecordBatch` header, plus the two in-place patches the log
//! applies when it assigns offsets.
//!
//! The WAL stores every batch exactly as the producer sent it, except for the base offset and the
//! partition leader epoch, which the log assigns. Both fields sit *before* the attributes field, so
//! they are outside the batch's own CRC32C (which covers bytes 21..end) and patching them never
//! requires recomputing that CRC.
//!
//! Layout (all integers big-endian, as on the Kafka wire):
//!
//! | bytes  | field                  | type |
//! |--------|------------------------|------|
//! | 0..8   | base_offset            | i64  |
//! | 8..12  | batch_length           | i32 (bytes after this field) |
//! | 12..16 | partition_leader_epoch | i32  |
//! | 16     | magic (must be 2)      | i8   |
//! | 17..21 | crc (CRC32C of 21..)   | u32  |
//! | 21..23 | attributes             | i16  |
//! | 23..27 | last_offset_delta      | i32  |
//! | 27..35 | base_timestamp         | i64  |
//! | 35..43 | max_timestamp          | i64  |
//! | 43..51 | producer_id            | i64  |
//! | 51..53 | producer_epoch         | i16  |
//! | 53..57 | base_sequence          | i32  |
//! | 57..61 | records_count          | i32  |

use std::ops::Range;

/// Why a buffer is not an acceptable v2 record batch. Every parse path returns one of these instead
/// of panicking, whatever the input bytes are.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("buffer too short for a record batch: need {needed} bytes, have {available}")]
    TooShort { needed: usize, available: usize },
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    BadMagic(i8),
    #[error("invalid batch_length {0} (must be at least 49)")]
    BadBatchLength(i32),
    #[error("negative records_count {0}")]
    NegativeRecordsCount(i32),
    #[error("negative last_offset_delta {0}")]
    NegativeLastOffsetDelta(i32),
    #[error("record batch CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("expected exactly one batch of {expected} bytes, buffer has {actual}")]
    TrailingBytes { expected: usize, actual: usize },
    #[error("truncated batch at byte {at}: need {needed} bytes, have {available}")]
    Truncated {
        at: usize,
        needed: usize,
        available: usize,
    },
}

/// Offset of `base_offset` within the batch.
const BASE_OFFSET_AT: usize = 0;
/// Offset of `batch_length`.
const BATCH_LENGTH_AT: usize = 8;
/// Offset of `partition_leader_epoch`.
const LEADER_EPOCH_AT: usize = 12;
/// Offset of `magic`.
const MAGIC_AT: usize = 16;
/// Offset of the batch CRC32C field.
const CRC_AT: usize = 17;
/// The batch CRC32C covers everything from `attributes` to the end of the batch.
pub const CRC_COVERED_FROM: usize = 21;
/// `base_offset` + `batch_length`: the bytes not counted in `batch_length`.
pub const LOG_OVERHEAD: usize = 12;
/// The only record batch format the WAL accepts.
pub const MAGIC_V2: i8 = 2;

/// Decoded fixed part of a Kafka v2 record batch. The records themselves are never decoded by the
/// WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(h: &[u8; BatchHeader::SIZE], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    i64::from_be_bytes(b)
}

fn be_i32(h: &[u8; BatchHeader::SIZE], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&h[at..at + 4]);
    i32::from_be_bytes(b)
}

fn be_i16(h: &[u8; BatchHeader::SIZE], at: usize) -> i16 {
    i16::from_be_bytes([h[at], h[at + 1]])
}

impl BatchHeader {
    /// Size of the fixed v2 header (`RECORD_BATCH_OVERHEAD` in Kafka).
    pub const SIZE: usize = 61;

    /// Parses the 61-byte header; checks magic == 2, `batch_length` >= 49 and consistent with the
    /// buffer (`buf.len() >= 12 + batch_length`), `records_count >= 0` and
    /// `last_offset_delta >= 0`. The buffer may be longer than the batch. Never panics.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = Self::parse_prefix(buf)?;
        if buf.len() < header.total_size() {
            return Err(BatchError::TooShort {
                needed: header.total_size(),
                available: buf.len(),
            });
        }
        Ok(header)
    }

    /// Like [`parse`](Self::parse) but only needs the first 61 bytes: everything is checked
    /// except that the rest of the batch is present. Used when scanning headers on disk.
    pub(crate) fn parse_prefix(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let h: &[u8; Self::SIZE] = buf
            .get(..Self::SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(BatchError::TooShort {
                needed: Self::SIZE,
                available: buf.len(),
            })?;
        let magic = h[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let batch_length = be_i32(h, BATCH_LENGTH_AT);
        if batch_length < (Self::SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadBatchLength(batch_length));
        }
        let header = BatchHeader {
            base_offset: be_i64(h, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: be_i32(h, LEADER_EPOCH_AT),
            magic,
            crc: be_i32(h, CRC_AT) as u32,
            attributes: be_i16(h, 21),
            last_offset_delta: be_i32(h, 23),
            base_timestamp: be_i64(h, 27),
            max_timestamp: be_i64(h, 35),
            producer_id: be_i64(h, 43),
            producer_epoch: be_i16(h, 51),
            base_sequence: be_i32(h, 53),
            records_count: be_i32(h, 57),
        };
        if header.records_count < 0 {
            return Err(BatchError::NegativeRecordsCount(header.records_count));
        }
        if header.last_offset_delta < 0 {
            return Err(BatchError::NegativeLastOffsetDelta(
                header.last_offset_delta,
            ));
        }
        Ok(header)
    }

    /// Offset of the last record in the batch. Saturates instead of overflowing on hostile input;
    /// the log rejects batches whose offsets would not fit.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Bytes occupied by the whole batch (`12 + batch_length`).
    pub fn total_size(&self) -> usize {
        // parse() guarantees batch_length >= 49; max(0) keeps hand-built headers from wrapping.
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }

    /// Whether the batch belongs to a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch is a control batch (transaction marker; attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Verifies the batch's CRC32C (Castagnoli) over bytes `21..12+batch_length`.
pub fn verify_batch_crc(buf: &[u8]) -> Result<(), BatchError> {
    let header = BatchHeader::parse(buf)?;
    // parse() checked buf.len() >= total_size() >= SIZE > 21.
    let covered = &buf[CRC_COVERED_FROM..header.total_size()];
    let computed = crc32c::crc32c(covered);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Writes `offset` into the batch's base offset field (bytes 0..8, big-endian).
///
/// # Panics
/// If `buf` is shorter than [`BatchHeader::SIZE`]: patching something that was never parsed as a
/// batch is a caller bug, not a data error.
pub fn set_base_offset(buf: &mut [u8], offset: i64) {
    assert!(
        buf.len() >= BatchHeader::SIZE,
        "set_base_offset on a {}-byte buffer",
        buf.len()
    );
    buf[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&offset.to_be_bytes());
}

/// Writes `epoch` into the batch's partition leader epoch field (bytes 12..16, big-endian).
///
/// # Panics
/// If `buf` is shorter than [`BatchHeader::SIZE`] (caller bug, see [`set_base_offset`]).
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
    assert!(
        buf.len() >= BatchHeader::SIZE,
        "set_partition_leader_epoch on a {}-byte buffer",
        buf.len()
    );
    buf[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Splits a buffer holding several concatenated batches (a produce request's records) into
/// batches. Every batch header is parsed (not CRC-checked); trailing bytes that do not form a
/// whole batch are an error. The number of ranges is bounded by `buf.len() / 61`.
pub fn split_batches(buf: &[u8]) -> Result<Vec<Range<usize>>, BatchError> {
    let mut ranges = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < BatchHeader::SIZE {
            return Err(BatchError::Truncated {
                at: pos,
                needed: BatchHeader::SIZE,
                available: rest.len(),
            });
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(BatchError::TooShort { needed, available }) => {
                return Err(BatchError::Truncated {
                    at: pos,
                    needed,
                    available,
                })
            }
            Err(e) => return Err(e),
        };
        let end = pos + header.total_size();
        debug_assert!(end <= buf.len());
        ranges.push(pos..end);
        pos = end;
    }
    Ok(ranges)
}

#[cfg(any(test, feature = "test-util"))]
pub mod test_util {
    //! Builds syntactically valid v2 batches for tests: a real header, a correct CRC32C and
    //! opaque "record" bytes (the WAL never decodes records). Other crates' tests get it with
    //! the feature `test-util`.

    use super::*;

    /// What a test batch looks like.
    #[derive(Debug, Clone, Copy)]
    pub struct Spec {
        pub records: i32,
        pub payload_bytes: usize,
        pub base_timestamp: i64,
        pub max_timestamp: i64,
        pub producer_id: i64,
        pub fill: u8,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec {
                records: 1,
                payload_bytes: 16,
                base_timestamp: 1_000,
                max_timestamp: 1_000,
                producer_id: -1,
                fill: 0xab,
            }
        }
    }

    pub fn build(spec: Spec) -> Vec<u8> {
        let mut b = vec![0u8; BatchHeader::SIZE + spec.payload_bytes];
        let batch_length = (b.len() - LOG_OVERHEAD) as i32;
        b[0..8].copy_from_slice(&0i64.to_be_bytes());
        b[8..12].copy_from_slice(&batch_length.to_be_bytes());
        b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        b[16] = MAGIC_V2 as u8;
        b[21..23].copy_from_slice(&0i16.to_be_bytes());
        b[23..27].copy_from_slice(&(spec.records - 1).max(0).to_be_bytes());
        b[27..35].copy_from_slice(&spec.base_timestamp.to_be_bytes());
        b[35..43].copy_from_slice(&spec.max_timestamp.to_be_bytes());
        b[43..51].copy_from_slice(&spec.producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&spec.records.to_be_bytes());
        for (i, x) in b[61..].iter_mut().enumerate() {
            *x = spec.fill.wrapping_add(i as u8);
        }
        let crc = crc32c::crc32c(&b[CRC_COVERED_FROM..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// A batch with `records` records and `payload_bytes` bytes of record data.
    pub fn batch(records: i32, payload_bytes: usize) -> Vec<u8> {
        build(Spec {
            records,
            payload_bytes,
            ..Spec::default()
        })
    }

    /// A one-record batch whose timestamps are `ts`.
    pub fn batch_at(ts: i64, payload_bytes: usize) -> Vec<u8> {
        build(Spec {
            payload_bytes,
            base_timestamp: ts,
            max_timestamp: ts,
            ..Spec::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_valid_batch() {
        let b = build(Spec {
            records: 5,
            payload_bytes: 40,
            base_timestamp: 7,
            max_timestamp: 9,
            producer_id: 42,
            fill: 0,
        });
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.batch_length as usize, b.len() - 12);
        assert_eq!(h.base_timestamp, 7);
        assert_eq!(h.max_timestamp, 9);
        assert_eq!(h.producer_id, 42);
        assert_eq!(h.producer_epoch, -1);
        assert_eq!(h.base_sequence, -1);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_transactional());
        assert!(!h.is_control());
        assert_eq!(h.last_offset(), 4);
        verify_batch_crc(&b).unwrap();
    }

    #[test]
    fn attributes_bits() {
        let mut b = batch(1, 0);
        b[21..23].copy_from_slice(&0x0034i16.to_be_bytes());
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.compression(), 4);
        assert!(h.is_transactional());
        assert!(h.is_control());
    }

    #[test]
    fn parse_rejects_bad_inputs() {
        let b = batch(1, 10);
        assert!(matches!(
            BatchHeader::parse(&b[..60]),
            Err(BatchError::TooShort { needed: 61, .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&b[..b.len() - 1]),
            Err(BatchError::TooShort { .. })
        ));
        let mut m = b.clone();
        m[16] = 1;
        assert_eq!(BatchHeader::parse(&m), Err(BatchError::BadMagic(1)));
        let mut m = b.clone();
        m[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&m), Err(BatchError::BadBatchLength(48)));
        let mut m = b.clone();
        m[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(BatchHeader::parse(&m), Err(BatchError::BadBatchLength(-5)));
        let mut m = b.clone();
        m[57..61].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&m),
            Err(BatchError::NegativeRecordsCount(-1))
        );
        let mut m = b.clone();
        m[23..27].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&m),
            Err(BatchError::NegativeLastOffsetDelta(-2))
        );
        assert!(BatchHeader::parse(&[]).is_err());
    }

    #[test]
    fn patching_keeps_crc_valid() {
        let mut b = batch(3, 100);
        set_base_offset(&mut b, 1234567890123);
        set_partition_leader_epoch(&mut b, 77);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 1234567890123);
        assert_eq!(h.partition_leader_epoch, 77);
        assert_eq!(h.last_offset(), 1234567890125);
        verify_batch_crc(&b).unwrap();
    }

    #[test]
    fn crc_detects_payload_damage() {
        let mut b = batch(1, 20);
        b[70] ^= 1;
        assert!(matches!(
            verify_batch_crc(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut b = batch(1, 20);
        b[21] ^= 0x40; // attributes are covered
        assert!(verify_batch_crc(&b).is_err());
    }

    #[test]
    fn split_concatenated_batches() {
        let a = batch(1, 5);
        let b = batch(2, 50);
        let c = batch(3, 0);
        let mut all = a.clone();
        all.extend_from_slice(&b);
        all.extend_from_slice(&c);
        let r = split_batches(&all).unwrap();
        assert_eq!(
            r,
            vec![
                0..a.len(),
                a.len()..a.len() + b.len(),
                a.len() + b.len()..all.len()
            ]
        );
        assert_eq!(split_batches(&[]).unwrap(), vec![]);
        // Trailing garbage and truncation are errors.
        let mut g = all.clone();
        g.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(
            split_batches(&g),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            split_batches(&all[..all.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_and_split_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BatchHeader::parse(&bytes);
            let _ = verify_batch_crc(&bytes);
            let _ = split_batches(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_batches(idx in 0usize..80, val in any::<u8>(), cut in 0usize..90) {
            let mut b = batch(2, 20);
            let i = idx % b.len();
            b[i] = val;
            let cut = cut.min(b.len());
            let _ = BatchHeader::parse(&b[..cut]);
            let _ = verify_batch_crc(&b[..cut]);
            let _ = split_batches(&b[..cut]);
            if let Ok(h) = BatchHeader::parse(&b) {
                prop_assert!(h.total_size() <= b.len());
            }
        }
    }
}
