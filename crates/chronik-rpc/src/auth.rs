//! Who is calling, from the peer's TLS certificate, and the checks every RPC service runs
//! before it acts on a request.
//!
//! With RPC TLS on ([`crate::tls::configure`]) the handshake already refused any peer without
//! a certificate signed by the cluster CA; these checks bind what a request claims to that
//! certificate:
//! - a certificate whose subject CN is `node-<N>` is node N ([`Peer::Node`]); a Raft or
//!   replication message that names a sender (a leader's AppendEntries, a candidate's Vote, a
//!   follower's Fetch) is accepted only when the name is N ([`require_node`]);
//! - any other certificate is an operator's ([`Peer::Named`] by its CN): it may use the admin
//!   service and propose metadata changes, if `--rpc-admin-allowed-names` lists its CN (any
//!   CA-signed name when that list is absent).
//!
//! Without RPC TLS nobody is authenticated ([`Peer::Anonymous`]) and every check passes, as
//! before; the node warns about that at start and binds only loopback unless told otherwise.
//!
//! A refusal is a `PermissionDenied` (the certificate is known but may not do this) or an
//! `Unauthenticated` (no usable certificate) status; each is counted in
//! `chronik_rpc_denied_total{rpc}` and logged, at most [`crate::log_limit::LINES_PER_WINDOW`]
//! lines per window.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use tonic::{Code, Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::log_limit::LogLimiter;

/// Refused RPC calls, labelled by RPC name (a fixed small set).
pub const DENIED: &str = "chronik_rpc_denied_total";
/// The `site` label of denial lines in `chronik_log_suppressed_total`.
const LOG_SITE: &str = "rpc_denied";
/// Prefix of a node certificate's CN; the node id follows in decimal.
pub const NODE_CN_PREFIX: &str = "node-";

/// The authenticated caller of one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// RPC TLS is off: nobody is authenticated.
    Anonymous,
    /// A node's certificate (CN `node-<N>`).
    Node(u64),
    /// Any other CA-signed certificate, by its CN (an operator or a tool).
    Named(String),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Anonymous => f.write_str("an unauthenticated caller"),
            Peer::Node(id) => write!(f, "node {id}'s certificate"),
            Peer::Named(cn) => write!(f, "the certificate with CN {cn:?}"),
        }
    }
}

static ADMIN_NAMES: OnceLock<Vec<String>> = OnceLock::new();

/// Restricts operator certificates to these CNs (`--rpc-admin-allowed-names`). Without a call,
/// any CA-signed certificate may act as an operator. Set once, at start.
pub fn restrict_admin_names(names: Vec<String>) {
    let _ = ADMIN_NAMES.set(names);
}

impl Peer {
    /// Whether this caller may use the admin service and propose metadata changes: a node
    /// (nodes fan admin calls out to each other and forward proposals to the leader) or an
    /// allowed operator.
    pub fn is_admin(&self) -> bool {
        match self {
            Peer::Anonymous | Peer::Node(_) => true,
            Peer::Named(cn) => ADMIN_NAMES
                .get()
                .is_none_or(|allowed| allowed.iter().any(|a| a == cn)),
        }
    }
}

/// The node id a certificate's CN names, if it is `node-<N>`.
pub fn node_id_of_cn(cn: &str) -> Option<u64> {
    let digits = cn.strip_prefix(NODE_CN_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The node id a PEM certificate names (CN `node-<N>`), `None` for any other CN: checked at
/// start, so a node given another node's certificate fails at once instead of having every
/// Raft message refused by its peers.
pub fn node_id_of_pem(pem: &[u8]) -> Result<Option<u64>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let der = CertificateDer::from_pem_slice(pem).map_err(|e| e.to_string())?;
    Ok(node_id_of_cn(&common_name(&der)?))
}

/// The subject CN of a DER certificate.
fn common_name(der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or("the certificate has no subject CN")?;
    cn.as_str().map(str::to_string).map_err(|e| e.to_string())
}

/// The caller of `req`, from its TLS certificate.
pub fn peer<T>(req: &Request<T>, rpc: &'static str) -> Result<Peer, Status> {
    if !crate::tls::enabled() {
        return Ok(Peer::Anonymous);
    }
    // No certificate list, or an empty one: the same refusal.
    let certs = req.peer_certs().filter(|c| !c.is_empty()).ok_or_else(|| {
        deny(
            req.remote_addr(),
            rpc,
            Code::Unauthenticated,
            "no client certificate".into(),
        )
    })?;
    let leaf = &certs[0];
    let cn = common_name(leaf).map_err(|e| {
        deny(
            req.remote_addr(),
            rpc,
            Code::Unauthenticated,
            format!("unreadable client certificate: {e}"),
        )
    })?;
    Ok(match node_id_of_cn(&cn) {
        Some(id) => Peer::Node(id),
        None => Peer::Named(cn),
    })
}

/// Accepts `req` only from node `claimed`'s certificate: for messages that name their sender
/// (the leader of an AppendEntries, the candidate of a Vote, the follower of a Fetch).
pub fn require_node<T>(req: &Request<T>, rpc: &'static str, claimed: u64) -> Result<(), Status> {
    check_node(&peer(req, rpc)?, req.remote_addr(), rpc, claimed)
}

/// [`require_node`] for a caller identified earlier: each message of a stream names its
/// sender, checked against the certificate the stream was opened with.
pub fn check_node(
    peer: &Peer,
    remote: Option<SocketAddr>,
    rpc: &'static str,
    claimed: u64,
) -> Result<(), Status> {
    match peer {
        Peer::Anonymous => Ok(()),
        Peer::Node(id) if *id == claimed => Ok(()),
        Peer::Node(id) => Err(deny(
            remote,
            rpc,
            Code::PermissionDenied,
            format!("{rpc} claims to come from node {claimed}, but the caller's certificate is node {id}'s"),
        )),
        Peer::Named(cn) => Err(deny(
            remote,
            rpc,
            Code::PermissionDenied,
            format!("{rpc} is for cluster nodes; the certificate {cn:?} is not a node's (CN {NODE_CN_PREFIX}<id>)"),
        )),
    }
}

/// Accepts `req` from a node for which `is_member` holds, or from an operator
/// ([`Peer::is_admin`]): for metadata proposals and membership changes, which members forward
/// to the leader and operators make. `also_node` admits one more node id (a node asking to
/// join adds itself before it is a member).
pub fn require_member_or_admin<T>(
    req: &Request<T>,
    rpc: &'static str,
    is_member: impl Fn(u64) -> bool,
    also_node: Option<u64>,
) -> Result<Peer, Status> {
    let peer = peer(req, rpc)?;
    let allowed = match &peer {
        Peer::Anonymous => true,
        Peer::Node(id) => is_member(*id) || also_node == Some(*id),
        Peer::Named(_) => peer.is_admin(),
    };
    if allowed {
        return Ok(peer);
    }
    let who = match &peer {
        Peer::Node(id) => format!("node {id}, which is not a cluster member"),
        other => format!("{other}, which is not an allowed admin name"),
    };
    Err(deny(
        req.remote_addr(),
        rpc,
        Code::PermissionDenied,
        format!("{rpc} refused: the caller is {who}"),
    ))
}

/// Accepts `req` from an operator or a node ([`Peer::is_admin`]): the admin service.
pub fn require_admin<T>(req: &Request<T>, rpc: &'static str) -> Result<Peer, Status> {
    let peer = peer(req, rpc)?;
    if peer.is_admin() {
        return Ok(peer);
    }
    Err(deny(
        req.remote_addr(),
        rpc,
        Code::PermissionDenied,
        format!("{rpc} refused: {peer} is not in --rpc-admin-allowed-names"),
    ))
}

/// A tonic interceptor for the admin service: every call needs [`require_admin`].
pub fn admin_interceptor(req: Request<()>) -> Result<Request<()>, Status> {
    require_admin(&req, "admin")?;
    Ok(req)
}

/// Counts and logs (rate-limited) one refusal and makes its status.
fn deny(remote: Option<SocketAddr>, rpc: &'static str, code: Code, message: String) -> Status {
    static LIMIT: LogLimiter = LogLimiter::new();
    metrics::counter!(DENIED, "rpc" => rpc).increment(1);
    let remote = remote.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    match LIMIT.allow(Instant::now()) {
        Some(suppressed) => {
            tracing::warn!(rpc, %remote, suppressed, "RPC call refused: {message}")
        }
        None => metrics::counter!("chronik_log_suppressed_total", "site" => LOG_SITE).increment(1),
    }
    Status::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_come_from_node_cns_only() {
        assert_eq!(node_id_of_cn("node-1"), Some(1));
        assert_eq!(node_id_of_cn("node-42"), Some(42));
        assert_eq!(node_id_of_cn("node-"), None);
        assert_eq!(node_id_of_cn("node-1x"), None);
        assert_eq!(node_id_of_cn("node--1"), None);
        assert_eq!(node_id_of_cn("node-+1"), None);
        assert_eq!(node_id_of_cn("admin"), None);
        assert_eq!(node_id_of_cn("Node-1"), None);
    }

    #[test]
    fn without_tls_every_check_passes() {
        let req = Request::new(());
        assert_eq!(peer(&req, "test").ok(), Some(Peer::Anonymous));
        assert!(require_node(&req, "test", 3).is_ok());
        assert!(require_member_or_admin(&req, "test", |_| false, None).is_ok());
        assert!(require_admin(&req, "test").is_ok());
    }
}
