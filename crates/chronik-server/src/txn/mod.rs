//! The partition side of Kafka transactions (KIP-98, KIP-447, KIP-890 part 1): what a
//! partition leader keeps for transactional data, and the markers that end transactions.
//! The transaction coordinator (which decides commit or abort) lives elsewhere; it reaches a
//! partition through [`crate::partition::Partition::append_marker`] (WriteTxnMarkers, API 27).
//!
//! - [`control`]: the marker control batch, Kafka's byte layout.
//! - [`state`]: per partition, each producer's ongoing transaction, the last stable offset
//!   (LSO) and the aborted-transaction index. Rebuilt from the log whenever the producer state
//!   is (open, leadership, heal): the same header scan, plus reading the control batches.
//! - [`verify`]: the KIP-890 hook the produce path calls before a transaction's first batch.

pub mod control;
mod partition;
pub mod state;
pub mod verify;

pub use control::{EndTxnMarker, MarkerType};
pub use state::{AbortedTxn, TxnState};
pub use verify::{TxnVerifier, UncheckedTxnVerifier, Verification, VerifyRequest};

#[cfg(test)]
mod partition_tests;

#[cfg(test)]
pub(crate) mod tests {
    use bytes::BytesMut;
    use chronik_wal::BatchHeader;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// A parsed header of a `n`-record batch of producer `pid`.
    pub fn header(pid: i64, epoch: i16, seq: i32, n: i32, transactional: bool) -> BatchHeader {
        BatchHeader::parse(&data_batch(pid, epoch, seq, n, transactional)).expect("header")
    }

    /// A real v2 batch of `n` records of producer `pid` at sequence `seq`.
    pub fn data_batch(pid: i64, epoch: i16, seq: i32, n: i32, transactional: bool) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i,
                timestamp: 1_000,
                key: None,
                value: Some(bytes::Bytes::from(format!("v{i}"))),
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
        .expect("encode");
        buf.to_vec()
    }
}
