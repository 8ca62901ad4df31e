//! TLS for the bench's connections (`--tls-ca FILE`, librdkafka's `ssl.ca.location`): the
//! broker's certificate must be signed by that CA and name the host connected to. rustls
//! with the ring provider, as the broker.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// How to open TLS sessions: one connector for every connection of a run.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// The `ring` provider: rustls 0.23.48 deprecated it only to steer users to aws-lc-rs, whose
/// C build with cmake this project avoids.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

impl Tls {
    pub fn new(ca: &Path) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        for c in certs {
            let c = c.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake over `stream`, checking the certificate names `addr`'s host.
    pub async fn connect(
        &self,
        addr: &str,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, stream).await
    }
}
