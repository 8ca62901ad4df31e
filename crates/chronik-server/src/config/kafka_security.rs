//! The Kafka port's SASL and authorizer settings, parsed (crate::security). A module of its own
//! so that config.rs stays within the file-size limit.

use super::{ConfigError, FileConfig, ServerArgs};
use crate::security::SecuritySettings;

/// The SASL and authorizer flags, parsed (crate::security).
pub(super) fn security_settings(
    args: &ServerArgs,
    file: &FileConfig,
) -> Result<SecuritySettings, ConfigError> {
    use crate::security as sec;
    let pick = |a: &Option<String>, f: &Option<String>| a.clone().or_else(|| f.clone());
    let invalid = |key| move |reason| ConfigError::Invalid { key, reason };
    let mechanisms = pick(&args.sasl_mechanisms, &file.sasl_mechanisms)
        .unwrap_or_else(|| sec::DEFAULT_SASL_MECHANISMS.into());
    Ok(SecuritySettings {
        sasl: crate::sasl::SaslSettings {
            mechanisms: sec::parse_mechanisms(&mechanisms)
                .map_err(invalid("sasl-mechanisms"))?
                .into(),
            max_reauth: sec::reauth_lifetime(
                args.connections_max_reauth_ms
                    .or(file.connections_max_reauth_ms)
                    .unwrap_or(0),
            ),
        },
        bootstrap_user: pick(&args.bootstrap_user, &file.bootstrap_user)
            .map(|s| sec::parse_bootstrap_user(&s))
            .transpose()
            .map_err(invalid("bootstrap-user"))?,
        acl_authorizer: pick(&args.authorizer, &file.authorizer)
            .map(|s| sec::parse_authorizer(&s))
            .transpose()
            .map_err(invalid("authorizer"))?
            .unwrap_or(false),
        super_users: pick(&args.super_users, &file.super_users)
            .map(|s| sec::parse_super_users(&s))
            .transpose()
            .map_err(invalid("super-users"))?
            .unwrap_or_default()
            .into(),
    })
}
