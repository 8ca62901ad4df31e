//! The client side of SCRAM, for Chronik's own tools (chronik-bench, tests): the same
//! formulas as the server, from the password.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;

use crate::credential::Mechanism;
use crate::AuthError;

/// One client-side SCRAM exchange.
pub struct ScramClient {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// The server-final message a genuine server sends (it knows ServerKey).
    expected_server_final: Option<Vec<u8>>,
}

impl ScramClient {
    /// User names with ',' or '=' are escaped as RFC 5802 says.
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> ScramClient {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = B64.encode(raw);
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={name},r={nonce}"),
            nonce,
            expected_server_final: None,
        }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message answering `server_first`.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let bad = |r: &str| AuthError::malformed(self.mechanism.name(), r);
        let text = std::str::from_utf8(server_first).map_err(|_| bad("not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for field in text.split(',') {
            match field.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = B64.decode(v).ok(),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(bad("server-first lacks r, s or i"));
        };
        if !nonce.starts_with(&self.nonce) || iterations == 0 {
            return Err(bad("server-first nonce or iterations"));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = m.hmac(&m.hmac(&salted, b"Server Key"), auth.as_bytes());
        self.expected_server_final =
            Some(format!("v={}", B64.encode(server_signature)).into_bytes());
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Whether the server proved it knows the user's ServerKey (so it is not an impostor that
    /// only relayed the exchange).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), AuthError> {
        match &self.expected_server_final {
            Some(want) if want.as_slice() == server_final => Ok(()),
            _ => Err(AuthError::InvalidCredentials(self.mechanism.name())),
        }
    }
}
