//! The server side of a SCRAM exchange (RFC 5802; SHA-256 per RFC 7677, SHA-512 as Kafka):
//!
//! ```text
//! client-first:  n,,n=<user>,r=<client nonce>
//! server-first:  r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final:  c=<base64 gs2 header>,r=<nonce>,p=<base64 ClientProof>
//! server-final:  v=<base64 ServerSignature>
//! ```
//!
//! The client proves it knows ClientKey: `ClientProof = ClientKey XOR HMAC(StoredKey,
//! AuthMessage)`, and `H(ClientKey)` must be the StoredKey on file. An unknown user gets a
//! challenge like any other (a salt derived from the name with a process-wide secret, so it is
//! stable across attempts) and fails at the proof, with the same error as a wrong password: the
//! exchange does not tell whether a user exists.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::credential::{Mechanism, ScramCredential, MIN_ITERATIONS};
use crate::AuthError;

/// Longest client message accepted; real ones are well under 1 KiB.
pub const MAX_MESSAGE_BYTES: usize = 4096;

enum State {
    Initial,
    SentFirst(Box<Pending>),
    Done,
}

/// What the final step needs from the first.
struct Pending {
    user: String,
    /// `None`: the user does not exist; the proof is then refused whatever it is.
    credential: Option<ScramCredential>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// One SCRAM exchange on one connection.
pub struct ScramServer {
    mechanism: Mechanism,
    server_nonce: String,
    state: State,
}

/// A successful exchange: who the client is and the server's final message.
#[derive(Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub user: String,
    pub server_final: Vec<u8>,
}

impl ScramServer {
    /// A new exchange with a fresh random server nonce: alphanumeric, as Kafka's (some
    /// clients mishandle '+', '/' or '=' in it: librdkafka 2.0 fails the exchange).
    pub fn new(mechanism: Mechanism) -> ScramServer {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = raw.iter().map(|b| format!("{b:02x}")).collect();
        ScramServer::with_nonce(mechanism, nonce)
    }

    /// With a given server nonce (printable, no ','): for the RFC's test vectors.
    pub fn with_nonce(mechanism: Mechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mechanism,
            server_nonce,
            state: State::Initial,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn malformed(&self, reason: impl Into<String>) -> AuthError {
        AuthError::malformed(self.mechanism.name(), reason)
    }

    /// Takes client-first and answers server-first. `lookup` finds the user's credential for
    /// this mechanism.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Initial) {
            return Err(AuthError::Complete(self.mechanism.name()));
        }
        self.state = State::Done;
        let text = self.text(message)?;
        let (gs2_header, bare) = split_gs2_header(text).map_err(|r| self.malformed(r))?;
        let mut fields = bare.split(',');
        let user = match fields.next() {
            Some(f) if f.starts_with("m=") => {
                return Err(self.malformed("mandatory extensions are not supported"))
            }
            Some(f) => decode_saslname(value(f, "n").map_err(|r| self.malformed(r))?)
                .map_err(|r| self.malformed(r))?,
            None => return Err(self.malformed("no user name")),
        };
        let client_nonce = fields
            .next()
            .ok_or_else(|| self.malformed("no nonce"))
            .and_then(|f| value(f, "r").map_err(|r| self.malformed(r)))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(self.malformed("the nonce must be printable"));
        }
        // Kafka's only extension is delegation-token authentication, which Chronik has not.
        if fields.any(|f| f.starts_with("tokenauth=") && f != "tokenauth=false") {
            return Err(AuthError::InvalidCredentials(self.mechanism.name()));
        }
        if let Some(authzid) = gs2_header
            .split(',')
            .nth(1)
            .and_then(|a| a.strip_prefix("a="))
        {
            if decode_saslname(authzid).map_err(|r| self.malformed(r))? != user {
                return Err(AuthError::InvalidCredentials(self.mechanism.name()));
            }
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (decoy_salt(self.mechanism, &user), MIN_ITERATIONS),
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let reply = server_first.clone().into_bytes();
        self.state = State::SentFirst(Box::new(Pending {
            user,
            credential,
            gs2_header: gs2_header.to_string(),
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
        }));
        Ok(reply)
    }

    /// Takes client-final; on a valid proof answers server-final and names the user.
    pub fn client_final(&mut self, message: &[u8]) -> Result<Authenticated, AuthError> {
        let State::SentFirst(p) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(AuthError::Complete(self.mechanism.name()));
        };
        let text = self.text(message)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| self.malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .ok_or_else(|| self.malformed("no channel binding"))
            .and_then(|f| value(f, "c").map_err(|r| self.malformed(r)))?;
        if B64.decode(binding).ok().as_deref() != Some(p.gs2_header.as_bytes()) {
            return Err(self.malformed("the channel binding differs from the first message's"));
        }
        let nonce = fields
            .next()
            .ok_or_else(|| self.malformed("no nonce"))
            .and_then(|f| value(f, "r").map_err(|r| self.malformed(r)))?;
        // Kafka's rule (ScramSaslServer): the nonce must end with the one the server sent.
        // librdkafka before 2.1 sends the client nonce twice in front of it.
        if !nonce.ends_with(&p.nonce) {
            return Err(self.malformed("the nonce differs from the one the server sent"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| self.malformed("the proof is not base64"))?;
        let failed = AuthError::InvalidCredentials(self.mechanism.name());
        let Some(credential) = p.credential else {
            return Err(failed);
        };
        let auth_message = format!("{},{},{without_proof}", p.client_first_bare, p.server_first);
        let m = self.mechanism;
        let signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(failed);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
            return Err(failed);
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(Authenticated {
            user: p.user,
            server_final: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }

    fn text<'a>(&self, message: &'a [u8]) -> Result<&'a str, AuthError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(self.malformed(format!("over {MAX_MESSAGE_BYTES} bytes")));
        }
        std::str::from_utf8(message).map_err(|_| self.malformed("not UTF-8"))
    }
}

/// Splits `gs2-cbind-flag "," [authzid] ","` off the client-first message.
fn split_gs2_header(text: &str) -> Result<(&str, &str), String> {
    let flag_end = text.find(',').ok_or("no GS2 header")?;
    match &text[..flag_end] {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err("channel binding is not supported".into()),
        f => return Err(format!("unknown channel binding flag {f:?}")),
    }
    let authz_end = text[flag_end + 1..]
        .find(',')
        .map(|i| flag_end + 1 + i)
        .ok_or("no GS2 header")?;
    Ok((&text[..=authz_end], &text[authz_end + 1..]))
}

/// The value of a `k=v` attribute that must be `key`.
fn value<'a>(field: &'a str, key: &str) -> Result<&'a str, String> {
    field
        .strip_prefix(key)
        .and_then(|f| f.strip_prefix('='))
        .ok_or_else(|| format!("expected the attribute {key}=, got {field:?}"))
}

/// RFC 5802 saslname: ',' travels as "=2C" and '=' as "=3D"; any other '=' is an error.
fn decode_saslname(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(format!("bad escape in user name {name:?}")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err("empty user name".into());
    }
    Ok(out)
}

/// A salt for a user that does not exist, the same on every attempt in this process.
fn decoy_salt(mechanism: Mechanism, user: &str) -> Vec<u8> {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut s);
        s
    });
    let mut salt = mechanism.hmac(secret, user.as_bytes());
    salt.truncate(24);
    salt
}

#[cfg(test)]
mod tests;
