use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_str, Reply};
use crate::broker::Broker;

pub async fn handle(broker: &Arc<Broker>, req: CreateTopicsRequest, _version: i16) -> Reply {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = topic_str(&t.name).to_string();
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let fail = |code: ResponseError, msg: String| {
            result
                .clone()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(msg)))
        };
        if req.topics.iter().filter(|o| o.name == t.name).count() > 1 {
            results.push(fail(
                ResponseError::InvalidRequest,
                format!("topic {name} appears more than once"),
            ));
            continue;
        }
        if !t.assignments.is_empty() {
            results.push(fail(
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignment is not supported; leave assignments empty".into(),
            ));
            continue;
        }
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        match broker
            .create_topic(
                &name,
                t.num_partitions,
                t.replication_factor,
                configs,
                req.validate_only,
            )
            .await
        {
            Ok(info) => {
                let configs = broker
                    .topic_config(&info)
                    .entries()
                    .iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(e.name))
                            .with_value(Some(str_bytes(e.value.clone())))
                            .with_config_source(e.source)
                    })
                    .collect();
                results.push(
                    result
                        .with_topic_id(info.id)
                        .with_num_partitions(info.partitions.len() as i32)
                        .with_replication_factor(info.partitions[0].replicas.len() as i16)
                        .with_configs(Some(configs)),
                );
            }
            Err(e) => results.push(fail(e.code, e.message)),
        }
    }
    Reply::now(ResponseKind::CreateTopics(
        CreateTopicsResponse::default().with_topics(results),
    ))
}
