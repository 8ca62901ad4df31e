//! DescribeConfigs for topics (type 2) and this broker (type 4), with real values and
//! their sources.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, Reply};
use crate::broker::Broker;
use crate::topic_config::{SOURCE_DEFAULT, SOURCE_STATIC_BROKER};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

struct Entry {
    name: String,
    value: String,
    source: i8,
    config_type: i8,
    read_only: bool,
}

pub fn handle(broker: &Arc<Broker>, req: DescribeConfigsRequest, _version: i16) -> Reply {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => topic_entries(broker, r.resource_name.as_str()),
                RESOURCE_BROKER => broker_entries(broker, r.resource_name.as_str()),
                t => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {t} is not supported"),
                )),
            };
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| {
                            r.configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| {
                            let synonyms = if req.include_synonyms {
                                vec![DescribeConfigsSynonym::default()
                                    .with_name(str_bytes(e.name.clone()))
                                    .with_value(Some(str_bytes(e.value.clone())))
                                    .with_source(e.source)]
                            } else {
                                Vec::new()
                            };
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(e.name))
                                .with_value(Some(str_bytes(e.value)))
                                .with_read_only(e.read_only)
                                .with_config_source(e.source)
                                .with_config_type(e.config_type)
                                .with_synonyms(synonyms)
                        })
                        .collect(),
                ),
                Err((code, msg)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(msg))),
            }
        })
        .collect();
    Reply::now(ResponseKind::DescribeConfigs(
        DescribeConfigsResponse::default().with_results(results),
    ))
}

fn topic_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, (ResponseError, String)> {
    let state = broker.metadata();
    let topic = state.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic {name}"),
        )
    })?;
    Ok(broker
        .topic_config(topic)
        .entries()
        .map(|e| Entry {
            name: e.name.to_string(),
            value: e.value.clone(),
            source: e.source,
            config_type: e.config_type,
            read_only: false,
        })
        .collect())
}

fn broker_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, (ResponseError, String)> {
    if !name.is_empty() && name != broker.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("broker {name} is not this broker ({})", broker.node_id),
        ));
    }
    let c = &broker.config;
    let d = &c.topic_defaults;
    let default = crate::topic_config::TopicDefaults::default();
    let src = |is_default: bool| {
        if is_default {
            SOURCE_DEFAULT
        } else {
            SOURCE_STATIC_BROKER
        }
    };
    // (name, value, is default, Kafka config type: 1 bool, 2 string, 3 int, 5 long)
    let rows: Vec<(&str, String, bool, i8)> = vec![
        ("broker.id", c.node_id.to_string(), false, 3),
        (
            "log.dirs",
            c.data_dir.join("wal").display().to_string(),
            false,
            2,
        ),
        (
            "num.partitions",
            c.num_partitions.to_string(),
            c.num_partitions == 1,
            3,
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            c.auto_create_topics,
            1,
        ),
        (
            "default.replication.factor",
            broker
                .default_replication_factor(&broker.metadata())
                .to_string(),
            c.default_replication_factor.is_none(),
            3,
        ),
        (
            "min.insync.replicas",
            d.min_insync_replicas.to_string(),
            d.min_insync_replicas == default.min_insync_replicas,
            3,
        ),
        (
            "log.retention.ms",
            d.retention_ms.to_string(),
            d.retention_ms == default.retention_ms,
            5,
        ),
        (
            "log.retention.bytes",
            d.retention_bytes.to_string(),
            d.retention_bytes == default.retention_bytes,
            5,
        ),
        (
            "log.segment.bytes",
            d.segment_bytes.to_string(),
            d.segment_bytes == default.segment_bytes,
            3,
        ),
        (
            "log.roll.ms",
            d.segment_ms.to_string(),
            d.segment_ms == default.segment_ms,
            5,
        ),
        (
            "message.max.bytes",
            d.max_message_bytes.to_string(),
            d.max_message_bytes == default.max_message_bytes,
            3,
        ),
        (
            "log.flush.policy",
            c.fsync.to_string(),
            matches!(c.fsync, chronik_wal::FsyncPolicy::Always),
            2,
        ),
    ];
    Ok(rows
        .into_iter()
        .map(|(name, value, is_default, config_type)| Entry {
            name: name.to_string(),
            value,
            source: src(is_default),
            config_type,
            read_only: true,
        })
        .collect())
}
