//! Records of the `__transaction_state` topic in Apache Kafka's own layout (the generated
//! `TransactionLogKey` / `TransactionLogValue` schemas of Kafka 4.x), so that a log written by
//! Chronik reads the same in Kafka's tools and the other way round.
//!
//! ```text
//! key   = [version i16 = 0][transactional_id string (i16 length)]
//! value v0 (what Kafka writes below transaction.version 2):
//!         [version i16 = 0][producer_id i64][producer_epoch i16][timeout_ms i32][state i8]
//!         [partitions: i32 count (-1 = null), each [topic string][i32 count][partition i32...]]
//!         [last_update_ms i64][start_ms i64]
//! value v1 (flexible, transaction.version 2): the same fields, the array and its strings in
//!         compact form (unsigned varint length + 1, 0 = null), an empty tagged-field section
//!         after each partitions entry, and at the end the tagged fields
//!         0 PreviousProducerId i64 (default -1), 1 NextProducerId i64 (default -1),
//!         2 ClientTransactionVersion i16 (default 0), 3 NextProducerEpoch i16 (default -1,
//!         new in Kafka 4.4), written in tag order and only when not the default.
//! ```
//!
//! A record with a null value (a tombstone) removes the transactional id (expiration). The
//! partitions array is null in state Empty, as Kafka writes it. Decoding never trusts a length
//! read from the record further than the bytes that remain.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The only key version Kafka defines for this topic (`CoordinatorRecordType.TRANSACTION_LOG`).
pub const KEY_VERSION: i16 = 0;
/// Value version Kafka writes for clients below transaction.version 2 (TV_0, TV_1).
pub const VALUE_VERSION_V0: i16 = 0;
/// The first flexible value version (transaction.version 2).
pub const VALUE_VERSION_V1: i16 = 1;

/// Reading past the end of the record (bytes' `try_get_*`).
impl From<bytes::TryGetError> for RecordError {
    fn from(_: bytes::TryGetError) -> Self {
        RecordError::Truncated
    }
}

/// Why a `__transaction_state` record does not decode (or a string does not encode).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("unsupported transaction log value version {0}")]
    ValueVersion(i16),
    #[error("unknown transaction state id {0}")]
    State(i8),
    #[error("transaction log record ends inside a field")]
    Truncated,
    #[error("a null string where the schema allows none")]
    NullString,
    #[error("a transactional id or topic that is not UTF-8")]
    NotUtf8,
    #[error("a string of {0} bytes, longer than an i16 length allows")]
    TooLong(usize),
}

/// One partition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// Kafka's `TransactionState`, with its ids (the state byte of the record) and names (what
/// DescribeTransactions and ListTransactions report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name Kafka reports (`TransactionState.getName`).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Kafka's `isExpirationAllowed`: an idle transactional id may be removed only here.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// What the key of a `__transaction_state` record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnKey {
    /// Key version 0: the record is about this transactional id.
    TransactionalId(String),
    /// Another key version: Kafka skips it when loading ("a left over from an aborted upgrade").
    Unknown(i16),
}

/// The value of a `__transaction_state` record (Kafka's `TransactionLogValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    /// Tagged field 0 of v1 (not in v0: -1 when read from v0).
    pub previous_producer_id: i64,
    /// Tagged field 1 of v1 (not in v0: -1 when read from v0).
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub state: TxnState,
    /// Empty in state Empty (written as a null array).
    pub partitions: BTreeSet<TopicPartition>,
    pub last_update_timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    /// Tagged field 2 of v1 (not in v0: 0 when read from v0).
    pub client_transaction_version: i16,
    /// Tagged field 3 of v1 (Kafka 4.4; transaction.version 2 only): -1 otherwise.
    pub next_producer_epoch: i16,
}

/// The key of `transactional_id`'s records.
pub fn encode_key(transactional_id: &str) -> Result<Bytes, RecordError> {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(KEY_VERSION);
    put_str(&mut b, transactional_id)?;
    Ok(b.freeze())
}

impl TxnKey {
    pub fn decode(mut b: &[u8]) -> Result<TxnKey, RecordError> {
        let b = &mut b;
        let version = b.try_get_i16()?;
        if version != KEY_VERSION {
            return Ok(TxnKey::Unknown(version));
        }
        Ok(TxnKey::TransactionalId(get_str(b)?))
    }
}

impl TxnLogValue {
    /// Partitions grouped by topic, in topic order (Kafka groups them the same way; its topic
    /// order is a hash map's, so only the grouping is comparable byte for byte).
    fn by_topic(&self) -> BTreeMap<&str, Vec<i32>> {
        let mut m: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in &self.partitions {
            m.entry(tp.topic.as_str()).or_default().push(tp.partition);
        }
        m
    }

    /// Encodes as value `version` (0 or 1).
    pub fn encode(&self, version: i16) -> Result<Bytes, RecordError> {
        let flexible = match version {
            VALUE_VERSION_V0 => false,
            VALUE_VERSION_V1 => true,
            v => return Err(RecordError::ValueVersion(v)),
        };
        let mut b = BytesMut::with_capacity(64 + 16 * self.partitions.len());
        b.put_i16(version);
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i32(self.transaction_timeout_ms);
        b.put_i8(self.state.id());
        // Kafka writes a null array in Empty, an array (maybe empty) in every other state.
        let topics = (self.state != TxnState::Empty).then(|| self.by_topic());
        match (&topics, flexible) {
            (None, false) => b.put_i32(-1),
            (None, true) => put_uvarint(&mut b, 0),
            (Some(t), false) => b.put_i32(t.len() as i32),
            (Some(t), true) => put_uvarint(&mut b, t.len() as u64 + 1),
        }
        for (topic, parts) in topics.iter().flatten() {
            if flexible {
                put_compact_str(&mut b, topic);
                put_uvarint(&mut b, parts.len() as u64 + 1);
            } else {
                put_str(&mut b, topic)?;
                b.put_i32(parts.len() as i32);
            }
            for p in parts {
                b.put_i32(*p);
            }
            if flexible {
                put_uvarint(&mut b, 0); // the entry's (empty) tagged fields
            }
        }
        b.put_i64(self.last_update_timestamp_ms);
        b.put_i64(self.start_timestamp_ms);
        if flexible {
            self.put_tagged_fields(&mut b);
        }
        Ok(b.freeze())
    }

    fn put_tagged_fields(&self, b: &mut BytesMut) {
        let mut fields: Vec<(u64, Vec<u8>)> = Vec::with_capacity(4);
        if self.previous_producer_id != -1 {
            fields.push((0, self.previous_producer_id.to_be_bytes().to_vec()));
        }
        if self.next_producer_id != -1 {
            fields.push((1, self.next_producer_id.to_be_bytes().to_vec()));
        }
        if self.client_transaction_version != 0 {
            fields.push((2, self.client_transaction_version.to_be_bytes().to_vec()));
        }
        if self.next_producer_epoch != -1 {
            fields.push((3, self.next_producer_epoch.to_be_bytes().to_vec()));
        }
        put_uvarint(b, fields.len() as u64);
        for (tag, data) in fields {
            put_uvarint(b, tag);
            put_uvarint(b, data.len() as u64);
            b.put_slice(&data);
        }
    }

    /// Decodes value versions 0 and 1. Unknown tagged fields are skipped, as Kafka's
    /// generated code keeps them aside (newer Kafka versions may add some).
    pub fn decode(mut b: &[u8]) -> Result<TxnLogValue, RecordError> {
        let b = &mut b;
        let version = b.try_get_i16()?;
        let flexible = match version {
            VALUE_VERSION_V0 => false,
            VALUE_VERSION_V1 => true,
            v => return Err(RecordError::ValueVersion(v)),
        };
        let producer_id = b.try_get_i64()?;
        let producer_epoch = b.try_get_i16()?;
        let transaction_timeout_ms = b.try_get_i32()?;
        let state_id = b.try_get_i8()?;
        let state = TxnState::from_id(state_id).ok_or(RecordError::State(state_id))?;
        let partitions = get_partitions(b, flexible)?;
        let mut v = TxnLogValue {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            transaction_timeout_ms,
            state,
            partitions,
            last_update_timestamp_ms: b.try_get_i64()?,
            start_timestamp_ms: b.try_get_i64()?,
            client_transaction_version: 0,
            next_producer_epoch: -1,
        };
        if flexible {
            v.get_tagged_fields(b)?;
        }
        // Kafka ignores the partitions of an Empty record.
        if v.state == TxnState::Empty {
            v.partitions.clear();
        }
        Ok(v)
    }

    fn get_tagged_fields(&mut self, b: &mut &[u8]) -> Result<(), RecordError> {
        let count = get_uvarint(b)?;
        for _ in 0..count {
            let tag = get_uvarint(b)?;
            let size = usize::try_from(get_uvarint(b)?).map_err(|_| RecordError::Truncated)?;
            if b.len() < size {
                return Err(RecordError::Truncated);
            }
            let mut data = &b[..size];
            match tag {
                0 => self.previous_producer_id = data.try_get_i64()?,
                1 => self.next_producer_id = data.try_get_i64()?,
                2 => self.client_transaction_version = data.try_get_i16()?,
                3 => self.next_producer_epoch = data.try_get_i16()?,
                _ => {}
            }
            b.advance(size);
        }
        Ok(())
    }
}

fn get_partitions(b: &mut &[u8], flexible: bool) -> Result<BTreeSet<TopicPartition>, RecordError> {
    let mut out = BTreeSet::new();
    let topics = if flexible {
        match get_uvarint(b)? {
            0 => return Ok(out),
            n => n - 1,
        }
    } else {
        match b.try_get_i32()? {
            n if n < 0 => return Ok(out),
            n => n as u64,
        }
    };
    // Each topic entry takes at least 2 bytes: a count beyond that is a damaged record.
    if topics > b.len() as u64 / 2 {
        return Err(RecordError::Truncated);
    }
    for _ in 0..topics {
        let topic = if flexible {
            get_compact_str(b)?
        } else {
            get_str(b)?
        };
        let count = if flexible {
            get_uvarint(b)?
                .checked_sub(1)
                .ok_or(RecordError::Truncated)?
        } else {
            u64::try_from(b.try_get_i32()?).map_err(|_| RecordError::Truncated)?
        };
        if count > b.len() as u64 / 4 {
            return Err(RecordError::Truncated);
        }
        for _ in 0..count {
            out.insert(TopicPartition::new(topic.clone(), b.try_get_i32()?));
        }
        if flexible {
            skip_tagged_fields(b)?;
        }
    }
    Ok(out)
}

fn skip_tagged_fields(b: &mut &[u8]) -> Result<(), RecordError> {
    for _ in 0..get_uvarint(b)? {
        get_uvarint(b)?;
        let size = usize::try_from(get_uvarint(b)?).map_err(|_| RecordError::Truncated)?;
        if b.len() < size {
            return Err(RecordError::Truncated);
        }
        b.advance(size);
    }
    Ok(())
}

fn put_uvarint(b: &mut BytesMut, v: u64) {
    prost::encoding::encode_varint(v, b);
}

fn get_uvarint(b: &mut &[u8]) -> Result<u64, RecordError> {
    prost::encoding::decode_varint(b).map_err(|_| RecordError::Truncated)
}

fn put_str(b: &mut BytesMut, s: &str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong(s.len()))?;
    b.put_i16(len);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_compact_str(b: &mut BytesMut, s: &str) {
    put_uvarint(b, s.len() as u64 + 1);
    b.put_slice(s.as_bytes());
}

fn take_utf8(b: &mut &[u8], len: usize) -> Result<String, RecordError> {
    if b.len() < len {
        return Err(RecordError::Truncated);
    }
    let s = std::str::from_utf8(&b[..len])
        .map_err(|_| RecordError::NotUtf8)?
        .to_string();
    b.advance(len);
    Ok(s)
}

fn get_str(b: &mut &[u8]) -> Result<String, RecordError> {
    let len = b.try_get_i16()?;
    let len = usize::try_from(len).map_err(|_| RecordError::NullString)?;
    take_utf8(b, len)
}

fn get_compact_str(b: &mut &[u8]) -> Result<String, RecordError> {
    let len = get_uvarint(b)?
        .checked_sub(1)
        .ok_or(RecordError::NullString)?;
    take_utf8(b, usize::try_from(len).map_err(|_| RecordError::Truncated)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnLogValue {
        TxnLogValue {
            producer_id: 4242,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            transaction_timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                TopicPartition::new("a", 1),
                TopicPartition::new("a", 0),
                TopicPartition::new("bb", 7),
            ]
            .into_iter()
            .collect(),
            last_update_timestamp_ms: 1_700_000_000_123,
            start_timestamp_ms: 1_700_000_000_000,
            client_transaction_version: 0,
            next_producer_epoch: -1,
        }
    }

    /// The bytes Kafka's generated `TransactionLogValue.write` produces for version 0, built
    /// field by field from TransactionLogValue.json.
    #[test]
    fn v0_value_matches_kafkas_layout_byte_for_byte() {
        let mut want = Vec::new();
        want.extend(0i16.to_be_bytes()); // version
        want.extend(4242i64.to_be_bytes()); // ProducerId
        want.extend(3i16.to_be_bytes()); // ProducerEpoch
        want.extend(60_000i32.to_be_bytes()); // TransactionTimeoutMs
        want.push(1); // TransactionStatus = Ongoing
        want.extend(2i32.to_be_bytes()); // TransactionPartitions: 2 topics
        want.extend(1i16.to_be_bytes());
        want.extend(b"a");
        want.extend(2i32.to_be_bytes());
        want.extend(0i32.to_be_bytes());
        want.extend(1i32.to_be_bytes());
        want.extend(2i16.to_be_bytes());
        want.extend(b"bb");
        want.extend(1i32.to_be_bytes());
        want.extend(7i32.to_be_bytes());
        want.extend(1_700_000_000_123i64.to_be_bytes()); // LastUpdateTimestampMs
        want.extend(1_700_000_000_000i64.to_be_bytes()); // StartTimestampMs
        let v = ongoing();
        assert_eq!(v.encode(0).unwrap().as_ref(), want.as_slice());
        assert_eq!(TxnLogValue::decode(&want).unwrap(), v);
    }

    /// Version 1: compact array and strings, per-entry tagged fields, then tags 0-2 in order
    /// (each only when not its default).
    #[test]
    fn v1_value_matches_kafkas_flexible_layout() {
        let mut v = ongoing();
        v.previous_producer_id = 17;
        v.client_transaction_version = 2;
        let mut want = Vec::new();
        want.extend(1i16.to_be_bytes());
        want.extend(4242i64.to_be_bytes());
        want.extend(3i16.to_be_bytes());
        want.extend(60_000i32.to_be_bytes());
        want.push(1);
        want.push(3); // compact array: 2 topics + 1
        want.push(2); // compact string "a": 1 + 1
        want.extend(b"a");
        want.push(3); // 2 partitions + 1
        want.extend(0i32.to_be_bytes());
        want.extend(1i32.to_be_bytes());
        want.push(0); // entry tagged fields
        want.push(3);
        want.extend(b"bb");
        want.push(2);
        want.extend(7i32.to_be_bytes());
        want.push(0);
        want.extend(1_700_000_000_123i64.to_be_bytes());
        want.extend(1_700_000_000_000i64.to_be_bytes());
        want.push(2); // two tagged fields
        want.push(0); // tag 0 PreviousProducerId
        want.push(8);
        want.extend(17i64.to_be_bytes());
        want.push(2); // tag 2 ClientTransactionVersion
        want.push(2);
        want.extend(2i16.to_be_bytes());
        assert_eq!(v.encode(1).unwrap().as_ref(), want.as_slice());
        assert_eq!(TxnLogValue::decode(&want).unwrap(), v);
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Bytes written by Apache Kafka 4.4.0 itself (kafka-transaction-coordinator's generated
    /// TransactionLogValue through MessageUtil.toVersionPrefixedBytes, and
    /// TransactionLog.keyToBytes), for the same values; a one-off Java program printed them.
    #[test]
    fn bytes_match_what_kafka_4_4_writes() {
        let key = "0000000474782d31";
        let v0 = "0000000000000000109200030000ea60010000000200016100000002000000000000000100\
                  02626200000001000000070000018bcfe5687b0000018bcfe56800";
        let v1 = "0001000000000000109200030000ea600103026103000000000000000100036262020000\
                  0007000000018bcfe5687b0000018bcfe56800020008000000000000001102020002";
        let v1_next = "0001000000000000109200030000ea60010302610300000000000000010003626202\
                       00000007000000018bcfe5687b0000018bcfe568000400080000000000000011010800\
                       000000000000630202000203020005";
        let empty0 = "0000000000000000109200030000ea6000ffffffff0000018bcfe5687bffffffffffffffff";
        let empty1 = "0001000000000000109200030000ea6000000000018bcfe5687bffffffffffffffff00";
        let complete0 =
            "0000000000000000109200030000ea6004000000000000018bcfe5687b0000018bcfe56800";
        assert_eq!(encode_key("tx-1").unwrap().as_ref(), unhex(key).as_slice());
        let mut v = ongoing();
        assert_eq!(v.encode(0).unwrap().as_ref(), unhex(v0).as_slice());
        v.previous_producer_id = 17;
        v.client_transaction_version = 2;
        assert_eq!(v.encode(1).unwrap().as_ref(), unhex(v1).as_slice());
        assert_eq!(TxnLogValue::decode(&unhex(v1)).unwrap(), v);
        v.next_producer_id = 99;
        v.next_producer_epoch = 5;
        assert_eq!(v.encode(1).unwrap().as_ref(), unhex(v1_next).as_slice());
        assert_eq!(TxnLogValue::decode(&unhex(v1_next)).unwrap(), v);
        let empty = TxnLogValue {
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            ..ongoing()
        };
        assert_eq!(empty.encode(0).unwrap().as_ref(), unhex(empty0).as_slice());
        assert_eq!(empty.encode(1).unwrap().as_ref(), unhex(empty1).as_slice());
        // A completed transaction: an empty (not null) array.
        let complete = TxnLogValue {
            state: TxnState::CompleteCommit,
            partitions: BTreeSet::new(),
            ..ongoing()
        };
        assert_eq!(
            complete.encode(0).unwrap().as_ref(),
            unhex(complete0).as_slice()
        );
    }

    #[test]
    fn empty_state_writes_a_null_array_and_keys_are_version_0() {
        let v = TxnLogValue {
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            ..ongoing()
        };
        let v0 = v.encode(0).unwrap();
        assert_eq!(&v0[17..21], &(-1i32).to_be_bytes(), "null array in v0");
        let v1 = v.encode(1).unwrap();
        assert_eq!(v1[17], 0, "null compact array in v1");
        assert_eq!(v1[v1.len() - 1], 0, "no tagged fields at their defaults");
        for b in [v0, v1] {
            assert_eq!(TxnLogValue::decode(&b).unwrap(), v);
        }
        let k = encode_key("tx-1").unwrap();
        assert_eq!(k.as_ref(), b"\x00\x00\x00\x04tx-1");
        assert_eq!(
            TxnKey::decode(&k).unwrap(),
            TxnKey::TransactionalId("tx-1".into())
        );
        assert_eq!(TxnKey::decode(&[0, 1, 0, 0]).unwrap(), TxnKey::Unknown(1));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let mut v = ongoing();
        v.next_producer_id = 99;
        for version in [0, 1] {
            let b = v.encode(version).unwrap();
            for cut in 0..b.len() {
                assert!(
                    TxnLogValue::decode(&b[..cut]).is_err(),
                    "v{version} cut at {cut}"
                );
            }
        }
        let k = encode_key("abc").unwrap();
        for cut in 0..k.len() {
            assert!(TxnKey::decode(&k[..cut]).is_err(), "key cut at {cut}");
        }
        // A huge array count in a short record does not allocate or loop.
        let mut b = ongoing().encode(0).unwrap().to_vec();
        b[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(TxnLogValue::decode(&b), Err(RecordError::Truncated));
        let mut b = ongoing().encode(0).unwrap().to_vec();
        b[16] = 42;
        assert_eq!(TxnLogValue::decode(&b), Err(RecordError::State(42)));
        assert_eq!(
            TxnLogValue::decode(&[0, 2]),
            Err(RecordError::ValueVersion(2))
        );
        assert!(encode_key(&"x".repeat(40_000)).is_err());
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        let mut b = ongoing().encode(1).unwrap().to_vec();
        let last = b.len() - 1;
        b[last] = 1; // one tagged field: tag 9, 2 bytes
        b.extend([9, 2, 0xab, 0xcd]);
        assert_eq!(TxnLogValue::decode(&b).unwrap(), ongoing());
    }

    #[test]
    fn state_ids_and_names_are_kafkas() {
        let names: Vec<_> = TxnState::ALL.iter().map(|s| (s.id(), s.name())).collect();
        assert_eq!(
            names,
            vec![
                (0, "Empty"),
                (1, "Ongoing"),
                (2, "PrepareCommit"),
                (3, "PrepareAbort"),
                (4, "CompleteCommit"),
                (5, "CompleteAbort"),
                (6, "Dead"),
                (7, "PrepareEpochFence"),
            ]
        );
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_id(s.id()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_name("ongoing"), None);
    }
}
