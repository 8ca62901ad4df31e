//! SCRAM users (credentials per user and mechanism, checked as Kafka's
//! AlterUserScramCredentials checks them, before anything changes) and ACL bindings.

use chronik_auth::acl::AclBinding;
use chronik_auth::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};

use crate::command::Outcome;
use crate::error::Refusal;
use crate::state::MetadataState;

impl MetadataState {
    pub(crate) fn upsert_scram_credential(
        &mut self,
        user: &str,
        mechanism: Mechanism,
        credential: &ScramCredential,
    ) -> Result<Outcome, Refusal> {
        let refuse = |reason: String| Refusal::UnacceptableCredential {
            user: user.to_string(),
            reason,
        };
        if user.is_empty() {
            return Err(refuse("Username must not be empty".into()));
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations) {
            return Err(refuse(format!(
                "Iterations {} is {} than the {} allowed for {}",
                credential.iterations,
                if credential.iterations < MIN_ITERATIONS {
                    "less"
                } else {
                    "more"
                },
                if credential.iterations < MIN_ITERATIONS {
                    MIN_ITERATIONS
                } else {
                    MAX_ITERATIONS
                },
                mechanism.name()
            )));
        }
        let n = mechanism.hash_len();
        if credential.salt.is_empty()
            || credential.stored_key.len() != n
            || credential.server_key.len() != n
        {
            return Err(refuse(format!("malformed {} credential", mechanism.name())));
        }
        self.scram_users
            .entry(user.to_string())
            .or_default()
            .insert(mechanism, credential.clone());
        Ok(Outcome::Done)
    }

    pub(crate) fn delete_scram_credential(
        &mut self,
        user: &str,
        mechanism: Mechanism,
    ) -> Result<Outcome, Refusal> {
        let missing = || Refusal::NoSuchCredential {
            user: user.to_string(),
        };
        let creds = self.scram_users.get_mut(user).ok_or_else(missing)?;
        creds.remove(&mechanism).ok_or_else(missing)?;
        if creds.is_empty() {
            self.scram_users.remove(user);
        }
        Ok(Outcome::Done)
    }

    pub(crate) fn create_acls(&mut self, bindings: &[AclBinding]) -> Result<Outcome, Refusal> {
        for b in bindings {
            b.validate().map_err(|e| Refusal::InvalidAcl(e.0))?;
        }
        for b in bindings {
            self.acls.insert(b.clone());
        }
        Ok(Outcome::Done)
    }

    /// The user's credential for `mechanism`, if any.
    pub fn scram_credential(&self, user: &str, mechanism: Mechanism) -> Option<&ScramCredential> {
        self.scram_users.get(user)?.get(&mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetadataCommand;

    fn cred(m: Mechanism, iterations: u32) -> ScramCredential {
        let salted = m.salted_password(b"pw", b"salt", iterations);
        ScramCredential::from_salted_password(m, b"salt".to_vec(), &salted, iterations)
    }

    #[test]
    fn credentials_are_set_replaced_and_deleted_per_mechanism() {
        let mut s = MetadataState::new("c".into());
        let upsert = |m, it| MetadataCommand::UpsertScramCredential {
            user: "alice".into(),
            mechanism: m,
            credential: cred(m, it),
        };
        s.apply(&upsert(Mechanism::ScramSha256, 4096)).unwrap();
        s.apply(&upsert(Mechanism::ScramSha512, 8192)).unwrap();
        s.apply(&upsert(Mechanism::ScramSha512, 4096)).unwrap();
        assert_eq!(
            s.scram_credential("alice", Mechanism::ScramSha512)
                .unwrap()
                .iterations,
            4096
        );
        let delete = |m| MetadataCommand::DeleteScramCredential {
            user: "alice".into(),
            mechanism: m,
        };
        s.apply(&delete(Mechanism::ScramSha256)).unwrap();
        assert!(s
            .scram_credential("alice", Mechanism::ScramSha256)
            .is_none());
        assert!(matches!(
            s.apply(&delete(Mechanism::ScramSha256)),
            Err(Refusal::NoSuchCredential { .. })
        ));
        s.apply(&delete(Mechanism::ScramSha512)).unwrap();
        assert!(s.scram_users.is_empty());
    }

    #[test]
    fn unacceptable_credentials_change_nothing() {
        let mut s = MetadataState::new("c".into());
        for (user, it) in [("", 4096), ("bob", 4095), ("bob", 16385)] {
            let cmd = MetadataCommand::UpsertScramCredential {
                user: user.into(),
                mechanism: Mechanism::ScramSha256,
                credential: cred(Mechanism::ScramSha256, it),
            };
            assert!(matches!(
                s.apply(&cmd),
                Err(Refusal::UnacceptableCredential { .. })
            ));
        }
        let mut short = cred(Mechanism::ScramSha512, 4096);
        short.stored_key.truncate(10);
        let cmd = MetadataCommand::UpsertScramCredential {
            user: "bob".into(),
            mechanism: Mechanism::ScramSha512,
            credential: short,
        };
        assert!(s.apply(&cmd).is_err());
        assert!(s.scram_users.is_empty());
        assert_eq!(s.applied, 0);
    }

    #[test]
    fn old_state_without_users_still_loads() {
        let mut json: serde_json::Value =
            serde_json::to_value(MetadataState::new("c".into())).unwrap();
        json.as_object_mut().unwrap().remove("scram_users");
        let s: MetadataState = serde_json::from_value(json).unwrap();
        assert!(s.scram_users.is_empty());
    }
}
