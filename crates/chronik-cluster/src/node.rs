//! One node of the metadata cluster: its Raft instance, the gRPC server that peers talk to,
//! cluster formation from the peer list, and writes that reach the leader from any node.
//!
//! Formation: every node started with the same peer list calls openraft's `initialize` with
//! that list while its log is pristine. openraft documents this as safe when the lists are
//! equal: they all write the same first membership entry, then elect one leader. There is no
//! separate init step, and start order does not matter. The first leader names the cluster
//! (`InitCluster` with a fresh id; the first one applied wins).
//!
//! A node remembers its id and peer list in `cluster.json`; started later with a different
//! list it refuses to start rather than form a second cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::raft::{open_storage, CommandReply, LogStore, NodeId, TypeConfig};
use chronik_metadata::{MetadataCommand, MetadataState, Outcome, Refusal};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::election::{LeaderContact, Timing};
use crate::liveness::Heartbeats;
use crate::membership::{self, MembershipOp};
use crate::network::{channel, within, Network};
use crate::pb::propose_reply::Result as ProposeResult;
use crate::pb::raft_client::RaftClient;
use crate::pb::raft_server::RaftServer;
use crate::pb::ProposeRequest;
use crate::peers::PeerList;
use crate::service::{RaftService, MAX_MESSAGE_BYTES, MEMBERSHIP_TIMEOUT};

const IDENTITY_FILE: &str = "cluster.json";
/// Pause between attempts while no leader is known or the leader is unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// See [`NodeConfig::services`].
pub type ServicesFn = Box<dyn FnOnce(&Arc<MetadataNode>) -> tonic::service::Routes + Send>;

/// How to start one node.
pub struct NodeConfig {
    pub node_id: NodeId,
    pub peers: PeerList,
    /// Directory for `cluster.json` and the Raft log and snapshot.
    pub dir: PathBuf,
    /// Already bound, so tests can use port 0 and the peer list names the real port.
    /// `None` for a one-node cluster that no peer ever calls (standalone).
    pub rpc_listener: Option<TcpListener>,
    /// How long a metadata write may wait for a leader and a quorum before it fails.
    pub propose_timeout: Duration,
    /// Raft heartbeat; elections time out after 4-8 heartbeats (see [`Timing`]).
    pub heartbeat: Duration,
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_after_logs: u64,
    /// Builds the application's gRPC services (WAL replication, admin) on the node, before it
    /// serves, joins or forms its cluster: the application's state can hold the node from the
    /// start, and is served beside Raft's RPCs on the RPC listener. Called exactly once, with
    /// or without a listener.
    pub services: Option<ServicesFn>,
    /// `--join HOST:RPC`: instead of forming a cluster from `peers` (which then holds only this
    /// node), ask the member at this address to add this node as a learner. Used on the first
    /// start only; a restarted node already has its membership in its Raft log.
    pub join: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node id {0} is not in the peer list {1}")]
    NotInPeerList(NodeId, PeerList),
    #[error(
        "{path} says this data directory is node {found_id} of cluster {found_peers}, \
         but this node was started as node {id} with --cluster {peers}; \
         start it with its original id and peer list, or use an empty data directory"
    )]
    PeerListConflict {
        path: String,
        found_id: NodeId,
        found_peers: PeerList,
        id: NodeId,
        peers: PeerList,
    },
    #[error("metadata storage at {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a metadata write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// The state machine refused it (on every node alike).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No leader with a quorum committed it in time. It may still be applied later if it
    /// reached the leader's log.
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    version: u32,
    node_id: NodeId,
    peers: PeerList,
}

/// How long one forwarded proposal may wait for the leader's answer before the proposer asks
/// again (it re-reads who leads).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// A running metadata node.
pub struct MetadataNode {
    pub node_id: NodeId,
    raft: Raft<TypeConfig>,
    state: watch::Receiver<Arc<MetadataState>>,
    peers: PeerList,
    propose_timeout: Duration,
    stop_server: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    heartbeats: Arc<Heartbeats>,
    /// The log index this node knew committed when it started: [`MetadataNode::wait_ready`]
    /// waits until the state machine applied that far again, so nothing acts on metadata
    /// older than what this node had already acted on (data on disk follows that).
    startup_committed: Option<u64>,
    /// A handle on the Raft log, for the committed index (openraft 0.9's metrics lack it).
    log: LogStore,
    /// When this node last heard from a leader (pre-vote and readiness).
    pub(crate) contact: Arc<LeaderContact>,
    pub(crate) timing: Timing,
}

fn check_identity(dir: &Path, node_id: NodeId, peers: &PeerList) -> Result<(), ClusterError> {
    let path = dir.join(IDENTITY_FILE);
    let storage = |source| ClusterError::Storage {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        let bytes = std::fs::read(&path).map_err(storage)?;
        let found: Identity = serde_json::from_slice(&bytes)
            .map_err(|e| storage(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if found.node_id != node_id || &found.peers != peers {
            return Err(ClusterError::PeerListConflict {
                path: path.display().to_string(),
                found_id: found.node_id,
                found_peers: found.peers,
                id: node_id,
                peers: peers.clone(),
            });
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(storage)?;
    let id = Identity {
        version: 1,
        node_id,
        peers: peers.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&id).map_err(|e| storage(std::io::Error::other(e)))?;
    chronik_durable::replace(dir, IDENTITY_FILE, &bytes).map_err(storage)
}

impl MetadataNode {
    /// Opens storage, starts Raft and its gRPC server, and forms the cluster if this node's
    /// log is pristine. Returns once the node runs; [`MetadataNode::wait_ready`] waits for a
    /// named cluster.
    pub async fn start(cfg: NodeConfig) -> Result<Arc<MetadataNode>, ClusterError> {
        if !cfg.peers.0.contains_key(&cfg.node_id) {
            return Err(ClusterError::NotInPeerList(cfg.node_id, cfg.peers));
        }
        check_identity(&cfg.dir, cfg.node_id, &cfg.peers)?;
        let raft_dir = cfg.dir.join("raft");
        let (mut log, sm) = open_storage(&raft_dir).map_err(|source| ClusterError::Storage {
            path: raft_dir.display().to_string(),
            source,
        })?;
        let startup_committed = openraft::storage::RaftLogStorage::read_committed(&mut log)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?
            .map(|id| id.index);
        let state = sm.subscribe();
        let timing = Timing::from_heartbeat(cfg.heartbeat);
        let config = openraft::Config {
            cluster_name: "chronik".into(),
            heartbeat_interval: timing.heartbeat.as_millis() as u64,
            election_timeout_min: timing.election_min.as_millis() as u64,
            election_timeout_max: timing.election_max.as_millis() as u64,
            // Elections are started by the elector after a pre-vote (see `election`).
            enable_elect: false,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_after_logs.max(1)),
            max_in_snapshot_log_to_keep: (cfg.snapshot_after_logs / 10).max(1),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let log_view = log.clone();
        let config = Arc::new(config);
        let raft = Raft::new(cfg.node_id, config.clone(), Network, log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;

        let (stop_tx, stop_rx) = oneshot::channel();
        let heartbeats = Arc::new(Heartbeats::default());
        let contact = Arc::new(LeaderContact::default());
        let service = RaftService {
            raft: raft.clone(),
            heartbeats: heartbeats.clone(),
            contact: contact.clone(),
            timing,
        };
        let node = Arc::new(MetadataNode {
            node_id: cfg.node_id,
            raft,
            state,
            peers: cfg.peers,
            propose_timeout: cfg.propose_timeout,
            stop_server: std::sync::Mutex::new(Some(stop_tx)),
            heartbeats,
            startup_committed,
            log: log_view,
            contact,
            timing,
        });
        let extra = cfg.services.map(|build| build(&node));
        if let Some(listener) = cfg.rpc_listener {
            Self::serve(service, extra, listener, stop_rx);
        }
        match &cfg.join {
            Some(addr) => node.join(addr).await?,
            None => node.form().await?,
        }
        node.spawn_observer();
        node.start_elector(config);
        Ok(node)
    }

    /// Serves the Raft gRPC service on `listener` until `stop` fires.
    fn serve(
        service: RaftService,
        extra: Option<tonic::service::Routes>,
        listener: TcpListener,
        stop_rx: oneshot::Receiver<()>,
    ) {
        let service = RaftServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let incoming = chronik_rpc::incoming(listener);
        tokio::spawn(async move {
            let mut builder = chronik_rpc::server();
            let router = match extra {
                Some(routes) => builder.add_routes(routes).add_service(service),
                None => builder.add_service(service),
            };
            let served = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "raft rpc server stopped");
            }
        });
    }

    /// Whether this node's Raft log already holds a membership (formed or joined before).
    async fn is_member(&self) -> Result<bool, ClusterError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))
    }

    /// Writes the peer list as the first membership if this node's log is pristine.
    async fn form(&self) -> Result<(), ClusterError> {
        if self.is_member().await? {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = self
            .peers
            .0
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                info!(node = self.node_id, peers = %self.peers, "formed the metadata cluster from the peer list");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Joins the cluster a member at `addr` belongs to, as a learner, unless this node already
    /// is a member (a restart). Retries while that member has no leader, up to the propose
    /// timeout; a refusal (the id is taken, say) is final.
    async fn join(&self, addr: &str) -> Result<(), ClusterError> {
        if self.is_member().await? {
            return Ok(());
        }
        let own = self
            .peers
            .0
            .get(&self.node_id)
            .cloned()
            .ok_or_else(|| ClusterError::NotInPeerList(self.node_id, self.peers.clone()))?;
        let op = MembershipOp::AddLearner {
            node_id: self.node_id,
            rpc_addr: own,
        };
        let deadline = Instant::now() + self.propose_timeout.max(MEMBERSHIP_TIMEOUT);
        loop {
            let attempt = match channel(addr) {
                // Bounded: a member cut off from us accepts nothing and answers nothing.
                Ok(ch) => within(
                    deadline.saturating_duration_since(Instant::now()),
                    RaftClient::new(ch).change_membership(op.to_request()),
                )
                .await
                .map(|r| r.into_inner().error),
                Err(e) => return Err(ClusterError::Raft(format!("--join {addr}: {e}"))),
            };
            match attempt {
                Ok(e) if e.is_empty() => {
                    info!(
                        node = self.node_id,
                        via = addr,
                        "joined the metadata cluster as a learner"
                    );
                    return Ok(());
                }
                Ok(e) => return Err(ClusterError::Raft(format!("--join {addr} refused: {e}"))),
                Err(s) if Instant::now() < deadline => {
                    warn!(node = self.node_id, via = addr, error = %s.message(), "joining: retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => {
                    return Err(ClusterError::Raft(format!(
                        "--join {addr}: no answer within the timeout: {}",
                        s.message()
                    )))
                }
            }
        }
    }

    /// Carries out a Raft membership change (here if this node leads, else on the leader).
    pub async fn change_membership(&self, op: &MembershipOp) -> Result<(), String> {
        membership::change(&self.raft, self.node_id, op, MEMBERSHIP_TIMEOUT).await
    }

    /// Logs role changes and Raft metrics on change, and has the first leader name the
    /// cluster.
    fn spawn_observer(self: &Arc<Self>) {
        let mut metrics = self.raft.metrics();
        let me = Arc::downgrade(self);
        let node = self.node_id;
        tokio::spawn(async move {
            let mut last_role = None;
            let mut last_leader = None;
            let mut last_line = String::new();
            loop {
                let m = metrics.borrow_and_update().clone();
                if m.current_leader != last_leader {
                    if m.current_leader.is_some() {
                        metrics::counter!("chronik_raft_leader_changes_total").increment(1);
                    }
                    last_leader = m.current_leader;
                }
                if last_role != Some(m.state) {
                    info!(node, role = ?m.state, term = m.current_term, leader = ?m.current_leader,
                        "raft role changed");
                    last_role = Some(m.state);
                }
                let line = format!(
                    "term={} role={:?} leader={:?} last_log={:?} applied={:?} snapshot={:?} voters={:?}",
                    m.current_term,
                    m.state,
                    m.current_leader,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    m.snapshot.map(|l| l.index),
                    m.membership_config.membership().voter_ids().collect::<Vec<_>>(),
                );
                if line != last_line {
                    info!(node, metrics = %line, "raft metrics");
                    last_line = line;
                }
                if m.state == ServerState::Leader {
                    if let Some(me) = me.upgrade() {
                        if me.state().cluster_id.is_empty() {
                            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
                            let n = me.clone();
                            tokio::spawn(async move {
                                if let Err(e) =
                                    n.propose(MetadataCommand::InitCluster { cluster_id }).await
                                {
                                    warn!(node = n.node_id, error = %e, "could not name the cluster yet");
                                }
                            });
                        }
                    }
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// The applied metadata: cheap to take, consistent, possibly behind the leader's.
    pub fn state(&self) -> Arc<MetadataState> {
        self.state.borrow().clone()
    }

    /// Wakes on every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.state.clone()
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The controller's heartbeat record (used only while this node leads).
    pub(crate) fn heartbeats(&self) -> &Heartbeats {
        &self.heartbeats
    }

    /// The RPC address of peer `id`.
    pub(crate) fn peer_addr(&self, id: NodeId) -> Option<String> {
        membership::member_addr(&self.raft, id).or_else(|| self.peers.0.get(&id).cloned())
    }

    /// Raft membership and this node's log position, for operators.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        RaftStatus {
            voters: membership.voter_ids().map(|v| v as i32).collect(),
            learners: membership.learner_ids().map(|v| v as i32).collect(),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied_index: m.last_applied.map_or(0, |l| l.index),
            committed_index: self.log.committed_index(),
            term: m.current_term,
            leader: m.current_leader.map(|l| l as i32),
        }
    }

    /// Waits, up to `timeout`, until this node's view of the membership satisfies `done`
    /// (a committed change reaches every member shortly after the leader). False on timeout.
    pub async fn wait_membership(
        &self,
        done: impl Fn(&RaftStatus) -> bool,
        timeout: Duration,
    ) -> bool {
        let mut metrics = self.raft.metrics();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if done(&self.status()) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        waited.is_ok() && done(&self.status())
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Waits until the cluster is named (formed, with a leader that committed `InitCluster`),
    /// this node has applied that, it applied at least as far as it had committed before it
    /// restarted, and it applied the leader's read index (everything committed while it was
    /// away): only then may it act on its metadata or answer from it.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Arc<MetadataState>, ClusterError> {
        let mut rx = self.state.clone();
        let ready = tokio::time::timeout(timeout, async {
            if let Some(index) = self.startup_committed {
                let mut metrics = self.raft.metrics();
                metrics
                    .wait_for(|m| m.last_applied.is_some_and(|a| a.index >= index))
                    .await
                    .map_err(|_| ())?;
            }
            rx.wait_for(|s| !s.cluster_id.is_empty())
                .await
                .map_err(|_| ())?;
            self.catch_up_with_leader().await?;
            Ok::<_, ()>(self.state())
        })
        .await;
        match ready {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(ClusterError::Raft("the state machine stopped".into())),
            Err(_) => Err(ClusterError::Raft(format!(
                "no metadata quorum formed within {timeout:?}: are a majority of {} running?",
                self.peers
            ))),
        }
    }

    /// Commits `cmd` only if this node leads now, never forwarding: the controller's decisions
    /// are made on its own view, and a deposed controller (paused, say, so every broker looks
    /// silent to it) must not have them committed by its successor.
    pub async fn propose_as_leader(&self, cmd: MetadataCommand) -> Result<Outcome, ProposeError> {
        match tokio::time::timeout(self.propose_timeout, self.raft.client_write(cmd)).await {
            Ok(Ok(resp)) => Ok(resp.data?),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(
                ProposeError::Unavailable("this node no longer leads the metadata cluster".into()),
            ),
            Ok(Err(e)) => Err(ProposeError::Unavailable(e.to_string())),
            Err(_) => Err(ProposeError::Unavailable(format!(
                "not committed within {:?}",
                self.propose_timeout
            ))),
        }
    }

    /// Commits `cmd` through the leader, wherever it is, and returns what applying it gave.
    /// Fails with [`ProposeError::Unavailable`] when no leader commits it within the
    /// propose timeout.
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<Outcome, ProposeError> {
        let deadline = Instant::now() + self.propose_timeout;
        let outcome = tokio::time::timeout_at(deadline, self.propose_until_done(cmd)).await;
        match outcome {
            Ok(r) => r,
            Err(_) => Err(ProposeError::Unavailable(format!(
                "not committed within {:?} (leader: {}); if it reached the leader's log it may \
                 still be applied",
                self.propose_timeout,
                self.leader()
                    .map_or("none known".to_string(), |l| format!("node {l}")),
            ))),
        }
    }

    async fn propose_until_done(&self, cmd: MetadataCommand) -> Result<Outcome, ProposeError> {
        loop {
            let leader = match self.raft.client_write(cmd.clone()).await {
                Ok(resp) => return Ok(resp.data?),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f.leader_id,
                Err(e) => return Err(ProposeError::Unavailable(e.to_string())),
            };
            if let Some(l) = leader.filter(|l| *l != self.node_id) {
                if let Forwarded::Done(r) = self.forward(l, &cmd).await {
                    return r;
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn forward(&self, leader: NodeId, cmd: &MetadataCommand) -> Forwarded {
        let Some(addr) = self.peer_addr(leader) else {
            return Forwarded::Retry;
        };
        let Ok(ch) = channel(&addr) else {
            return Forwarded::Retry;
        };
        let command_json = match serde_json::to_vec(cmd) {
            Ok(j) => j,
            Err(e) => return Forwarded::Done(Err(ProposeError::Unavailable(e.to_string()))),
        };
        // Bounded: a leader that was paused or cut off accepts the connection (the kernel
        // does) and never answers; ask again whoever leads by then. The command may still be
        // applied by the old leader's successor, like any timed-out write: commands are
        // idempotent or refused harmlessly when repeated.
        let reply = match tokio::time::timeout(
            FORWARD_TIMEOUT,
            RaftClient::new(ch).propose(ProposeRequest {
                from_node: self.node_id,
                command_json,
            }),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                warn!(
                    node = self.node_id,
                    leader, "forwarded proposal unanswered; asking again"
                );
                return Forwarded::Retry;
            }
        };
        match reply.map(|r| r.into_inner().result) {
            // Not sent: safe to try again.
            Err(s) if s.code() == tonic::Code::Unavailable => Forwarded::Retry,
            Err(s) => Forwarded::Done(Err(ProposeError::Unavailable(format!(
                "forwarding to leader node {leader}: {}",
                s.message()
            )))),
            Ok(Some(ProposeResult::ReplyJson(j))) => {
                match serde_json::from_slice::<CommandReply>(&j) {
                    Ok(r) => Forwarded::Done(r.map_err(ProposeError::from)),
                    Err(e) => Forwarded::Done(Err(ProposeError::Unavailable(format!(
                        "undecodable reply from node {leader}: {e}"
                    )))),
                }
            }
            Ok(Some(ProposeResult::NotLeaderLeaderId(_))) => Forwarded::Retry,
            Ok(Some(ProposeResult::Error(e))) => Forwarded::Done(Err(ProposeError::Unavailable(
                format!("leader node {leader}: {e}"),
            ))),
            Ok(None) => Forwarded::Retry,
        }
    }

    /// Stops Raft and the RPC server.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(node = self.node_id, error = %e, "raft shutdown");
        }
        if let Some(tx) = self
            .stop_server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
    }
}

/// See [`MetadataNode::status`].
#[derive(Debug, Clone, Default)]
pub struct RaftStatus {
    pub voters: Vec<i32>,
    pub learners: Vec<i32>,
    pub last_log_index: u64,
    pub last_applied_index: u64,
    /// The last index this node knows committed (a quorum holds it).
    pub committed_index: u64,
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<i32>,
}

enum Forwarded {
    Done(Result<Outcome, ProposeError>),
    Retry,
}
