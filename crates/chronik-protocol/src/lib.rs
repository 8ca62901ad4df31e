//! The Kafka wire protocol as Chronik speaks it.
//!
//! - [`frame`] reads size-prefixed frames from a socket, with a hard size bound, a read
//!   deadline, and a [`budget`] of request bytes shared by all connections.
//! - [`request`] decodes a frame into a header and a typed request (via `kafka-protocol`).
//! - [`response`] encodes a typed response with the header version the API key demands.
//! - [`batch`] rewrites a produced record batch as a topic's configs demand (recompression,
//!   LogAppendTime, timestamp bounds), with bounded decompression.
//! - [`versions`] is the single table of API versions Chronik really implements.
//!
//! No codec is hand-written here: all message bodies go through `kafka-protocol`.

pub mod batch;
pub mod budget;
pub mod frame;
pub mod request;
pub mod response;
pub mod versions;

pub use kafka_protocol;
pub use kafka_protocol::ResponseError;
pub use request::{decode_request, DecodeError, Request};
pub use response::{encode_response, EncodeError};
