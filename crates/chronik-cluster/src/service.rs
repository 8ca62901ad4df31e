//! openraft's network, server side: the gRPC `Raft` service. Each RPC hands the decoded
//! openraft message to the local Raft node and sends back its JSON result.

use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::raft::TypeConfig;
use chronik_metadata::MetadataCommand;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, ServerState};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::liveness::Heartbeats;
use crate::membership::{self, MembershipOp};
use crate::pb::propose_reply::Result as ProposeResult;
use crate::pb::raft_server::Raft as RaftRpc;
use crate::pb::{
    HeartbeatReply, HeartbeatRequest, MembershipReply, MembershipRequest, ProposeReply,
    ProposeRequest, RaftPayload,
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
}

fn decode<T: DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.json)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("unencodable raft reply: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req.get_ref())?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req.get_ref())?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req.get_ref())?;
        encode(&self.raft.install_snapshot(rpc).await)
    }

    /// Commits a command forwarded by another node, if this node leads; never forwards again
    /// (the proposer follows the leader hint instead, so requests cannot loop).
    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
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
        let leads = self.raft.metrics().borrow().state == ServerState::Leader;
        if leads {
            self.heartbeats.record(req.get_ref().node_id);
        }
        Ok(Response::new(HeartbeatReply { accepted: leads }))
    }
}
