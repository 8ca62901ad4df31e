//! Records of the `__consumer_offsets` topic, in Apache Kafka's own layout, so that tools which
//! read that topic understand ours.
//!
//! Offset commit (big-endian, strings with an i16 length):
//!
//! ```text
//! key   = [version i16 = 1][group string][topic string][partition i32]
//! value = [version i16 = 3][offset i64][leader_epoch i32][metadata string][commit_timestamp i64]
//! ```
//!
//! A record with a null value deletes the key (a tombstone). Keys of other versions (Kafka
//! uses version 2 for group metadata) are not offset commits; the replay skips them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use thiserror::Error;

pub const OFFSET_KEY_VERSION: i16 = 1;
pub const OFFSET_VALUE_VERSION: i16 = 3;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record ends inside a field")]
    Truncated,
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("unsupported offset value version {0}")]
    ValueVersion(i16),
    #[error("string of {0} bytes does not fit an i16 length")]
    TooLong(usize),
    #[error("encoding the record batch: {0}")]
    Batch(String),
}

/// Which committed offset a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// What was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// What the key of a `__consumer_offsets` record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset(OffsetKey),
    /// A key version this code does not handle (group metadata, future versions).
    Other(i16),
}

fn put_str(b: &mut BytesMut, s: &str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong(s.len()))?;
    b.put_i16(len);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn get_str(b: &mut &[u8]) -> Result<String, RecordError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(String::new());
    }
    let len = len as usize;
    if b.len() < len {
        return Err(RecordError::Truncated);
    }
    let s = std::str::from_utf8(&b[..len]).map_err(|_| RecordError::NotUtf8)?;
    let out = s.to_string();
    b.advance(len);
    Ok(out)
}

fn get_i16(b: &mut &[u8]) -> Result<i16, RecordError> {
    if b.len() < 2 {
        return Err(RecordError::Truncated);
    }
    Ok(b.get_i16())
}

fn get_i32(b: &mut &[u8]) -> Result<i32, RecordError> {
    if b.len() < 4 {
        return Err(RecordError::Truncated);
    }
    Ok(b.get_i32())
}

fn get_i64(b: &mut &[u8]) -> Result<i64, RecordError> {
    if b.len() < 8 {
        return Err(RecordError::Truncated);
    }
    Ok(b.get_i64())
}

impl OffsetKey {
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let mut b = BytesMut::with_capacity(8 + self.group.len() + self.topic.len());
        b.put_i16(OFFSET_KEY_VERSION);
        put_str(&mut b, &self.group)?;
        put_str(&mut b, &self.topic)?;
        b.put_i32(self.partition);
        Ok(b.freeze())
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let mut b = BytesMut::with_capacity(26 + self.metadata.len());
        b.put_i16(OFFSET_VALUE_VERSION);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata)?;
        b.put_i64(self.commit_timestamp_ms);
        Ok(b.freeze())
    }

    /// Decodes value versions 1 and 3 (Kafka's layouts with and without the expire
    /// timestamp and the leader epoch).
    pub fn decode(mut b: &[u8]) -> Result<OffsetValue, RecordError> {
        let b = &mut b;
        let version = get_i16(b)?;
        match version {
            0 | 1 => {
                let offset = get_i64(b)?;
                let metadata = get_str(b)?;
                let commit_timestamp_ms = get_i64(b)?;
                Ok(OffsetValue {
                    offset,
                    leader_epoch: -1,
                    metadata,
                    commit_timestamp_ms,
                })
            }
            3 => Ok(OffsetValue {
                offset: get_i64(b)?,
                leader_epoch: get_i32(b)?,
                metadata: get_str(b)?,
                commit_timestamp_ms: get_i64(b)?,
            }),
            v => Err(RecordError::ValueVersion(v)),
        }
    }
}

impl Key {
    pub fn decode(mut b: &[u8]) -> Result<Key, RecordError> {
        let b = &mut b;
        let version = get_i16(b)?;
        if version > OFFSET_KEY_VERSION {
            return Ok(Key::Other(version));
        }
        Ok(Key::Offset(OffsetKey {
            group: get_str(b)?,
            topic: get_str(b)?,
            partition: get_i32(b)?,
        }))
    }
}

/// One record batch for a `__consumer_offsets` partition: one record per entry, in order, a
/// `None` value being a tombstone. Record `i` lands at the batch's base offset + `i`.
pub fn encode_offsets_batch(
    entries: &[(OffsetKey, Option<OffsetValue>)],
    timestamp_ms: i64,
) -> Result<BytesMut, RecordError> {
    let mut records = Vec::with_capacity(entries.len());
    for (i, (k, v)) in entries.iter().enumerate() {
        records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps one batch while offset - sequence stays constant.
            sequence: i as i32 - 1,
            timestamp: timestamp_ms,
            key: Some(k.encode()?),
            value: v.as_ref().map(OffsetValue::encode).transpose()?,
            headers: IndexMap::new(),
        });
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| RecordError::Batch(e.to_string()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let k = OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        let kb = k.encode().unwrap();
        let vb = v.encode().unwrap();
        assert_eq!(Key::decode(&kb).unwrap(), Key::Offset(k));
        assert_eq!(OffsetValue::decode(&vb).unwrap(), v);
        for cut in 0..kb.len() {
            assert!(Key::decode(&kb[..cut]).is_err(), "key cut at {cut}");
        }
        for cut in 0..vb.len() {
            assert!(
                OffsetValue::decode(&vb[..cut]).is_err(),
                "value cut at {cut}"
            );
        }
        assert_eq!(Key::decode(&[0, 2, 0, 0]).unwrap(), Key::Other(2));
        assert_eq!(
            OffsetValue::decode(&[0, 9]),
            Err(RecordError::ValueVersion(9))
        );
        let long = "x".repeat(40_000);
        assert!(OffsetKey {
            group: long,
            topic: "t".into(),
            partition: 0
        }
        .encode()
        .is_err());
    }
}
