//! Raft membership changes: a node joining as a learner, a learner promoted to voter, a node
//! removed. They run on the Raft leader; any member forwards them there over the Raft RPC
//! listener (`ChangeMembership`), so an operator or a joining node can ask any node.
//!
//! Invariant, enforced here: the last voter is never removed (the cluster could never commit
//! anything again).

use std::collections::BTreeSet;
use std::time::Duration;

use chronik_metadata::raft::{NodeId, TypeConfig};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use tokio::time::Instant;

use crate::network::{channel, within};
use crate::pb::raft_client::RaftClient;
use crate::pb::MembershipRequest;

/// Pause between attempts while no leader is known or the leader moves.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipOp {
    AddLearner { node_id: NodeId, rpc_addr: String },
    Promote { node_id: NodeId },
    Remove { node_id: NodeId },
}

impl MembershipOp {
    pub fn to_request(&self) -> MembershipRequest {
        match self {
            MembershipOp::AddLearner { node_id, rpc_addr } => MembershipRequest {
                action: 1,
                node_id: *node_id,
                rpc_addr: rpc_addr.clone(),
            },
            MembershipOp::Promote { node_id } => MembershipRequest {
                action: 2,
                node_id: *node_id,
                rpc_addr: String::new(),
            },
            MembershipOp::Remove { node_id } => MembershipRequest {
                action: 3,
                node_id: *node_id,
                rpc_addr: String::new(),
            },
        }
    }

    pub fn from_request(r: &MembershipRequest) -> Result<MembershipOp, String> {
        match r.action {
            1 if r.node_id > 0 && !r.rpc_addr.is_empty() => Ok(MembershipOp::AddLearner {
                node_id: r.node_id,
                rpc_addr: r.rpc_addr.clone(),
            }),
            2 if r.node_id > 0 => Ok(MembershipOp::Promote { node_id: r.node_id }),
            3 if r.node_id > 0 => Ok(MembershipOp::Remove { node_id: r.node_id }),
            a => Err(format!(
                "bad membership request: action {a}, node {}, address '{}'",
                r.node_id, r.rpc_addr
            )),
        }
    }
}

/// The RPC address of `id` in the current membership.
pub fn member_addr(raft: &Raft<TypeConfig>, id: NodeId) -> Option<String> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.addr.clone())
}

/// Carries out `op` on the leader (here, or forwarded), retrying until `timeout` while no
/// leader is known. `Err` names why it was refused or did not commit.
pub async fn change(
    raft: &Raft<TypeConfig>,
    me: NodeId,
    op: &MembershipOp,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let (state, leader) = {
            let m = raft.metrics().borrow().clone();
            (m.state, m.current_leader)
        };
        if state == ServerState::Leader {
            return on_leader(raft, op).await;
        }
        if let Some(addr) = leader
            .filter(|l| *l != me)
            .and_then(|l| member_addr(raft, l))
        {
            if let Ok(ch) = channel(&addr) {
                // Bounded by what is left of the timeout: a leader cut off from us never
                // answers, and the loop then gives up below.
                let mut client = RaftClient::new(ch);
                let call = client.change_membership(op.to_request());
                match within(deadline.saturating_duration_since(Instant::now()), call).await {
                    Ok(r) => {
                        let e = r.into_inner().error;
                        return if e.is_empty() { Ok(()) } else { Err(e) };
                    }
                    Err(s)
                        if matches!(
                            s.code(),
                            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                        ) => {}
                    Err(s) => {
                        return Err(format!(
                            "leader node {}: {}",
                            leader.unwrap_or(0),
                            s.message()
                        ))
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no metadata leader carried out the membership change within {timeout:?}"
            ));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Carries out `op` on this node, which must lead (openraft refuses otherwise).
pub(crate) async fn on_leader(raft: &Raft<TypeConfig>, op: &MembershipOp) -> Result<(), String> {
    let membership = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
    match op {
        MembershipOp::AddLearner { node_id, rpc_addr } => {
            if voters.contains(node_id) {
                return Err(format!("node {node_id} is already a voter"));
            }
            if let Some(n) = membership.get_node(node_id) {
                if n.addr != *rpc_addr {
                    return Err(format!(
                        "node id {node_id} is already a member at {}; a joining node needs an id of its own",
                        n.addr
                    ));
                }
            }
            raft.add_learner(*node_id, BasicNode::new(rpc_addr), true)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        MembershipOp::Promote { node_id } => {
            if voters.contains(node_id) {
                return Ok(());
            }
            if !learners.contains(node_id) {
                return Err(format!(
                    "node {node_id} is not a learner: start it with --join first (learners: {learners:?})"
                ));
            }
            raft.change_membership(
                ChangeMembers::AddVoterIds(BTreeSet::from([*node_id])),
                false,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
        MembershipOp::Remove { node_id } => {
            if voters.contains(node_id) {
                if voters.len() == 1 {
                    return Err(format!(
                        "node {node_id} is the last voter; removing it would leave no cluster"
                    ));
                }
                raft.change_membership(
                    ChangeMembers::RemoveVoters(BTreeSet::from([*node_id])),
                    false,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            } else if learners.contains(node_id) {
                raft.change_membership(
                    ChangeMembers::RemoveNodes(BTreeSet::from([*node_id])),
                    false,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "node {node_id} is not a member (voters {voters:?}, learners {learners:?})"
                ))
            }
        }
    }
}
