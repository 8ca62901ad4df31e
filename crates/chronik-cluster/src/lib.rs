//! The metadata cluster: openraft nodes talking gRPC (`proto/raft.proto`), formed from a
//! `--cluster` peer list, with metadata writes accepted on any node and committed by the
//! leader. The state machine and its storage live in `chronik-metadata`; this crate adds the
//! network.

pub mod election;
pub mod liveness;
pub mod membership;
pub mod network;
pub mod node;
pub mod peers;
mod read_index;
pub mod service;

pub use election::Timing;
pub use liveness::LivenessConfig;
pub use node::{ClusterError, MetadataNode, NodeConfig, ProposeError, RaftStatus, ServicesFn};
pub use peers::PeerList;

/// Generated gRPC code for `proto/raft.proto`.
pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("chronik.raft");
}
