//! Transaction markers as Kafka stores them (`EndTransactionMarker`): a control batch (attribute
//! bits control and transactional) of the transaction's producer id and epoch, base sequence
//! -1, holding one record whose key is `(version i16 = 0, type i16: 0 abort, 1 commit)` and
//! whose value is `(version i16 = 0, coordinator_epoch i32)`. Uncompressed, as Kafka writes them.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use thiserror::Error;

/// Kafka's `ControlRecordType`: the key's type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerType {
    Abort,
    Commit,
}

impl MarkerType {
    fn code(self) -> i16 {
        match self {
            MarkerType::Abort => 0,
            MarkerType::Commit => 1,
        }
    }

    /// WriteTxnMarkers' `transaction_result` (false = abort, true = commit).
    pub fn from_committed(committed: bool) -> MarkerType {
        if committed {
            MarkerType::Commit
        } else {
            MarkerType::Abort
        }
    }
}

/// One end-of-transaction marker: what ends the producer's transaction on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub marker: MarkerType,
    pub coordinator_epoch: i32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("cannot encode a transaction marker: {0}")]
    Encode(String),
    #[error("undecodable control batch: {0}")]
    Decode(String),
    #[error("control batch holds {0} records, not one")]
    NotOneRecord(usize),
    #[error("control record without a 4-byte key")]
    BadKey,
    /// A control record type other than abort and commit (Kafka 4 also writes LeaderChange
    /// and KRaft records as control batches, never in a data partition): not a marker.
    #[error("control record type {0} is not a transaction marker")]
    NotAMarker(i16),
    #[error("transaction marker without a 6-byte value")]
    BadValue,
}

const CONTROL_KEY_VERSION: i16 = 0;
const MARKER_VALUE_VERSION: i16 = 0;

/// The control batch of `m` (base offset 0; the log assigns it), timestamped `timestamp_ms`.
pub fn encode_marker(m: &EndTxnMarker, timestamp_ms: i64) -> Result<Vec<u8>, ControlError> {
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&m.marker.code().to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&MARKER_VALUE_VERSION.to_be_bytes());
    value.extend_from_slice(&m.coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        // Base sequence -1 (RecordBatch.NO_SEQUENCE), as Kafka's control batches.
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::slice::from_ref(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| ControlError::Encode(e.to_string()))?;
    Ok(buf.to_vec())
}

/// The marker a stored control batch holds (whole batch, as the log hands it back).
pub fn decode_marker(batch: &[u8]) -> Result<EndTxnMarker, ControlError> {
    let mut buf = Bytes::copy_from_slice(batch);
    let set =
        RecordBatchDecoder::decode(&mut buf).map_err(|e| ControlError::Decode(e.to_string()))?;
    let [record] = set.records.as_slice() else {
        return Err(ControlError::NotOneRecord(set.records.len()));
    };
    let mut key = record.key.clone().ok_or(ControlError::BadKey)?;
    if key.len() < 4 {
        return Err(ControlError::BadKey);
    }
    let _version = key.get_i16();
    let marker = match key.get_i16() {
        0 => MarkerType::Abort,
        1 => MarkerType::Commit,
        other => return Err(ControlError::NotAMarker(other)),
    };
    let mut value = record.value.clone().ok_or(ControlError::BadValue)?;
    if value.len() < 6 {
        return Err(ControlError::BadValue);
    }
    let _version = value.get_i16();
    Ok(EndTxnMarker {
        producer_id: record.producer_id,
        producer_epoch: record.producer_epoch,
        marker,
        coordinator_epoch: value.get_i32(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_wal::BatchHeader;

    #[test]
    fn a_marker_round_trips_in_kafkas_layout() {
        let m = EndTxnMarker {
            producer_id: 42,
            producer_epoch: 3,
            marker: MarkerType::Abort,
            coordinator_epoch: 7,
        };
        let batch = encode_marker(&m, 1_700_000_000_000).expect("encode");
        let h = BatchHeader::parse(&batch).expect("header");
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
        assert_eq!((h.base_sequence, h.records_count), (-1, 1));
        assert_eq!(h.compression(), 0);
        chronik_wal::verify_batch_crc(&batch).expect("crc");
        // Key and value bytes exactly as Kafka's EndTransactionMarker writes them: the
        // single record sits at the end of the batch, value last, then 0 headers.
        let tail = &batch[batch.len() - 7..];
        assert_eq!(tail, &[0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(decode_marker(&batch), Ok(m));
        let commit = EndTxnMarker {
            marker: MarkerType::Commit,
            ..m
        };
        let batch = encode_marker(&commit, 0).expect("encode");
        assert_eq!(decode_marker(&batch), Ok(commit));
    }

    #[test]
    fn a_data_batch_is_not_a_marker() {
        let data = crate::txn::tests::data_batch(5, 0, 0, 1, true);
        assert!(decode_marker(&data).is_err());
    }
}
