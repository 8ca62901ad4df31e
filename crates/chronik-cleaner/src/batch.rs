//! One v2 record batch as the cleaner reads and rewrites it.
//!
//! Reading goes through kafka-protocol's `RecordBatchDecoder` (CRC, magic, lengths, every
//! record's fields), with decompression bounded by chronik-protocol's codecs. Rewriting does
//! not go through `RecordBatchEncoder`, because that encoder cannot write what Kafka's
//! cleaner writes (`MemoryRecords.buildRetainedRecordsInto`): it takes the smallest kept
//! offset as the base offset (Kafka keeps the original base offset, base sequence and last
//! offset delta, so a producer's last sequence survives), the smallest timestamp as the base
//! timestamp (KIP-534 puts the delete horizon there), and it keeps headers in a map (a record
//! with a repeated header key would lose one). So a kept record's bytes are copied as they
//! were decoded: its offset and timestamp deltas stay valid because the base offset and base
//! timestamp stay. The one field ever re-encoded is a record's timestamp delta, when the base
//! timestamp becomes the delete horizon; that needs the record's two leading varints
//! (`rebase_timestamp`) and nothing else of the record format.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use chronik_protocol::batch::codec::{self, CodecError, Levels};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};

/// Size of a v2 batch header; an empty batch is exactly this long.
pub const HEADER_SIZE: usize = 61;
/// Base offset and length come before the length's span.
const LOG_OVERHEAD: usize = 12;
const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

/// Attribute bits of a v2 batch (Kafka's `DefaultRecordBatch`).
pub const ATTR_CODEC: i16 = 0x7;
pub const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
pub const ATTR_CONTROL: i16 = 1 << 5;
/// KIP-534: the base timestamp holds the batch's delete horizon.
pub const ATTR_DELETE_HORIZON: i16 = 1 << 6;

/// Why a batch could not be read or rewritten. The bytes come from the partition's own log,
/// so any of these means a damaged log: the caller stops cleaning that partition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CleanError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

fn corrupt(what: impl std::fmt::Display) -> CleanError {
    CleanError::Corrupt(what.to_string())
}

/// The header of a v2 batch, every field the cleaner keeps or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads and checks the header of `batch`, which must be exactly one v2 batch: the
    /// length field spans the rest, and the CRC matches (checked by kafka-protocol's
    /// `decode_batch_info`, which decompresses nothing).
    pub fn parse(batch: &[u8]) -> Result<BatchHeader, CleanError> {
        if batch.len() < HEADER_SIZE {
            return Err(corrupt(format!("{} bytes is no record batch", batch.len())));
        }
        let length = read_i32(batch, LENGTH_AT);
        if i64::from(length) + LOG_OVERHEAD as i64 != batch.len() as i64 {
            return Err(corrupt(format!(
                "batch length {length} does not span the {} bytes given",
                batch.len()
            )));
        }
        if batch[MAGIC_AT] != 2 {
            return Err(corrupt(format!(
                "magic {} (only v2 batches)",
                batch[MAGIC_AT]
            )));
        }
        RecordBatchDecoder::decode_batch_info(&mut Bytes::copy_from_slice(batch))
            .map_err(corrupt)?;
        Ok(BatchHeader {
            base_offset: read_i64(batch, 0),
            partition_leader_epoch: read_i32(batch, LEADER_EPOCH_AT),
            attributes: read_i16(batch, ATTRIBUTES_AT),
            last_offset_delta: read_i32(batch, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(batch, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(batch, MAX_TIMESTAMP_AT),
            producer_id: read_i64(batch, PRODUCER_ID_AT),
            producer_epoch: read_i16(batch, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(batch, BASE_SEQUENCE_AT),
            record_count: read_i32(batch, RECORDS_COUNT_AT),
        })
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// KIP-534: when the batch's tombstones may go (`DefaultRecordBatch.deleteHorizonMs`).
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    pub fn codec(&self) -> Result<Compression, CleanError> {
        Ok(match self.attributes & ATTR_CODEC {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(corrupt(format!("unknown codec {other}"))),
        })
    }

    /// The batch with this header and `records` (the uncompressed records section, which is
    /// compressed here with the header's codec at Kafka's default level, as Kafka's cleaner
    /// does: `Compression.of(batch.compressionType()).build()`), with its length and CRC.
    pub(crate) fn encode(&self, records: &[u8]) -> Result<Vec<u8>, CleanError> {
        let mut out = BytesMut::with_capacity(HEADER_SIZE + records.len());
        out.resize(HEADER_SIZE, 0);
        if self.record_count > 0 {
            codec::compress(self.codec()?, Levels::default(), records, &mut out)?;
        }
        let length = i32::try_from(out.len() - LOG_OVERHEAD)
            .map_err(|_| corrupt("rewritten batch over 2 GiB"))?;
        let b = &mut out[..];
        b[0..8].copy_from_slice(&self.base_offset.to_be_bytes());
        b[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        b[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b[MAGIC_AT] = 2;
        b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&self.attributes.to_be_bytes());
        b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        b[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&self.record_count.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(out.to_vec())
    }
}

/// A decoded batch: its records as kafka-protocol decoded them, and each record's bytes in
/// the uncompressed records section (same order).
pub(crate) struct Decoded {
    pub records: Vec<Record>,
    pub raw: Vec<Bytes>,
}

/// Decodes one batch whose `header` [`BatchHeader::parse`] read, decompressing at most
/// `limit` bytes of records.
pub(crate) fn decode(
    batch: &[u8],
    header: &BatchHeader,
    limit: usize,
) -> Result<Decoded, CleanError> {
    let failure: RefCell<Option<CodecError>> = RefCell::new(None);
    let section: RefCell<Bytes> = RefCell::new(Bytes::new());
    let decompress = |data: &mut Bytes, c: Compression| -> anyhow::Result<Bytes> {
        match codec::decompress(c, data, limit) {
            Ok(b) => {
                *section.borrow_mut() = b.clone();
                Ok(b)
            }
            Err(e) => {
                let msg = e.to_string();
                *failure.borrow_mut() = Some(e);
                anyhow::bail!(msg)
            }
        }
    };
    let mut buf = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress));
    if let Some(e) = failure.into_inner() {
        return Err(e.into());
    }
    let set = set.map_err(corrupt)?;
    if set.records.len() as i64 != i64::from(header.record_count) {
        return Err(corrupt(format!(
            "batch claims {} records, {} decoded",
            header.record_count,
            set.records.len()
        )));
    }
    let raw = split_records(&section.into_inner(), set.records.len())?;
    Ok(Decoded {
        records: set.records,
        raw,
    })
}

/// Cuts the uncompressed records section into `count` records, by the length each record
/// starts with (the same walk kafka-protocol's decoder just made successfully).
fn split_records(section: &Bytes, count: usize) -> Result<Vec<Bytes>, CleanError> {
    let mut out = Vec::with_capacity(count.min(section.len()));
    let mut at = 0usize;
    for _ in 0..count {
        let (size, n) = read_varint(&section[at..])?;
        let size = usize::try_from(unzigzag(size)).map_err(|_| corrupt("negative record size"))?;
        let end = at
            .checked_add(n + size)
            .filter(|end| *end <= section.len())
            .ok_or_else(|| corrupt("record past the end of its batch"))?;
        out.push(section.slice(at..end));
        at = end;
    }
    Ok(out)
}

/// A record's bytes with its timestamp delta changed to `timestamp_delta` (relative to a new
/// base timestamp), its length prefix adjusted; attributes, offset delta, key, value and
/// headers are copied as they were.
pub(crate) fn rebase_timestamp(
    record: &[u8],
    timestamp_delta: i64,
    out: &mut Vec<u8>,
) -> Result<(), CleanError> {
    let (_, size_len) = read_varint(record)?;
    let body = &record[size_len..];
    let attributes = *body.first().ok_or_else(|| corrupt("empty record"))?;
    let (_, old_delta_len) = read_varint(&body[1..])?;
    let rest = &body[1 + old_delta_len..];
    let mut delta = Vec::with_capacity(10);
    write_varint(zigzag(timestamp_delta), &mut delta);
    let new_size = 1 + delta.len() + rest.len();
    let new_size = i32::try_from(new_size).map_err(|_| corrupt("record over 2 GiB"))?;
    write_varint(zigzag(i64::from(new_size)), out);
    out.push(attributes);
    out.extend_from_slice(&delta);
    out.extend_from_slice(rest);
    Ok(())
}

/// Kafka's unsigned varint is protobuf's base-128 (up to 10 bytes for 64 bits): prost's.
fn read_varint(b: &[u8]) -> Result<(u64, usize), CleanError> {
    let mut rest = b;
    let value = prost::encoding::decode_varint(&mut rest)
        .map_err(|_| corrupt("truncated or overlong varint"))?;
    Ok((value, b.len() - rest.len()))
}

fn write_varint(v: u64, out: &mut Vec<u8>) {
    prost::encoding::encode_varint(v, out);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn read_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn read_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Splits a buffer of consecutive batches (a segment's bytes, a fetch's records) into one
/// slice per batch, by each batch's length field; a truncated tail is an error.
pub fn split_batches(buf: &[u8]) -> impl Iterator<Item = Result<&[u8], CleanError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < LOG_OVERHEAD {
            rest = &[];
            return Some(Err(corrupt("truncated batch header")));
        }
        let length = read_i32(rest, LENGTH_AT);
        let total = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|t| *t <= rest.len());
        match total {
            Some(t) => {
                let (batch, tail) = rest.split_at(t);
                rest = tail;
                Some(Ok(batch))
            }
            None => {
                rest = &[];
                Some(Err(corrupt(format!(
                    "batch length {length} past the buffer"
                ))))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 1 << 40, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_varint(zigzag(v), &mut out);
            let (back, n) = read_varint(&out).unwrap();
            assert_eq!(n, out.len());
            assert_eq!(unzigzag(back), v);
        }
        assert!(read_varint(&[0x80; 11]).is_err());
        assert!(read_varint(&[0x80]).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(BatchHeader::parse(&[0u8; 10]).is_err());
        let mut b = vec![0u8; HEADER_SIZE];
        b[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&49i32.to_be_bytes());
        b[MAGIC_AT] = 2;
        assert!(BatchHeader::parse(&b).is_err(), "CRC of zeros is not zero");
        let parts: Vec<_> = split_batches(&[0u8; 30]).collect();
        assert!(parts.iter().any(|p| p.is_err()));
    }
}
