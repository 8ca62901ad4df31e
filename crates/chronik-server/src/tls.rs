//! TLS on the Kafka listeners (SSL, SASL_SSL), with rustls and its `ring` provider only.
//!
//! The server config (certificate, key, and the client CA when `--tls-client-ca` is given)
//! sits behind an `Arc` that a SIGHUP swaps: each handshake takes the config current at its
//! start, so a reload changes what new connections see and leaves open ones alone. A reload
//! that fails (a missing or bad file) keeps the previous config and logs an error.
//!
//! A handshake must finish within `--request-read-timeout-ms` (the bound on receiving any
//! request) or the connection closes; anything that is not TLS fails the handshake at its
//! first record, so a plaintext client or random bytes get a prompt close, never a hang.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::listeners::TlsFiles;
use crate::session::ANONYMOUS;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{what} {path} holds no certificate")]
    Empty { what: &'static str, path: String },
    #[error("bad client CA certificate in {path}: {reason}")]
    ClientCa { path: String, reason: String },
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS settings of all TLS listeners, reloadable.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the files; an error here stops the start.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(config),
        }))
    }

    /// Re-reads the files; on error the current config stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Runs the server side of the handshake within `timeout`; `None` (after counting and
    /// logging why) when the connection must close.
    pub async fn handshake(
        &self,
        socket: TcpStream,
        timeout: Duration,
    ) -> Option<(TlsStream<TcpStream>, Arc<str>)> {
        match tokio::time::timeout(timeout, self.acceptor().accept(socket)).await {
            Ok(Ok(stream)) => {
                let principal = principal(stream.get_ref().1.peer_certificates());
                tracing::debug!(%principal, "TLS handshake done");
                Some((stream, principal))
            }
            Ok(Err(e)) => {
                // Not TLS, an unknown client CA, a protocol error: the peer's doing, so debug.
                crate::metrics::connection_closed("tls_handshake_failed");
                tracing::debug!(error = %e, "TLS handshake failed; closing connection");
                None
            }
            Err(_) => {
                crate::metrics::connection_closed("tls_handshake_timeout");
                crate::warn_limited!(
                    "tls_handshake_timeout",
                    timeout_ms = timeout.as_millis() as u64,
                    "TLS handshake not finished in time; closing connection"
                );
                None
            }
        }
    }

    /// Reloads the certificates on every SIGHUP, for the life of the process.
    pub fn spawn_sighup_reload(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let tls = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!(cert = %tls.files.cert.display(),
                        "SIGHUP: TLS certificates reloaded; new connections use them"),
                    Err(e) => tracing::error!(error = %e,
                        "SIGHUP: TLS certificates not reloaded; keeping the previous ones"),
                }
            }
        });
        Ok(())
    }
}

/// `User:<CN>` of the verified client certificate (its whole subject if it has no CN), or
/// `User:ANONYMOUS` without one. Only called after rustls verified the chain.
fn principal(certs: Option<&[CertificateDer<'_>]>) -> Arc<str> {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return Arc::from(ANONYMOUS);
    };
    match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, cert)) => {
            let subject = cert.subject();
            let cn = subject
                .iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok());
            let name = cn
                .map(str::to_string)
                .unwrap_or_else(|| subject.to_string());
            Arc::from(format!("User:{name}"))
        }
        // rustls parsed and verified this certificate, so this should not happen.
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the subject of a verified client certificate");
            Arc::from(ANONYMOUS)
        }
    }
}

/// The `ring` provider: rustls 0.23.48 deprecated it only to steer users to aws-lc-rs (for
/// post-quantum key exchange), whose C build with cmake this project avoids.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(ring_provider());
    let certs = read_certs(&files.cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Pem {
        what: "--tls-key",
        path: files.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs(path, "--tls-client-ca")? {
                roots.add(ca)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |e: rustls_pki_types::pem::Error| TlsError::Pem {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}
