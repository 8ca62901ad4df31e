//! openraft's network, server side: the gRPC `Raft` service. Each RPC hands the decoded
//! openraft message to the local Raft node and sends back its JSON result.

use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::raft::{NodeId, TypeConfig};
use chronik_metadata::MetadataCommand;
use chronik_rpc::auth;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use openraft::{Raft, ServerState, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::election::{grant_pre_vote, LeaderContact, Timing};
use crate::liveness::Heartbeats;
use crate::membership::{self, MembershipOp};
use crate::pb::propose_reply::Result as ProposeResult;
use crate::pb::raft_server::Raft as RaftRpc;
use crate::pb::read_index_reply::Result as ReadIndexResult;
use crate::pb::{
    HeartbeatReply, HeartbeatRequest, MembershipReply, MembershipRequest, PreVoteReply,
    PreVoteRequest, ProposeReply, ProposeRequest, RaftPayload, ReadIndexReply, ReadIndexRequest,
};

/// Largest message the service accepts: snapshot chunks are the biggest (openraft sends them
/// in pieces of `snapshot_max_chunk_size`, 3 MiB by default).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long a forwarded membership change may wait for a leader and its commit (adding a
/// learner includes copying the metadata to it).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RaftService {
    pub raft: Raft<TypeConfig>,
    pub heartbeats: Arc<Heartbeats>,
    /// Updated on every AppendEntries or snapshot chunk this node accepts from a leader.
    pub contact: Arc<LeaderContact>,
    pub timing: Timing,
}

fn decode<T: DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.json)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

/// The node a Raft message's vote names as its sender (the leader of an AppendEntries or a
/// snapshot chunk, the candidate of a Vote): the caller's certificate must be that node's.
fn require_sender<T>(
    req: &Request<T>,
    rpc: &'static str,
    vote: &Vote<NodeId>,
) -> Result<(), Status> {
    let sender = vote
        .leader_id()
        .voted_for()
        .ok_or_else(|| Status::invalid_argument(format!("{rpc} names no sender")))?;
    auth::require_node(req, rpc, sender)
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("unencodable raft reply: {e}")))
}

impl RaftService {
    /// Whether `id` is in the current membership (voter or learner).
    fn is_member(&self, id: NodeId) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .any(|(n, _)| *n == id)
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        require_sender(&req, "AppendEntries", &rpc.vote)?;
        let result = self.raft.append_entries(rpc).await;
        // Refused only for an old term (HigherVote): anything else comes from the leader.
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.contact.heard();
        }
        encode(&result)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(req.get_ref())?;
        require_sender(&req, "Vote", &rpc.vote)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        require_sender(&req, "InstallSnapshot", &rpc.vote)?;
        let vote = rpc.vote;
        let result = self.raft.install_snapshot(rpc).await;
        // Accepted: this node now holds the sender's vote (a refusal answers a higher one).
        if matches!(&result, Ok(r) if r.vote == vote) {
            self.contact.heard();
        }
        encode(&result)
    }

    /// Commits a command forwarded by another node, if this node leads; never forwards again
    /// (the proposer follows the leader hint instead, so requests cannot loop).
    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        auth::require_member_or_admin(&req, "Propose", |id| self.is_member(id), None)?;
        let req = req.into_inner();
        let cmd: MetadataCommand = serde_json::from_slice(&req.command_json)
            .map_err(|e| Status::invalid_argument(format!("undecodable metadata command: {e}")))?;
        debug!(from = req.from_node, ?cmd, "forwarded metadata command");
        let result = match self.raft.client_write(cmd).await {
            Ok(resp) => match serde_json::to_vec(&resp.data) {
                Ok(json) => ProposeResult::ReplyJson(json),
                Err(e) => ProposeResult::Error(format!("unencodable reply: {e}")),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                ProposeResult::NotLeaderLeaderId(f.leader_id.unwrap_or(0))
            }
            Err(e) => ProposeResult::Error(e.to_string()),
        };
        Ok(Response::new(ProposeReply {
            result: Some(result),
        }))
    }

    /// A membership change: carried out here if this node leads, else forwarded to the
    /// leader.
    async fn change_membership(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let op = MembershipOp::from_request(req.get_ref()).map_err(Status::invalid_argument)?;
        // A node that joins asks to be added before it is a member: it may add itself.
        let joiner = match &op {
            MembershipOp::AddLearner { node_id, .. } => Some(*node_id),
            _ => None,
        };
        auth::require_member_or_admin(&req, "ChangeMembership", |id| self.is_member(id), joiner)?;
        let me = self.raft.metrics().borrow().id;
        let error = membership::change(&self.raft, me, &op, MEMBERSHIP_TIMEOUT)
            .await
            .err()
            .unwrap_or_default();
        Ok(Response::new(MembershipReply { error }))
    }

    /// Records a broker's heartbeat if this node is the controller.
    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        auth::require_node(&req, "Heartbeat", req.get_ref().node_id)?;
        let leads = self.raft.metrics().borrow().state == ServerState::Leader;
        if leads {
            self.heartbeats.record(req.get_ref().node_id);
        }
        Ok(Response::new(HeartbeatReply { accepted: leads }))
    }

    /// Would this node vote for the candidate? Changes nothing here (see `election`).
    async fn pre_vote(
        &self,
        req: Request<PreVoteRequest>,
    ) -> Result<Response<PreVoteReply>, Status> {
        auth::require_node(&req, "PreVote", req.get_ref().candidate_id)?;
        let req = req.into_inner();
        let last: Option<openraft::LogId<chronik_metadata::raft::NodeId>> =
            serde_json::from_slice(&req.last_log_id_json)
                .map_err(|e| Status::invalid_argument(format!("undecodable last log id: {e}")))?;
        let verdict = grant_pre_vote(&self.raft, &self.contact, &self.timing, last.as_ref());
        debug!(candidate = req.candidate_id, ?verdict, "pre-vote");
        Ok(Response::new(PreVoteReply {
            granted: verdict.is_ok(),
            reason: verdict.err().unwrap_or_default(),
        }))
    }

    /// The read index, if this node leads: it first confirms its leadership with a quorum.
    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        auth::require_node(&req, "ReadIndex", req.get_ref().from_node)?;
        debug!(from = req.get_ref().from_node, "read index asked");
        let result = match self.raft.get_read_log_id().await {
            Ok((read, _)) => ReadIndexResult::ReadEnd(read.map_or(0, |l| l.index + 1)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                ReadIndexResult::NotLeaderLeaderId(f.leader_id.unwrap_or(0))
            }
            Err(e) => ReadIndexResult::Error(e.to_string()),
        };
        Ok(Response::new(ReadIndexReply {
            result: Some(result),
        }))
    }
}
