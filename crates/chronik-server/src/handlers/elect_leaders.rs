//! ElectLeaders (kafka-leader-election.sh, AdminClient.electLeaders): preferred elections
//! through Raft, the same command as `chronik-admin leader elect`. A partition whose preferred
//! replica already leads gets ELECTION_NOT_NEEDED; one whose preferred replica is not alive and
//! in the ISR gets ELIGIBLE_LEADERS_NOT_AVAILABLE. Unclean elections on request are refused
//! (the topic config `unclean.leader.election.enable` governs them).

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::broker::{Broker, TopicError};
use crate::reassign;
use chronik_metadata::MetadataCommand;

const PREFERRED: i8 = 0;

pub async fn handle(broker: &Arc<Broker>, req: ElectLeadersRequest, _version: i16) -> Reply {
    let state = broker.metadata();
    // (topic, partitions): the named ones, or every partition not led by its preferred replica.
    let asked: Vec<(String, Vec<i32>)> = match &req.topic_partitions {
        Some(tps) => tps
            .iter()
            .map(|t| (topic_str(&t.topic).to_string(), t.partitions.clone()))
            .collect(),
        None => state
            .topics
            .values()
            .map(|t| {
                let ps = (0..t.partitions.len() as i32)
                    .filter(|&i| {
                        let p = &t.partitions[i as usize];
                        p.leader != p.replicas[0]
                    })
                    .collect::<Vec<_>>();
                (t.name.clone(), ps)
            })
            .filter(|(_, ps)| !ps.is_empty())
            .collect(),
    };
    let mut results = Vec::with_capacity(asked.len());
    for (topic, partitions) in asked {
        let mut out = Vec::with_capacity(partitions.len());
        for p in partitions {
            let r = elect(broker, &topic, p, req.election_type).await;
            let pr = PartitionResult::default().with_partition_id(p);
            out.push(match r {
                Ok(()) => pr,
                Err(e) => pr
                    .with_error_code(e.code.code())
                    .with_error_message(Some(str_bytes(e.message))),
            });
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(topic_name(&topic))
                .with_partition_result(out),
        );
    }
    Reply::now(ResponseKind::ElectLeaders(
        ElectLeadersResponse::default().with_replica_election_results(results),
    ))
}

async fn elect(
    broker: &Broker,
    topic: &str,
    partition: i32,
    election_type: i8,
) -> Result<(), TopicError> {
    let state = broker.metadata();
    let p = reassign::known(&state, topic, partition)?;
    if election_type != PREFERRED {
        return Err(TopicError::new(
            ResponseError::InvalidRequest,
            "unclean elections are not taken on request; set the topic's \
             unclean.leader.election.enable=true to allow them on failover",
        ));
    }
    let preferred = p.replicas[0];
    if p.leader == preferred {
        return Err(TopicError::new(
            ResponseError::ElectionNotNeeded,
            format!("{topic}-{partition}: the preferred replica {preferred} already leads"),
        ));
    }
    let cmd = MetadataCommand::ElectLeader {
        topic: topic.to_string(),
        partition,
        leader: None,
    };
    broker
        .propose(cmd, |s| {
            reassign::known(s, topic, partition).is_ok_and(|p| p.leader == preferred)
        })
        .await
        .map(|_| ())
}
