//! The broker's handle on the Raft metadata: read the applied state, commit commands through
//! the leader wherever it is, and wait until this node applied what it committed. Shared by
//! the partition manager, the coordinators and topic administration, so none of them needs
//! the others to change the metadata.

use std::sync::Arc;
use std::time::Duration;

use chronik_cluster::{MetadataNode, ProposeError};
use chronik_metadata::{
    MetadataCommand, MetadataError, MetadataState, Outcome, Refusal, UnexpectedOutcome,
};
use kafka_protocol::ResponseError;

/// A refused metadata operation: the Kafka error and a message for the client.
#[derive(Debug, Clone)]
pub struct TopicError {
    pub code: ResponseError,
    pub message: String,
}

impl TopicError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        TopicError {
            code,
            message: message.into(),
        }
    }
}

impl From<Refusal> for TopicError {
    fn from(r: Refusal) -> Self {
        MetadataError::Refused(r).into()
    }
}

impl From<UnexpectedOutcome> for TopicError {
    fn from(e: UnexpectedOutcome) -> Self {
        TopicError::new(ResponseError::UnknownServerError, e.to_string())
    }
}

impl From<MetadataError> for TopicError {
    fn from(e: MetadataError) -> Self {
        let code = match &e {
            MetadataError::Refused(r) => match r {
                Refusal::TopicExists(_) => ResponseError::TopicAlreadyExists,
                Refusal::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
                Refusal::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
                Refusal::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
                Refusal::InvalidReplicationFactor(..) => ResponseError::InvalidReplicationFactor,
                Refusal::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
                Refusal::InvalidIsr { .. } => ResponseError::InvalidRequest,
                Refusal::IneligibleLeader { .. } => ResponseError::EligibleLeadersNotAvailable,
                Refusal::InvalidReassignment { .. } | Refusal::InvalidReplicaAssignment { .. } => {
                    ResponseError::InvalidReplicaAssignment
                }
                Refusal::NoReassignmentInProgress { .. } => ResponseError::NoReassignmentInProgress,
                Refusal::UnacceptableCredential { .. } => ResponseError::UnacceptableCredential,
                Refusal::NoSuchCredential { .. } => ResponseError::ResourceNotFound,
                Refusal::InvalidAcl(_) => ResponseError::InvalidRequest,
            },
            MetadataError::Io { .. } | MetadataError::Corrupt { .. } => {
                ResponseError::KafkaStorageError
            }
        };
        TopicError::new(code, e.to_string())
    }
}

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub struct Meta {
    pub node: Arc<MetadataNode>,
    /// How long a change may take to commit and to be applied here.
    pub timeout: Duration,
}

impl Meta {
    /// A consistent snapshot of the metadata as this node has applied it.
    pub fn state(&self) -> Arc<MetadataState> {
        self.node.state()
    }

    /// Commits a metadata command through the Raft leader, wherever it is.
    pub async fn apply(&self, cmd: MetadataCommand) -> Result<Outcome, TopicError> {
        self.node.propose(cmd).await.map_err(|e| match e {
            ProposeError::Refused(r) => TopicError::from(r),
            ProposeError::Unavailable(msg) => TopicError::new(ResponseError::RequestTimedOut, msg),
        })
    }

    /// Commits a metadata command (from any node) and waits, bounded, until this node applied
    /// a state where `done` holds.
    pub async fn propose(
        &self,
        cmd: MetadataCommand,
        done: impl Fn(&MetadataState) -> bool,
    ) -> Result<Arc<MetadataState>, TopicError> {
        self.apply(cmd).await?;
        Ok(self.applied_locally(done).await)
    }

    /// Waits (bounded by the timeout) until this node has applied a change the leader
    /// committed, so the local partitions can follow it before the client hears back.
    pub async fn applied_locally(
        &self,
        done: impl Fn(&MetadataState) -> bool,
    ) -> Arc<MetadataState> {
        let mut rx = self.node.subscribe();
        let waited = tokio::time::timeout(self.timeout, async {
            rx.wait_for(|s| done(s)).await.map(|s| s.clone())
        })
        .await;
        match waited {
            Ok(Ok(s)) => s,
            _ => self.state(),
        }
    }
}
