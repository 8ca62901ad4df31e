//! Mutual TLS on the RPC port (`--rpc-tls-cert`, `--rpc-tls-key`, `--rpc-tls-ca`).
//!
//! Set once per process with [`configure`], before the first channel or server is made. Then
//! the RPC server demands a client certificate signed by the cluster CA (the handshake fails
//! without one), and every channel made through [`crate::endpoint`] presents this node's
//! certificate and accepts only a server certificate signed by the same CA for the name
//! [`SERVER_NAME`]. One process-wide setting rather than a parameter on every constructor:
//! Raft, replication, segment transfers, forwarding, joins and the admin fan-out all get their
//! channels from `endpoint`, so none of them can forget it.
//!
//! Naming convention (docs/security.md): a node's certificate has the subject CN `node-<N>`
//! (its node id, see [`crate::auth`]) and the DNS subject alternative name [`SERVER_NAME`],
//! which is what every client verifies (clients dial addresses, and not every caller knows
//! which node id an address belongs to). An operator's certificate has any other CN and no
//! need for that SAN.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

/// The DNS name every node's certificate carries as a subject alternative name, and that
/// every RPC client verifies the server's certificate against.
pub const SERVER_NAME: &str = "chronik-rpc";

/// A TLS handshake on the RPC port that does not finish within this long is dropped, so a
/// peer that opens connections and stalls holds no task for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the RPC TLS settings are unusable (certificate, key or CA): {0}")]
    Config(String),
    #[error("RPC TLS is already configured in this process")]
    AlreadyConfigured,
}

/// The client and server side of RPC TLS, built from one set of files.
#[derive(Clone)]
pub struct RpcTls {
    pub client: ClientTlsConfig,
    pub server: ServerTlsConfig,
}

static CONFIGURED: OnceLock<Configured> = OnceLock::new();

struct Configured {
    client: ClientTlsConfig,
    /// A server builder with the TLS acceptor already built (and so validated).
    server: Server,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Installs ring as the process's rustls crypto provider (tonic's server side asks rustls for
/// the process default). Idempotent; a provider installed earlier stays. rustls 0.23.48
/// deprecates ring's provider for lacking post-quantum key exchange; it is still the project's
/// choice (aws-lc-rs, the alternative, builds C with cmake), as it is tonic's `tls-ring`.
#[allow(deprecated)]
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl RpcTls {
    /// Loads the files. Validation of their contents happens in [`configure`] (and, for a
    /// client only, at the first handshake).
    pub fn load(files: &TlsFiles) -> Result<RpcTls, TlsError> {
        install_ring();
        let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
        let ca = Certificate::from_pem(read(&files.ca)?);
        Ok(RpcTls {
            client: ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(identity.clone())
                .domain_name(SERVER_NAME)
                .timeout(HANDSHAKE_TIMEOUT),
            server: ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(ca)
                .timeout(HANDSHAKE_TIMEOUT),
        })
    }
}

/// Turns RPC TLS on for this process: every later [`crate::endpoint`] and [`crate::server`]
/// uses it. Fails if the key does not match the certificate or the files hold no usable PEM.
pub fn configure(tls: RpcTls) -> Result<(), TlsError> {
    let server = crate::plain_server()
        .tls_config(tls.server)
        .map_err(|e| TlsError::Config(error_chain(&e)))?;
    CONFIGURED
        .set(Configured {
            client: tls.client,
            server,
        })
        .map_err(|_| TlsError::AlreadyConfigured)
}

/// Whether [`configure`] ran: the RPC port then authenticates every peer.
pub fn enabled() -> bool {
    CONFIGURED.get().is_some()
}

pub(crate) fn client_config() -> Option<ClientTlsConfig> {
    CONFIGURED.get().map(|c| c.client.clone())
}

pub(crate) fn server() -> Option<Server> {
    CONFIGURED.get().map(|c| c.server.clone())
}

/// The error and its sources on one line (tonic's transport errors say little at the top).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}
