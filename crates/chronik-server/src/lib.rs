//! The Chronik broker.
//!
//! Layering (mini-redis style): [`server`] accepts connections; [`connection`] reads
//! frames and writes responses in order; [`handlers`] has one module per Kafka API;
//! [`broker`] holds the shared state (metadata + partitions); [`partition`] puts the
//! idempotent-producer checks in front of each partition's WAL; [`offsets`] keeps committed
//! offsets in the `__consumer_offsets` log.

pub mod admin;
pub mod authz;
pub mod broker;
pub mod config;
pub mod connection;
pub mod handlers;
pub mod http;
pub mod listeners;
pub mod log_limit;
pub mod metrics;
pub mod net_limits;
pub mod offsets;
pub mod partition;
pub mod producer_state;
pub mod reassign;
pub mod rewrite;
pub mod sasl;
pub mod security;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod startup;
pub mod tls;
pub mod topic_config;
