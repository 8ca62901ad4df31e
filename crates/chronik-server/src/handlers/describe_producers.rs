//! DescribeProducers: the idempotent producers each partition's leader tracks (producer id,
//! epoch, last sequence, last timestamp). Without transactions the coordinator epoch and the
//! current transaction's start offset are always -1, as Kafka shows a producer outside one.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_str, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, req: DescribeProducersRequest, _version: i16) -> Reply {
    let state = broker.metadata();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = topic_str(&t.name).to_string();
            let info = state.topic(&name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let resp = PartitionResponse::default().with_partition_index(index);
                    let known = info.is_some_and(|i| {
                        usize::try_from(index).is_ok_and(|x| x < i.partitions.len())
                    });
                    if !known {
                        return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    }
                    let Some(part) = broker.partitions.partition(&name, index) else {
                        return resp
                            .with_error_code(ResponseError::NotLeaderOrFollower.code())
                            .with_error_message(Some(str_bytes(format!(
                                "this broker does not lead {name}-{index}"
                            ))));
                    };
                    let producers = part
                        .active_producers()
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(i32::from(p.epoch))
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(p.coordinator_epoch)
                                .with_current_txn_start_offset(p.current_txn_start_offset)
                        })
                        .collect();
                    resp.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Reply::now(ResponseKind::DescribeProducers(
        DescribeProducersResponse::default().with_topics(topics),
    ))
}
