//! What a request's handler knows about the connection it came in on (Kafka's
//! `RequestChannel.Session` plus the listener): which listener, from where, and as whom.
//! Set once per connection, after its TLS handshake; SASL will set the principal later.

use std::sync::Arc;

/// Kafka's principal of a connection without authentication.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// One connection's identity, passed by reference into every handler.
#[derive(Debug, Clone)]
pub struct Session {
    /// The listener's name (PLAINTEXT, SSL, ...): Metadata, FindCoordinator and
    /// DescribeCluster answer with the brokers' endpoints of this listener.
    pub listener: &'static str,
    /// The peer as Kafka shows it in DescribeGroups (`/ip`).
    pub client_host: String,
    /// `User:<CN>` of a verified client certificate, else `User:ANONYMOUS`.
    pub principal: Arc<str>,
}

impl Session {
    /// A connection before authentication: principal `User:ANONYMOUS`.
    pub fn new(listener: &'static str, peer: std::net::SocketAddr) -> Session {
        Session {
            listener,
            client_host: format!("/{}", peer.ip()),
            principal: Arc::from(ANONYMOUS),
        }
    }
}
