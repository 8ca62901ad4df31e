//! Transactional producing (`--transactional-id`): the Kafka producer's side of transactions
//! (KIP-98, transaction version 1), as the Java producer and librdkafka speak it.
//!
//! Once per run: FindCoordinator (key type 1, the transactional id) and InitProducerId with the
//! transactional id at that coordinator, which gives the producer id and epoch every batch
//! carries. Per transaction: AddPartitionsToTxn for the topic's partitions, the transaction's
//! messages as transactional batches (the driver's ordinary pipelined Produce requests, with
//! the transactional id), and once every one of them is acknowledged, EndTxn (commit, or abort
//! when one failed). A message counts as acknowledged only when its transaction commits.
//!
//! The driver calls `begin` and `end` between transactions, when nothing of the transaction is
//! in flight, so neither needs to overlap with Produce requests: the same strict order the Java
//! producer keeps (`commitTransaction` flushes, then ends; the next transaction's first send
//! waits for the commit).

use std::time::Duration;

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use serde::Serialize;
use tokio::time::Instant;

use crate::client::Connection;
use crate::cluster::{topic_name, TopicLayout};
use crate::report::{error_name, new_histogram, record, Latency};

/// FindCoordinator's key type for a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// How long finding the coordinator and InitProducerId are retried while the broker answers a
/// retriable error (the transaction log is still being created or loaded).
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before asking again after a retriable answer at start.
const INIT_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Pause before asking again after CONCURRENT_TRANSACTIONS: the previous transaction's markers
/// are still being written. As short as tokio's timer goes (1 ms), so that the bench measures
/// the broker's marker time rather than its own back-off (the Java producer waits 20 ms here,
/// librdkafka its retry.backoff.ms). Measured on a release broker, transactions of 100: 2 ms
/// gave 12.0k msg/s, 1 ms 22.6k (docs/performance.md).
const CONCURRENT_RETRY_PAUSE: Duration = Duration::from_millis(1);

const COORDINATOR_LOAD_IN_PROGRESS: i16 = ResponseError::CoordinatorLoadInProgress.code();
const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
const CONCURRENT_TRANSACTIONS: i16 = ResponseError::ConcurrentTransactions.code();
const REQUEST_TIMED_OUT: i16 = ResponseError::RequestTimedOut.code();

/// Answers at start that go away when asked again (Apache Kafka right after start, or a
/// transaction log still being created).
fn init_retriable(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS
            | COORDINATOR_NOT_AVAILABLE
            | NOT_COORDINATOR
            | CONCURRENT_TRANSACTIONS
            | REQUEST_TIMED_OUT
    )
}

/// What the transactions of a run cost, for the report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TxnReport {
    pub transactional_id: String,
    pub messages_per_transaction: u64,
    pub committed: u64,
    pub aborted: u64,
    /// Transactions whose EndTxn failed: their messages count as failed.
    pub end_failed: u64,
    /// Partitions added to every transaction (each gets a marker when it ends).
    pub partitions_per_transaction: usize,
    /// AddPartitionsToTxn round trips, CONCURRENT_TRANSACTIONS retries included.
    pub add_partitions_us: Latency,
    /// EndTxn round trips (commit or abort), retries included.
    pub end_txn_us: Latency,
    /// CONCURRENT_TRANSACTIONS answers waited out (the previous transaction still completing).
    pub concurrent_retries: u64,
}

/// The producer's transaction coordinator and its state between transactions.
pub struct Transactions {
    conn: Connection,
    id: TransactionalId,
    topic: String,
    partitions: Vec<i32>,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub per_txn: u64,
    timeout: Duration,
    add_hist: Histogram<u64>,
    end_hist: Histogram<u64>,
    pub report: TxnReport,
}

impl Transactions {
    /// Finds the coordinator of `id` and initializes the producer there.
    pub async fn init(
        layout: &TopicLayout,
        id: &str,
        per_txn: u64,
        transaction_timeout_ms: i32,
        timeout: Duration,
    ) -> Result<Transactions> {
        let conn = find_coordinator(layout, id, timeout).await?;
        let tid = TransactionalId(StrBytes::from_string(id.to_string()));
        let deadline = Instant::now() + INIT_TIMEOUT;
        let (producer_id, producer_epoch) = loop {
            let resp = conn
                .send_timeout(
                    InitProducerIdRequest::default()
                        .with_transactional_id(Some(tid.clone()))
                        .with_transaction_timeout_ms(transaction_timeout_ms)
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1),
                    timeout,
                )
                .await?;
            if resp.error_code == 0 {
                break (resp.producer_id.0, resp.producer_epoch);
            }
            if !init_retriable(resp.error_code) || Instant::now() > deadline {
                bail!(
                    "InitProducerId({id}) failed with {}",
                    error_name(resp.error_code)
                );
            }
            tokio::time::sleep(INIT_RETRY_PAUSE).await;
        };
        Ok(Transactions {
            conn,
            id: tid,
            topic: layout.topic.clone(),
            partitions: layout.partitions.clone(),
            producer_id,
            producer_epoch,
            per_txn,
            timeout,
            add_hist: new_histogram(),
            end_hist: new_histogram(),
            report: TxnReport {
                transactional_id: id.to_string(),
                messages_per_transaction: per_txn,
                partitions_per_transaction: layout.partitions.len(),
                ..Default::default()
            },
        })
    }

    pub fn transactional_id(&self) -> TransactionalId {
        self.id.clone()
    }

    /// Starts a transaction: AddPartitionsToTxn for every partition of the topic (the driver
    /// spreads each transaction's messages over all of them), waiting out
    /// CONCURRENT_TRANSACTIONS while the previous transaction completes.
    pub async fn begin(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.id.clone())
            .with_v3_and_below_producer_id(self.producer_id.into())
            .with_v3_and_below_producer_epoch(self.producer_epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&self.topic))
                .with_partitions(self.partitions.clone())]);
        let result = loop {
            let resp = match self.conn.send_timeout(req.clone(), self.timeout).await {
                Ok(r) => r,
                Err(e) => break Err(format!("AddPartitionsToTxn: {e}")),
            };
            let code = resp
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| &t.results_by_partition)
                .map(|p| p.partition_error_code)
                .find(|c| *c != 0)
                .unwrap_or(resp.error_code);
            match self.retry_or(code, start) {
                Some(r) => break r.map_err(|e| format!("AddPartitionsToTxn: {e}")),
                None => tokio::time::sleep(CONCURRENT_RETRY_PAUSE).await,
            }
        };
        record(&mut self.add_hist, start.elapsed().as_micros() as u64);
        result
    }

    /// Ends the transaction: EndTxn with commit (or abort), waiting out
    /// CONCURRENT_TRANSACTIONS. Counts it in the report.
    pub async fn end(&mut self, commit: bool) -> Result<(), String> {
        let start = Instant::now();
        let req = EndTxnRequest::default()
            .with_transactional_id(self.id.clone())
            .with_producer_id(self.producer_id.into())
            .with_producer_epoch(self.producer_epoch)
            .with_committed(commit);
        let result = loop {
            let resp = match self.conn.send_timeout(req.clone(), self.timeout).await {
                Ok(r) => r,
                Err(e) => break Err(format!("EndTxn: {e}")),
            };
            match self.retry_or(resp.error_code, start) {
                Some(r) => break r.map_err(|e| format!("EndTxn: {e}")),
                None => tokio::time::sleep(CONCURRENT_RETRY_PAUSE).await,
            }
        };
        record(&mut self.end_hist, start.elapsed().as_micros() as u64);
        match (&result, commit) {
            (Err(_), _) => self.report.end_failed += 1,
            (Ok(()), true) => self.report.committed += 1,
            (Ok(()), false) => self.report.aborted += 1,
        }
        result
    }

    /// `None`: ask again (CONCURRENT_TRANSACTIONS within the request timeout); otherwise the
    /// outcome of the answer `code`.
    fn retry_or(&mut self, code: i16, start: Instant) -> Option<Result<(), String>> {
        match code {
            0 => Some(Ok(())),
            CONCURRENT_TRANSACTIONS if start.elapsed() < self.timeout => {
                self.report.concurrent_retries += 1;
                None
            }
            c => Some(Err(error_name(c))),
        }
    }

    /// The report, with the latencies filled in.
    pub fn finish(mut self) -> TxnReport {
        self.report.add_partitions_us = Latency::of(&self.add_hist);
        self.report.end_txn_us = Latency::of(&self.end_hist);
        self.report
    }

    /// Markers the ended transactions certainly wrote (committed and aborted ones: one per
    /// partition each) and the most they may have written (those whose EndTxn failed too).
    pub fn markers(report: &TxnReport) -> (u64, u64) {
        let per = report.partitions_per_transaction as u64;
        let ended = report.committed + report.aborted;
        (ended * per, (ended + report.end_failed) * per)
    }
}

/// FindCoordinator(key type 1) for `id`, asked of any leader, retried while the coordinator is
/// not available yet; a connection to the coordinator (a leader's, when it is one of them).
async fn find_coordinator(layout: &TopicLayout, id: &str, timeout: Duration) -> Result<Connection> {
    let Some(any) = layout.leaders.values().next() else {
        bail!("topic has no leaders")
    };
    let deadline = Instant::now() + INIT_TIMEOUT;
    loop {
        let resp = any
            .send_timeout(
                FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(id.to_string()))
                    .with_key_type(KEY_TYPE_TRANSACTION),
                timeout,
            )
            .await?;
        if resp.error_code == 0 {
            let addr = format!("{}:{}", resp.host, resp.port);
            if let Some(c) = layout.leaders.values().find(|c| c.addr() == addr) {
                return Ok(c.clone());
            }
            return Ok(Connection::connect(&addr, any.options()).await?);
        }
        if !init_retriable(resp.error_code) || Instant::now() > deadline {
            bail!(
                "FindCoordinator(transaction {id}) failed with {}",
                error_name(resp.error_code)
            );
        }
        tokio::time::sleep(INIT_RETRY_PAUSE).await;
    }
}
