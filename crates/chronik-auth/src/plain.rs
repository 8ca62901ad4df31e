//! SASL PLAIN (RFC 4616): one message, `[authzid] NUL authcid NUL passwd`, checked against the
//! user's SCRAM credential (the password is salted and iterated with that credential's salt and
//! count and must give its StoredKey), so PLAIN needs no store of its own and no password is
//! kept. The password crosses the wire as sent: PLAIN belongs on SASL_SSL listeners.

use crate::credential::{Mechanism, ScramCredential};
use crate::AuthError;

pub const NAME: &str = "PLAIN";

/// Longest PLAIN message accepted (RFC 4616 allows 255 bytes per field).
pub const MAX_MESSAGE_BYTES: usize = 3 * 255 + 2;

/// The user and password of a PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainRequest {
    pub user: String,
    pub password: String,
}

/// Parses a PLAIN message. As Kafka's PlainSaslServer: an authorization id other than the user
/// name is refused, and both user name and password must be non-empty.
pub fn parse(message: &[u8]) -> Result<PlainRequest, AuthError> {
    let malformed = |r: &str| AuthError::malformed(NAME, r);
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(malformed("message too long"));
    }
    let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "expected authzid, user name and password separated by NUL",
        ));
    };
    if user.is_empty() {
        return Err(malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(malformed("empty password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthError::InvalidCredentials(NAME));
    }
    Ok(PlainRequest {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Checks a PLAIN request against the user's credentials (strongest mechanism first).
/// CPU-heavy (one PBKDF2): run it off an async runtime.
pub fn verify(
    request: &PlainRequest,
    credentials: &[(Mechanism, ScramCredential)],
) -> Result<(), AuthError> {
    let best = credentials.iter().max_by_key(|(m, _)| m.hash_len());
    match best {
        Some((m, c)) if c.matches_password(*m, &request.password) => Ok(()),
        _ => Err(AuthError::InvalidCredentials(NAME)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MIN_ITERATIONS;

    #[test]
    fn parses_and_verifies_against_scram_credentials() {
        let req = parse(b"\0alice\0pw").unwrap();
        assert_eq!(req.user, "alice");
        assert_eq!(parse(b"alice\0alice\0pw").unwrap(), req);
        let creds = vec![(
            Mechanism::ScramSha512,
            ScramCredential::from_password(Mechanism::ScramSha512, "pw", MIN_ITERATIONS),
        )];
        assert_eq!(verify(&req, &creds), Ok(()));
        let wrong = parse(b"\0alice\0PW").unwrap();
        assert_eq!(
            verify(&wrong, &creds),
            Err(AuthError::InvalidCredentials(NAME))
        );
        assert_eq!(verify(&req, &[]), Err(AuthError::InvalidCredentials(NAME)));
    }

    #[test]
    fn refuses_malformed_messages_and_foreign_authzids() {
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"\0alice\0",
            b"\0a\0b\0c",
            &[0xff, 0, b'a', 0, b'b'],
        ] {
            assert!(
                matches!(parse(bad), Err(AuthError::Malformed { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(b"admin\0alice\0pw"),
            Err(AuthError::InvalidCredentials(NAME))
        );
        assert!(parse(&vec![b'a'; MAX_MESSAGE_BYTES + 1]).is_err());
    }
}
