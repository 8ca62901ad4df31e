//! Salted SCRAM credentials (RFC 5802 section 3):
//!
//! ```text
//! SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations)
//! ClientKey      = HMAC(SaltedPassword, "Client Key")
//! StoredKey      = H(ClientKey)
//! ServerKey      = HMAC(SaltedPassword, "Server Key")
//! ```
//!
//! The server keeps salt, iterations, StoredKey and ServerKey: enough to check a client's proof
//! and to prove itself, not enough to log in as the user (that needs ClientKey).

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's bounds on the iteration count (ScramMechanism.minIterations / maxIterations):
/// AlterUserScramCredentials outside them gets UNACCEPTABLE_CREDENTIAL.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// Bytes of salt in credentials made here (Kafka's ScramFormatter uses a 20-ish byte nonce).
const SALT_BYTES: usize = 24;

/// A SCRAM mechanism, with Kafka's names and AlterUserScramCredentials type ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// The SASL mechanism name, as in `sasl.mechanism`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The `mechanism` field of Describe/AlterUserScramCredentials (0 is UNKNOWN).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    /// Bytes of the hash (and of SaltedPassword, ClientKey, StoredKey, ServerKey).
    pub fn hash_len(self) -> usize {
        match self {
            Mechanism::ScramSha256 => 32,
            Mechanism::ScramSha512 => 64,
        }
    }

    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
            Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: new_from_slice cannot fail for these hashes.
        match self {
            Mechanism::ScramSha256 => {
                let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::ScramSha512 => {
                let mut m = <Hmac<Sha512>>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// SaltedPassword: PBKDF2 with this mechanism's HMAC. CPU-heavy by design (milliseconds
    /// at 4096 iterations): callers on an async runtime run it off the runtime.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        match self {
            Mechanism::ScramSha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            Mechanism::ScramSha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

/// What the cluster stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// From a SaltedPassword the client computed (AlterUserScramCredentials sends salt,
    /// iterations and SaltedPassword, never the password).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// From a password, with a fresh random salt (`--bootstrap-user`). CPU-heavy (PBKDF2).
    pub fn from_password(mechanism: Mechanism, password: &str, iterations: u32) -> ScramCredential {
        let mut salt = vec![0u8; SALT_BYTES];
        rand::thread_rng().fill_bytes(&mut salt);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is the one this credential was made from (PLAIN). CPU-heavy (PBKDF2);
    /// the comparison is constant-time.
    pub fn matches_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let candidate = ScramCredential::from_salted_password(
            mechanism,
            self.salt.clone(),
            &salted,
            self.iterations,
        );
        bool::from(candidate.stored_key.ct_eq(&self.stored_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kafka_types_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(Mechanism::from_kafka_type(m.kafka_type()), Some(m));
        }
        assert_eq!(Mechanism::from_name("PLAIN"), None);
        assert_eq!(Mechanism::from_kafka_type(0), None);
    }

    #[test]
    fn a_credential_matches_its_password_only() {
        for m in Mechanism::ALL {
            let c = ScramCredential::from_password(m, "s3cret", MIN_ITERATIONS);
            assert_eq!(c.stored_key.len(), m.hash_len());
            assert!(c.matches_password(m, "s3cret"));
            assert!(!c.matches_password(m, "s3cret "));
            // A fresh salt each time: the same password makes different credentials.
            let again = ScramCredential::from_password(m, "s3cret", MIN_ITERATIONS);
            assert_ne!(c.salt, again.salt);
            assert_ne!(c.stored_key, again.stored_key);
        }
    }

    #[test]
    fn rfc7677_salted_password() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 iterations; the server signature there checks the whole chain (scram.rs tests).
        use base64::Engine;
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap();
        let c =
            ScramCredential::from_password_with_salt(Mechanism::ScramSha256, "pencil", salt, 4096);
        assert!(c.matches_password(Mechanism::ScramSha256, "pencil"));
    }

    impl ScramCredential {
        pub(crate) fn from_password_with_salt(
            m: Mechanism,
            password: &str,
            salt: Vec<u8>,
            iterations: u32,
        ) -> ScramCredential {
            let salted = m.salted_password(password.as_bytes(), &salt, iterations);
            ScramCredential::from_salted_password(m, salt, &salted, iterations)
        }
    }
}
