//! The API versions Chronik implements: the one table ApiVersions advertises and the
//! request decoder enforces. Advertise only what the handlers really implement.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, Request, VersionRange};

/// (API key, min, max) for every API the broker serves.
///
/// Every API goes up to the newest version the codec (kafka-protocol 0.18, Kafka 4.1's
/// schemas) decodes, each newer version's fields handled: Produce v12 only tells a
/// transactional producer that the broker checks its partitions itself (KIP-890 part 1:
/// `TxnVerifier` in chronik-server) and v13 names topics by id; Fetch v17/v18 add a replica
/// directory id and a follower's high watermark, tagged fields only KRaft replicas send;
/// ListOffsets v7-v9 add the max-timestamp, earliest-local and latest-tiered specs (no tiered
/// storage: log start and -1, as Kafka without it) and v10 a timeout for remote lookups;
/// Metadata v13 a top-level error code; FindCoordinator v5 an error code and v6 the share key
/// type (answered "not supported"); OffsetCommit v9 / OffsetFetch v9 the KIP-848 member
/// epoch (classic groups: Kafka ignores it on fetch and answers GROUP_ID_NOT_FOUND for a
/// member's commit to an unknown group); ListGroups v5 a group-type filter; DescribeGroups v6
/// GROUP_ID_NOT_FOUND; DescribeCluster v2 fenced brokers.
///
/// No API is kept below the codec. Where Kafka 4.4 advertises more, the codec stops first:
/// ApiVersions v5, ListOffsets v11, DeleteGroups v3 and OffsetCommit/OffsetFetch v10 (topic
/// ids; kafka-protocol 0.18's request schemas stop at v9 although `ApiKey::valid_versions`
/// says v10). InitProducerId's request schema stops at v5 (v6 is KIP-939's two-phase commit,
/// which Kafka 4.4 does not advertise either). Raising those needs a newer kafka-protocol.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    // Inter-broker (the transaction coordinator's), advertised on client listeners as Kafka
    // does; v0 was removed in Kafka 4.0.
    (ApiKey::WriteTxnMarkers, 1, 1),
    // Transactions (KIP-98, KIP-447, KIP-890 part 1, KIP-664), as Kafka 4.4 advertises them,
    // except EndTxn v5: it belongs to transaction.version 2 (KIP-890 part 2), which Chronik
    // does not serve (nor advertise as a feature), so clients stay on version 1 transactions.
    // AddPartitionsToTxn v4+ is the brokers' batched form (verify_only).
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
];

/// The versions the codec can decode a request and encode an answer in. `ApiKey::
/// valid_versions` is not that: for OffsetCommit and OffsetFetch it says v10 (the response
/// schemas) while kafka-protocol 0.18's request schemas stop at v9.
fn codec_range(key: ApiKey) -> VersionRange {
    fn both<R: Request>() -> VersionRange {
        R::VERSIONS.intersect(&<R::Response as Message>::VERSIONS)
    }
    match key {
        ApiKey::OffsetCommit => both::<OffsetCommitRequest>(),
        ApiKey::OffsetFetch => both::<OffsetFetchRequest>(),
        ApiKey::InitProducerId => both::<InitProducerIdRequest>(),
        // Request and response schemas agree for every other API Chronik serves
        // (chronik-server's every_version test sends every advertised version of each).
        _ => key.valid_versions(),
    }
}

/// The supported range for `key`, or `None` if Chronik does not serve it.
pub fn supported(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| {
            // Never claim more than the codec can decode.
            codec_range(key).intersect(&VersionRange { min, max })
        })
}

/// Every API Chronik serves with its supported range.
pub fn all() -> impl Iterator<Item = (ApiKey, VersionRange)> {
    SUPPORTED
        .iter()
        .filter_map(|&(key, _, _)| supported(key).map(|r| (key, r)))
}

/// The body of an ApiVersions answer with `error_code` and the full table.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .filter_map(|&(key, _, _)| {
            supported(key).map(|r| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(r.min)
                    .with_max_version(r.max)
            })
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fits_the_codec() {
        for &(key, min, max) in SUPPORTED {
            let r = supported(key).unwrap();
            assert_eq!((r.min, r.max), (min, max), "{key:?} outside codec range");
        }
        assert!(supported(ApiKey::ConsumerGroupHeartbeat).is_none());
    }
}
