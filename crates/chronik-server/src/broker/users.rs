//! `--bootstrap-user NAME:PASSWORD`: the first SCRAM user, so a cluster whose listeners all
//! require SASL can be administered at all (the bootstrap problem; Redpanda solves it the
//! same way). Created at start only if the user has no credential yet, with both SCRAM
//! mechanisms at Kafka's minimum iteration count; a user that exists is left alone, so a
//! password changed later through AlterUserScramCredentials is never reset by a restart.

use chronik_auth::acl::AclBinding;
use chronik_auth::{Mechanism, ScramCredential, MIN_ITERATIONS};
use chronik_metadata::MetadataCommand;

use super::{Broker, StartError, TopicError};

impl Broker {
    pub(crate) async fn ensure_bootstrap_user(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(), StartError> {
        let state = self.metadata();
        if state.scram_users.contains_key(user) {
            return Ok(());
        }
        for mechanism in Mechanism::ALL {
            let pw = password.to_string();
            // PBKDF2: milliseconds of CPU, off the runtime.
            let credential = tokio::task::spawn_blocking(move || {
                ScramCredential::from_password(mechanism, &pw, MIN_ITERATIONS)
            })
            .await
            .map_err(|e| StartError::BootstrapUser(e.to_string()))?;
            let cmd = MetadataCommand::UpsertScramCredential {
                user: user.to_string(),
                mechanism,
                credential,
            };
            self.propose(cmd, |s| s.scram_credential(user, mechanism).is_some())
                .await
                .map_err(|e| StartError::BootstrapUser(e.message))?;
        }
        tracing::info!(user, "created the bootstrap SCRAM user");
        Ok(())
    }

    /// Commits a DeleteAcls and waits until this node applied it; the bindings each filter
    /// removed.
    pub(crate) async fn apply_acl_deletion(
        &self,
        cmd: MetadataCommand,
    ) -> Result<Vec<Vec<AclBinding>>, TopicError> {
        let MetadataCommand::DeleteAcls { filters } = &cmd else {
            return Ok(Vec::new());
        };
        let filters = filters.clone();
        let deleted = self.meta.apply(cmd).await?.into_acls_deleted()?;
        self.meta
            .applied_locally(|s| !s.acls.iter().any(|b| filters.iter().any(|f| f.matches(b))))
            .await;
        Ok(deleted)
    }
}
