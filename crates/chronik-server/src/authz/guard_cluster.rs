//! The guard for consumer groups, producer ids and cluster administration (see
//! [`super::guard`]).

use chronik_auth::acl::{Operation, ResourceType as Rt, CLUSTER_NAME};
use kafka_protocol::messages::*;

use super::guard::{Guarded, Post, CLUSTER_DENIED, GROUP_DENIED, TRANSACTIONAL_ID_DENIED};
use super::{supported, Authorizer, Resource, NOT_REQUESTED};

fn group_ok(az: &Authorizer, op: Operation, group: &str) -> bool {
    az.allows(op, Rt::Group, group)
}

pub fn guard(
    az: &Authorizer,
    body: RequestKind,
    cluster_ok: &dyn Fn(Operation) -> bool,
) -> Guarded {
    use Operation as O;
    let answer = Guarded::Answer;
    match body {
        RequestKind::JoinGroup(r) if !group_ok(az, O::Read, r.group_id.0.as_str()) => answer(
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::SyncGroup(r) if !group_ok(az, O::Read, r.group_id.0.as_str()) => answer(
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::Heartbeat(r) if !group_ok(az, O::Read, r.group_id.0.as_str()) => answer(
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::LeaveGroup(r) if !group_ok(az, O::Read, r.group_id.0.as_str()) => answer(
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::OffsetCommit(r) => offset_commit(az, r),
        RequestKind::OffsetFetch(r) => offset_fetch(az, r),
        RequestKind::OffsetDelete(r) if !group_ok(az, O::Delete, r.group_id.0.as_str()) => {
            answer(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::OffsetDelete(r) => offset_delete(az, r),
        RequestKind::FindCoordinator(r) => find_coordinator(az, r),
        RequestKind::DescribeGroups(r) => describe_groups(az, r),
        RequestKind::ListGroups(r) => {
            // DESCRIBE on the cluster lists every group; otherwise the groups it may describe.
            if az.check(O::Describe, Rt::Cluster, CLUSTER_NAME) {
                return Guarded::Serve(RequestKind::ListGroups(r), None);
            }
            let az = az.clone();
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::ListGroups(l) = resp {
                    l.groups
                        .retain(|g| az.check(O::Describe, Rt::Group, g.group_id.0.as_str()));
                }
            });
            Guarded::Serve(RequestKind::ListGroups(r), Some(post))
        }
        RequestKind::DeleteGroups(mut r) => {
            let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.groups_names)
                .into_iter()
                .partition(|g| group_ok(az, O::Delete, g.0.as_str()));
            r.groups_names = keep;
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::DeleteGroups(d) = resp {
                    use delete_groups_response::DeletableGroupResult;
                    for g in denied {
                        d.results.push(
                            DeletableGroupResult::default()
                                .with_group_id(g)
                                .with_error_code(GROUP_DENIED),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::DeleteGroups(r), Some(post))
        }
        RequestKind::InitProducerId(r) => {
            let ok = match &r.transactional_id {
                Some(id) => az.allows(O::Write, Rt::TransactionalId, id.0.as_str()),
                // Kafka 3+: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
                None => {
                    az.check(O::IdempotentWrite, Rt::Cluster, CLUSTER_NAME)
                        || az.allows_any(O::Write, Rt::Topic)
                }
            };
            if ok {
                return Guarded::Serve(RequestKind::InitProducerId(r), None);
            }
            let code = if r.transactional_id.is_some() {
                TRANSACTIONAL_ID_DENIED
            } else {
                CLUSTER_DENIED
            };
            answer(ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ))
        }
        RequestKind::DescribeCluster(r) => {
            let az = az.clone();
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::DescribeCluster(d) = resp {
                    if d.cluster_authorized_operations != NOT_REQUESTED {
                        d.cluster_authorized_operations =
                            az.operations(Rt::Cluster, CLUSTER_NAME, supported(Resource::Cluster));
                    }
                }
            });
            Guarded::Serve(RequestKind::DescribeCluster(r), Some(post))
        }
        other => cluster_admin(other, cluster_ok),
    }
}

/// Cluster administration: ALTER (changes) or DESCRIBE (listings) on the cluster, refused
/// whole with CLUSTER_AUTHORIZATION_FAILED.
fn cluster_admin(body: RequestKind, cluster_ok: &dyn Fn(Operation) -> bool) -> Guarded {
    use Operation as O;
    let denied = |op| !cluster_ok(op);
    let refused = match &body {
        RequestKind::ElectLeaders(_) if denied(O::Alter) => Some(ResponseKind::ElectLeaders(
            ElectLeadersResponse::default().with_error_code(CLUSTER_DENIED),
        )),
        RequestKind::AlterPartitionReassignments(_) if denied(O::Alter) => {
            Some(ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::ListPartitionReassignments(_) if denied(O::Describe) => {
            Some(ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::DescribeLogDirs(_) if denied(O::Describe) => {
            Some(ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::CreateAcls(r) if denied(O::Alter) => {
            let results = r.creations.iter().map(|_| {
                create_acls_response::AclCreationResult::default().with_error_code(CLUSTER_DENIED)
            });
            Some(ResponseKind::CreateAcls(
                CreateAclsResponse::default().with_results(results.collect()),
            ))
        }
        RequestKind::DeleteAcls(r) if denied(O::Alter) => {
            let results = r.filters.iter().map(|_| {
                delete_acls_response::DeleteAclsFilterResult::default()
                    .with_error_code(CLUSTER_DENIED)
            });
            Some(ResponseKind::DeleteAcls(
                DeleteAclsResponse::default().with_filter_results(results.collect()),
            ))
        }
        RequestKind::DescribeAcls(_) if denied(O::Describe) => Some(ResponseKind::DescribeAcls(
            DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED),
        )),
        RequestKind::AlterUserScramCredentials(r) if denied(O::Alter) => {
            let users = r
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(r.upsertions.iter().map(|u| u.name.clone()));
            let mut seen = std::collections::HashSet::new();
            let results = users.filter(|u| seen.insert(u.clone())).map(|u| {
                alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                    .with_user(u)
                    .with_error_code(CLUSTER_DENIED)
            });
            Some(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(results.collect()),
            ))
        }
        // Kafka: CLUSTER_ACTION on the cluster, every partition answered with the error.
        RequestKind::WriteTxnMarkers(r) if denied(O::ClusterAction) => {
            Some(ResponseKind::WriteTxnMarkers(write_txn_markers_denied(r)))
        }
        RequestKind::DescribeUserScramCredentials(_) if denied(O::Describe) => {
            Some(ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        _ => None,
    };
    match refused {
        Some(resp) => Guarded::Answer(resp),
        None => Guarded::Serve(body, None),
    }
}

/// Kafka's WriteTxnMarkersRequest.getErrorResponse with CLUSTER_AUTHORIZATION_FAILED.
fn write_txn_markers_denied(r: &WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    use write_txn_markers_response::*;
    let markers = r.markers.iter().map(|m| {
        let topics = m.topics.iter().map(|t| {
            let parts = t.partition_indexes.iter().map(|&i| {
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(i)
                    .with_error_code(CLUSTER_DENIED)
            });
            WritableTxnMarkerTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(parts.collect())
        });
        WritableTxnMarkerResult::default()
            .with_producer_id(m.producer_id)
            .with_topics(topics.collect())
    });
    WriteTxnMarkersResponse::default().with_markers(markers.collect())
}

fn offset_commit(az: &Authorizer, mut r: OffsetCommitRequest) -> Guarded {
    let group_denied = !group_ok(az, Operation::Read, r.group_id.0.as_str());
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| !group_denied && az.allows(Operation::Read, Rt::Topic, t.name.0.as_str()));
    r.topics = keep;
    let code = if group_denied {
        GROUP_DENIED
    } else {
        super::guard::TOPIC_DENIED
    };
    let post: Post = Box::new(move |resp| {
        if let ResponseKind::OffsetCommit(o) = resp {
            use offset_commit_response::*;
            for t in denied {
                let parts = t.partitions.iter().map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                });
                o.topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partitions(parts.collect()),
                );
            }
        }
    });
    Guarded::Serve(RequestKind::OffsetCommit(r), Some(post))
}

/// OffsetDelete with DELETE on the group: each topic also needs READ (Kafka's rule).
fn offset_delete(az: &Authorizer, mut r: OffsetDeleteRequest) -> Guarded {
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| az.allows(Operation::Read, Rt::Topic, t.name.0.as_str()));
    r.topics = keep;
    let post: Post = Box::new(move |resp| {
        if let ResponseKind::OffsetDelete(o) = resp {
            use offset_delete_response::*;
            for t in denied {
                let parts = t.partitions.iter().map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(super::guard::TOPIC_DENIED)
                });
                o.topics.push(
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(parts.collect()),
                );
            }
        }
    });
    Guarded::Serve(RequestKind::OffsetDelete(r), Some(post))
}

fn offset_fetch(az: &Authorizer, mut r: OffsetFetchRequest) -> Guarded {
    // v0-7 name one group at the top; v8+ a list of groups.
    let mut denied_groups = Vec::new();
    if r.groups.is_empty() {
        if !group_ok(az, Operation::Describe, r.group_id.0.as_str()) {
            return Guarded::Answer(ResponseKind::OffsetFetch(
                OffsetFetchResponse::default().with_error_code(GROUP_DENIED),
            ));
        }
    } else {
        let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.groups)
            .into_iter()
            .partition(|g| group_ok(az, Operation::Describe, g.group_id.0.as_str()));
        r.groups = keep;
        denied_groups = denied;
    }
    // Topics the principal may not DESCRIBE: left out of an all-topics answer, refused
    // (TOPIC_AUTHORIZATION_FAILED) when named, as Kafka does.
    let all_topics = r.topics.is_none();
    let named_groups: std::collections::HashSet<String> = r
        .groups
        .iter()
        .filter(|g| g.topics.is_some())
        .map(|g| g.group_id.0.to_string())
        .collect();
    let az = az.clone();
    let visible = move |name: &str| az.check(Operation::Describe, Rt::Topic, name);
    let post: Post = Box::new(move |resp| {
        let ResponseKind::OffsetFetch(o) = resp else {
            return;
        };
        if all_topics {
            o.topics.retain(|t| visible(t.name.0.as_str()));
        }
        for t in o.topics.iter_mut().filter(|t| !visible(t.name.0.as_str())) {
            for p in t.partitions.iter_mut() {
                p.error_code = super::guard::TOPIC_DENIED;
                p.committed_offset = -1;
                p.metadata = None;
            }
        }
        for g in o.groups.iter_mut() {
            if !named_groups.contains(g.group_id.0.as_str()) {
                g.topics.retain(|t| visible(t.name.0.as_str()));
            }
            for t in g.topics.iter_mut().filter(|t| !visible(t.name.0.as_str())) {
                for p in t.partitions.iter_mut() {
                    p.error_code = super::guard::TOPIC_DENIED;
                    p.committed_offset = -1;
                    p.metadata = None;
                }
            }
        }
        for g in denied_groups {
            o.groups.push(
                offset_fetch_response::OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(GROUP_DENIED),
            );
        }
    });
    Guarded::Serve(RequestKind::OffsetFetch(r), Some(post))
}

fn find_coordinator(az: &Authorizer, mut r: FindCoordinatorRequest) -> Guarded {
    let allowed = |key: &str| match r.key_type {
        1 => az.allows(Operation::Describe, Rt::TransactionalId, key),
        _ => group_ok(az, Operation::Describe, key),
    };
    let code = if r.key_type == 1 {
        TRANSACTIONAL_ID_DENIED
    } else {
        GROUP_DENIED
    };
    if r.coordinator_keys.is_empty() {
        // v0-3: one key.
        if allowed(r.key.as_str()) {
            return Guarded::Serve(RequestKind::FindCoordinator(r), None);
        }
        return Guarded::Answer(ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        ));
    }
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.coordinator_keys)
        .into_iter()
        .partition(|k| allowed(k.as_str()));
    r.coordinator_keys = keep;
    let post: Post = Box::new(move |resp| {
        if let ResponseKind::FindCoordinator(f) = resp {
            for key in denied {
                f.coordinators.push(
                    find_coordinator_response::Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code),
                );
            }
        }
    });
    Guarded::Serve(RequestKind::FindCoordinator(r), Some(post))
}

fn describe_groups(az: &Authorizer, mut r: DescribeGroupsRequest) -> Guarded {
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.groups)
        .into_iter()
        .partition(|g| group_ok(az, Operation::Describe, g.0.as_str()));
    r.groups = keep;
    let az = az.clone();
    let post: Post = Box::new(move |resp| {
        if let ResponseKind::DescribeGroups(d) = resp {
            for g in d.groups.iter_mut() {
                if g.authorized_operations != NOT_REQUESTED {
                    g.authorized_operations =
                        az.operations(Rt::Group, g.group_id.0.as_str(), supported(Resource::Group));
                }
            }
            for g in denied {
                d.groups.push(
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED)
                        .with_authorized_operations(NOT_REQUESTED),
                );
            }
        }
    });
    Guarded::Serve(RequestKind::DescribeGroups(r), Some(post))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chronik_auth::acl::{AclBinding, PatternType, Permission};
    use chronik_metadata::MetadataState;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn markers() -> RequestKind {
        let topic = write_txn_markers_request::WritableTxnMarkerTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_indexes(vec![0, 1]);
        RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(7))
                .with_topics(vec![topic]),
        ]))
    }

    fn guard_as(state: MetadataState) -> Guarded {
        let az = Authorizer::for_test(Arc::new(state), "User:broker");
        let cluster_ok = |op| az.allows(op, Rt::Cluster, CLUSTER_NAME);
        guard(&az, markers(), &cluster_ok)
    }

    /// Kafka: WriteTxnMarkers needs CLUSTER_ACTION on the cluster; every partition of a
    /// refused request answers CLUSTER_AUTHORIZATION_FAILED.
    #[test]
    fn write_txn_markers_needs_cluster_action() {
        let mut state = MetadataState::new("c".into());
        let Guarded::Answer(ResponseKind::WriteTxnMarkers(r)) = guard_as(state.clone()) else {
            panic!("not refused without an ACL");
        };
        let codes: Vec<i16> = r.markers[0].topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![CLUSTER_DENIED, CLUSTER_DENIED]);
        assert_eq!(r.markers[0].producer_id, ProducerId(7));
        let grant = |op| AclBinding {
            resource_type: Rt::Cluster,
            resource_name: CLUSTER_NAME.into(),
            pattern_type: PatternType::Literal,
            principal: "User:broker".into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        };
        // ALTER on the cluster is not CLUSTER_ACTION.
        state.acls.insert(grant(Operation::Alter));
        assert!(matches!(guard_as(state.clone()), Guarded::Answer(_)));
        state.acls.insert(grant(Operation::ClusterAction));
        assert!(matches!(guard_as(state), Guarded::Serve(_, None)));
    }
}
