//! TxnOffsetCommit (KIP-98, KIP-447): a transactional producer commits a group's offsets as
//! part of its transaction. The group checks are OffsetCommit's (a member of another
//! generation gets ILLEGAL_GENERATION, an unknown member UNKNOWN_MEMBER_ID; generation -1 from
//! a producer that does not use the group's membership is allowed); the offsets are appended
//! to the group's `__consumer_offsets` partition as a transactional batch of the producer and
//! become committed only when the producer's COMMIT marker reaches that partition (an abort
//! drops them): `crate::offsets::Offsets::commit_txn`.

use std::sync::Arc;

use chronik_groups::membership::CommitCheck;
use chronik_groups::OFFSETS_TOPIC;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::offset_commit::{check_partitions, Checked};
use super::{topic_str, Reply};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::txn::{Verification, VerifyRequest};

/// The error for the whole request, if there is one.
fn request_error(broker: &Broker, req: &TxnOffsetCommitRequest) -> Option<i16> {
    let group = req.group_id.0.as_str();
    if group.is_empty() {
        return Some(ResponseError::InvalidGroupId.code());
    }
    if !broker.groups.is_coordinator(group) {
        return Some(ResponseError::NotCoordinator.code());
    }
    let check = broker.groups.members().check_commit(
        group,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
    );
    match check {
        CommitCheck::Allowed => None,
        CommitCheck::Refused(code) => Some(code),
        // A producer outside the group's membership (generation -1) may commit.
        CommitCheck::NoMembers if req.generation_id < 0 => None,
        CommitCheck::NoMembers => Some(ResponseError::IllegalGeneration.code()),
    }
}

pub fn handle(broker: &Arc<Broker>, req: TxnOffsetCommitRequest, _version: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let state = broker.metadata();
    let now = now_ms();
    let request_error = request_error(broker, &req);
    let asked = req.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| {
            let metadata = p.committed_metadata.as_deref();
            (
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                metadata,
            )
        });
        (topic_str(&t.name), parts.collect())
    });
    let Checked {
        slots,
        entries,
        codes,
    } = check_partitions(&state, &group, request_error, now, asked);
    let mut topics: Vec<_> = req
        .topics
        .iter()
        .zip(codes)
        .map(|(t, codes)| {
            let parts = codes.into_iter().map(|(index, code)| {
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code)
            });
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts.collect())
        })
        .collect();
    let done = |topics| {
        ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
    };
    if entries.is_empty() {
        return Reply::now(done(topics));
    }
    let broker = broker.clone();
    let producer = (req.producer_id.0, req.producer_epoch);
    let transactional_id = req.transactional_id.0.to_string();
    Reply::Later(Box::pin(async move {
        let result = match verify(&broker, &group, &transactional_id, producer).await {
            Err(code) => Err(code),
            Ok(()) => broker
                .groups
                .offsets()
                .commit_txn(&broker.partitions, &group, producer, entries)
                .await
                .map_err(|e| {
                    tracing::warn!(group = %group, error = %e, "transactional offset commit failed");
                    e.code().code()
                }),
        };
        if let Err(code) = result {
            for (t, p) in slots {
                topics[t].partitions[p].error_code = code;
            }
        }
        done(topics)
    }))
}

/// KIP-890 part 1 for the offsets: the group's offsets partition must be in the transaction
/// (AddOffsetsToTxn) before the first offsets of the transaction are written there.
async fn verify(
    broker: &Arc<Broker>,
    group: &str,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
) -> Result<(), i16> {
    let p = broker.groups.offsets().partition_of(group);
    let Some(part) = broker.partitions.partition(OFFSETS_TOPIC, p) else {
        return Err(ResponseError::NotCoordinator.code());
    };
    if part
        .txn_snapshot()
        .0
        .iter()
        .any(|(pid, _)| *pid == producer_id)
    {
        return Ok(()); // the transaction already wrote here
    }
    let request = VerifyRequest {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        topic: OFFSETS_TOPIC.to_string(),
        partition: p,
    };
    match broker.txn_verifier().verify(request) {
        Verification::Verified => Ok(()),
        Verification::Refused(code, _) => Err(code.code()),
        Verification::Pending(wait) => wait.await.map_err(|(code, _)| code.code()),
    }
}
