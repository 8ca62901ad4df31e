//! Produce: validate and append each partition's batches now (in request order), then
//! answer once every append is committed under the fsync policy. acks=0 gets no answer.
//!
//! The promise: error_code 0 is sent only after `wait_committed` confirmed the data is
//! stored per the fsync policy. A timeout or storage failure is an error, never success.
//!
//! Transactional batches need the request's transactional id (else
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka); the first one of a transaction on a
//! partition is checked by the broker's KIP-890 verifier (`crate::txn::verify`) first. A
//! verification that is not answered at once defers only that partition's append until it is.

use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::TopicInfo;
use chronik_protocol::batch::BatchError;
use futures::future::{join_all, BoxFuture};
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_str, Reply};
use crate::broker::Broker;
use crate::partition::{Accepted, AppendError, Partition};
use crate::txn::Verification;

/// The shortest wait for a commit we grant, whatever the client's timeout says: the
/// local fsync is part of the append, not something a short timeout may skip.
const MIN_COMMIT_WAIT: Duration = Duration::from_secs(30);

/// An acks=1/all append to wait for: (topic index, partition index, the append, its
/// partition, min.insync.replicas).
type Wait = (usize, usize, Accepted, Arc<Partition>, usize);

/// A partition's append, ready to run once its transaction is verified.
struct PendingAppend {
    partition: Arc<Partition>,
    records: bytes::Bytes,
    config: Arc<crate::topic_config::ProduceConfig>,
    leader_epoch: i32,
    acks: i16,
    min_isr: usize,
}

/// A partition whose append waits for its KIP-890 verification: (topic index, partition
/// index, the verification, the append).
type Deferred = (
    usize,
    usize,
    BoxFuture<'static, VerifyResult>,
    PendingAppend,
);
type VerifyResult = Result<(), (ResponseError, String)>;

/// One partition's outcome when the request is handled.
enum Produced {
    Done(
        PartitionProduceResponse,
        Option<(Accepted, Arc<Partition>, usize)>,
    ),
    Verifying(
        PartitionProduceResponse,
        BoxFuture<'static, VerifyResult>,
        PendingAppend,
    ),
}

fn fail(
    pr: PartitionProduceResponse,
    code: ResponseError,
    msg: String,
) -> PartitionProduceResponse {
    crate::metrics::partition_error(kafka_protocol::messages::ApiKey::Produce, code.code());
    pr.with_error_code(code.code())
        .with_error_message(Some(str_bytes(msg)))
}

/// Appends in request order: a partition whose append waits for its KIP-890 verification is
/// appended before this returns, so the connection handles its next request only after it
/// (as Kafka, which reads a connection's next request only after answering the last). A
/// pipelined next batch of the same producer must find this one in the log, or it is out of
/// sequence. Only the wait for acks is left to the returned reply.
pub async fn handle(broker: &Arc<Broker>, req: ProduceRequest, version: i16) -> Reply {
    let acks = req.acks;
    let state = broker.metadata();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut waits: Vec<Wait> = Vec::new();
    let mut deferred: Vec<Deferred> = Vec::new();
    let transactional_id = req.transactional_id.as_ref().map(|t| t.0.to_string());
    for topic in req.topic_data {
        // v13+ names topics by id (KIP-516); an unknown id answers UNKNOWN_TOPIC_ID.
        let by_id = version >= 13;
        let info = if by_id {
            state.topic_by_id(&topic.topic_id)
        } else {
            state.topic(topic_str(&topic.name))
        };
        let name = match (by_id, info) {
            (true, Some(i)) => i.name.clone(),
            _ => topic_str(&topic.name).to_string(),
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let pr = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let pr = if !matches!(acks, -1..=1) {
                fail(
                    pr,
                    ResponseError::InvalidRequiredAcks,
                    format!("acks={acks} is not -1, 0 or 1"),
                )
            } else if by_id && info.is_none() {
                fail(
                    pr,
                    ResponseError::UnknownTopicId,
                    format!("unknown topic id {}", topic.topic_id),
                )
            } else {
                let txn_id = transactional_id.as_deref();
                match produce_partition(broker, info, &name, pd, acks, pr, txn_id) {
                    Produced::Done(pr, wait) => {
                        if let Some((accepted, partition, min_isr)) = wait {
                            let at = (responses.len(), partitions.len());
                            waits.push((at.0, at.1, accepted, partition, min_isr));
                        }
                        pr
                    }
                    Produced::Verifying(pr, verification, pending) => {
                        let at = (responses.len(), partitions.len());
                        deferred.push((at.0, at.1, verification, pending));
                        pr
                    }
                }
            };
            partitions.push(pr);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    run_deferred(deferred, &mut responses, &mut waits).await;
    if acks == 0 {
        return Reply::None;
    }
    let done =
        |responses| ResponseKind::Produce(ProduceResponse::default().with_responses(responses));
    if waits.is_empty() {
        return Reply::now(done(responses));
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64).max(MIN_COMMIT_WAIT);
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let broker = &broker;
        let results = join_all(waits.into_iter().map(
            |(t, p, accepted, part, min_isr)| async move {
                let r = wait_stored(broker, acks, timeout, accepted, &part, min_isr).await;
                (t, p, r)
            },
        ))
        .await;
        for (t, p, r) in results {
            let Err(error) = r else { continue };
            crate::metrics::partition_error(
                kafka_protocol::messages::ApiKey::Produce,
                error.0.code(),
            );
            let pr = &mut responses[t].partition_responses[p];
            pr.error_code = error.0.code();
            pr.error_message = Some(str_bytes(error.1));
            pr.base_offset = -1;
        }
        done(responses)
    }))
}

/// Waits until one accepted append is stored as its acks promise: acks=all, durable on every
/// ISR replica (the high watermark passed it in the log it was written in, whoever leads now;
/// cut from that log, it was not stored); acks=1, durable here under the fsync policy.
pub(super) async fn wait_stored(
    broker: &Broker,
    acks: i16,
    timeout: Duration,
    accepted: Accepted,
    part: &Partition,
    min_isr: usize,
) -> Result<(), (ResponseError, String)> {
    let end = accepted.end_offset;
    if acks == -1 {
        let wait = part
            .replica
            .wait_committed_anywhere(end, accepted.leader_epoch);
        return match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => isr_after_append(broker, &part.topic, part.index, min_isr),
            Ok(Err(e)) => {
                tracing::info!(topic = %part.topic, partition = part.index, end, error = %e,
                    "acks=all produce not confirmed; answering NOT_LEADER_OR_FOLLOWER");
                Err((ResponseError::NotLeaderOrFollower, e.to_string()))
            }
            Err(_) => Err(timed_out()),
        };
    }
    match tokio::time::timeout(timeout, part.log.wait_appended(end, accepted.generation)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(topic = %part.topic, partition = part.index, error = %e,
                "commit failed; answering KAFKA_STORAGE_ERROR");
            Err((ResponseError::KafkaStorageError, e.to_string()))
        }
        Err(_) => Err(timed_out()),
    }
}

/// Appends the partitions whose transaction verification was pending, in request order,
/// once each is answered (each verification has its own deadline, `txn::verify`); their
/// appends join `waits`.
async fn run_deferred(
    deferred: Vec<Deferred>,
    responses: &mut [TopicProduceResponse],
    waits: &mut Vec<Wait>,
) {
    for (t, p, verification, pending) in deferred {
        let pr = std::mem::take(&mut responses[t].partition_responses[p]);
        let (pr, wait) = match verification.await {
            Ok(()) => append_partition(pending, pr),
            Err((code, msg)) => (fail(pr, code, msg), None),
        };
        responses[t].partition_responses[p] = pr;
        if let Some((accepted, partition, min_isr)) = wait {
            waits.push((t, p, accepted, partition, min_isr));
        }
    }
}

/// Transactional batches: the transactional id must be set, and the first batch of a
/// transaction on a partition is verified (KIP-890 part 1).
fn verify_txn(
    broker: &Broker,
    pending: &PendingAppend,
    transactional_id: Option<&str>,
) -> Verification {
    let Ok(h) = chronik_wal::BatchHeader::parse(&pending.records) else {
        // The append's own validation answers a malformed batch.
        return Verification::Verified;
    };
    if !h.is_transactional() || h.is_control() {
        return Verification::Verified;
    }
    let Some(transactional_id) = transactional_id else {
        return Verification::Refused(
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactional records need a transactional id".into(),
        );
    };
    match pending
        .partition
        .needs_txn_verification(&pending.records, transactional_id)
    {
        Some(request) => broker.txn_verifier().verify(request),
        None => Verification::Verified,
    }
}

/// Looks one partition up, then appends its batch (after its transaction is verified, if it
/// begins one); the append to wait for when acks != 0.
fn produce_partition(
    broker: &Broker,
    info: Option<&TopicInfo>,
    name: &str,
    pd: PartitionProduceData,
    acks: i16,
    pr: PartitionProduceResponse,
    transactional_id: Option<&str>,
) -> Produced {
    let part_info = info.and_then(|t| {
        usize::try_from(pd.index)
            .ok()
            .and_then(|i| t.partitions.get(i))
    });
    let (Some(p_info), Some(partition)) = (part_info, broker.partitions.partition(name, pd.index))
    else {
        let pr = if let Some(p_info) = part_info {
            fail(
                pr,
                ResponseError::NotLeaderOrFollower,
                format!(
                    "node {} does not lead {name}-{}; its leader is node {}",
                    broker.node_id, pd.index, p_info.leader
                ),
            )
        } else {
            fail(
                pr,
                ResponseError::UnknownTopicOrPartition,
                format!("unknown partition {name}-{}", pd.index),
            )
        };
        return Produced::Done(pr, None);
    };
    let config = partition.config();
    let min_isr = config.min_insync_replicas;
    if acks == -1 && p_info.isr.len() < min_isr {
        let msg = format!(
            "ISR has {} replica(s), min.insync.replicas is {}",
            p_info.isr.len(),
            min_isr
        );
        return Produced::Done(fail(pr, ResponseError::NotEnoughReplicas, msg), None);
    }
    let pending = PendingAppend {
        partition,
        records: pd.records.unwrap_or_default(),
        config,
        leader_epoch: p_info.leader_epoch,
        acks,
        min_isr,
    };
    match verify_txn(broker, &pending, transactional_id) {
        Verification::Verified => {
            let (pr, wait) = append_partition(pending, pr);
            Produced::Done(pr, wait)
        }
        Verification::Refused(code, msg) => Produced::Done(fail(pr, code, msg), None),
        Verification::Pending(verification) => Produced::Verifying(pr, verification, pending),
    }
}

/// Appends one partition's batch; the append to wait for when acks != 0.
fn append_partition(
    pending: PendingAppend,
    pr: PartitionProduceResponse,
) -> (
    PartitionProduceResponse,
    Option<(Accepted, Arc<Partition>, usize)>,
) {
    let PendingAppend {
        partition,
        records,
        config,
        leader_epoch,
        acks,
        min_isr,
    } = pending;
    let (name, index) = (partition.topic.as_str(), partition.index);
    let bytes = records.len();
    match partition.append_produced(&records, &config, leader_epoch) {
        Ok(accepted) => {
            if !accepted.duplicate {
                partition.counters.produce_bytes.increment(bytes as u64);
                partition
                    .counters
                    .produce_messages
                    .increment((accepted.end_offset - accepted.base_offset).max(0) as u64);
            }
            let pr = pr
                .with_base_offset(accepted.base_offset)
                .with_log_append_time_ms(accepted.log_append_time_ms.unwrap_or(-1))
                .with_log_start_offset(partition.log.log_start_offset());
            let wait = (acks != 0).then(|| (accepted, partition.clone(), min_isr));
            (pr, wait)
        }
        Err(e) => {
            let code = e.code();
            if code == ResponseError::KafkaStorageError {
                tracing::error!(topic = %name, partition = index, error = %e, "append failed");
            } else {
                tracing::debug!(topic = %name, partition = index, error = %e, "produce refused");
            }
            let pr = match &e {
                AppendError::Batch(BatchError::InvalidTimestamp(records)) => {
                    let errors = records.iter().map(|r| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(r.batch_index)
                            .with_batch_index_error_message(Some(str_bytes(r.message.clone())))
                    });
                    pr.with_record_errors(errors.collect())
                }
                AppendError::Batch(BatchError::KeylessOnCompacted(indexes)) => {
                    // Kafka's LogValidator.validateKey and processRecordErrors wording.
                    let message = format!(
                        "Compacted topic cannot accept message without key in topic partition {name}-{index}."
                    );
                    let errors = indexes.iter().map(|i| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(*i)
                            .with_batch_index_error_message(Some(str_bytes(message.clone())))
                    });
                    let shown: Vec<String> = indexes
                        .iter()
                        .take(3)
                        .map(|i| format!("RecordError(batchIndex={i}, message='{message}')"))
                        .collect();
                    let top = format!(
                        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                        indexes.len(),
                        shown.join(", ")
                    );
                    return (
                        fail(pr.with_record_errors(errors.collect()), code, top),
                        None,
                    );
                }
                _ => pr,
            };
            (fail(pr, code, e.to_string()), None)
        }
    }
}

/// Kafka's check once the high watermark passed an acks=all append: the ISR the write
/// reached may have shrunk below min.insync.replicas meanwhile (the high watermark counts
/// only ISR members), and then the write is stored on fewer copies than the producer asked
/// for: NOT_ENOUGH_REPLICAS_AFTER_APPEND (retriable; an idempotent retry is deduplicated).
fn isr_after_append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    min_isr: usize,
) -> Result<(), (ResponseError, String)> {
    let state = broker.metadata();
    let isr = state
        .topic(topic)
        .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
        .map_or(0, |p| p.isr.len());
    if isr < min_isr {
        return Err((
            ResponseError::NotEnoughReplicasAfterAppend,
            format!("written, but the ISR has {isr} replica(s), min.insync.replicas is {min_isr}"),
        ));
    }
    Ok(())
}

fn timed_out() -> (ResponseError, String) {
    (
        ResponseError::RequestTimedOut,
        "timed out waiting for the commit".to_string(),
    )
}
