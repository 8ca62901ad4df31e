//! SASL login for the bench's connections (`--sasl-mechanism`, `--sasl-username`,
//! `--sasl-password`, librdkafka's names): SaslHandshake v1, then SaslAuthenticate with
//! SCRAM-SHA-256/512 (the server's final message is checked, so an impostor that only relays
//! the exchange is noticed) or PLAIN.

use bytes::Bytes;
use chronik_auth::client::ScramClient;
use chronik_auth::Mechanism;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use crate::client::{ClientError, Connection};

/// Who to log in as, and how.
#[derive(Debug, Clone)]
pub struct SaslLogin {
    /// A Kafka mechanism name: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN.
    pub mechanism: String,
    pub user: String,
    pub password: String,
}

impl SaslLogin {
    /// Checks the mechanism name up front, so a typo fails before any connection.
    pub fn new(mechanism: &str, user: &str, password: &str) -> Result<SaslLogin, String> {
        if mechanism != "PLAIN" && Mechanism::from_name(mechanism).is_none() {
            return Err(format!(
                "unknown SASL mechanism {mechanism:?}: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN"
            ));
        }
        Ok(SaslLogin {
            mechanism: mechanism.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

fn failed(step: &str, code: i16, msg: Option<&StrBytes>) -> ClientError {
    ClientError::Sasl(format!(
        "{step}: error code {code}{}",
        msg.map(|m| format!(": {m}")).unwrap_or_default()
    ))
}

/// Runs the exchange on a fresh connection, before any other request but ApiVersions.
pub async fn login(conn: &Connection, login: &SaslLogin) -> Result<(), ClientError> {
    let hs = conn
        .send(
            SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(login.mechanism.clone())),
        )
        .await?;
    if hs.error_code != 0 {
        return Err(failed("SaslHandshake", hs.error_code, None));
    }
    let step = |bytes: Vec<u8>| async move {
        let r = conn
            .send(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)))
            .await?;
        if r.error_code != 0 {
            return Err(failed(
                "SaslAuthenticate",
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        Ok(r.auth_bytes)
    };
    match Mechanism::from_name(&login.mechanism) {
        None => {
            step(format!("\0{}\0{}", login.user, login.password).into_bytes()).await?;
        }
        Some(m) => {
            let mut client = ScramClient::new(m, &login.user, &login.password);
            let server_first = step(client.client_first()).await?;
            let fin = client
                .client_final(&server_first)
                .map_err(|e| ClientError::Sasl(e.to_string()))?;
            let server_final = step(fin).await?;
            client
                .verify_server_final(&server_final)
                .map_err(|_| ClientError::Sasl("the server's SCRAM signature is wrong".into()))?;
        }
    }
    Ok(())
}
