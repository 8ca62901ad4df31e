//! Transport settings shared by every gRPC connection between Chronik nodes: Raft RPCs,
//! replication fetch streams, whole-segment transfers, forwarded proposals, broker heartbeats
//! and the admin API's fan-out. Clients get their channels from [`endpoint`] or [`channel`],
//! the RPC listener serves through [`server`] and [`incoming`].
//!
//! Why: a network partition does not fail a TCP connection. Packets to a black-holed peer are
//! retransmitted with exponential backoff, so after the heal a connection that carried data
//! during the cut stays silent until its next retransmission (up to ~13 s after a 15 s cut,
//! longer after longer cuts), and every call on it waits. HTTP/2 keepalive pings find such a
//! connection dead within [`HTTP2_KEEPALIVE_INTERVAL`] + [`HTTP2_KEEPALIVE_TIMEOUT`] and close
//! it, failing the calls on it; the channel's next call then connects afresh, and a connection
//! attempt to an unreachable peer gives up after [`CONNECT_TIMEOUT`]. Keepalive is the
//! backstop: a caller that knows how long an answer may take (a replication fetch, a Raft
//! RPC) bounds its own wait by a deadline and replaces the channel when it passes.
//!
//! Security: with [`tls::configure`] every channel and the server use mutual TLS, and
//! [`auth`] binds what a request claims (its sender node) to the caller's certificate.

pub mod auth;
pub mod log_limit;
pub mod tls;

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};

/// How long a connection attempt may take. Nodes sit on one network: a peer that does not
/// complete a handshake within half a second is down or cut off, and the caller's retry loop
/// tries again (so after a heal the next attempt comes at most this long later).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 PING period on every connection, idle or not (both sides).
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A PING unanswered for this long closes the connection. Long enough that a peer busy with
/// fsyncs on a loaded machine is not dropped by mistake (a dropped connection costs only a
/// reconnect and a retry).
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// TCP keepalive on every socket (both sides): probes after this much idleness, then every
/// [`TCP_KEEPALIVE_INTERVAL`], dropping the socket after [`TCP_KEEPALIVE_RETRIES`] unanswered
/// ones. A backstop for a connection whose HTTP/2 layer is not polled.
pub const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
pub const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// A peer address that is not `host:port` (or, with RPC TLS, an endpoint the TLS settings do
/// not fit).
#[derive(Debug, thiserror::Error)]
#[error("bad peer address {addr}: {source}")]
pub struct BadAddress {
    pub addr: String,
    source: tonic::transport::Error,
}

/// An endpoint for the node at `addr` (`host:port`) with the shared transport settings, and
/// this node's TLS identity when RPC TLS is on ([`tls::configure`]). Every channel made from
/// it (`connect_lazy`, `connect`) is a new connection.
pub fn endpoint(addr: &str) -> Result<Endpoint, BadAddress> {
    let bad = |source| BadAddress {
        addr: addr.to_string(),
        source,
    };
    let e = match tls::client_config() {
        Some(cfg) => Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(cfg))
            .map_err(bad)?,
        None => Endpoint::from_shared(format!("http://{addr}")).map_err(bad)?,
    };
    Ok(e.connect_timeout(CONNECT_TIMEOUT)
        // Replication answers are small and latency-bound: Nagle plus delayed ACKs would hold
        // each one ~40 ms.
        .tcp_nodelay(true)
        .tcp_keepalive(Some(TCP_KEEPALIVE_IDLE))
        .tcp_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL))
        .tcp_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES))
        .http2_keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// A lazily connecting channel to `addr`: a connection of its own, made on first use and
/// remade by the channel after it fails.
pub fn channel(addr: &str) -> Result<Channel, BadAddress> {
    Ok(endpoint(addr)?.connect_lazy())
}

/// The server builder for the RPC listener: HTTP/2 keepalive, so the connections of peers
/// that were cut off are closed (and their streams' tasks end) instead of lingering; and
/// mutual TLS when RPC TLS is on ([`tls::configure`]).
pub fn server() -> Server {
    tls::server().unwrap_or_else(plain_server)
}

/// The server builder without TLS.
fn plain_server() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
}

/// The accepted connections of `listener`, with TCP_NODELAY and TCP keepalive set (the
/// server builder's own TCP settings apply only to listeners it binds itself).
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE_IDLE))
        .with_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL))
        .with_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_carry_the_shared_settings() {
        let e = endpoint("10.0.0.1:7000").expect("valid address");
        assert_eq!(e.uri().to_string(), "http://10.0.0.1:7000/");
        assert_eq!(e.get_connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(e.get_tcp_keepalive(), Some(TCP_KEEPALIVE_IDLE));
        assert!(e.get_tcp_nodelay());
        assert!(endpoint("not an address").is_err());
    }
}
