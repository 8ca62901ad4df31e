//! One minimal valid request (or a few) per API and version, for `every_version.rs`. Each
//! names the topics that test creates first: "t" (1 partition, 3 records produced by the
//! Produce requests) and "grow" (CreatePartitions grows it by one per version).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn batch(n: i64) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // kafka-protocol's encoder starts a new batch whenever offset - sequence changes;
            // without a producer id the broker ignores the sequence.
            sequence: i as i32,
            // The second record carries the batch's largest timestamp (ListOffsets -3).
            timestamp: if i == 1 { 5_000 } else { 1_000 + i },
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// The ListOffsets specs asked, one request each, in this order.
pub const LIST_OFFSETS_SPECS: [i64; 8] = [-1, -2, 0, 1_001, i64::MAX, -3, -4, -5];

pub fn requests(key: ApiKey, v: i16, topic_id: uuid::Uuid) -> Vec<RequestKind> {
    use ApiKey::*;
    match key {
        ApiVersions | Metadata | Produce | Fetch | ListOffsets => data(key, v, topic_id),
        CreateTopics
        | DeleteTopics
        | CreatePartitions
        | DescribeConfigs
        | DescribeCluster
        | DescribeTopicPartitions
        | InitProducerId => topics(key, v),
        FindCoordinator | OffsetCommit | OffsetFetch => offsets(key, v),
        JoinGroup | SyncGroup | Heartbeat | LeaveGroup | ListGroups | DescribeGroups
        | DeleteGroups | OffsetDelete => membership(key, v),
        DescribeUserScramCredentials
        | AlterUserScramCredentials
        | SaslHandshake
        | SaslAuthenticate
        | CreateAcls
        | DescribeAcls
        | DeleteAcls => security(key),
        AddPartitionsToTxn | AddOffsetsToTxn | EndTxn | TxnOffsetCommit | DescribeTransactions
        | ListTransactions => transactions(key, v),
        _ => other(key),
    }
}

/// ApiVersions, Metadata and the produce/consume path.
fn data(key: ApiKey, v: i16, topic_id: uuid::Uuid) -> Vec<RequestKind> {
    match key {
        ApiKey::ApiVersions => vec![RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("every-version"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
        )],
        ApiKey::Metadata => {
            let some = MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("t"))),
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(name(&format!("auto-{v}")))),
            ]));
            let some = if v >= 4 {
                some.with_allow_auto_topic_creation(true)
            } else {
                some
            };
            let some = if v >= 8 {
                some.with_include_topic_authorized_operations(true)
                    .with_include_cluster_authorized_operations(v <= 10)
            } else {
                some
            };
            let all =
                MetadataRequest::default().with_topics(if v == 0 { Some(vec![]) } else { None });
            vec![RequestKind::Metadata(some), RequestKind::Metadata(all)]
        }
        ApiKey::Produce => vec![RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![if v >= 13 {
                    produce_request::TopicProduceData::default().with_topic_id(topic_id)
                } else {
                    produce_request::TopicProduceData::default().with_name(name("t"))
                }
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(3))),
                    produce_request::PartitionProduceData::default()
                        .with_index(9)
                        .with_records(Some(batch(1))),
                ])]),
        )],
        // One partition per request: Kafka answers a partition asked twice only once.
        ApiKey::Fetch => [0, 1 << 40]
            .iter()
            .map(|&offset| {
                let topic = fetch_request::FetchTopic::default().with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]);
                let topic = if v >= 13 {
                    topic.with_topic_id(topic_id)
                } else {
                    topic.with_topic(name("t"))
                };
                RequestKind::Fetch(
                    FetchRequest::default()
                        .with_max_wait_ms(0)
                        .with_max_bytes(1 << 20)
                        .with_topics(vec![topic]),
                )
            })
            .collect(),
        // One spec per request (Kafka refuses a partition asked twice with INVALID_REQUEST):
        // -3 max timestamp from v7, -4 earliest local from v8, -5 latest tiered from v9.
        ApiKey::ListOffsets => LIST_OFFSETS_SPECS[..(5 + (v - 6).clamp(0, 3)) as usize]
            .iter()
            .map(|&ts| {
                RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(ts),
                        ]),
                ]))
            })
            .collect(),
        other => panic!("no request built for advertised API {other:?}: add one here"),
    }
}

/// Topic and cluster administration.
fn topics(key: ApiKey, v: i16) -> Vec<RequestKind> {
    match key {
        ApiKey::CreateTopics => vec![RequestKind::CreateTopics(
            CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name(&format!("ct-{v}")))
                    .with_num_partitions(2)
                    .with_replication_factor(1)
                    .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("1000")))]),
                create_topics_request::CreatableTopic::default()
                    .with_name(name("bad name"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
        )],
        ApiKey::DeleteTopics => {
            let req = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(name(&format!("auto-{v}")))),
                    delete_topics_request::DeleteTopicState::default()
                        .with_topic_id(uuid::Uuid::from_u128(1)),
                ])
            } else {
                DeleteTopicsRequest::default()
                    .with_topic_names(vec![name(&format!("auto-{v}")), name("missing")])
            };
            vec![RequestKind::DeleteTopics(req)]
        }
        ApiKey::CreatePartitions => vec![RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name("grow"))
                        .with_count(2 + v as i32)
                        .with_assignments(None),
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name("missing"))
                        .with_count(3)
                        .with_assignments(None),
                ]),
        )],
        ApiKey::DescribeConfigs => vec![RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("t")),
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(StrBytes::from_static_str("1")),
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("missing")),
                ]),
        )],
        ApiKey::DescribeCluster => vec![
            RequestKind::DescribeCluster(
                DescribeClusterRequest::default()
                    .with_include_cluster_authorized_operations(true)
                    .with_include_fenced_brokers(v >= 2),
            ),
            RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ],
        ApiKey::DescribeTopicPartitions => {
            let topic = |n: &str| {
                describe_topic_partitions_request::TopicRequest::default().with_name(name(n))
            };
            let cursor = |n: &str, p: i32| {
                Some(
                    describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(name(n))
                        .with_partition_index(p),
                )
            };
            let req = DescribeTopicPartitionsRequest::default;
            vec![
                RequestKind::DescribeTopicPartitions(req().with_topics(vec![
                    topic("t"),
                    topic("missing"),
                    topic("bad name"),
                ])),
                // "grow" has more partitions than the limit: answered up to it, with a cursor.
                RequestKind::DescribeTopicPartitions(
                    req()
                        .with_topics(vec![topic("grow")])
                        .with_response_partition_limit(2),
                ),
                RequestKind::DescribeTopicPartitions(
                    req()
                        .with_topics(vec![topic("grow")])
                        .with_response_partition_limit(2)
                        .with_cursor(cursor("grow", 2)),
                ),
                // The cursor's topic must be one of those asked for.
                RequestKind::DescribeTopicPartitions(
                    req()
                        .with_topics(vec![topic("t")])
                        .with_cursor(cursor("grow", 0)),
                ),
                RequestKind::DescribeTopicPartitions(req()),
            ]
        }
        ApiKey::InitProducerId => vec![RequestKind::InitProducerId(
            InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
        )],
        other => panic!("no request built for advertised API {other:?}: add one here"),
    }
}

/// Coordinators and committed offsets.
fn offsets(key: ApiKey, v: i16) -> Vec<RequestKind> {
    match key {
        ApiKey::FindCoordinator => {
            let req = if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![
                    StrBytes::from_static_str("g"),
                    StrBytes::from_static_str(""),
                ])
            } else {
                FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
            };
            let share = FindCoordinatorRequest::default()
                .with_key_type(2)
                .with_coordinator_keys(vec![StrBytes::from_static_str("sg")]);
            let mut reqs = if v >= 6 {
                vec![RequestKind::FindCoordinator(share)]
            } else {
                vec![]
            };
            reqs.extend([
                RequestKind::FindCoordinator(req),
                RequestKind::FindCoordinator(if v >= 4 {
                    FindCoordinatorRequest::default()
                        .with_coordinator_keys(vec![StrBytes::from_static_str("tx")])
                        .with_key_type(1)
                } else {
                    FindCoordinatorRequest::default()
                        .with_key(StrBytes::from_static_str("tx"))
                        .with_key_type(if v >= 1 { 1 } else { 0 })
                }),
            ]);
            reqs
        }
        ApiKey::OffsetCommit => vec![RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1 + v as i64)
                                .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                        ]),
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name("missing"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        )],
        ApiKey::OffsetFetch => {
            let req = if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("g")))
                        .with_topics(None),
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("other")))
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(name("t"))
                                .with_partition_indexes(vec![0]),
                        ])),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0, 5]),
                    ]))
            };
            vec![RequestKind::OffsetFetch(req)]
        }
        other => panic!("no request built for advertised API {other:?}: add one here"),
    }
}

/// Classic group membership and group administration.
fn membership(key: ApiKey, v: i16) -> Vec<RequestKind> {
    match key {
        ApiKey::JoinGroup => {
            let join = |member: &'static str, session_ms: i32| {
                JoinGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                    .with_member_id(StrBytes::from_static_str(member))
                    .with_session_timeout_ms(session_ms)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                    )
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"meta"))])
            };
            // Answered at once: a session timeout out of range, an unknown member, and (v4+)
            // the member-id-required round.
            let mut reqs = vec![
                RequestKind::JoinGroup(join("", 10)),
                RequestKind::JoinGroup(join("ghost", 10_000)),
            ];
            if v >= 4 {
                reqs.push(RequestKind::JoinGroup(join("", 10_000)));
            }
            reqs
        }
        ApiKey::SyncGroup => vec![RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_member_id(StrBytes::from_static_str("ghost"))
                .with_generation_id(1),
        )],
        ApiKey::Heartbeat => vec![RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_member_id(StrBytes::from_static_str("ghost"))
                .with_generation_id(1),
        )],
        ApiKey::LeaveGroup => vec![RequestKind::LeaveGroup(if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(StrBytes::from_static_str("ghost"))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_member_id(StrBytes::from_static_str("ghost"))
        })],
        ApiKey::ListGroups => vec![
            RequestKind::ListGroups(ListGroupsRequest::default()),
            RequestKind::ListGroups(ListGroupsRequest::default().with_types_filter(if v >= 5 {
                vec![StrBytes::from_static_str("Classic")]
            } else {
                vec![]
            })),
        ],
        ApiKey::DescribeGroups => vec![RequestKind::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_include_authorized_operations(v >= 3)
                .with_groups(vec![
                    GroupId(StrBytes::from_static_str("g")),
                    GroupId(StrBytes::from_static_str("never")),
                ]),
        )],
        ApiKey::DeleteGroups => vec![RequestKind::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("never"))]),
        )],
        ApiKey::OffsetDelete => vec![RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        )],
        other => panic!("no request built for advertised API {other:?}: add one here"),
    }
}

/// Leader epochs, configs, elections and reassignments.
fn other(key: ApiKey) -> Vec<RequestKind> {
    match key {
        ApiKey::OffsetForLeaderEpoch => vec![RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(name("t"))
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                        ]),
                ]),
        )],
        ApiKey::AlterConfigs => vec![RequestKind::AlterConfigs(
            AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("3600000")))]),
            ]),
        )],
        ApiKey::IncrementalAlterConfigs => vec![RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("segment.ms"))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_static_str("600000"))),
                    ]),
            ]),
        )],
        ApiKey::ElectLeaders => vec![RequestKind::ElectLeaders(
            ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![0]),
            ])),
        )],
        ApiKey::AlterPartitionReassignments => vec![RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default().with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(9)])),
                    ]),
            ]),
        )],
        ApiKey::ListPartitionReassignments => vec![RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default(),
        )],
        ApiKey::DeleteRecords => vec![RequestKind::DeleteRecords(
            DeleteRecordsRequest::default()
                .with_timeout_ms(1000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(-1),
                    ])]),
        )],
        ApiKey::DescribeLogDirs => vec![
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(
                vec![describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![0])],
            ))),
        ],
        ApiKey::DescribeProducers => vec![RequestKind::DescribeProducers(
            DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 7]),
            ]),
        )],
        // An abort marker for a producer that never wrote: written to "grow" (whose data
        // nothing checks), and a partition that does not exist.
        ApiKey::WriteTxnMarkers => vec![RequestKind::WriteTxnMarkers(
            WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(4242))
                    .with_producer_epoch(0)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(name("grow"))
                            .with_partition_indexes(vec![0, 99]),
                    ]),
            ]),
        )],
        other => panic!("no request built for advertised API {other:?}: add one here"),
    }
}

/// SCRAM users, SASL and ACLs.
fn security(key: ApiKey) -> Vec<RequestKind> {
    match key {
        ApiKey::DescribeUserScramCredentials => vec![RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default(),
        )],
        ApiKey::AlterUserScramCredentials => vec![RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                    .with_name(StrBytes::from_static_str("u"))
                    .with_mechanism(1)
                    .with_iterations(4096)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from(vec![7u8; 32])),
            ]),
        )],
        // A PLAINTEXT listener: both answer ILLEGAL_SASL_STATE.
        ApiKey::SaslHandshake => vec![RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )],
        ApiKey::SaslAuthenticate => vec![RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default(),
        )],
        // No authorizer on the test broker: each answers SECURITY_DISABLED.
        ApiKey::CreateAcls => vec![RequestKind::CreateAcls(
            CreateAclsRequest::default().with_creations(vec![
                create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_resource_pattern_type(3)
                    .with_principal(StrBytes::from_static_str("User:a"))
                    .with_host(StrBytes::from_static_str("*"))
                    .with_operation(3)
                    .with_permission_type(3),
            ]),
        )],
        ApiKey::DescribeAcls => vec![RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        )],
        ApiKey::DeleteAcls => vec![RequestKind::DeleteAcls(
            DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
        )],
        other => panic!("no request built for advertised API {other:?}: add one here"),
    }
}

/// The transaction APIs, for a transactional id that never started ("ev-tx", producer 4242):
/// the coordinator answers with an error (which one depends on whether the transaction state
/// topic exists yet), at every version, and the answers must decode.
fn transactions(key: ApiKey, v: i16) -> Vec<RequestKind> {
    let tx = || TransactionalId(StrBytes::from_static_str("ev-tx"));
    match key {
        ApiKey::AddPartitionsToTxn if v >= 4 => vec![RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default().with_transactions(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(tx())
                    .with_producer_id(ProducerId(4242))
                    .with_verify_only(true)
                    .with_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(name("t"))
                            .with_partitions(vec![0]),
                    ]),
            ]),
        )],
        ApiKey::AddPartitionsToTxn => vec![RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tx())
                .with_v3_and_below_producer_id(ProducerId(4242))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![0]),
                ]),
        )],
        ApiKey::AddOffsetsToTxn => vec![RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(tx())
                .with_producer_id(ProducerId(4242))
                .with_group_id(GroupId(StrBytes::from_static_str("g"))),
        )],
        ApiKey::EndTxn => vec![RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(tx())
                .with_producer_id(ProducerId(4242))
                .with_committed(true),
        )],
        ApiKey::TxnOffsetCommit => vec![RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(tx())
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_producer_id(ProducerId(4242))
                .with_generation_id(-1)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_committed_offset(1),
                        ]),
                ]),
        )],
        ApiKey::DescribeTransactions => vec![RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![tx()]),
        )],
        ApiKey::ListTransactions => vec![RequestKind::ListTransactions(
            ListTransactionsRequest::default(),
        )],
        other => panic!("not a transaction API: {other:?}"),
    }
}
