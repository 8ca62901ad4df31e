//! The Chronik broker.
//!
//! Layering (mini-redis style): [`server`] accepts connections; [`connection`] reads
//! frames and writes responses in order; [`handlers`] has one module per Kafka API;
//! [`broker`] wires the rooms requests are served from: [`partitions`] (this node's replicas,
//! their roles, ISR and retention) and the [`coordinators`] that follow its leadership changes
//! (groups with [`offsets`], producer ids); [`partition`] puts the idempotent-producer checks in
//! front of each partition's WAL; [`meta`] commits metadata changes through Raft.

pub mod admin;
pub mod authz;
pub mod broker;
pub mod cleaner;
pub mod clock;
pub mod config;
pub mod connection;
pub mod coordinators;
pub mod durable_append;
pub mod fd_budget;
pub mod gauges;
pub mod handlers;
pub mod http;
pub mod listeners;
pub mod log_limit;
pub mod meta;
pub mod metrics;
pub mod net_limits;
pub mod offsets;
pub mod partition;
pub mod partitions;
pub mod periodic;
pub mod producer_state;
pub mod reassign;
pub mod rewrite;
pub mod sasl;
pub mod security;
pub mod server;
pub mod session;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod tls;
pub mod topic_config;
pub mod txn;
pub mod wiring;
