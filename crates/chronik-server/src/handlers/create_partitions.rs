use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, ResponseKind};

use super::{str_bytes, topic_str, Reply};
use crate::broker::Broker;

pub async fn handle(broker: &Arc<Broker>, req: CreatePartitionsRequest, _version: i16) -> Reply {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = topic_str(&t.name).to_string();
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        // One replica list per new partition, checked against the topic and the brokers by
        // the metadata (`chronik_metadata::placement`).
        let manual = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = broker
            .create_partitions(&name, t.count, manual, req.validate_only)
            .await
            .map_err(|e| (e.code, e.message));
        results.push(match outcome {
            Ok(()) => result,
            Err((code, msg)) => result
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(msg))),
        });
    }
    Reply::now(ResponseKind::CreatePartitions(
        CreatePartitionsResponse::default().with_results(results),
    ))
}
