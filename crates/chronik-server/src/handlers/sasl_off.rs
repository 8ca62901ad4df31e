//! SaslHandshake and SaslAuthenticate on a listener without SASL (on a SASL listener the
//! connection answers them itself, `crate::sasl`).

use kafka_protocol::messages::{
    ApiKey, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Reply};

/// SaslHandshake or SaslAuthenticate on a listener without SASL: ILLEGAL_SASL_STATE, as Kafka
/// answers them there.
pub fn handle(key: ApiKey) -> Reply {
    let code = ResponseError::IllegalSaslState.code();
    Reply::now(match key {
        ApiKey::SaslHandshake => {
            ResponseKind::SaslHandshake(SaslHandshakeResponse::default().with_error_code(code))
        }
        _ => ResponseKind::SaslAuthenticate(
            SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes("this listener does not use SASL"))),
        ),
    })
}
