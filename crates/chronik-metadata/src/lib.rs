//! Cluster metadata for Chronik.
//!
//! The metadata is a deterministic state machine ([`MetadataState`]) changed only by
//! applying [`MetadataCommand`]s. Everything non-deterministic (topic ids, the cluster id,
//! wall-clock time) is decided by whoever *proposes* a command and travels inside it, so
//! replaying the same commands anywhere yields the same state. [`raft`] puts the commands
//! through openraft: a durable log, a snapshotting state machine. Standalone is a one-node
//! Raft cluster running the same code.
//!
//! This crate knows nothing of sockets or Kafka requests.

mod apply;
mod command;
mod error;
mod files;
mod placement;
pub mod raft;
mod state;
pub mod topic_name;

pub use command::{
    IsrChange, MetadataCommand, Outcome, UnexpectedOutcome, MAX_PARTITIONS_PER_TOPIC,
    MAX_PRODUCER_ID_BLOCK,
};
pub use error::{MetadataError, Refusal};
pub use state::{
    BrokerInfo, BrokerState, DecommissionPlan, Endpoint, MetadataState, PartitionInfo, TopicInfo,
};
