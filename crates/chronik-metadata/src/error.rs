use thiserror::Error;

/// Why a metadata command was refused or could not be stored.
///
/// Variants map one-to-one onto the Kafka error a client should see, so the protocol
/// layer can translate without inspecting strings.
#[derive(Debug, Error)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid partition count {requested}: {reason}")]
    InvalidPartitions { requested: i32, reason: String },
    #[error("invalid replication factor {0}: only {1} broker(s) available")]
    InvalidReplicationFactor(i32, usize),
    #[error("metadata store I/O error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}
