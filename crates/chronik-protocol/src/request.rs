//! Decoding a request frame into a typed request.
//!
//! The first 8 bytes (API key, API version, correlation id) are read by hand before the
//! codec runs, so that every failure can still be answered or logged against the right
//! correlation id.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use thiserror::Error;

use crate::versions;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl Request {
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }
}

/// Why a frame could not become a [`Request`].
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("request frame of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("{api_key:?} v{version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error(
        "malformed {api_key:?} v{version} request (correlation id {correlation_id}): {reason}"
    )]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Decodes one request frame (without its size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let supported = versions::supported(api_key).ok_or(DecodeError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    if version < supported.min || version > supported.max {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("body: {e}")))?;
    Ok(Request {
        api_key,
        version,
        header,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use bytes::BytesMut;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::Encodable;

    fn frame_for(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_and_refuses() {
        let ok =
            decode_request(frame_for(ApiKey::Metadata, 9, &MetadataRequest::default())).unwrap();
        assert_eq!(ok.correlation_id(), 42);
        assert!(matches!(ok.body, RequestKind::Metadata(_)));

        let mut unknown = BytesMut::new();
        unknown.put_i16(9999);
        unknown.put_i16(0);
        unknown.put_i32(7);
        assert!(matches!(
            decode_request(unknown.freeze()),
            Err(DecodeError::UnknownApiKey {
                api_key: 9999,
                correlation_id: 7
            })
        ));

        let too_new = frame_for(ApiKey::Metadata, 12, &MetadataRequest::default());
        let mut too_new = BytesMut::from(&too_new[..]);
        too_new[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(too_new.freeze()),
            Err(DecodeError::UnsupportedVersion { version: 99, .. })
        ));

        let mut cut = frame_for(ApiKey::Metadata, 9, &MetadataRequest::default());
        cut.truncate(cut.len() - 1);
        assert!(matches!(
            decode_request(cut),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 1])),
            Err(DecodeError::TooShort(2))
        ));
    }

    #[test]
    fn forged_array_length_does_not_allocate() {
        // Metadata v1: header then topics array with a length of i32::MAX and nothing else.
        let mut buf =
            BytesMut::from(&frame_for(ApiKey::Metadata, 1, &MetadataRequest::default())[..]);
        let len = buf.len();
        buf.truncate(len - 4);
        buf.put_i32(i32::MAX);
        assert!(matches!(
            decode_request(buf.freeze()),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
