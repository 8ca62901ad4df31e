//! OffsetForLeaderEpoch (v2-4): where a leader epoch ends in this leader's log. Consumers
//! (librdkafka, the Java client) use it after a leader change to detect that the log they
//! read was truncated.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::{topic_str, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, req: OffsetForLeaderEpochRequest, _version: i16) -> Reply {
    let state = broker.metadata();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = topic_str(&t.topic).to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let out = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let info = state.topic(&name).and_then(|i| {
                        usize::try_from(p.partition)
                            .ok()
                            .and_then(|x| i.partitions.get(x))
                    });
                    let Some(info) = info else {
                        return out.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let Some(part) = broker.partitions.partition(&name, p.partition) else {
                        return out.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    };
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch != info.leader_epoch {
                        let code = if p.current_leader_epoch > info.leader_epoch {
                            ResponseError::UnknownLeaderEpoch
                        } else {
                            ResponseError::FencedLeaderEpoch
                        };
                        return out.with_error_code(code.code());
                    }
                    match part.replica.end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => out.with_leader_epoch(epoch).with_end_offset(end),
                        None => out,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    Reply::now(ResponseKind::OffsetForLeaderEpoch(
        OffsetForLeaderEpochResponse::default().with_topics(topics),
    ))
}
