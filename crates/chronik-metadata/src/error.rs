use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why the state machine refused a command. Deterministic (every replica refuses the same
/// command the same way) and serializable, because refusals travel back to the proposer as
/// the command's reply through Raft.
///
/// Variants map one-to-one onto the Kafka error a client should see, so the protocol
/// layer can translate without inspecting strings.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("invalid partition count {requested}: {reason}")]
    InvalidPartitions { requested: i32, reason: String },
    #[error("invalid replication factor {0}: only {1} broker(s) available")]
    InvalidReplicationFactor(i32, usize),
    #[error("{topic}-{partition}: leader epoch {got} is not the current {current}")]
    StaleLeaderEpoch {
        topic: String,
        partition: i32,
        current: i32,
        got: i32,
    },
    #[error("{topic}-{partition}: broker {broker} cannot lead: {reason}")]
    IneligibleLeader {
        topic: String,
        partition: i32,
        broker: i32,
        reason: String,
    },
    #[error("{topic}-{partition}: reassignment refused: {reason}")]
    InvalidReassignment {
        topic: String,
        partition: i32,
        reason: String,
    },
    /// A CreateTopic or CreatePartitions assignment Kafka would refuse (unknown broker, one
    /// broker twice, uneven replica counts, no replica that can lead). Shown as Kafka words it
    /// (the client knows the topic from the result it reads it in).
    #[error("{reason}")]
    InvalidReplicaAssignment { topic: String, reason: String },
    #[error("{topic}-{partition}: no reassignment is in progress")]
    NoReassignmentInProgress { topic: String, partition: i32 },
    /// AlterUserScramCredentials: Kafka's UNACCEPTABLE_CREDENTIAL (empty name, iterations
    /// out of range) or RESOURCE_NOT_FOUND (deleting what does not exist).
    #[error("{reason}")]
    UnacceptableCredential { user: String, reason: String },
    /// CreateAcls with a binding Kafka refuses: INVALID_REQUEST.
    #[error("{0}")]
    InvalidAcl(String),
    #[error("Attempt to delete a user credential that does not exist")]
    NoSuchCredential { user: String },
    #[error("{topic}-{partition}: invalid ISR {isr:?}: {reason}")]
    InvalidIsr {
        topic: String,
        partition: i32,
        isr: Vec<i32>,
        reason: String,
    },
}

/// Why a metadata command was refused or could not be stored.
#[derive(Debug, Error)]
pub enum MetadataError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("metadata store I/O error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}
