//! The transaction coordinator's client APIs: AddPartitionsToTxn (v0-3 from a producer, v4+
//! batched, with KIP-890's verify_only), AddOffsetsToTxn, EndTxn, DescribeTransactions and
//! ListTransactions. Each hands its transaction to `crate::coordinators::transactions`, whose
//! answers carry Kafka's error codes; PRODUCER_FENCED is downgraded for old versions as
//! Kafka's KafkaApis does.

use std::sync::Arc;

use chronik_txn::{downgrade_fenced_error, AddPartitions, Response, TopicPartition, TxnApi};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::broker::Broker;

/// One transaction of an AddPartitionsToTxn request.
struct AddOne {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: Vec<AddPartitionsToTxnTopic>,
}

/// Every partition of `topics`, answered `code_of(topic, partition)`.
fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    code_of: impl Fn(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|&p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code_of(topic_str(&t.name), p))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(parts)
        })
        .collect()
}

/// Adds (or, verify_only, checks) one transaction's partitions. Partitions of unknown topics
/// get UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, nothing added, as
/// in Kafka.
async fn add_one(
    broker: &Arc<Broker>,
    one: AddOne,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let state = broker.metadata();
    let exists = |t: &str, p: i32| {
        state
            .topic(t)
            .is_some_and(|i| p >= 0 && (p as usize) < i.partitions.len())
    };
    let all_known = one
        .topics
        .iter()
        .all(|t| t.partitions.iter().all(|&p| exists(topic_str(&t.name), p)));
    if !all_known {
        return topic_results(&one.topics, |t, p| {
            if exists(t, p) {
                ResponseError::OperationNotAttempted.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            }
        });
    }
    let req = AddPartitions {
        transactional_id: one.transactional_id,
        producer_id: one.producer_id,
        producer_epoch: one.producer_epoch,
        partitions: one
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|&p| TopicPartition::new(topic_str(&t.name), p))
            })
            .collect(),
    };
    if one.verify_only {
        let verdicts = broker.txns.verify(&req);
        return topic_results(&one.topics, |t, p| {
            verdicts
                .iter()
                .find(|(tp, _)| tp.topic == t && tp.partition == p)
                .map_or(0, |(_, e)| *e)
        });
    }
    let error = match broker.txns.add_partitions(req).await {
        Response::AddPartitions { error } => error,
        _ => ResponseError::UnknownServerError.code(),
    };
    let error = downgrade_fenced_error(TxnApi::AddPartitionsToTxn, version, error);
    topic_results(&one.topics, |_, _| error)
}

pub async fn add_partitions(
    broker: &Arc<Broker>,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> Reply {
    if version < 4 {
        let one = AddOne {
            transactional_id: req.v3_and_below_transactional_id.0.to_string(),
            producer_id: req.v3_and_below_producer_id.0,
            producer_epoch: req.v3_and_below_producer_epoch,
            verify_only: false,
            topics: req.v3_and_below_topics,
        };
        let results = add_one(broker, one, version).await;
        return Reply::now(ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
        ));
    }
    // v4+ (between brokers): each transaction on its own, side by side.
    let answers = futures::future::join_all(req.transactions.into_iter().map(|t| {
        let id = t.transactional_id.clone();
        let one = AddOne {
            transactional_id: t.transactional_id.0.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            verify_only: t.verify_only,
            topics: t.topics,
        };
        async move {
            AddPartitionsToTxnResult::default()
                .with_transactional_id(id)
                .with_topic_results(add_one(broker, one, version).await)
        }
    }))
    .await;
    Reply::now(ResponseKind::AddPartitionsToTxn(
        AddPartitionsToTxnResponse::default().with_results_by_transaction(answers),
    ))
}

pub async fn add_offsets(broker: &Arc<Broker>, req: AddOffsetsToTxnRequest, version: i16) -> Reply {
    let add = chronik_txn::AddOffsets {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        offsets_partition: broker
            .groups
            .offsets()
            .partition_of(req.group_id.0.as_str()),
    };
    let error = match broker.txns.add_offsets(add).await {
        Response::AddPartitions { error } => error,
        _ => ResponseError::UnknownServerError.code(),
    };
    let error = downgrade_fenced_error(TxnApi::AddOffsetsToTxn, version, error);
    Reply::now(ResponseKind::AddOffsetsToTxn(
        AddOffsetsToTxnResponse::default().with_error_code(error),
    ))
}

pub async fn end_txn(broker: &Arc<Broker>, req: EndTxnRequest, version: i16) -> Reply {
    let end = chronik_txn::EndTxn {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        commit: req.committed,
    };
    let error = match broker.txns.end_txn(end).await {
        Response::EndTxn { error } => error,
        _ => ResponseError::UnknownServerError.code(),
    };
    let error = downgrade_fenced_error(TxnApi::EndTxn, version, error);
    Reply::now(ResponseKind::EndTxn(
        EndTxnResponse::default().with_error_code(error),
    ))
}

pub fn describe(broker: &Arc<Broker>, req: DescribeTransactionsRequest) -> Reply {
    use describe_transactions_response::{TopicData, TransactionState};
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let base = TransactionState::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            match broker.txns.describe(id.0.as_str()) {
                Ok(d) => base
                    .with_transactional_id(id)
                    .with_transaction_state(str_bytes(d.state))
                    .with_transaction_timeout_ms(d.transaction_timeout_ms)
                    .with_transaction_start_time_ms(d.transaction_start_time_ms)
                    .with_producer_id(ProducerId(d.producer_id))
                    .with_producer_epoch(d.producer_epoch)
                    .with_topics(
                        d.topics
                            .into_iter()
                            .map(|(t, parts)| {
                                TopicData::default()
                                    .with_topic(topic_name(&t))
                                    .with_partitions(parts)
                            })
                            .collect(),
                    ),
                Err(code) => base.with_transactional_id(id).with_error_code(code),
            }
        })
        .collect();
    Reply::now(ResponseKind::DescribeTransactions(
        DescribeTransactionsResponse::default().with_transaction_states(states),
    ))
}

pub fn list(broker: &Arc<Broker>, req: ListTransactionsRequest) -> Reply {
    use list_transactions_response::TransactionState;
    let filter = chronik_txn::ListFilter {
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
        states: req.state_filters.iter().map(|s| s.to_string()).collect(),
        min_duration_ms: req.duration_filter,
        transactional_id_pattern: req.transactional_id_pattern.map(|p| p.to_string()),
    };
    let listed = broker.txns.list(&filter);
    let states = listed
        .transactions
        .into_iter()
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(str_bytes(t.state))
        })
        .collect();
    Reply::now(ResponseKind::ListTransactions(
        ListTransactionsResponse::default()
            .with_error_code(listed.error)
            .with_unknown_state_filters(
                listed
                    .unknown_state_filters
                    .into_iter()
                    .map(str_bytes)
                    .collect(),
            )
            .with_transaction_states(states),
    ))
}
