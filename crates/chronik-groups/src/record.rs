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
pub const GROUP_KEY_VERSION: i16 = 2;
pub const GROUP_VALUE_VERSION: i16 = 3;

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

/// One member in a group metadata record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as of a generation (Kafka's GroupMetadataValue, version 3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRecord {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<GroupMemberRecord>,
}

/// What the key of a `__consumer_offsets` record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset(OffsetKey),
    /// Group metadata (key version 2).
    Group(String),
    /// A key version this code does not handle.
    Other(i16),
}

/// The key of `group`'s metadata record.
pub fn group_key(group: &str) -> Result<Bytes, RecordError> {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(GROUP_KEY_VERSION);
    put_str(&mut b, group)?;
    Ok(b.freeze())
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) -> Result<(), RecordError> {
    match s {
        Some(s) => put_str(b, s),
        None => {
            b.put_i16(-1);
            Ok(())
        }
    }
}

fn get_nullable_str(b: &mut &[u8]) -> Result<Option<String>, RecordError> {
    if b.len() >= 2 && i16::from_be_bytes([b[0], b[1]]) < 0 {
        b.advance(2);
        return Ok(None);
    }
    get_str(b).map(Some)
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) -> Result<(), RecordError> {
    let len = i32::try_from(v.len()).map_err(|_| RecordError::TooLong(v.len()))?;
    b.put_i32(len);
    b.put_slice(v);
    Ok(())
}

fn get_bytes(b: &mut &[u8]) -> Result<Bytes, RecordError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if b.len() < len {
        return Err(RecordError::Truncated);
    }
    let out = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Ok(out)
}

impl GroupRecord {
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let mut b = BytesMut::new();
        b.put_i16(GROUP_VALUE_VERSION);
        put_str(&mut b, &self.protocol_type)?;
        b.put_i32(self.generation);
        put_nullable_str(&mut b, self.protocol.as_deref())?;
        put_nullable_str(&mut b, self.leader.as_deref())?;
        b.put_i64(self.state_timestamp_ms);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id)?;
            put_nullable_str(&mut b, m.instance_id.as_deref())?;
            put_str(&mut b, &m.client_id)?;
            put_str(&mut b, &m.client_host)?;
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.session_timeout_ms);
            put_bytes(&mut b, &m.subscription)?;
            put_bytes(&mut b, &m.assignment)?;
        }
        Ok(b.freeze())
    }

    /// Decodes versions 0-3 of Kafka's group metadata value.
    pub fn decode(mut b: &[u8]) -> Result<GroupRecord, RecordError> {
        let b = &mut b;
        let version = get_i16(b)?;
        if !(0..=3).contains(&version) {
            return Err(RecordError::ValueVersion(version));
        }
        let protocol_type = get_str(b)?;
        let generation = get_i32(b)?;
        let protocol = get_nullable_str(b)?;
        let leader = get_nullable_str(b)?;
        let state_timestamp_ms = if version >= 2 { get_i64(b)? } else { -1 };
        let count = get_i32(b)?;
        // Bounded by the record's own length: each member needs at least 20 bytes.
        if count < 0 || count as usize > b.len() / 20 + 1 {
            return Err(RecordError::Truncated);
        }
        let mut members = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let member_id = get_str(b)?;
            let instance_id = if version >= 3 {
                get_nullable_str(b)?
            } else {
                None
            };
            let client_id = get_str(b)?;
            let client_host = get_str(b)?;
            let rebalance_timeout_ms = if version >= 1 { get_i32(b)? } else { -1 };
            let session_timeout_ms = get_i32(b)?;
            let subscription = get_bytes(b)?;
            let assignment = get_bytes(b)?;
            members.push(GroupMemberRecord {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        Ok(GroupRecord {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp_ms,
            members,
        })
    }
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
        if version == GROUP_KEY_VERSION {
            return Ok(Key::Group(get_str(b)?));
        }
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
    encode_raw_batch(&encode_entries(entries)?, timestamp_ms)
}

/// Offsets entries as (key, value) record bytes.
fn encode_entries(
    entries: &[(OffsetKey, Option<OffsetValue>)],
) -> Result<Vec<(Bytes, Option<Bytes>)>, RecordError> {
    entries
        .iter()
        .map(|(k, v)| {
            Ok((
                k.encode()?,
                v.as_ref().map(OffsetValue::encode).transpose()?,
            ))
        })
        .collect()
}

/// The batch that records `group`'s membership (`None`: the group is gone).
pub fn encode_group_batch(
    group: &str,
    record: Option<&GroupRecord>,
    timestamp_ms: i64,
) -> Result<BytesMut, RecordError> {
    encode_raw_batch(
        &[(
            group_key(group)?,
            record.map(GroupRecord::encode).transpose()?,
        )],
        timestamp_ms,
    )
}

/// The batch of a transactional offset commit (KIP-447 TxnOffsetCommit): the producer's id and
/// epoch, the transactional bit, no sequence (base sequence -1: the coordinator writes it, as
/// Kafka's coordinator appends do, so the partition checks only the producer's epoch).
pub fn encode_txn_offsets_batch(
    entries: &[(OffsetKey, Option<OffsetValue>)],
    producer_id: i64,
    producer_epoch: i16,
    timestamp_ms: i64,
) -> Result<BytesMut, RecordError> {
    let raw = encode_entries(entries)?;
    encode_batch(&raw, Some((producer_id, producer_epoch)), timestamp_ms)
}

/// One batch of already-encoded (key, value) records, a `None` value being a tombstone. The
/// other encoders build on it; tests use it to write damaged records.
pub fn encode_raw_batch(
    records: &[(Bytes, Option<Bytes>)],
    timestamp_ms: i64,
) -> Result<BytesMut, RecordError> {
    encode_batch(records, None, timestamp_ms)
}

/// `txn`: the transactional producer (id, epoch) the batch belongs to.
fn encode_batch(
    records: &[(Bytes, Option<Bytes>)],
    txn: Option<(i64, i16)>,
    timestamp_ms: i64,
) -> Result<BytesMut, RecordError> {
    let (producer_id, producer_epoch) = txn.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: txn.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps one batch while offset - sequence stays constant.
            sequence: i as i32 - 1,
            timestamp: timestamp_ms,
            key: Some(k.clone()),
            value: v.clone(),
            headers: IndexMap::new(),
        })
        .collect();
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
        assert_eq!(
            Key::decode(&[0, 2, 0, 0]).unwrap(),
            Key::Group(String::new())
        );
        assert_eq!(Key::decode(&[0, 7, 0, 0]).unwrap(), Key::Other(7));
        let g = GroupRecord {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 5,
            members: vec![GroupMemberRecord {
                member_id: "m1".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/1.2.3.4".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let gb = g.encode().unwrap();
        assert_eq!(GroupRecord::decode(&gb).unwrap(), g);
        assert_eq!(
            Key::decode(&group_key("grp").unwrap()).unwrap(),
            Key::Group("grp".into())
        );
        for cut in 0..gb.len() {
            assert!(
                GroupRecord::decode(&gb[..cut]).is_err(),
                "group value cut at {cut}"
            );
        }
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
