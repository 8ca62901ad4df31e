use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::broker::Broker;

pub async fn handle(broker: &Arc<Broker>, req: DeleteTopicsRequest, version: i16) -> Reply {
    // v6 names topics by name or id; earlier versions send a list of names.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| topic_str(n).to_string()),
                    t.topic_id,
                )
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(topic_str(n).to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let state = broker.metadata();
        let resolved = match &name {
            Some(n) => state.topic(n).map(|t| (t.name.clone(), t.id)),
            None => state.topic_by_id(&id).map(|t| (t.name.clone(), t.id)),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(id);
        let Some((name, id)) = resolved else {
            let code = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            responses.push(result.with_error_code(code.code()));
            continue;
        };
        let result = result.with_name(Some(topic_name(&name))).with_topic_id(id);
        responses.push(match broker.delete_topic(&name).await {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(e.message))),
        });
    }
    Reply::now(ResponseKind::DeleteTopics(
        DeleteTopicsResponse::default().with_responses(responses),
    ))
}
