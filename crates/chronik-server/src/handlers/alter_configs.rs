//! AlterConfigs and IncrementalAlterConfigs for topics (kafka-configs.sh, AdminClient): the
//! new overrides are validated like CreateTopics' configs, then replace the topic's overrides
//! through Raft; every broker applies them to its replicas (`PartitionManager::sync`).
//! AlterConfigs replaces the whole override set, as Kafka does; IncrementalAlterConfigs
//! sets or deletes single keys, or APPENDs to / SUBTRACTs from a list config (Kafka:
//! starting from its default when the topic does not set it). Broker configs are static (command-line flags): refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use chronik_metadata::MetadataCommand;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, Reply};
use crate::broker::{Broker, TopicError};
use crate::topic_config;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;
/// Most resources one request may change.
const MAX_RESOURCES: usize = 1_000;

/// One key's change.
enum Op {
    Set(String),
    Delete,
    /// Items added to a list config (its current value, else its default), Kafka's APPEND.
    Append(String),
    /// Items removed from a list config, Kafka's SUBTRACT.
    Subtract(String),
}

pub async fn alter(broker: &Arc<Broker>, req: AlterConfigsRequest, _version: i16) -> Reply {
    let too_many = req.resources.len() > MAX_RESOURCES;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let ops: Vec<(String, Op)> = r
            .configs
            .iter()
            .map(|c| {
                let op = c
                    .value
                    .as_ref()
                    .map_or(Op::Delete, |v| Op::Set(v.to_string()));
                (c.name.to_string(), op)
            })
            .collect();
        let result = if too_many {
            Err(too_many_error())
        } else {
            change(
                broker,
                r.resource_type,
                &r.resource_name,
                ops,
                true,
                req.validate_only,
            )
            .await
        };
        let (code, message) = outcome(result);
        responses.push(
            kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    Reply::now(ResponseKind::AlterConfigs(
        AlterConfigsResponse::default().with_responses(responses),
    ))
}

pub async fn incremental(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> Reply {
    let too_many = req.resources.len() > MAX_RESOURCES;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let ops: Result<Vec<(String, Op)>, TopicError> = r
            .configs
            .iter()
            .map(|c| {
                let name = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                match c.config_operation {
                    OP_SET => Ok((name, Op::Set(value))),
                    OP_DELETE => Ok((name, Op::Delete)),
                    OP_APPEND | OP_SUBTRACT => {
                        let verb = if c.config_operation == OP_APPEND {
                            "APPEND"
                        } else {
                            "SUBTRACT"
                        };
                        match topic_config::spec(&name) {
                            Some(s) if s.config_type == topic_config::TYPE_LIST => {}
                            // Kafka's wording (ConfigAdminManager).
                            Some(_) => {
                                return Err(TopicError::new(
                                    ResponseError::InvalidConfig,
                                    format!(
                                        "Can't {verb} to key {name} because its type is not LIST."
                                    ),
                                ))
                            }
                            None => {
                                return Err(TopicError::new(
                                    ResponseError::InvalidConfig,
                                    format!("Unknown topic config name: {name}"),
                                ))
                            }
                        }
                        let op = if c.config_operation == OP_APPEND {
                            Op::Append(value)
                        } else {
                            Op::Subtract(value)
                        };
                        Ok((name, op))
                    }
                    op => Err(TopicError::new(
                        ResponseError::InvalidRequest,
                        format!("config {name}: unknown operation {op}"),
                    )),
                }
            })
            .collect();
        let result = if too_many {
            Err(too_many_error())
        } else {
            match ops {
                Ok(ops) => {
                    change(
                        broker,
                        r.resource_type,
                        &r.resource_name,
                        ops,
                        false,
                        req.validate_only,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        };
        let (code, message) = outcome(result);
        responses.push(
            kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    Reply::now(ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    ))
}

/// A list config's items in order: the topic's override, else the config's default.
fn current_list(configs: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    let value = configs
        .get(key)
        .map(String::as_str)
        .or_else(|| topic_config::spec(key).map(|s| s.default))
        .unwrap_or("");
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A resource's error code and message (0 and none when it succeeded).
fn outcome(result: Result<(), TopicError>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err(e) => (e.code.code(), Some(str_bytes(e.message))),
    }
}

fn too_many_error() -> TopicError {
    TopicError::new(
        ResponseError::PolicyViolation,
        format!("more than {MAX_RESOURCES} resources in one request"),
    )
}

/// Applies `ops` to a topic's overrides (starting from none when `replace`), validates the
/// result and commits it unless `validate_only`.
async fn change(
    broker: &Broker,
    resource_type: i8,
    resource_name: &StrBytes,
    ops: Vec<(String, Op)>,
    replace: bool,
    validate_only: bool,
) -> Result<(), TopicError> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                "broker configs are static: set them with chronik-server flags and restart",
            ))
        }
        t => {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("resource type {t} is not supported"),
            ))
        }
    }
    let name = resource_name.as_str();
    let state = broker.metadata();
    let topic = state.topic(name).ok_or_else(|| {
        TopicError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })?;
    let mut configs: BTreeMap<String, String> = if replace {
        BTreeMap::new()
    } else {
        topic.configs.clone()
    };
    for (key, op) in ops {
        match op {
            Op::Set(v) => {
                configs.insert(key, v);
            }
            Op::Delete => {
                configs.remove(&key);
            }
            Op::Append(items) => {
                let mut list = current_list(&configs, &key);
                for item in topic_config::list(&items) {
                    if !list.contains(&item) {
                        list.push(item);
                    }
                }
                configs.insert(key, list.join(","));
            }
            Op::Subtract(items) => {
                let gone = topic_config::list(&items);
                let list = current_list(&configs, &key);
                let kept: Vec<String> = list.into_iter().filter(|i| !gone.contains(i)).collect();
                configs.insert(key, kept.join(","));
            }
        }
    }
    topic_config::validate_overrides(&configs)
        .map_err(|e| TopicError::new(ResponseError::InvalidConfig, e.to_string()))?;
    if validate_only || configs == topic.configs {
        return Ok(());
    }
    let cmd = MetadataCommand::SetTopicConfigs {
        name: name.to_string(),
        configs: configs.clone(),
    };
    broker
        .propose(cmd, |s| s.topic(name).is_some_and(|t| t.configs == configs))
        .await
        .map(|_| ())
}
