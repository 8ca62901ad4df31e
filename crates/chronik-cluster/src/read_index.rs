//! The read-index barrier: a node is as current as the leader once it has applied everything
//! the leader had committed when asked (Raft thesis 6.4). A restarted node passes it before it
//! reports ready or serves, so it never answers from metadata older than the cluster's as of
//! its return (a topic created while it was down, say).

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tracing::debug;

use crate::network::channel;
use crate::node::MetadataNode;
use crate::pb::raft_client::RaftClient;
use crate::pb::read_index_reply::Result as ReadIndexResult;
use crate::pb::ReadIndexRequest;

/// Pause between attempts while no leader is known or it does not answer.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long one ask may wait: the leader confirms its leadership with a quorum first, one
/// heartbeat round, so an unanswered ask means the leader is gone or cut off.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

impl MetadataNode {
    /// Waits until this node has applied the leader's read index, asking whoever leads until
    /// one answers. Unbounded here: the caller bounds it (see `wait_ready`).
    pub(crate) async fn catch_up_with_leader(&self) -> Result<(), ()> {
        let read_end = self.leader_read_end().await;
        let mut metrics = self.raft().metrics();
        metrics
            .wait_for(|m| m.last_applied.map_or(0, |a| a.index + 1) >= read_end)
            .await
            .map(|_| ())
            .map_err(|_| ())
    }

    /// The leader's read index as a log end (last index + 1).
    async fn leader_read_end(&self) -> u64 {
        loop {
            match self.leader() {
                Some(l) if l == self.node_id => match self.raft().get_read_log_id().await {
                    Ok((read, _)) => return read.map_or(0, |l| l.index + 1),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {}
                    Err(e) => debug!(node = self.node_id, error = %e, "read index: retrying"),
                },
                Some(l) => {
                    if let Some(end) = self.ask_read_index(l).await {
                        return end;
                    }
                }
                None => {}
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn ask_read_index(&self, leader: u64) -> Option<u64> {
        let ch = channel(&self.peer_addr(leader)?).ok()?;
        let req = ReadIndexRequest {
            from_node: self.node_id,
        };
        let reply = tokio::time::timeout(ASK_TIMEOUT, RaftClient::new(ch).read_index(req)).await;
        match reply {
            Ok(Ok(r)) => match r.into_inner().result {
                Some(ReadIndexResult::ReadEnd(end)) => Some(end),
                Some(ReadIndexResult::NotLeaderLeaderId(_)) | None => None,
                Some(ReadIndexResult::Error(e)) => {
                    debug!(node = self.node_id, leader, error = %e, "read index: retrying");
                    None
                }
            },
            Ok(Err(s)) => {
                debug!(node = self.node_id, leader, error = %s, "read index: retrying");
                None
            }
            Err(_) => {
                debug!(
                    node = self.node_id,
                    leader, "read index unanswered: retrying"
                );
                None
            }
        }
    }
}
