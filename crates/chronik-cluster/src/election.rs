//! Elections with pre-vote, and how recently this node heard from a working leader.
//!
//! openraft 0.9 has no pre-vote: a node cut off from the others keeps timing out and raising
//! its term, and when it comes back its higher term deposes a healthy leader (measured: an
//! isolated follower went from term 1 to 16 in 10 s, and the cluster had no leader for 2.6 s
//! after the heal). So openraft's own election timer is off (`enable_elect = false`) and the
//! elector here decides when to campaign: after a randomized election timeout without word
//! from a leader it asks every voter whether it *would* vote for it (`PreVote`, which changes
//! nothing on the receiver), and only with a quorum of grants calls `trigger().elect()`.
//! A voter grants a pre-vote only if it has not heard from a leader for the leader lease and
//! the candidate's log is at least as up to date as its own, so a node that cannot reach a
//! quorum, or whose peers still follow a live leader, never raises its term.
//!
//! The same contact record answers readiness: a node can serve when a leader with a quorum is
//! reachable (see [`Timing::stale_after`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chronik_metadata::raft::{NodeId, TypeConfig};
use openraft::{LogId, Raft, ServerState, TokioRuntime};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::network::channel;
use crate::node::MetadataNode;
use crate::pb::raft_client::RaftClient;
use crate::pb::{PreVoteReply, PreVoteRequest};

/// Raft timing derived from the heartbeat interval, as openraft applies it.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

impl Timing {
    /// Elections time out after 4-8 heartbeats.
    pub fn from_heartbeat(heartbeat: Duration) -> Timing {
        let hb = heartbeat.max(Duration::from_millis(10));
        Timing {
            heartbeat: hb,
            election_min: hb * 4,
            election_max: hb * 8,
        }
    }

    /// openraft's leader lease (its `election_timeout_max`): a follower that heard from the
    /// leader within it refuses real votes, and here pre-votes too.
    pub fn lease(&self) -> Duration {
        self.election_max
    }

    /// "Recently" for readiness: the lease plus the longest election timeout, the most a
    /// follower waits without word from its leader before it campaigns (1.6 s with the 100 ms
    /// heartbeat). A leader is current while a quorum acknowledged it within this; a follower
    /// while it heard from the leader within this.
    pub fn stale_after(&self) -> Duration {
        self.lease() + self.election_max
    }
}

/// When this node last heard from a leader it accepts (an AppendEntries or snapshot it did
/// not refuse for an old term). Starts at process start: a restarted node first waits a full
/// election timeout for the leader's heartbeat.
pub struct LeaderContact(Mutex<Instant>);

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact(Mutex::new(Instant::now()))
    }
}

impl LeaderContact {
    pub fn heard(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub fn silence(&self) -> Duration {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

/// Whether this node would vote for a candidate whose last log id is `candidate_last`: it does
/// not lead, has not heard from a leader for the lease, and the candidate's log is at least as
/// up to date as its own (openraft's own comparison for real votes).
pub(crate) fn grant_pre_vote(
    raft: &Raft<TypeConfig>,
    contact: &LeaderContact,
    timing: &Timing,
    candidate_last: Option<&LogId<NodeId>>,
) -> Result<(), String> {
    let m = raft.metrics().borrow().clone();
    if m.state == ServerState::Leader {
        return Err("the receiver leads".into());
    }
    let silence = contact.silence();
    if silence < timing.lease() {
        return Err(format!(
            "the receiver heard from leader {:?} {} ms ago",
            m.current_leader,
            silence.as_millis()
        ));
    }
    let own = raft.data_metrics().borrow().last_log;
    // As openraft decides real votes: the candidate's log must compare as at least as up to
    // date (log ids of one term from two leaders do not compare, and refuse).
    let up_to_date = matches!(
        candidate_last.partial_cmp(&own.as_ref()),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    );
    if !up_to_date {
        return Err(format!(
            "the candidate's log ({candidate_last:?}) is behind the receiver's ({own:?})"
        ));
    }
    Ok(())
}

/// Whether `granted` holds a majority of every voter set (two during a joint membership).
fn is_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    configs
        .iter()
        .all(|voters| voters.intersection(granted).count() * 2 > voters.len())
}

impl MetadataNode {
    /// Starts the elector: checks every heartbeat interval whether this voter has gone an
    /// election timeout (lease plus a random 4-8 heartbeats, as openraft's own timer) without
    /// a leader, and if so runs a pre-vote round, then a real election if a quorum granted.
    /// A failed round is retried after another random election timeout.
    pub(crate) fn start_elector(self: &Arc<Self>, raft_config: Arc<openraft::Config>) {
        let me: Weak<MetadataNode> = Arc::downgrade(self);
        let timing = self.timing;
        let random_timeout =
            move || Duration::from_millis(raft_config.new_rand_election_timeout::<TokioRuntime>());
        tokio::spawn(async move {
            let mut patience = timing.lease() + random_timeout();
            let mut next_round = Instant::now();
            loop {
                tokio::time::sleep(timing.heartbeat).await;
                let Some(node) = me.upgrade() else { return };
                let m = node.raft().metrics().borrow().clone();
                let membership = m.membership_config.membership().clone();
                let configs = membership.get_joint_config().clone();
                let is_voter = membership.voter_ids().any(|v| v == node.node_id);
                if m.state == ServerState::Leader {
                    // A leader hears itself: should it step down, its patience starts then.
                    node.contact.heard();
                    continue;
                }
                if m.state == ServerState::Shutdown {
                    return;
                }
                if !is_voter {
                    continue;
                }
                // The only voter (standalone) has nobody to wait for or to disturb: it elects
                // itself at once, as openraft's own timer does.
                let alone = is_quorum(&configs, &BTreeSet::from([node.node_id]));
                if alone {
                    if m.state != ServerState::Candidate {
                        node.elect(m.current_term).await;
                    }
                    continue;
                }
                if node.contact.silence() < patience || Instant::now() < next_round {
                    continue;
                }
                patience = timing.lease() + random_timeout();
                next_round = Instant::now() + random_timeout();
                if node.pre_vote_round(&configs, timing).await {
                    info!(
                        node = node.node_id,
                        term = m.current_term,
                        "a quorum granted the pre-vote; starting an election"
                    );
                    node.elect(m.current_term).await;
                }
            }
        });
    }

    async fn elect(&self, term: u64) {
        if let Err(e) = self.raft().trigger().elect().await {
            debug!(node = self.node_id, term, error = %e, "cannot start an election");
        }
    }

    /// Asks every other voter for a pre-vote, each within the shortest election timeout;
    /// true when the grants (this node's own included) make a quorum of every voter set.
    async fn pre_vote_round(&self, configs: &[BTreeSet<NodeId>], timing: Timing) -> bool {
        let mut granted = BTreeSet::from([self.node_id]);
        let last = self.raft().data_metrics().borrow().last_log;
        let Ok(last_log_id_json) = serde_json::to_vec(&last) else {
            return false;
        };
        let mut asks = tokio::task::JoinSet::new();
        let others: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
        for peer in others.into_iter().filter(|p| *p != self.node_id) {
            let Some(ch) = self.peer_addr(peer).and_then(|a| channel(&a).ok()) else {
                continue;
            };
            let req = PreVoteRequest {
                candidate_id: self.node_id,
                last_log_id_json: last_log_id_json.clone(),
            };
            asks.spawn(async move {
                let reply =
                    tokio::time::timeout(timing.election_min, RaftClient::new(ch).pre_vote(req))
                        .await;
                (peer, reply)
            });
        }
        while let Some(done) = asks.join_next().await {
            let Ok((peer, reply)) = done else { continue };
            match reply {
                Ok(Ok(r)) => {
                    let PreVoteReply {
                        granted: yes,
                        reason,
                    } = r.into_inner();
                    if yes {
                        granted.insert(peer);
                    } else {
                        debug!(node = self.node_id, peer, %reason, "pre-vote refused");
                    }
                }
                Ok(Err(s)) => debug!(node = self.node_id, peer, error = %s, "pre-vote failed"),
                Err(_) => debug!(node = self.node_id, peer, "pre-vote unanswered"),
            }
            if is_quorum(configs, &granted) {
                return true;
            }
        }
        false
    }

    /// Ok when this node can serve: a leader is known and current. A leader is current while a
    /// quorum acknowledged it within [`Timing::stale_after`]; for the other nodes, while they
    /// heard from it within that. Else the reason.
    pub fn check_leader_contact(&self) -> Result<(), String> {
        let m = self.raft().metrics().borrow().clone();
        let stale_ms = self.timing.stale_after().as_millis() as u64;
        match m.current_leader {
            None => Err("the metadata cluster has no leader".into()),
            Some(l) if l == self.node_id => match m.millis_since_quorum_ack {
                Some(ms) if ms <= stale_ms => Ok(()),
                Some(ms) => Err(format!(
                    "this node is the metadata leader but no quorum has answered it for {ms} ms"
                )),
                None => {
                    Err("this node is the metadata leader but no quorum has answered it yet".into())
                }
            },
            Some(l) => {
                let ms = self.contact.silence().as_millis() as u64;
                if ms <= stale_ms {
                    Ok(())
                } else {
                    Err(format!(
                        "no word from the metadata leader (node {l}) for {ms} ms"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_of_every_voter_set() {
        let set = |v: &[NodeId]| v.iter().copied().collect::<BTreeSet<_>>();
        let one = vec![set(&[1, 2, 3])];
        assert!(!is_quorum(&one, &set(&[1])));
        assert!(is_quorum(&one, &set(&[1, 3])));
        assert!(is_quorum(&[set(&[1])], &set(&[1])));
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!is_quorum(&joint, &set(&[1, 2])));
        assert!(is_quorum(&joint, &set(&[1, 3, 4])));
    }

    #[test]
    fn stale_after_is_lease_plus_longest_timeout() {
        let t = Timing::from_heartbeat(Duration::from_millis(100));
        assert_eq!(t.lease(), Duration::from_millis(800));
        assert_eq!(t.stale_after(), Duration::from_millis(1600));
    }
}
