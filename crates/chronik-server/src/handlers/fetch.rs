//! Fetch with long poll: read up to the high watermark; if fewer than `min_bytes` are
//! ready, sleep until one of the partitions commits more data (woken by the WAL's
//! commit watch, not by polling), the wait expires, or the broker shuts down.
//!
//! Sessions (KIP-227) are not kept: every answer carries session id 0, which tells
//! clients to keep sending full fetch requests.
//!
//! Isolation (KIP-98): read_uncommitted (0) reads up to the high watermark, read_committed
//! (1) up to the last stable offset and also gets the aborted transactions overlapping what
//! it reads, so the client drops their records. Every answer carries the LSO, as Kafka's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronik_wal::WalError;
use futures::future::select_all;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, ResponseKind};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{topic_name, topic_str, Reply};
use crate::broker::Broker;
use crate::partition::Partition;

/// FetchRequest's isolation_level for read_committed.
const READ_COMMITTED: i8 = 1;

/// The FetchResponse form of (producer id, first offset) pairs.
fn aborted(list: &[(i64, i64)]) -> Vec<AbortedTransaction> {
    list.iter()
        .map(|&(pid, first)| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(pid))
                .with_first_offset(first)
        })
        .collect()
}

/// Longest long-poll we honour, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most bytes in one fetch response, whatever the client asks (below the frame limit).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

pub fn handle(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
        let deadline = Instant::now() + wait;
        let min_bytes = req.min_bytes.max(0) as usize;
        let max_bytes = if req.max_bytes <= 0 {
            MAX_RESPONSE_BYTES
        } else {
            (req.max_bytes as usize).min(MAX_RESPONSE_BYTES)
        };
        loop {
            let mut watches = Vec::new();
            let read_committed = req.isolation_level == READ_COMMITTED;
            let (responses, total, errored) = read_once(
                &broker,
                &req.topics,
                (version, read_committed),
                max_bytes,
                &mut watches,
            )
            .await;
            let expired = Instant::now() >= deadline;
            if total >= min_bytes
                || errored
                || expired
                || watches.is_empty()
                || broker.shutdown.is_triggered()
            {
                return ResponseKind::Fetch(
                    FetchResponse::default()
                        .with_session_id(0)
                        .with_responses(responses),
                );
            }
            let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = broker.shutdown.wait() => {}
            }
        }
    }))
}

/// One pass over the requested partitions. Subscribes to each partition's commit watch
/// *before* reading it, so a commit that lands after the read still wakes the waiter. Reads of
/// old data (likely out of the page cache) run on the blocking pool (`read_async`), so a
/// consumer far behind does not stall the runtime thread other connections share.
async fn read_once(
    broker: &Broker,
    topics: &[FetchTopic],
    (version, read_committed): (i16, bool),
    max_bytes: usize,
    watches: &mut Vec<watch::Receiver<i64>>,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let state = broker.metadata();
    let mut total = 0usize;
    let mut errored = false;
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let name = if version >= 13 {
            state.topic_by_id(&t.topic_id).map(|i| i.name.clone())
        } else {
            Some(topic_str(&t.topic).to_string())
        };
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let pd = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_records(Some(Bytes::new()));
            let info = name.as_deref().and_then(|n| state.topic(n));
            let part_info = info.and_then(|i| {
                usize::try_from(p.partition)
                    .ok()
                    .and_then(|x| i.partitions.get(x))
            });
            let partition = name
                .as_deref()
                .and_then(|n| broker.partitions.partition(n, p.partition));
            let (Some(part_info), Some(partition)) = (part_info, partition) else {
                errored = true;
                let code = if part_info.is_some() {
                    ResponseError::NotLeaderOrFollower
                } else {
                    unknown
                };
                parts.push(pd.with_error_code(code.code()));
                continue;
            };
            if p.current_leader_epoch >= 0 && p.current_leader_epoch != part_info.leader_epoch {
                errored = true;
                let code = if p.current_leader_epoch > part_info.leader_epoch {
                    ResponseError::UnknownLeaderEpoch
                } else {
                    ResponseError::FencedLeaderEpoch
                };
                parts.push(pd.with_error_code(code.code()));
                continue;
            }
            watches.push(partition.replica.subscribe_hw());
            let (pd, read, failed) =
                read_partition(&partition, p, read_committed, pd, max_bytes, total).await;
            total += read;
            errored |= failed;
            parts.push(pd);
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(
                    name.as_deref()
                        .map(topic_name)
                        .unwrap_or_else(|| t.topic.clone()),
                )
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    (out, total, errored)
}

/// One led partition's answer: (partition data, bytes read, whether it is an error).
/// Consumers see only what every ISR replica has: the high watermark; read_committed ones
/// only what no open transaction holds back: the LSO.
async fn read_partition(
    partition: &Partition,
    p: &FetchPartition,
    read_committed: bool,
    pd: PartitionData,
    max_bytes: usize,
    total: usize,
) -> (PartitionData, usize, bool) {
    let log = &partition.log;
    // The LSO first: it is at most the high watermark read after it.
    let lso = partition.last_stable_offset();
    let hw = partition.replica.high_watermark();
    let limit = if read_committed { lso } else { hw };
    let pd = pd
        .with_high_watermark(hw)
        .with_last_stable_offset(lso)
        .with_log_start_offset(log.log_start_offset())
        // Kafka: null for read_uncommitted, the (maybe empty) list for read_committed.
        .with_aborted_transactions(
            read_committed.then(|| aborted(&partition.aborted_transactions(p.fetch_offset, limit))),
        );
    let budget = (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
    if budget == 0 || p.fetch_offset == limit {
        return (pd, 0, false);
    }
    match log.read_async(p.fetch_offset, budget, limit).await {
        // Only the first data in a response may exceed the limits (KIP-74), so a consumer
        // can always make progress past a large batch.
        Ok(read) if total == 0 || read.data.len() <= budget => {
            let n = read.data.len();
            let counters = &partition.counters;
            counters.fetch_bytes.increment(n as u64);
            counters.fetch_messages.increment(read.records);
            (pd.with_records(Some(read.data)), n, false)
        }
        Ok(_) => (pd, 0, false),
        Err(WalError::OffsetOutOfRange { .. }) => (
            pd.with_error_code(ResponseError::OffsetOutOfRange.code()),
            0,
            true,
        ),
        Err(e) => {
            tracing::error!(topic = %partition.topic, partition = p.partition, error = %e, "fetch read failed");
            (
                pd.with_error_code(ResponseError::KafkaStorageError.code()),
                0,
                true,
            )
        }
    }
}
