//! Reading records back: one Fetch per leader covering its partitions, decoded into values.
//! Used by the consume and roundtrip modes and by full verification.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use kafka_protocol::records::RecordBatchDecoder;

use crate::client::Connection;
use crate::cluster::topic_name;
use crate::report::error_name;

/// Per-partition cap on one Fetch answer.
const PARTITION_MAX_BYTES: i32 = 4 * 1024 * 1024;
/// Cap on one whole Fetch answer.
const FETCH_MAX_BYTES: i32 = 32 * 1024 * 1024;

/// One fetched record.
pub struct Fetched {
    pub offset: i64,
    pub value: Option<Bytes>,
}

/// What one partition's part of a Fetch answer held.
pub struct PartitionFetch {
    pub partition: i32,
    pub high_watermark: i64,
    pub records: Vec<Fetched>,
    /// The offset after the last whole batch returned, control batches (transaction markers,
    /// which `records` leaves out) included: where the next fetch starts. None: no whole batch.
    pub next_offset: Option<i64>,
}

/// Kafka's isolation levels for Fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    /// Up to the last stable offset; aborted transactions' batches are still returned (the
    /// answer lists them), as a Kafka client filters them itself.
    ReadCommitted,
}

/// Fetches `positions` (partition → next offset) from one leader, waiting up to `max_wait`
/// for at least one byte.
pub async fn fetch(
    conn: &Connection,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    max_wait: Duration,
    timeout: Duration,
    isolation: Isolation,
) -> Result<Vec<PartitionFetch>> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(match isolation {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        })
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                positions
                    .iter()
                    .map(|(p, off)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*off)
                            .with_partition_max_bytes(PARTITION_MAX_BYTES)
                            .with_log_start_offset(-1)
                            .with_current_leader_epoch(-1)
                    })
                    .collect(),
            )]);
    let resp = conn.send_timeout(req, timeout + max_wait).await?;
    if resp.error_code != 0 {
        bail!("Fetch failed with {}", error_name(resp.error_code));
    }
    let mut out = Vec::new();
    for t in resp.responses {
        for p in t.partitions {
            if p.error_code != 0 {
                bail!(
                    "Fetch {topic}/{} failed with {}",
                    p.partition_index,
                    error_name(p.error_code)
                );
            }
            let mut records = Vec::new();
            let next_offset = match p.records {
                Some(data) => decode_complete_batches(data, &mut records)?,
                None => None,
            };
            out.push(PartitionFetch {
                partition: p.partition_index,
                high_watermark: p.high_watermark,
                records,
                next_offset,
            });
        }
    }
    Ok(out)
}

/// Decodes every whole batch; a trailing partial batch (cut by max_bytes) is left for the
/// next fetch, as Kafka clients do. Returns the offset after the last whole batch.
fn decode_complete_batches(mut data: Bytes, out: &mut Vec<Fetched>) -> Result<Option<i64>> {
    let mut next = None;
    // Batch header: base offset (8) then the length of the rest (4).
    while data.len() >= 12 {
        let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if len < 0 {
            bail!("record batch with negative length {len}");
        }
        let total = 12 + len as usize;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        let sets = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| anyhow::anyhow!("undecodable record batch: {e}"))?;
        for r in sets.records {
            next = Some(r.offset + 1);
            if r.control {
                continue;
            }
            out.push(Fetched {
                offset: r.offset,
                value: r.value,
            });
        }
    }
    Ok(next)
}
