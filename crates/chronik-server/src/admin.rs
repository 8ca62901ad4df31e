//! The admin gRPC service (`proto/admin.proto`) on this node's RPC listener. Reads come from
//! the applied metadata, plus replica stats this node gathers from every node's LocalReplicas;
//! changes are metadata commands (or Raft membership changes), so they reach the Raft leader
//! from any node and answer once committed and applied here.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chronik_admin::pb::admin_client::AdminClient;
use chronik_admin::pb::admin_server::Admin;
use chronik_admin::pb::{
    Broker as PbBroker, BrokerRef, ChangeReply, DescribeClusterReply, DescribeClusterRequest,
    DescribeTopicsReply, DescribeTopicsRequest, ElectLeaderRequest, ListReassignmentsReply,
    ListReassignmentsRequest, LocalReplicasReply, NodeRaftIndex, PartitionInfo, PartitionRef,
    ReassignReply, ReassignRequest, Reassignment, ReplicaStats, TopicInfo,
};
use chronik_cluster::membership::MembershipOp;
use chronik_metadata::{BrokerState, MetadataCommand, MetadataState};
use kafka_protocol::ResponseError;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::broker::{Broker, TopicError};
use crate::reassign;

pub struct AdminService {
    /// Weak: a server still draining must not keep a stopped broker alive.
    pub broker: Weak<Broker>,
}

impl AdminService {
    /// Seals or resumes a known partition through Raft.
    async fn set_sealed(
        &self,
        at: PartitionRef,
        sealed: bool,
    ) -> Result<Response<ChangeReply>, Status> {
        let b = self.broker()?;
        let PartitionRef { topic, partition } = at;
        known(&b.metadata(), &topic, partition)?;
        let cmd = MetadataCommand::SetPartitionSealed {
            topic: topic.clone(),
            partition,
            sealed,
        };
        change(&b, &topic, partition, cmd, |p| p.sealed == sealed).await
    }

    fn broker(&self) -> Result<Arc<Broker>, Status> {
        self.broker
            .upgrade()
            .ok_or_else(|| Status::unavailable("the broker is stopping"))
    }
}

fn state_name(s: BrokerState) -> &'static str {
    match s {
        BrokerState::Alive => "alive",
        BrokerState::Fenced => "fenced",
        BrokerState::Decommissioning => "decommissioning",
    }
}

fn partition_info(
    broker: &Broker,
    state: &MetadataState,
    topic: &str,
    p: i32,
) -> Option<PartitionInfo> {
    let info = state
        .topic(topic)?
        .partitions
        .get(usize::try_from(p).ok()?)?;
    let mut out = PartitionInfo {
        partition: p,
        replicas: info.replicas.clone(),
        leader: info.leader,
        leader_epoch: info.leader_epoch,
        isr: info.isr.clone(),
        sealed: info.sealed,
        adding: info.adding.clone(),
        removing: info.removing.clone(),
        ..Default::default()
    };
    if let Some(r) = broker.partitions.replicas.get(topic, p) {
        out.local = true;
        out.local_log_end = r.log.log_end_offset();
        out.local_high_watermark = r.high_watermark();
        out.local_size_bytes = r.log.size_bytes();
        out.local_segments = r.log.segment_count() as u32;
    }
    Some(out)
}

/// Commits `cmd` and answers with the partition as this node applied it (once `done` holds).
async fn change(
    broker: &Broker,
    topic: &str,
    p: i32,
    cmd: MetadataCommand,
    done: impl Fn(&chronik_metadata::PartitionInfo) -> bool,
) -> Result<Response<ChangeReply>, Status> {
    let holds = |s: &MetadataState| {
        s.topic(topic)
            .and_then(|t| t.partitions.get(p as usize))
            .is_some_and(&done)
    };
    broker.propose(cmd, holds).await.map_err(|e| {
        if e.code == kafka_protocol::ResponseError::RequestTimedOut {
            Status::unavailable(e.message)
        } else {
            Status::failed_precondition(e.message)
        }
    })?;
    let state = broker.metadata();
    Ok(Response::new(ChangeReply {
        partition: partition_info(broker, &state, topic, p),
    }))
}

/// A refusal as a gRPC status: what does not exist is NOT_FOUND, no quorum is UNAVAILABLE,
/// anything else the operator must change first.
fn status(e: TopicError) -> Status {
    match e.code {
        ResponseError::UnknownTopicOrPartition => Status::not_found(e.message),
        ResponseError::RequestTimedOut => Status::unavailable(e.message),
        ResponseError::InvalidReplicaAssignment => Status::invalid_argument(e.message),
        _ => Status::failed_precondition(e.message),
    }
}

/// How long DescribeTopics waits for another node's replica stats.
const REPLICA_STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's replicas of `topics` (every topic when empty).
fn local_stats(b: &Broker, topics: &[String]) -> Vec<ReplicaStats> {
    let state = b.metadata();
    let mut out = Vec::new();
    for t in state.topics.values() {
        if !topics.is_empty() && !topics.contains(&t.name) {
            continue;
        }
        for p in 0..t.partitions.len() as i32 {
            if let Some(r) = b.partitions.replicas.get(&t.name, p) {
                out.push(ReplicaStats {
                    topic: t.name.clone(),
                    partition: p,
                    node_id: b.node_id,
                    reachable: true,
                    log_end: r.log.log_end_offset(),
                    high_watermark: r.high_watermark(),
                    size_bytes: r.log.size_bytes(),
                    segments: r.log.segment_count() as u32,
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// Replica stats from every broker (this one directly, the others over their admin API, in
/// parallel, each bounded by [`REPLICA_STATS_TIMEOUT`]), keyed by (topic, partition, node).
/// A node that does not answer is recorded with its error under (`""`, -1, node).
async fn gather_replica_stats(
    b: &Broker,
    state: &MetadataState,
    topics: &[String],
) -> HashMap<(String, i32, i32), ReplicaStats> {
    let asks = state
        .brokers
        .values()
        .filter(|x| x.node_id != b.node_id)
        .map(|x| {
            let (id, addr, topics) = (x.node_id, x.rpc_addr.clone(), topics.to_vec());
            async move {
                let r = ask_node(&addr, |mut c| async move {
                    c.local_replicas(DescribeTopicsRequest { topics }).await
                })
                .await
                .map(|r| r.replicas);
                (id, r)
            }
        });
    let mut out = HashMap::new();
    for r in local_stats(b, topics) {
        out.insert((r.topic.clone(), r.partition, r.node_id), r);
    }
    for (id, r) in futures::future::join_all(asks).await {
        match r {
            Ok(rows) => {
                for r in rows.into_iter().filter(|r| r.node_id == id) {
                    out.insert((r.topic.clone(), r.partition, id), r);
                }
            }
            Err(e) => {
                out.insert(
                    (String::new(), -1, id),
                    ReplicaStats {
                        node_id: id,
                        error: e,
                        ..Default::default()
                    },
                );
            }
        }
    }
    out
}

/// Every broker's Raft log position: this node's from `own`, the others' from their
/// DescribeCluster (local only), in parallel, each bounded by [`REPLICA_STATS_TIMEOUT`].
async fn gather_raft_indexes(b: &Broker, own: &DescribeClusterReply) -> Vec<NodeRaftIndex> {
    let state = b.metadata();
    let asks = state.brokers.values().map(|x| {
        let (id, addr) = (x.node_id, x.rpc_addr.clone());
        async move {
            let asked = if id == b.node_id {
                Ok((own.last_log_index, own.last_applied_index))
            } else {
                ask_node(&addr, |mut c| async move {
                    c.describe_cluster(DescribeClusterRequest { local_only: true })
                        .await
                })
                .await
                .map(|r| (r.last_log_index, r.last_applied_index))
            };
            match asked {
                Ok((last_log_index, last_applied_index)) => NodeRaftIndex {
                    node_id: id,
                    reachable: true,
                    last_log_index,
                    last_applied_index,
                    ..Default::default()
                },
                Err(error) => NodeRaftIndex {
                    node_id: id,
                    error,
                    ..Default::default()
                },
            }
        }
    });
    futures::future::join_all(asks).await
}

/// One row per replica of the partition, lag measured against the leader's log end.
fn replica_rows(
    p: &PartitionInfo,
    topic: &str,
    stats: &HashMap<(String, i32, i32), ReplicaStats>,
) -> Vec<ReplicaStats> {
    let key = |n: i32| (topic.to_string(), p.partition, n);
    let leader_end = stats.get(&key(p.leader)).map(|s| s.log_end);
    p.replicas
        .iter()
        .map(|&n| match stats.get(&key(n)) {
            Some(s) => ReplicaStats {
                lag: leader_end.map_or(0, |e| (e - s.log_end).max(0)),
                ..s.clone()
            },
            None => ReplicaStats {
                topic: topic.to_string(),
                partition: p.partition,
                node_id: n,
                reachable: false,
                error: stats
                    .get(&(String::new(), -1, n))
                    .map_or("no replica there yet".to_string(), |s| s.error.clone()),
                ..Default::default()
            },
        })
        .collect()
}

/// Marks broker `id` decommissioning through Raft: it gets no new replicas and the controller
/// moves its replicas away.
async fn mark_decommissioning(b: &Broker, id: i32) -> Result<(), Status> {
    let cmd = MetadataCommand::SetBrokerState {
        node_id: id,
        state: BrokerState::Decommissioning,
    };
    b.propose(cmd, |s| {
        s.brokers
            .get(&id)
            .is_some_and(|x| x.state == BrokerState::Decommissioning)
    })
    .await
    .map(|_| ())
    .map_err(|e| Status::unavailable(e.message))
}

/// Calls another node's admin API at `addr`, the whole call bounded by
/// [`REPLICA_STATS_TIMEOUT`]; `Err` is the reason, for display.
async fn ask_node<T, F, Fut>(addr: &str, call: F) -> Result<T, String>
where
    F: FnOnce(AdminClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let ask = async {
        let ch = chronik_rpc::endpoint(addr)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        call(AdminClient::new(ch))
            .await
            .map(Response::into_inner)
            .map_err(|s| s.message().to_string())
    };
    tokio::time::timeout(REPLICA_STATS_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err("no answer in time".into()))
}

/// The cluster as this node sees it.
fn cluster_reply(b: &Broker) -> DescribeClusterReply {
    let state = b.metadata();
    let raft = b.raft_status();
    DescribeClusterReply {
        cluster_id: state.cluster_id.clone(),
        controller: b.raft_leader().unwrap_or(0),
        brokers: state
            .brokers
            .values()
            .map(|x| PbBroker {
                node_id: x.node_id,
                host: x.host.clone(),
                port: x.port,
                rpc_addr: x.rpc_addr.clone(),
                rack: x.rack.clone().unwrap_or_default(),
                state: state_name(x.state).into(),
            })
            .collect(),
        voters: raft.voters,
        learners: raft.learners,
        answered_by: b.node_id,
        last_log_index: raft.last_log_index,
        last_applied_index: raft.last_applied_index,
        nodes: Vec::new(),
    }
}

/// Refuses a partition the metadata does not have, naming it.
fn known(state: &MetadataState, topic: &str, p: i32) -> Result<(), Status> {
    let t = state
        .topic(topic)
        .ok_or_else(|| Status::not_found(format!("topic '{topic}' does not exist")))?;
    if p < 0 || p as usize >= t.partitions.len() {
        return Err(Status::not_found(format!(
            "partition {p} of '{topic}' does not exist ({} partitions)",
            t.partitions.len()
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn describe_cluster(
        &self,
        req: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterReply>, Status> {
        let b = self.broker()?;
        let mut reply = cluster_reply(&b);
        if !req.into_inner().local_only {
            reply.nodes = gather_raft_indexes(&b, &reply).await;
        }
        Ok(Response::new(reply))
    }

    async fn add_broker(
        &self,
        req: Request<BrokerRef>,
    ) -> Result<Response<DescribeClusterReply>, Status> {
        let b = self.broker()?;
        let id = req.into_inner().node_id;
        if id <= 0 {
            return Err(Status::invalid_argument(format!("bad node id {id}")));
        }
        b.change_membership(&MembershipOp::Promote { node_id: id as u64 })
            .await
            .map_err(Status::failed_precondition)?;
        b.wait_membership(|s| s.voters.contains(&id)).await;
        Ok(Response::new(cluster_reply(&b)))
    }

    async fn remove_voter(
        &self,
        req: Request<BrokerRef>,
    ) -> Result<Response<DescribeClusterReply>, Status> {
        let b = self.broker()?;
        let id = req.into_inner().node_id;
        let status = b.raft_status();
        if !status.voters.contains(&id) && !status.learners.contains(&id) {
            return Err(Status::not_found(format!(
                "node {id} is not a member (voters {:?}, learners {:?})",
                status.voters, status.learners
            )));
        }
        b.change_membership(&MembershipOp::Remove { node_id: id as u64 })
            .await
            .map_err(Status::failed_precondition)?;
        b.wait_membership(|s| !s.voters.contains(&id) && !s.learners.contains(&id))
            .await;
        // Lost for good: no new replicas go to it, and the controller moves the ones it had
        // to other brokers where it can (as for a decommission).
        if b.metadata().brokers.contains_key(&id) {
            mark_decommissioning(&b, id).await?;
        }
        Ok(Response::new(cluster_reply(&b)))
    }

    async fn decommission_broker(
        &self,
        req: Request<BrokerRef>,
    ) -> Result<Response<DescribeClusterReply>, Status> {
        let b = self.broker()?;
        let id = req.into_inner().node_id;
        let state = b.metadata();
        let Some(broker) = state.brokers.get(&id) else {
            return Err(Status::not_found(format!(
                "broker {id} is not part of the cluster (brokers: {:?})",
                state.brokers.keys().collect::<Vec<_>>()
            )));
        };
        if broker.state != BrokerState::Decommissioning {
            // The controller's own plan, on a copy where the broker already leaves: refused if
            // some partition would have nowhere to go.
            let mut leaving = (*state).clone();
            if let Some(x) = leaving.brokers.get_mut(&id) {
                x.state = BrokerState::Decommissioning;
            }
            if let Some((t, p)) = leaving.decommission_plan().stuck.first() {
                let replicas = reassign::known(&state, t, *p)
                    .map(|x| x.replicas.clone())
                    .unwrap_or_default();
                return Err(Status::failed_precondition(format!(
                    "{t}-{p} (replicas {replicas:?}) has no alive broker to move to; add a \
                     broker first or lower its replication factor"
                )));
            }
            if b.raft_status().voters == vec![id] {
                return Err(Status::failed_precondition(format!(
                    "node {id} is the last voter; removing it would leave no cluster"
                )));
            }
            mark_decommissioning(&b, id).await?;
        }
        Ok(Response::new(cluster_reply(&b)))
    }

    async fn describe_topics(
        &self,
        req: Request<DescribeTopicsRequest>,
    ) -> Result<Response<DescribeTopicsReply>, Status> {
        let b = self.broker()?;
        let state = b.metadata();
        let wanted = req.into_inner().topics;
        for t in &wanted {
            if state.topic(t).is_none() {
                return Err(Status::not_found(format!("topic '{t}' does not exist")));
            }
        }
        let stats = gather_replica_stats(&b, &state, &wanted).await;
        let topics = state
            .topics
            .values()
            .filter(|t| wanted.is_empty() || wanted.contains(&t.name))
            .map(|t| TopicInfo {
                name: t.name.clone(),
                id: t.id.to_string(),
                internal: t.internal,
                configs: t.configs.clone().into_iter().collect(),
                partitions: (0..t.partitions.len() as i32)
                    .filter_map(|p| {
                        let mut info = partition_info(&b, &state, &t.name, p)?;
                        info.replica_stats = replica_rows(&info, &t.name, &stats);
                        Some(info)
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(DescribeTopicsReply { topics }))
    }

    async fn local_replicas(
        &self,
        req: Request<DescribeTopicsRequest>,
    ) -> Result<Response<LocalReplicasReply>, Status> {
        let b = self.broker()?;
        Ok(Response::new(LocalReplicasReply {
            replicas: local_stats(&b, &req.into_inner().topics),
        }))
    }

    async fn seal_partition(
        &self,
        req: Request<PartitionRef>,
    ) -> Result<Response<ChangeReply>, Status> {
        self.set_sealed(req.into_inner(), true).await
    }

    async fn resume_partition(
        &self,
        req: Request<PartitionRef>,
    ) -> Result<Response<ChangeReply>, Status> {
        self.set_sealed(req.into_inner(), false).await
    }

    async fn reassign_partitions(
        &self,
        req: Request<ReassignRequest>,
    ) -> Result<Response<ReassignReply>, Status> {
        let b = self.broker()?;
        let moves = req.into_inner().moves;
        if moves.is_empty() {
            return Err(Status::invalid_argument("no partition to move"));
        }
        if moves.len() > reassign::MAX_MOVES_PER_REQUEST {
            return Err(Status::invalid_argument(format!(
                "{} moves in one request; at most {}",
                moves.len(),
                reassign::MAX_MOVES_PER_REQUEST
            )));
        }
        // Every move is checked before any starts.
        let mut scratch = (*b.metadata()).clone();
        let mut seen = std::collections::HashSet::with_capacity(moves.len());
        for m in &moves {
            if !seen.insert((m.topic.as_str(), m.partition)) {
                return Err(Status::invalid_argument(format!(
                    "{}-{} is moved twice in one request",
                    m.topic, m.partition
                )));
            }
            reassign::check_move(&b, &mut scratch, &m.topic, m.partition, &m.replicas)
                .map_err(status)?;
        }
        let mut partitions = Vec::with_capacity(moves.len());
        for m in moves {
            let state = reassign::start(&b, &m.topic, m.partition, m.replicas)
                .await
                .map_err(status)?;
            partitions.extend(partition_info(&b, &state, &m.topic, m.partition));
        }
        Ok(Response::new(ReassignReply { partitions }))
    }

    async fn list_reassignments(
        &self,
        _: Request<ListReassignmentsRequest>,
    ) -> Result<Response<ListReassignmentsReply>, Status> {
        let b = self.broker()?;
        let state = b.metadata();
        let reassignments = reassign::running(&state)
            .into_iter()
            .map(|(topic, i, p)| Reassignment {
                partition: partition_info(&b, &state, &topic, i),
                topic,
                target: p.target_replicas(),
                caught_up: p
                    .adding
                    .iter()
                    .copied()
                    .filter(|r| p.isr.contains(r))
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListReassignmentsReply { reassignments }))
    }

    async fn cancel_reassignment(
        &self,
        req: Request<PartitionRef>,
    ) -> Result<Response<ChangeReply>, Status> {
        let b = self.broker()?;
        let PartitionRef { topic, partition } = req.into_inner();
        let state = reassign::cancel(&b, &topic, partition)
            .await
            .map_err(status)?;
        Ok(Response::new(ChangeReply {
            partition: partition_info(&b, &state, &topic, partition),
        }))
    }

    async fn elect_leader(
        &self,
        req: Request<ElectLeaderRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        let b = self.broker()?;
        let ElectLeaderRequest {
            topic,
            partition,
            leader,
        } = req.into_inner();
        known(&b.metadata(), &topic, partition)?;
        let cmd = MetadataCommand::ElectLeader {
            topic: topic.clone(),
            partition,
            leader: (leader != 0).then_some(leader),
        };
        change(&b, &topic, partition, cmd, |p| {
            p.leader == if leader != 0 { leader } else { p.replicas[0] }
        })
        .await
    }
}
