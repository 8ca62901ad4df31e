//! OffsetCommit. Members of a group commit with their generation; a group without members
//! accepts "simple" commits (generation -1, a consumer that assigns its partitions itself). Every partition gets its own error code; the valid ones of a request
//! are written as one batch to the group's `__consumer_offsets` partition and answered once
//! that batch is durable. v9 (KIP-848) changes no field for classic groups, only the error
//! for a member's commit to a group the coordinator has never seen.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chronik_groups::membership::CommitCheck;
use chronik_groups::{OffsetKey, OffsetValue, MAX_OFFSET_METADATA_BYTES, OFFSETS_TOPIC};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{topic_str, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, req: OffsetCommitRequest, version: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let state = broker.metadata();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // The whole request fails one way: an invalid group (Kafka 4 refuses an empty id), a
    // commit the group's membership refuses, or a member's commit (generation >= 0) to a
    // group without members: Kafka answers ILLEGAL_GENERATION for a group it has never seen
    // and UNKNOWN_MEMBER_ID for an empty one that has offsets. Generation -1 to a group
    // without members is a simple commit, whatever the member id.
    let check = broker.groups.members().check_commit(
        &group,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id_or_member_epoch,
    );
    let request_error = if group.is_empty() {
        Some(ResponseError::InvalidGroupId.code())
    } else if !broker.groups.is_coordinator(&group) {
        Some(ResponseError::NotCoordinator.code())
    } else {
        match check {
            CommitCheck::Allowed => None,
            CommitCheck::Refused(code) => Some(code),
            CommitCheck::NoMembers if req.generation_id_or_member_epoch < 0 => None,
            CommitCheck::NoMembers if broker.groups.offsets().has_group(&group) => {
                Some(ResponseError::UnknownMemberId.code())
            }
            // Kafka answers GROUP_ID_NOT_FOUND from v9 (it fits both protocols), and
            // ILLEGAL_GENERATION before, for compatibility.
            CommitCheck::NoMembers if version >= 9 => Some(ResponseError::GroupIdNotFound.code()),
            CommitCheck::NoMembers => Some(ResponseError::IllegalGeneration.code()),
        }
    };
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
    } = check_partitions(&state, &group, request_error, now_ms, asked);
    let mut topics: Vec<_> = req
        .topics
        .iter()
        .zip(codes)
        .map(|(t, codes)| {
            let parts = codes.into_iter().map(|(index, code)| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code)
            });
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts.collect())
        })
        .collect();
    let done =
        |topics| ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics));
    if entries.is_empty() {
        return Reply::now(done(topics));
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        if let Err(e) = broker
            .groups
            .offsets()
            .commit(&broker.partitions, &group, entries)
            .await
        {
            tracing::warn!(group = %group, error = %e, "offset commit failed");
            for (t, p) in slots {
                topics[t].partitions[p].error_code = e.code().code();
            }
        }
        done(topics)
    }))
}

/// One partition of a commit request: (partition, offset, leader epoch, metadata).
pub(super) type Asked<'a> = (i32, i64, i32, Option<&'a str>);

/// A commit request's partitions, checked (OffsetCommit and TxnOffsetCommit).
pub(super) struct Checked {
    /// (topic index, partition index) of each entry to write, in request order.
    pub slots: Vec<(usize, usize)>,
    pub entries: Vec<(OffsetKey, OffsetValue)>,
    /// Per topic, per partition: (partition index, its code until the batch is written).
    pub codes: Vec<Vec<(i32, i16)>>,
}

/// Each partition gets `request_error` if there is one, else its own check
/// ([`offset_entry`]); the valid ones become the entries of one batch.
pub(super) fn check_partitions<'a>(
    state: &chronik_metadata::MetadataState,
    group: &str,
    request_error: Option<i16>,
    now_ms: i64,
    topics: impl Iterator<Item = (&'a str, Vec<Asked<'a>>)>,
) -> Checked {
    let mut checked = Checked {
        slots: Vec::new(),
        entries: Vec::new(),
        codes: Vec::new(),
    };
    for (ti, (name, parts)) in topics.enumerate() {
        let info = state
            .topic(name)
            .filter(|i| name != OFFSETS_TOPIC || i.internal);
        let mut codes = Vec::with_capacity(parts.len());
        for (pi, (partition, offset, leader_epoch, metadata)) in parts.into_iter().enumerate() {
            let entry = match request_error {
                Some(code) => Err(code),
                None => offset_entry(
                    group,
                    name,
                    info,
                    (partition, offset),
                    leader_epoch,
                    metadata,
                    now_ms,
                ),
            };
            let code = match entry {
                Ok(e) => {
                    checked.slots.push((ti, pi));
                    checked.entries.push(e);
                    0
                }
                Err(code) => code,
            };
            codes.push((partition, code));
        }
        checked.codes.push(codes);
    }
    checked
}

/// One partition's commit as an offsets record, or its error: UNKNOWN_TOPIC_OR_PARTITION
/// (`info` is the topic, if it exists and may be committed to), OFFSET_METADATA_TOO_LARGE.
/// Shared by OffsetCommit and TxnOffsetCommit.
fn offset_entry(
    group: &str,
    topic: &str,
    info: Option<&chronik_metadata::TopicInfo>,
    (partition, offset): (i32, i64),
    leader_epoch: i32,
    metadata: Option<&str>,
    now_ms: i64,
) -> Result<(OffsetKey, OffsetValue), i16> {
    if !info.is_some_and(|i| partition >= 0 && (partition as usize) < i.partitions.len()) {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    if metadata.is_some_and(|m| m.len() > MAX_OFFSET_METADATA_BYTES) {
        return Err(ResponseError::OffsetMetadataTooLarge.code());
    }
    let key = OffsetKey {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    };
    let value = OffsetValue {
        offset,
        leader_epoch,
        metadata: metadata.unwrap_or_default().to_string(),
        commit_timestamp_ms: now_ms,
    };
    Ok((key, value))
}
