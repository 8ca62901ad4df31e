//! The security settings of the Kafka listeners that are not about TLS: SASL mechanisms,
//! the bootstrap user, session lifetime, and the authorizer with its super users. Parsed and
//! checked here; the flags themselves are in `config` with the others.

use std::sync::Arc;
use std::time::Duration;

use crate::sasl::{SaslMechanism, SaslSettings};

/// Kafka's `sasl.enabled.mechanisms` default here: SCRAM only. PLAIN sends the password
/// itself and must be asked for (and belongs on SASL_SSL).
pub const DEFAULT_SASL_MECHANISMS: &str = "SCRAM-SHA-256,SCRAM-SHA-512";
/// Kafka's sasl.server.max.receive.size default.
pub const DEFAULT_SASL_MAX_RECEIVE_BYTES: u32 = 524_288;

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    pub sasl: SaslSettings,
    /// `--bootstrap-user NAME:PASSWORD`.
    pub bootstrap_user: Option<(String, String)>,
    /// `--authorizer acl`: ACLs are enforced. Without it everything is allowed, as in Kafka
    /// without `authorizer.class.name`.
    pub acl_authorizer: bool,
    /// `--super-users User:a;User:b`: principals every check allows.
    pub super_users: Arc<[String]>,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            sasl: SaslSettings {
                mechanisms: parse_mechanisms(DEFAULT_SASL_MECHANISMS)
                    .unwrap_or_default()
                    .into(),
                max_reauth: None,
                max_receive_bytes: DEFAULT_SASL_MAX_RECEIVE_BYTES as usize,
            },
            bootstrap_user: None,
            acl_authorizer: false,
            super_users: Arc::from(Vec::new()),
        }
    }
}

/// `--sasl-mechanisms`: a comma-separated list of Kafka mechanism names.
pub fn parse_mechanisms(s: &str) -> Result<Vec<SaslMechanism>, String> {
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let m = SaslMechanism::from_name(name).ok_or_else(|| {
            format!(
                "unknown SASL mechanism {name:?}: expected SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN"
            )
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err("no SASL mechanism given".into());
    }
    Ok(out)
}

/// `--bootstrap-user NAME:PASSWORD` (the name may not hold ':'; the password may).
pub fn parse_bootstrap_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok((user.to_string(), password.to_string()))
        }
        _ => Err("expected NAME:PASSWORD, both non-empty".into()),
    }
}

/// `--super-users`: Kafka's `super.users`, principals separated by ';'.
pub fn parse_super_users(s: &str) -> Result<Vec<String>, String> {
    let users: Vec<String> = s
        .split(';')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    for u in &users {
        if !matches!(u.split_once(':'), Some((k, n)) if !k.is_empty() && !n.is_empty()) {
            return Err(format!("{u:?} is not a principal of the form User:name"));
        }
    }
    Ok(users)
}

/// `--authorizer`: `acl` or `none`.
pub fn parse_authorizer(s: &str) -> Result<bool, String> {
    match s {
        "acl" => Ok(true),
        "none" | "" => Ok(false),
        other => Err(format!(
            "unknown authorizer {other:?}: expected `acl` or `none`"
        )),
    }
}

/// `--connections-max-reauth-ms`: 0 (Kafka's default) turns session expiry off.
pub fn reauth_lifetime(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flags() {
        assert_eq!(parse_mechanisms(DEFAULT_SASL_MECHANISMS).unwrap().len(), 2);
        assert_eq!(
            parse_mechanisms("PLAIN, PLAIN,SCRAM-SHA-512").unwrap(),
            vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(chronik_auth::Mechanism::ScramSha512)
            ]
        );
        assert!(parse_mechanisms("GSSAPI").is_err());
        assert!(parse_mechanisms(" , ").is_err());
        assert_eq!(
            parse_bootstrap_user("admin:a:b").unwrap(),
            ("admin".into(), "a:b".into())
        );
        assert!(parse_bootstrap_user("admin:").is_err());
        assert!(parse_bootstrap_user(":pw").is_err());
        assert_eq!(
            parse_super_users("User:a; User:b;").unwrap(),
            vec!["User:a", "User:b"]
        );
        assert!(parse_super_users("alice").is_err());
        assert_eq!(parse_authorizer("acl"), Ok(true));
        assert!(parse_authorizer("AclAuthorizer").is_err());
        assert_eq!(reauth_lifetime(0), None);
    }
}
