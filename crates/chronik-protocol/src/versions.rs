//! The API versions Chronik implements: the one table ApiVersions advertises and the
//! request decoder enforces. Advertise only what the handlers really implement.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

/// (API key, min, max) for every API the broker serves.
///
/// Produce stops at v11 (v12+ carry transaction-v2 semantics and topic ids), Fetch at v16
/// (v17+ add KRaft replica-directory fields), ListOffsets at v6 (v7+ add the max-timestamp
/// and tiered-storage specs), Metadata at v12. FindCoordinator stops at v4, OffsetCommit at
/// v8 and OffsetFetch at v8: later versions belong to the new consumer protocol (KIP-848).
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
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
];

/// The supported range for `key`, or `None` if Chronik does not serve it.
pub fn supported(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| {
            // Never claim more than the codec can decode.
            key.valid_versions().intersect(&VersionRange { min, max })
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
        assert!(supported(ApiKey::EndTxn).is_none());
    }
}
