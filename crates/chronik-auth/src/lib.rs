//! SASL authentication as Kafka brokers do it, without I/O.
//!
//! - [`credential`]: the salted SCRAM credential (RFC 5802: salt, iteration count, StoredKey,
//!   ServerKey) that the cluster stores per user and mechanism. A password is never stored:
//!   it is salted and iterated once, when a credential is made, and then forgotten.
//! - [`scram`]: the server side of one SCRAM-SHA-256 or SCRAM-SHA-512 exchange, a two-step
//!   state machine the connection feeds with the client's messages.
//! - [`acl`]: Kafka's ACL model and the authorization decision.
//! - [`client`]: the client side of SCRAM, for Chronik's own tools.
//! - [`plain`]: the PLAIN mechanism (RFC 4616), checked against the same SCRAM credentials,
//!   so one user store serves every mechanism.
//!
//! The caller owns the transport (Kafka's SaslHandshake/SaslAuthenticate), the user store
//! (Raft metadata) and where the CPU-heavy PBKDF2 runs.

pub mod acl;
pub mod client;
pub mod credential;
pub mod plain;
pub mod scram;

pub use credential::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};

/// Why an exchange failed. Every variant ends the exchange; the connection closes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The client's message does not follow the mechanism's grammar.
    #[error("malformed {mechanism} message: {reason}")]
    Malformed {
        mechanism: &'static str,
        reason: String,
    },
    /// Unknown user or wrong password (one error for both, so a client cannot tell which).
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    InvalidCredentials(&'static str),
    /// A message arrived after the exchange ended.
    #[error("{0} exchange already complete")]
    Complete(&'static str),
}

impl AuthError {
    fn malformed(mechanism: &'static str, reason: impl Into<String>) -> Self {
        AuthError::Malformed {
            mechanism,
            reason: reason.into(),
        }
    }
}
