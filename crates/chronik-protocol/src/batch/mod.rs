//! What a broker does to a produced record batch before it appends it, as Kafka's
//! `LogValidator` does, without I/O: recompress it into the topic's `compression.type`, stamp
//! it with the broker's time under `message.timestamp.type=LogAppendTime`, and refuse record
//! timestamps outside `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`.
//!
//! Under CreateTime every record is read, as Kafka's validator reads them (decompressing a
//! compressed batch): each record's timestamp is checked, and the header's max timestamp is set
//! to the records' largest when the producer wrote another (the time index, ListOffsets by
//! timestamp and time retention trust it). A batch that needs no change is left as the producer
//! sent it (no copy). Recompression
//! decodes the records with kafka-protocol's `RecordBatchDecoder` (decompression bounded by
//! [`Policy::max_decompressed_bytes`], see [`codec`]; over it: INVALID_RECORD, as Kafka) and encodes them again with its
//! `RecordBatchEncoder`: same records, offset deltas, timestamps, keys, values and headers, same
//! producer id, epoch and base sequence; a new CRC.

pub mod codec;

use std::cell::{Cell, RefCell};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, NO_TIMESTAMP,
};
use kafka_protocol::ResponseError;

pub use codec::{CodecError, Levels};

/// Attribute bit: the batch's timestamps are log append times.
pub const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
const ATTR_CODEC: i16 = 0x7;
const HEADER_SIZE: usize = 61;
const CRC_AT: usize = 17;
const CRC_COVERED_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;

/// A topic's rules for the batches appended to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The codec batches are stored with; `None` is Kafka's `compression.type=producer`.
    pub codec: Option<Compression>,
    pub levels: Levels,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms` (CreateTime only; `i64::MAX`: no bound).
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (CreateTime only).
    pub after_max_ms: i64,
    /// Most bytes the records of one batch may decompress to.
    pub max_decompressed_bytes: usize,
    /// The topic is compacted (`cleanup.policy` includes `compact`): a record without a key
    /// is refused, as Kafka's `LogValidator.validateKey` does.
    pub require_keys: bool,
}

impl Default for Policy {
    /// Kafka 4.x's topic defaults.
    fn default() -> Self {
        Policy {
            codec: None,
            levels: Levels::default(),
            log_append_time: false,
            before_max_ms: i64::MAX,
            after_max_ms: 3_600_000,
            max_decompressed_bytes: 64 << 20,
            require_keys: false,
        }
    }
}

/// Compressed batches up to this size that expand to at most [`INLINE_EXPANDED_BYTES`] are
/// decompressed and checked in place: well under a millisecond of CPU for any codec. Others are
/// heavy work (see [`Policy::is_heavy`] and [`Policy::inline_bounded`]).
pub const INLINE_COMPRESSED_BYTES: usize = 16 * 1024;
/// See [`INLINE_COMPRESSED_BYTES`].
pub const INLINE_EXPANDED_BYTES: usize = 256 * 1024;

impl Policy {
    /// Whether [`apply`] must re-encode this batch into another codec.
    pub fn recompresses(&self, batch: &[u8]) -> bool {
        self.codec.is_some_and(|c| c as i16 != codec_bits(batch))
    }

    /// Whether [`apply`] reads every record of a batch (CreateTime: their timestamps are
    /// checked) or re-encodes it.
    fn decodes(&self, batch: &[u8]) -> bool {
        !self.log_append_time || self.recompresses(batch) || self.require_keys
    }

    /// Whether [`apply`] may take milliseconds of CPU on this batch: it recompresses it, or it
    /// decompresses a large one to read its records. The caller may then move the work off its
    /// async runtime; anything else is a walk over bytes already in memory.
    pub fn is_heavy(&self, batch: &[u8]) -> bool {
        self.recompresses(batch)
            || (self.decodes(batch)
                && codec_bits(batch) != 0
                && batch.len() > INLINE_COMPRESSED_BYTES)
    }

    /// This policy with decompression of a compressed `batch` bounded for in-place work: a
    /// small batch may still be a bomb. [`apply`] under it answers [`BatchError::TooLarge`] for
    /// a batch that expands further, which the caller then treats as heavy work under the
    /// topic's own bound.
    pub fn inline_bounded(&self, batch: &[u8]) -> Policy {
        let mut p = self.clone();
        if codec_bits(batch) != 0 {
            p.max_decompressed_bytes = p.max_decompressed_bytes.min(INLINE_EXPANDED_BYTES);
        }
        p
    }
}

fn codec_bits(batch: &[u8]) -> i16 {
    read_i16(batch, ATTRIBUTES_AT).unwrap_or(0) & ATTR_CODEC
}

/// What [`apply`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The batch to append instead of the producer's; `None`: append the producer's.
    pub batch: Option<Vec<u8>>,
    /// The broker time stamped into the batch (LogAppendTime topics); the produce response's
    /// `log_append_time_ms`.
    pub log_append_time_ms: Option<i64>,
}

/// Why a batch was refused; each maps to the error Kafka answers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// Over `max.decompressed.message.bytes`: Kafka 4.4 answers INVALID_RECORD (measured).
    #[error("record batch too large: {0}")]
    TooLarge(String),
    /// Kafka's top-level message, with one entry per refused record (the produce response's
    /// `record_errors`).
    #[error("One or more records have been rejected due to invalid timestamp: {}", .0.first().map_or("", |e| e.message.as_str()))]
    InvalidTimestamp(Vec<RecordError>),
    /// Records without a key (their indexes in the batch) produced to a compacted topic:
    /// Kafka answers INVALID_RECORD with one record error each; the caller words them, as
    /// Kafka's message names the partition.
    #[error("Compacted topic cannot accept message without key")]
    KeylessOnCompacted(Vec<i32>),
}

impl BatchError {
    pub fn code(&self) -> ResponseError {
        match self {
            BatchError::Corrupt(_) => ResponseError::CorruptMessage,
            BatchError::TooLarge(_) => ResponseError::InvalidRecord,
            BatchError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
            BatchError::KeylessOnCompacted(_) => ResponseError::InvalidRecord,
        }
    }
}

impl From<CodecError> for BatchError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::TooLarge { .. } => BatchError::TooLarge(e.to_string()),
            CodecError::Corrupt { .. } | CodecError::Compress { .. } => {
                BatchError::Corrupt(e.to_string())
            }
        }
    }
}

/// A refused record: its index in the batch and why (Kafka's `BatchIndexAndErrorMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

fn read_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Applies `policy` to one v2 record batch (already checked to be exactly one batch) at broker
/// time `now_ms`.
pub fn apply(batch: &[u8], policy: &Policy, now_ms: i64) -> Result<Outcome, BatchError> {
    let short = || BatchError::Corrupt(format!("{} bytes is no record batch", batch.len()));
    if batch.len() < HEADER_SIZE {
        return Err(short());
    }
    let attributes = read_i16(batch, ATTRIBUTES_AT).ok_or_else(short)?;
    if attributes & ATTR_LOG_APPEND_TIME != 0 && !policy.log_append_time {
        // Kafka's LogValidator.validateTimestamp.
        return Err(BatchError::InvalidTimestamp(vec![RecordError {
            batch_index: 0,
            message: "Invalid timestamp type in message: producer should not set timestamp \
                      type to LogAppendTime."
                .into(),
        }]));
    }
    let window = (!policy.log_append_time).then(|| Window::new(policy, now_ms));
    let mut out = None;
    if policy.decodes(batch) {
        let (records, raw_len) = decode(batch, policy.max_decompressed_bytes)?;
        if policy.require_keys {
            let keyless: Vec<i32> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.key.is_none())
                .map(|(i, _)| i32::try_from(i).unwrap_or(i32::MAX))
                .collect();
            if !keyless.is_empty() {
                return Err(BatchError::KeylessOnCompacted(keyless));
            }
        }
        if let Some(w) = &window {
            w.refuse(records.iter().map(|r| (r.timestamp, r.offset)))?;
        }
        if policy.recompresses(batch) {
            let target = policy.codec.unwrap_or(Compression::None);
            // Computes the max timestamp from the records itself.
            out = encode(&records, target, policy.levels, raw_len)?;
        }
        if out.is_none() && window.is_some() {
            // Kafka's validator stores the records' largest timestamp, whatever the producer
            // claimed (DefaultRecordBatch.setMaxTimestamp; -1 when no record has one).
            let max = records
                .iter()
                .map(|r| r.timestamp)
                .fold(NO_TIMESTAMP, i64::max);
            if read_i64(batch, MAX_TIMESTAMP_AT) != Some(max) {
                let mut b = batch.to_vec();
                set_max_timestamp(&mut b, max)?;
                out = Some(b);
            }
        }
    }
    if policy.log_append_time {
        let mut b = match out {
            Some(b) => b,
            None => {
                check_crc(batch)?;
                batch.to_vec()
            }
        };
        stamp_log_append_time(&mut b, now_ms)?;
        return Ok(Outcome {
            batch: Some(b),
            log_append_time_ms: Some(now_ms),
        });
    }
    Ok(Outcome {
        batch: out,
        log_append_time_ms: None,
    })
}

/// The CreateTime bounds of KIP-937 around the broker's time.
struct Window {
    low: i64,
    high: i64,
}

impl Window {
    fn new(policy: &Policy, now_ms: i64) -> Window {
        Window {
            low: now_ms.saturating_sub(policy.before_max_ms),
            high: now_ms.saturating_add(policy.after_max_ms),
        }
    }

    /// Refuses the batch if any (timestamp, offset delta) is out of range, with Kafka's
    /// message for each such record (LogValidator.validateTimestamp).
    fn refuse(&self, records: impl Iterator<Item = (i64, i64)>) -> Result<(), BatchError> {
        let errors: Vec<RecordError> = records
            .filter(|(ts, _)| *ts != NO_TIMESTAMP && !(self.low..=self.high).contains(ts))
            .map(|(timestamp, offset)| RecordError {
                batch_index: offset.clamp(0, i64::from(i32::MAX)) as i32,
                message: format!(
                    "Timestamp {timestamp} of message with offset {offset} is out of range. \
                     The timestamp should be within [{}, {}]",
                    self.low, self.high
                ),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(BatchError::InvalidTimestamp(errors))
        }
    }
}

/// Sets the LogAppendTime attribute and `max_timestamp = now_ms`, as Kafka's
/// `DefaultRecordBatch.setMaxTimestamp`: the records keep their deltas (a consumer reads the
/// batch's max timestamp as every record's timestamp), and the CRC is computed again.
pub fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), BatchError> {
    if batch.len() < HEADER_SIZE {
        return Err(BatchError::Corrupt("short batch".into()));
    }
    let attributes = read_i16(batch, ATTRIBUTES_AT).unwrap_or(0) | ATTR_LOG_APPEND_TIME;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    set_max_timestamp(batch, now_ms)
}

/// Refuses a batch whose CRC does not match (as the decoder would), before the broker writes a
/// new one over it.
fn check_crc(batch: &[u8]) -> Result<(), BatchError> {
    let stated = batch
        .get(CRC_AT..CRC_AT + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes);
    let actual = batch.get(CRC_COVERED_FROM..).map(crc32c::crc32c);
    match (stated, actual) {
        (Some(s), Some(a)) if s == a => Ok(()),
        _ => Err(BatchError::Corrupt(format!(
            "record batch CRC mismatch (stated {stated:?}, computed {actual:?})"
        ))),
    }
}

/// Writes the header's max timestamp and computes the CRC again. Only called on a batch whose
/// CRC was checked (decoded) or that the broker built: a fresh CRC must never bless bytes that
/// arrived damaged.
fn set_max_timestamp(batch: &mut [u8], max_ms: i64) -> Result<(), BatchError> {
    if batch.len() < HEADER_SIZE {
        return Err(BatchError::Corrupt("short batch".into()));
    }
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The batch's records and the length of their uncompressed encoding.
fn decode(batch: &[u8], limit: usize) -> Result<(Vec<Record>, usize), BatchError> {
    let failure: RefCell<Option<CodecError>> = RefCell::new(None);
    let raw_len = Cell::new(0usize);
    let mut buf = Bytes::copy_from_slice(batch);
    let decompress = |data: &mut Bytes, c: Compression| -> anyhow::Result<Bytes> {
        match codec::decompress(c, data, limit) {
            Ok(b) => {
                raw_len.set(b.len());
                Ok(b)
            }
            Err(e) => {
                let msg = e.to_string();
                *failure.borrow_mut() = Some(e);
                anyhow::bail!(msg)
            }
        }
    };
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress));
    if let Some(e) = failure.into_inner() {
        return Err(e.into());
    }
    let set = set.map_err(|e| BatchError::Corrupt(e.to_string()))?;
    let count = read_i32(batch, RECORDS_COUNT_AT).unwrap_or(-1);
    if set.records.len() != count as usize || set.records.is_empty() {
        return Err(BatchError::Corrupt(format!(
            "batch claims {count} records, {} decoded",
            set.records.len()
        )));
    }
    Ok((set.records, raw_len.get()))
}

/// Encodes `records` as one batch compressed with `codec`. `None` when the decoded records
/// do not encode back to the producer's bytes (kafka-protocol keeps headers in a map, so a
/// record with a repeated header key would lose one): the caller then keeps the producer's
/// batch as it is rather than store altered records.
fn encode(
    records: &[Record],
    codec: Compression,
    levels: Levels,
    raw_len: usize,
) -> Result<Option<Vec<u8>>, BatchError> {
    let lossy = Cell::new(false);
    let failure: RefCell<Option<CodecError>> = RefCell::new(None);
    let compressor = |raw: &mut BytesMut, out: &mut BytesMut, c: Compression| {
        if raw.len() != raw_len {
            lossy.set(true);
            anyhow::bail!("records re-encode to {} bytes, not {raw_len}", raw.len());
        }
        codec::compress(c, levels, raw, out).map_err(|e| {
            let msg = e.to_string();
            *failure.borrow_mut() = Some(e);
            anyhow::anyhow!(msg)
        })
    };
    let mut out = BytesMut::with_capacity(raw_len / 2 + HEADER_SIZE);
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    let done = RecordBatchEncoder::encode_with_custom_compression(
        &mut out,
        records,
        &options,
        Some(compressor),
    );
    if lossy.get() {
        return Ok(None);
    }
    if let Some(e) = failure.into_inner() {
        return Err(e.into());
    }
    done.map_err(|e| BatchError::Corrupt(e.to_string()))?;
    // The encoder starts a new batch where records differ in batch fields; decoded from one
    // batch, they never do.
    if read_i32(&out, RECORDS_COUNT_AT) != Some(records.len() as i32) {
        return Ok(None);
    }
    Ok(Some(out.to_vec()))
}

#[cfg(test)]
mod tests;
