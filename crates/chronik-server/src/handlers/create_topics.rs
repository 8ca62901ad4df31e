use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_str, Reply};
use crate::broker::{Broker, Layout};

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
        let layout = match layout(t) {
            Ok(l) => l,
            Err((code, msg)) => {
                results.push(fail(code, msg));
                continue;
            }
        };
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
            .create_topic(&name, layout, configs, req.validate_only)
            .await
        {
            Ok(info) => {
                let configs = broker
                    .topic_config(&info)
                    .entries()
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

/// The topic's layout: counts (-1: the broker defaults), or the client's replica assignment,
/// which Kafka accepts only with both counts -1 (INVALID_REQUEST otherwise) and only as one
/// list for each of partitions 0..n (INVALID_REPLICA_ASSIGNMENT otherwise); the brokers in
/// the lists are checked against the metadata (`chronik_metadata::placement`).
fn layout(t: &CreatableTopic) -> Result<Layout, (ResponseError, String)> {
    if t.assignments.is_empty() {
        return Ok(Layout::Counts {
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
        });
    }
    if t.replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest,
            "A manual partition assignment was specified, but replication factor was not set \
             to -1."
                .into(),
        ));
    }
    if t.num_partitions != -1 {
        return Err((
            ResponseError::InvalidRequest,
            "A manual partition assignment was specified, but numPartitions was not set to -1."
                .into(),
        ));
    }
    let mut by_partition = BTreeMap::new();
    for a in &t.assignments {
        let replicas = a.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>();
        if by_partition.insert(a.partition_index, replicas).is_some() {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Found multiple manual partition assignments for partition {}",
                    a.partition_index
                ),
            ));
        }
    }
    if !by_partition
        .keys()
        .copied()
        .eq(0..by_partition.len() as i32)
    {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    Ok(Layout::Manual(by_partition.into_values().collect()))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    use kafka_protocol::messages::BrokerId;

    use super::*;

    fn topic(partitions: i32, rf: i16, lists: &[(i32, &[i32])]) -> CreatableTopic {
        CreatableTopic::default()
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_assignments(
                lists
                    .iter()
                    .map(|(p, brokers)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(*p)
                            .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect(),
            )
    }

    #[test]
    fn assignments_need_both_counts_unset_and_every_partition_once() {
        assert_eq!(
            layout(&topic(3, 2, &[])),
            Ok(Layout::Counts {
                partitions: 3,
                replication_factor: 2
            })
        );
        // Out of order on the wire, in partition order in the layout.
        assert_eq!(
            layout(&topic(-1, -1, &[(1, &[2, 3]), (0, &[3, 1])])),
            Ok(Layout::Manual(vec![vec![3, 1], vec![2, 3]]))
        );
        let code = |t| layout(&t).unwrap_err().0;
        assert_eq!(
            code(topic(-1, 2, &[(0, &[1])])),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            code(topic(1, -1, &[(0, &[1])])),
            ResponseError::InvalidRequest
        );
        for bad in [&[(0, &[1][..]), (0, &[2][..])][..], &[(1, &[1][..])][..]] {
            assert_eq!(
                code(topic(-1, -1, bad)),
                ResponseError::InvalidReplicaAssignment
            );
        }
    }
}
