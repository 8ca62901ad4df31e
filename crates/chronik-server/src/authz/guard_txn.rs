//! The guard for the transaction APIs (see [`super::guard`]), Kafka's KafkaApis checks:
//! WRITE on the transactional id for AddPartitionsToTxn (v0-3), AddOffsetsToTxn, EndTxn and
//! TxnOffsetCommit (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); WRITE on each added topic, READ on
//! the group and on each committed topic; CLUSTER_ACTION for AddPartitionsToTxn v4+ (between
//! brokers); DESCRIBE on the id for DescribeTransactions, and ListTransactions lists only the
//! ids the principal may describe.

use chronik_auth::acl::{Operation as O, ResourceType as Rt, CLUSTER_NAME};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::guard::{
    Guarded, Post, CLUSTER_DENIED, GROUP_DENIED, TOPIC_DENIED, TRANSACTIONAL_ID_DENIED,
};
use super::Authorizer;

/// Whether `body` is one of the APIs guarded here.
pub fn handles(body: &RequestKind) -> bool {
    matches!(
        body,
        RequestKind::AddPartitionsToTxn(_)
            | RequestKind::AddOffsetsToTxn(_)
            | RequestKind::EndTxn(_)
            | RequestKind::TxnOffsetCommit(_)
            | RequestKind::DescribeTransactions(_)
            | RequestKind::ListTransactions(_)
    )
}

/// A transaction API (see [`handles`]): answered with Kafka's error if the principal may not
/// use it as asked, else served (narrowed, with a post step, where Kafka narrows).
pub fn guard(az: &Authorizer, body: RequestKind) -> Guarded {
    let id_ok = |id: &TransactionalId| az.allows(O::Write, Rt::TransactionalId, id.0.as_str());
    let answer = Guarded::Answer;
    match body {
        RequestKind::AddPartitionsToTxn(r) => add_partitions(az, r),
        RequestKind::AddOffsetsToTxn(r) if !id_ok(&r.transactional_id) => {
            answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(TRANSACTIONAL_ID_DENIED),
            ))
        }
        RequestKind::AddOffsetsToTxn(r)
            if !az.allows(O::Read, Rt::Group, r.group_id.0.as_str()) =>
        {
            answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::EndTxn(r) if !id_ok(&r.transactional_id) => answer(ResponseKind::EndTxn(
            EndTxnResponse::default().with_error_code(TRANSACTIONAL_ID_DENIED),
        )),
        RequestKind::TxnOffsetCommit(r) => txn_offset_commit(az, r),
        RequestKind::DescribeTransactions(mut r) => {
            let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.transactional_ids)
                .into_iter()
                .partition(|id| az.allows(O::Describe, Rt::TransactionalId, id.0.as_str()));
            r.transactional_ids = keep;
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::DescribeTransactions(d) = resp {
                    use describe_transactions_response::TransactionState;
                    for id in denied {
                        d.transaction_states.push(
                            TransactionState::default()
                                .with_transactional_id(id)
                                .with_error_code(TRANSACTIONAL_ID_DENIED)
                                .with_producer_id(ProducerId(-1))
                                .with_producer_epoch(-1)
                                .with_transaction_start_time_ms(-1),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::DescribeTransactions(r), Some(post))
        }
        RequestKind::ListTransactions(r) => {
            let az = az.clone();
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::ListTransactions(l) = resp {
                    l.transaction_states.retain(|t| {
                        az.check(
                            O::Describe,
                            Rt::TransactionalId,
                            t.transactional_id.0.as_str(),
                        )
                    });
                }
            });
            Guarded::Serve(RequestKind::ListTransactions(r), Some(post))
        }
        other => Guarded::Serve(other, None),
    }
}

fn add_partitions(az: &Authorizer, r: AddPartitionsToTxnRequest) -> Guarded {
    use add_partitions_to_txn_response::*;
    // v4+ (the batched form, between brokers) carries `transactions`; v0-3 never do.
    if !r.transactions.is_empty() {
        if !az.allows(O::ClusterAction, Rt::Cluster, CLUSTER_NAME) {
            return Guarded::Answer(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_error_code(CLUSTER_DENIED),
            ));
        }
        return Guarded::Serve(RequestKind::AddPartitionsToTxn(r), None);
    }
    let id_denied = !az.allows(
        O::Write,
        Rt::TransactionalId,
        r.v3_and_below_transactional_id.0.as_str(),
    );
    let topic_denied = |t: &TopicName| !az.allows(O::Write, Rt::Topic, t.0.as_str());
    let any_topic_denied = r.v3_and_below_topics.iter().any(|t| topic_denied(&t.name));
    if !id_denied && !any_topic_denied {
        return Guarded::Serve(RequestKind::AddPartitionsToTxn(r), None);
    }
    // Refused whole: every partition answered, the allowed ones OPERATION_NOT_ATTEMPTED.
    let results = r
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let code = if id_denied {
                TRANSACTIONAL_ID_DENIED
            } else if topic_denied(&t.name) {
                TOPIC_DENIED
            } else {
                ResponseError::OperationNotAttempted.code()
            };
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    Guarded::Answer(ResponseKind::AddPartitionsToTxn(
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
    ))
}

fn txn_offset_commit(az: &Authorizer, mut r: TxnOffsetCommitRequest) -> Guarded {
    use txn_offset_commit_response::*;
    let whole = if !az.allows(O::Write, Rt::TransactionalId, r.transactional_id.0.as_str()) {
        Some(TRANSACTIONAL_ID_DENIED)
    } else if !az.allows(O::Read, Rt::Group, r.group_id.0.as_str()) {
        Some(GROUP_DENIED)
    } else {
        None
    };
    let answer = |topics: &[kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic], code: i16| {
        topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect::<Vec<_>>()
    };
    if let Some(code) = whole {
        return Guarded::Answer(ResponseKind::TxnOffsetCommit(
            TxnOffsetCommitResponse::default().with_topics(answer(&r.topics, code)),
        ));
    }
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| az.allows(O::Read, Rt::Topic, t.name.0.as_str()));
    r.topics = keep;
    let denied = answer(&denied, TOPIC_DENIED);
    let post: Post = Box::new(move |resp| {
        if let ResponseKind::TxnOffsetCommit(t) = resp {
            t.topics.extend(denied);
        }
    });
    Guarded::Serve(RequestKind::TxnOffsetCommit(r), Some(post))
}
