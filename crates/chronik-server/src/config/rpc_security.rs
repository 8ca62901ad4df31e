//! Settings of the RPC port's security (Raft, replication, admin API): mutual TLS and who may
//! act as an operator, or the explicit choice to run it unauthenticated (docs/security.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use chronik_rpc::tls::{RpcTls, TlsFiles};
use clap::Args;

use super::ConfigError;

#[derive(Debug, Clone, Args)]
pub struct RpcSecurityArgs {
    /// This node's certificate (PEM) for mutual TLS on the RPC port. Its subject CN must be
    /// `node-<node id>` and it must carry the DNS subject alternative name `chronik-rpc`
    /// (docs/security.md). Needs --rpc-tls-key and --rpc-tls-ca
    #[arg(long, env = "CHRONIK_RPC_TLS_CERT")]
    pub rpc_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --rpc-tls-cert
    #[arg(long, env = "CHRONIK_RPC_TLS_KEY")]
    pub rpc_tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): every RPC peer (node or operator) must present a certificate it
    /// signed, and every node's server certificate is checked against it
    #[arg(long, env = "CHRONIK_RPC_TLS_CA")]
    pub rpc_tls_ca: Option<PathBuf>,
    /// Comma-separated certificate CNs allowed to use the admin API and propose metadata
    /// changes, besides the nodes' own. Unset: any certificate the CA signed
    #[arg(long, env = "CHRONIK_RPC_ADMIN_ALLOWED_NAMES", value_delimiter = ',')]
    pub rpc_admin_allowed_names: Option<Vec<String>>,
    /// Without RPC TLS, allow the RPC port on a non-loopback address anyway: anyone who can
    /// reach it can then change the cluster's metadata and read any partition
    #[arg(long, env = "CHRONIK_RPC_INSECURE")]
    pub rpc_insecure: bool,
}

/// The resolved settings.
#[derive(Debug, Clone, Default)]
pub struct RpcSecurity {
    /// `None`: the RPC port is unauthenticated.
    pub tls: Option<TlsFiles>,
    /// `None`: any CA-signed certificate may act as an operator.
    pub admin_allowed_names: Option<Vec<String>>,
}

impl RpcSecurity {
    pub(super) fn resolve(
        args: RpcSecurityArgs,
        rpc_listen: Option<SocketAddr>,
    ) -> Result<RpcSecurity, ConfigError> {
        let tls = match (args.rpc_tls_cert, args.rpc_tls_key, args.rpc_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            (None, None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "rpc-tls-cert",
                    reason: "--rpc-tls-cert, --rpc-tls-key and --rpc-tls-ca go together".into(),
                })
            }
        };
        let admin_allowed_names = args.rpc_admin_allowed_names.map(|names| {
            names
                .into_iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        });
        if admin_allowed_names.is_some() && tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "rpc-admin-allowed-names",
                reason: "names come from client certificates: it needs --rpc-tls-cert, \
                         --rpc-tls-key and --rpc-tls-ca"
                    .into(),
            });
        }
        if let Some(addr) = rpc_listen {
            if tls.is_none() && !args.rpc_insecure && !addr.ip().is_loopback() {
                return Err(ConfigError::Invalid {
                    key: "rpc-addr",
                    reason: format!(
                        "refusing to bind the unauthenticated RPC port (Raft, replication, admin \
                         API) to the non-loopback address {addr}: anyone who reaches it can \
                         rewrite the cluster's metadata and read every partition. Give \
                         --rpc-tls-cert, --rpc-tls-key and --rpc-tls-ca (docs/security.md), or \
                         --rpc-insecure to accept that"
                    ),
                });
            }
        }
        Ok(RpcSecurity {
            tls,
            admin_allowed_names,
        })
    }

    /// Turns RPC TLS on for this process (every RPC channel and server from now on), after
    /// checking that the certificate is node `node_id`'s. Call once, before the broker starts.
    pub fn apply(&self, node_id: i32) -> Result<(), ConfigError> {
        let Some(files) = &self.tls else {
            return Ok(());
        };
        let invalid = |e: chronik_rpc::tls::TlsError| ConfigError::Invalid {
            key: "rpc-tls-cert",
            reason: e.to_string(),
        };
        let wrong = |reason: String| ConfigError::Invalid {
            key: "rpc-tls-cert",
            reason: format!("{}: {reason}", files.cert.display()),
        };
        let pem = std::fs::read(&files.cert).map_err(|e| wrong(e.to_string()))?;
        match chronik_rpc::auth::node_id_of_pem(&pem).map_err(wrong)? {
            Some(id) if i64::try_from(id) == Ok(i64::from(node_id)) => {}
            other => {
                return Err(wrong(format!(
                    "its subject CN must be node-{node_id} (this node's id), it names {}",
                    other.map_or("no node".to_string(), |id| format!("node {id}"))
                )))
            }
        }
        chronik_rpc::tls::configure(RpcTls::load(files).map_err(invalid)?).map_err(invalid)?;
        if let Some(names) = &self.admin_allowed_names {
            chronik_rpc::auth::restrict_admin_names(names.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{load, ENV};
    use crate::config::BrokerConfig;

    fn resolve(flags: &[&str]) -> Result<BrokerConfig, ConfigError> {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        load(flags).and_then(BrokerConfig::resolve)
    }

    const TLS: [&str; 6] = [
        "--rpc-tls-cert",
        "n.pem",
        "--rpc-tls-key",
        "n.key",
        "--rpc-tls-ca",
        "ca.pem",
    ];

    #[test]
    fn a_non_loopback_rpc_address_needs_tls_or_rpc_insecure() {
        let cluster = ["--node-id", "1", "--cluster", "1@10.0.0.1:9093"];
        let err = resolve(&cluster).unwrap_err().to_string();
        assert!(err.contains("--rpc-insecure"), "{err}");
        let wildcard = ["standalone", "--rpc-addr", "0.0.0.0:9093"];
        assert!(resolve(&wildcard).is_err());

        assert!(resolve(&[&cluster[..], &["--rpc-insecure"]].concat()).is_ok());
        let secured = resolve(&[&cluster[..], &TLS[..]].concat()).unwrap();
        assert_eq!(
            secured.rpc_security.tls.map(|t| t.ca),
            Some(PathBuf::from("ca.pem"))
        );
        // Loopback and no RPC listener need nothing.
        assert!(resolve(&["--node-id", "1", "--cluster", "1@127.0.0.1:9093"]).is_ok());
        assert!(resolve(&["standalone"]).is_ok());
    }

    #[test]
    fn tls_files_go_together_and_names_need_tls() {
        let err = resolve(&["standalone", "--rpc-tls-cert", "n.pem"]).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        let err = resolve(&["standalone", "--rpc-admin-allowed-names", "alice"]).unwrap_err();
        assert!(err.to_string().contains("needs --rpc-tls-cert"), "{err}");
        let names = resolve(
            &[
                &["standalone"][..],
                &TLS[..],
                &["--rpc-admin-allowed-names", "alice, bob"],
            ]
            .concat(),
        )
        .unwrap()
        .rpc_security
        .admin_allowed_names;
        assert_eq!(names, Some(vec!["alice".to_string(), "bob".to_string()]));
    }
}
