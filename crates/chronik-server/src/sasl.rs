//! SASL on one connection of a SASL_PLAINTEXT or SASL_SSL listener: Kafka's SaslHandshake
//! (v1) then SaslAuthenticate exchanges, with the mechanisms in chronik-auth.
//!
//! Until the client has authenticated, only ApiVersions, SaslHandshake and SaslAuthenticate
//! are served; any other request closes the connection, as Kafka's SaslServerAuthenticator
//! does. A failed authentication is answered (SASL_AUTHENTICATION_FAILED with Kafka's message)
//! and then the connection closes. With `connections.max.reauth.ms` (KIP-368) the session has a
//! lifetime, told to the client in SaslAuthenticate v1+; a client re-authenticates by running
//! the exchange again on the same connection (as the same principal), and a request after
//! the lifetime ended closes the connection.
//!
//! PLAIN's check salts and iterates the password (PBKDF2, milliseconds of CPU): it runs on
//! the blocking pool, at most [`MAX_PLAIN_CHECKS`] at once, so unauthenticated clients cannot
//! occupy the runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronik_auth::scram::ScramServer;
use chronik_auth::{plain, AuthError, Mechanism, ScramCredential};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;
use tokio::sync::Semaphore;

/// PLAIN password checks running at once in the process.
pub const MAX_PLAIN_CHECKS: usize = 2;
static PLAIN_CHECKS: Semaphore = Semaphore::const_new(MAX_PLAIN_CHECKS);

/// A mechanism the broker offers (`--sasl-mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Scram(Mechanism::ScramSha256),
        SaslMechanism::Scram(Mechanism::ScramSha512),
        SaslMechanism::Plain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => plain::NAME,
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The listener-wide SASL settings a session needs.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    pub mechanisms: Arc<[SaslMechanism]>,
    /// `connections.max.reauth.ms`; `None` (Kafka's 0): sessions do not expire.
    pub max_reauth: Option<Duration>,
    /// `sasl.server.max.receive.size`: the largest frame accepted before authentication, so
    /// an unauthenticated client cannot make the broker buffer a request of the general
    /// frame limit (100 MiB).
    pub max_receive_bytes: usize,
}

enum Step {
    /// Waiting for SaslHandshake.
    Handshake,
    /// Handshake done; waiting for the first SaslAuthenticate.
    Start(SaslMechanism),
    /// A SCRAM exchange between its two messages.
    Scram(Box<ScramServer>),
}

/// The SASL state of one connection.
pub struct SaslSession {
    settings: SaslSettings,
    step: Step,
    /// SaslHandshake v0: the exchange that follows is raw SASL tokens, each in a size-prefixed
    /// frame of its own, not SaslAuthenticate requests (Kafka before KIP-152).
    raw: bool,
    /// Who the client is once authenticated, and until when.
    authenticated: Option<(String, Option<Instant>)>,
}

/// What the connection does with a request, per the session.
pub enum Verdict {
    /// Serve it as usual (authenticated, or ApiVersions).
    Serve,
    /// Answer with this SASL response; close after writing it when `close`.
    Answer {
        body: Box<kafka_protocol::messages::ResponseKind>,
        close: bool,
    },
    /// Close at once, answering nothing (a request out of place).
    Close(&'static str),
}

impl SaslSession {
    pub fn new(settings: SaslSettings) -> SaslSession {
        SaslSession {
            settings,
            step: Step::Handshake,
            raw: false,
            authenticated: None,
        }
    }

    /// The largest frame to read next: [`SaslSettings::max_receive_bytes`] until the client
    /// has authenticated, `None` (the general limit) after.
    pub fn frame_limit(&self) -> Option<usize> {
        self.authenticated
            .is_none()
            .then_some(self.settings.max_receive_bytes)
    }

    /// The authenticated principal's name, once there is one.
    pub fn user(&self) -> Option<&str> {
        self.authenticated.as_ref().map(|(u, _)| u.as_str())
    }

    /// What the connection does with `req`: SASL requests are answered here (and on success
    /// [`user`](Self::user) names the client), others are served only once authenticated.
    pub async fn gate(
        &mut self,
        req: &chronik_protocol::Request,
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
    ) -> Verdict {
        use kafka_protocol::messages::RequestKind;
        match &req.body {
            RequestKind::SaslHandshake(r) => {
                let verdict = self.handshake(r);
                self.raw = req.version == 0 && !matches!(self.step, Step::Handshake);
                verdict
            }
            RequestKind::SaslAuthenticate(r) => self.authenticate(r, lookup).await,
            _ => self.admit(req.api_key, Instant::now()),
        }
    }

    /// Whether the next frame is a raw SASL token (after a SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        self.raw && !matches!(self.step, Step::Handshake)
    }

    /// A raw token (SaslHandshake v0): the server's token to send back in a frame of its own,
    /// or `None` when the exchange failed and the connection closes (raw mode carries no
    /// error, as in Kafka).
    pub async fn raw_token(
        &mut self,
        token: Bytes,
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
    ) -> Option<Bytes> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(token);
        let verdict = self.authenticate(&req, lookup).await;
        if matches!(self.step, Step::Handshake) {
            self.raw = false;
        }
        match verdict {
            Verdict::Answer { body, close: false } => match *body {
                kafka_protocol::messages::ResponseKind::SaslAuthenticate(r)
                    if r.error_code == 0 =>
                {
                    Some(r.auth_bytes)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether a request of `key` may be served now, before its body is looked at.
    pub fn admit(&self, key: ApiKey, now: Instant) -> Verdict {
        match (key, &self.authenticated) {
            (ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate, _) => {
                Verdict::Serve
            }
            (_, Some((_, Some(expires)))) if now >= *expires => {
                Verdict::Close("the SASL session expired (connections.max.reauth.ms)")
            }
            (_, Some(_)) if matches!(self.step, Step::Handshake) => Verdict::Serve,
            (_, Some(_)) => Verdict::Close("request during SASL re-authentication"),
            (_, None) => Verdict::Close("request before SASL authentication"),
        }
    }

    pub fn handshake(&mut self, req: &SaslHandshakeRequest) -> Verdict {
        let offered: Vec<_> = self
            .settings
            .mechanisms
            .iter()
            .map(|m| str_bytes(m.name()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered);
        let chosen = SaslMechanism::from_name(req.mechanism.as_str())
            .filter(|m| self.settings.mechanisms.contains(m));
        let answer = |r: SaslHandshakeResponse, close| Verdict::Answer {
            body: Box::new(kafka_protocol::messages::ResponseKind::SaslHandshake(r)),
            close,
        };
        if !matches!(self.step, Step::Handshake) {
            return answer(
                response.with_error_code(ResponseError::IllegalSaslState.code()),
                true,
            );
        }
        match chosen {
            Some(m) => {
                self.step = Step::Start(m);
                answer(response, false)
            }
            None => {
                crate::metrics::sasl_authentication(mechanism_label(req.mechanism.as_str()), false);
                answer(
                    response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
                    true,
                )
            }
        }
    }

    /// One SaslAuthenticate. `lookup` finds a user's credential for a mechanism.
    pub async fn authenticate(
        &mut self,
        req: &SaslAuthenticateRequest,
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
    ) -> Verdict {
        let step = std::mem::replace(&mut self.step, Step::Handshake);
        let (name, result) = match step {
            Step::Handshake => ("", Err(Failure::State)),
            Step::Start(SaslMechanism::Plain) => {
                (plain::NAME, check_plain(&req.auth_bytes, &lookup).await)
            }
            Step::Start(SaslMechanism::Scram(m)) => {
                let mut server = Box::new(ScramServer::new(m));
                match server.client_first(&req.auth_bytes, |u| lookup(u, m)) {
                    Ok(challenge) => {
                        self.step = Step::Scram(server);
                        return Verdict::Answer {
                            body: authenticate_response(Ok(challenge.into()), 0),
                            close: false,
                        };
                    }
                    Err(e) => (m.name(), Err(Failure::Auth(e))),
                }
            }
            Step::Scram(mut server) => (
                server.mechanism().name(),
                server
                    .client_final(&req.auth_bytes)
                    .map(|done| (done.user, Bytes::from(done.server_final)))
                    .map_err(Failure::Auth),
            ),
        };
        self.finish(name, result)
    }

    /// Records the end of an exchange: the session, or the failure that closes it.
    fn finish(&mut self, mechanism: &str, result: Result<(String, Bytes), Failure>) -> Verdict {
        let (user, final_bytes) = match result {
            Ok(ok) => ok,
            Err(f) => {
                crate::metrics::sasl_authentication(mechanism_label(mechanism), false);
                crate::warn_limited!("sasl", error = %f.message(), "SASL authentication failed");
                return Verdict::Answer {
                    body: authenticate_response(Err(f), 0),
                    close: true,
                };
            }
        };
        if let Some((before, _)) = &self.authenticated {
            if *before != user {
                // KIP-368: a re-authentication may not change who the connection is.
                return Verdict::Answer {
                    body: authenticate_response(Err(Failure::PrincipalChanged), 0),
                    close: true,
                };
            }
        }
        let lifetime = self.settings.max_reauth;
        self.authenticated = Some((user, lifetime.map(|d| Instant::now() + d)));
        crate::metrics::sasl_authentication(mechanism_label(mechanism), true);
        let ms = lifetime.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Verdict::Answer {
            body: authenticate_response(Ok(final_bytes), ms),
            close: false,
        }
    }
}

fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// The metrics label of a mechanism a client named: only the names Kafka defines.
fn mechanism_label(name: &str) -> &'static str {
    SaslMechanism::from_name(name).map_or("other", |m| m.name())
}

enum Failure {
    Auth(AuthError),
    State,
    PrincipalChanged,
    Busy,
}

impl Failure {
    fn code(&self) -> ResponseError {
        match self {
            Failure::Auth(_) | Failure::PrincipalChanged | Failure::Busy => {
                ResponseError::SaslAuthenticationFailed
            }
            Failure::State => ResponseError::IllegalSaslState,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Auth(e) => e.to_string(),
            Failure::State => "SaslAuthenticate before SaslHandshake".into(),
            Failure::PrincipalChanged => "Cannot change principals during re-authentication".into(),
            Failure::Busy => "the broker could not check the password".into(),
        }
    }
}

fn authenticate_response(
    result: Result<Bytes, Failure>,
    session_lifetime_ms: i64,
) -> Box<kafka_protocol::messages::ResponseKind> {
    let r = match result {
        Ok(bytes) => SaslAuthenticateResponse::default()
            .with_auth_bytes(bytes)
            .with_session_lifetime_ms(session_lifetime_ms),
        Err(f) => SaslAuthenticateResponse::default()
            .with_error_code(f.code().code())
            .with_error_message(Some(str_bytes(f.message()))),
    };
    Box::new(kafka_protocol::messages::ResponseKind::SaslAuthenticate(r))
}

/// PLAIN: parse, then check the password against the user's credentials off the runtime.
async fn check_plain(
    message: &[u8],
    lookup: &impl Fn(&str, Mechanism) -> Option<ScramCredential>,
) -> Result<(String, Bytes), Failure> {
    let request = plain::parse(message).map_err(Failure::Auth)?;
    let credentials: Vec<(Mechanism, ScramCredential)> = Mechanism::ALL
        .into_iter()
        .filter_map(|m| lookup(&request.user, m).map(|c| (m, c)))
        .collect();
    // The semaphore is never closed.
    let _slot = PLAIN_CHECKS.acquire().await.map_err(|_| Failure::Busy)?;
    let user = request.user.clone();
    tokio::task::spawn_blocking(move || plain::verify(&request, &credentials))
        .await
        .map_err(|_| Failure::Busy)?
        .map_err(Failure::Auth)?;
    Ok((user, Bytes::new()))
}

#[cfg(test)]
mod tests;
