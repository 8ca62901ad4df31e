//! The Kafka port's SASL and authorizer settings (crate::security parses and checks them).

use clap::Args;

use super::ConfigError;
use crate::security::{self as sec, SecuritySettings};

#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// SASL mechanisms offered on SASL listeners, comma-separated: SCRAM-SHA-256,
    /// SCRAM-SHA-512, PLAIN (Kafka's sasl.enabled.mechanisms)
    #[arg(long, env = "CHRONIK_SASL_MECHANISMS")]
    #[arg(default_value = sec::DEFAULT_SASL_MECHANISMS)]
    pub sasl_mechanisms: String,
    /// NAME:PASSWORD of a SCRAM user created at start if it has no credential yet, so a
    /// cluster that requires SASL can be administered
    #[arg(long, env = "CHRONIK_BOOTSTRAP_USER")]
    pub bootstrap_user: Option<String>,
    /// Lifetime of a SASL session; a client must re-authenticate within it (KIP-368); 0: no
    /// limit (Kafka's connections.max.reauth.ms)
    #[arg(long, env = "CHRONIK_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,
    /// `acl` enforces ACLs on every request; `none` allows everything (Kafka's
    /// authorizer.class.name)
    #[arg(long, env = "CHRONIK_AUTHORIZER", default_value = "none")]
    pub authorizer: String,
    /// Principals allowed everything, separated by ';', e.g. `User:admin;User:ops`
    /// (Kafka's super.users)
    #[arg(long, env = "CHRONIK_SUPER_USERS")]
    pub super_users: Option<String>,
}

/// The SASL and authorizer flags, parsed (crate::security).
pub(super) fn security_settings(args: &SecurityArgs) -> Result<SecuritySettings, ConfigError> {
    let invalid = |key| move |reason| ConfigError::Invalid { key, reason };
    Ok(SecuritySettings {
        sasl: crate::sasl::SaslSettings {
            mechanisms: sec::parse_mechanisms(&args.sasl_mechanisms)
                .map_err(invalid("sasl-mechanisms"))?
                .into(),
            max_reauth: sec::reauth_lifetime(args.connections_max_reauth_ms),
        },
        bootstrap_user: args
            .bootstrap_user
            .as_deref()
            .map(sec::parse_bootstrap_user)
            .transpose()
            .map_err(invalid("bootstrap-user"))?,
        acl_authorizer: sec::parse_authorizer(&args.authorizer).map_err(invalid("authorizer"))?,
        super_users: args
            .super_users
            .as_deref()
            .map(sec::parse_super_users)
            .transpose()
            .map_err(invalid("super-users"))?
            .unwrap_or_default()
            .into(),
    })
}
