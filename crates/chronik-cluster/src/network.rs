//! openraft's network, client side: one lazily connected gRPC channel per peer, carrying
//! openraft's messages as JSON (see `proto/raft.proto`). Channels come from `chronik_rpc`
//! (connect timeout, HTTP/2 and TCP keepalive).

use std::time::{Duration, Instant};

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
use tonic::transport::Channel;

use crate::pb::raft_client::RaftClient;
use crate::pb::RaftPayload;

/// Makes one [`PeerClient`] per target node.
#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient::new(target, &node.addr)
    }
}

/// A peer silent this long (every call timed out) gets a new connection at its next timeout.
/// Slow answers alone (a follower's log fsync under load can exceed the 75 ms an
/// AppendEntries may take) do not replace a connection that still answers now and then.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// A gRPC client for one peer. openraft keeps it for a whole replication session and retries
/// on it, so when calls keep timing out it replaces the channel: the connection they wait on
/// may be black-holed (a partition), and later calls must not queue behind it until TCP's
/// retransmission backoff ends (up to ~13 s after a heal), which would hold this peer's
/// metadata, and with it its partition roles, back that long. HTTP/2 keepalive
/// (`chronik_rpc`) would close such a connection too, but only after up to 3 s.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Result<RaftClient<Channel>, String>,
    /// Set while a call is under way. Still set when the next call starts: openraft dropped the
    /// previous one at its own deadline (`hard_ttl`), so it counts as timed out.
    in_flight: bool,
    /// When a call last came back (with an answer or an error), or the channel was made.
    last_reply: Instant,
}

/// A lazily connecting channel to `addr` (`host:port`), with the shared transport settings.
pub fn channel(addr: &str) -> Result<Channel, String> {
    chronik_rpc::channel(addr).map_err(|e| e.to_string())
}

/// `call` bounded by `limit`; running out of time is `DEADLINE_EXCEEDED`, as if the peer
/// had said so.
pub async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")))
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    fn new(target: NodeId, addr: &str) -> PeerClient {
        PeerClient {
            target,
            addr: addr.to_string(),
            client: channel(addr).map(RaftClient::new),
            in_flight: false,
            last_reply: Instant::now(),
        }
    }

    /// After a timed-out call: a fresh connection for the next one if the peer has been silent
    /// for [`STALE_AFTER`] (see the type's doc).
    fn timed_out(&mut self) {
        if self.last_reply.elapsed() < STALE_AFTER {
            return;
        }
        tracing::debug!(
            target = self.target,
            addr = %self.addr,
            "raft rpcs time out; next call on a new connection"
        );
        self.client = channel(&self.addr).map(RaftClient::new);
        self.last_reply = Instant::now();
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
        if self.in_flight {
            self.timed_out();
        }
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e.clone()),
                )))
            }
        };
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // openraft drops the call at the same deadline; whichever fires, `in_flight` tells.
        self.in_flight = true;
        let reply = tokio::time::timeout(ttl, call(client, RaftPayload { json })).await;
        self.in_flight = false;
        let reply = match reply {
            Err(_) => {
                self.timed_out();
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "raft rpc timed out");
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(r) => {
                self.last_reply = Instant::now();
                match r {
                    Err(status) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
                    Ok(r) => r.into_inner(),
                }
            }
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
