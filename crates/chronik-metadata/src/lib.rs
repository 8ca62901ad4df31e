//! Cluster metadata for Chronik.
//!
//! The metadata is a deterministic state machine ([`MetadataState`]) changed only by
//! applying [`MetadataCommand`]s. Everything non-deterministic (topic ids, the cluster id,
//! wall-clock time) is decided by whoever *proposes* a command and travels inside it, so
//! replaying the same commands anywhere yields the same state. Standalone runs the state
//! machine behind [`LocalStore`], a durable single-node log-less store; the Raft cluster
//! (a later step) puts the very same commands through a replicated log.
//!
//! This crate knows nothing of sockets or Kafka requests.

mod command;
mod error;
mod files;
pub mod raft;
mod state;
mod store;
pub mod topic_name;

pub use command::{MetadataCommand, Outcome, MAX_PARTITIONS_PER_TOPIC, MAX_PRODUCER_ID_BLOCK};
pub use error::{MetadataError, Refusal};
pub use state::{BrokerInfo, MetadataState, PartitionInfo, TopicInfo};
pub use store::{LocalStore, NodeIdentity};
