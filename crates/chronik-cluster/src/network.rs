//! openraft's network, client side: one lazily connected gRPC channel per peer, carrying
//! openraft's messages as JSON (see `proto/raft.proto`).

use std::time::Duration;

use chronik_metadata::raft::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::pb::raft_client::RaftClient;
use crate::pb::RaftPayload;

/// How long a connection attempt to a peer may take before the RPC counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes one [`PeerClient`] per target node.
#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient::new(target, &node.addr)
    }
}

/// A gRPC client for one peer. The channel connects on first use and reconnects by itself.
pub struct PeerClient {
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
}

/// A lazily connecting channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad peer address {addr}: {e}"))
        .map(|e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .connect_lazy()
        })
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    fn new(target: NodeId, addr: &str) -> PeerClient {
        PeerClient {
            target,
            client: channel(addr).map(RaftClient::new),
        }
    }

    /// Sends `req` through `call` within `ttl`, decoding the peer's `Result<Resp, RaftError>`.
    async fn rpc<Req, Resp, E, F, Fut>(
        &mut self,
        req: &Req,
        ttl: Duration,
        call: F,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, RaftPayload) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e.clone()),
                )))
            }
        };
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = match tokio::time::timeout(ttl, call(client, RaftPayload { json })).await {
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "raft rpc timed out");
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.rpc(&rpc, option.hard_ttl(), |mut c, p| async move {
            c.append_entries(p).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.rpc(&rpc, option.hard_ttl(), |mut c, p| async move {
            c.install_snapshot(p).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.rpc(&rpc, option.hard_ttl(), |mut c, p| async move {
            c.vote(p).await
        })
        .await
    }
}
