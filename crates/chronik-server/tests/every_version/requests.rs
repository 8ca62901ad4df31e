//! Every advertised version of every API, dispatched against a real broker (real WAL on a
//! temp dir) and encoded: an answer that cannot be encoded at some version closes the
//! client's connection, so each (API, version) pair is exercised here. Each response is
//! also decoded back to check the header and body line up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chronik_protocol::{encode_response, versions, Request};
use chronik_server::broker::{Broker, Layout};
use chronik_server::config::{BrokerConfig, ServerArgs};
use chronik_server::handlers::{dispatch, Reply};
use chronik_server::shutdown::Shutdown;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn name(s: &str) -> TopicName {
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
            sequence: -1,
            timestamp: 1_000 + i,
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

fn requests(key: ApiKey, v: i16, topic_id: uuid::Uuid) -> Vec<RequestKind> {
    match key {
        ApiKey::ApiVersions => vec![RequestKind::ApiVersions(ApiVersionsRequest::default())],
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
            let all =
                MetadataRequest::default().with_topics(if v == 0 { Some(vec![]) } else { None });
            vec![RequestKind::Metadata(some), RequestKind::Metadata(all)]
        }
        ApiKey::Produce => vec![RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(name("t"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(3))),
                        produce_request::PartitionProduceData::default()
                            .with_index(9)
                            .with_records(Some(batch(1))),
                    ])]),
        )],
        ApiKey::Fetch => {
            let topic = fetch_request::FetchTopic::default().with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20),
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(1 << 40)
                    .with_partition_max_bytes(1 << 20),
            ]);
            let topic = if v >= 13 {
                topic.with_topic_id(topic_id)
            } else {
                topic.with_topic(name("t"))
            };
            vec![RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![topic]),
            )]
        }
        ApiKey::ListOffsets => vec![RequestKind::ListOffsets(
            ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(
                        [-1i64, -2, 0, 1_001, i64::MAX]
                            .iter()
                            .map(|&ts| {
                                list_offsets_request::ListOffsetsPartition::default()
                                    .with_partition_index(0)
                                    .with_timestamp(ts)
                            })
                            .collect(),
                    ),
            ]),
        )],
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
            CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name("grow"))
                    .with_count(2 + v as i32),
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name("missing"))
                    .with_count(3),
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
        ApiKey::DescribeCluster => vec![RequestKind::DescribeCluster(
            DescribeClusterRequest::default(),
        )],
        ApiKey::InitProducerId => vec![RequestKind::InitProducerId(
            InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
        )],
        ApiKey::FindCoordinator => {
            let req = if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![
                    StrBytes::from_static_str("g"),
                    StrBytes::from_static_str(""),
                ])
            } else {
                FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
            };
            vec![
                RequestKind::FindCoordinator(req),
                RequestKind::FindCoordinator(
                    FindCoordinatorRequest::default()
                        .with_key(StrBytes::from_static_str("tx"))
                        .with_key_type(if v >= 1 { 1 } else { 0 }),
                ),
            ]
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
        ApiKey::ListGroups => vec![RequestKind::ListGroups(ListGroupsRequest::default())],
        ApiKey::DescribeGroups => vec![RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![
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
        other => panic!("no request built for advertised API {other:?}: add one here"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_answers_and_encodes() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::resolve(ServerArgs {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let broker: Arc<Broker> = Broker::start(
        config,
        SocketAddr::from(([127, 0, 0, 1], 9092)),
        None,
        Shutdown::new(),
        chronik_server::startup::StartupPhase::default(),
    )
    .await
    .unwrap();
    let t = broker
        .create_topic(
            "t",
            Layout::Counts {
                partitions: 1,
                replication_factor: 1,
            },
            BTreeMap::new(),
            false,
        )
        .await
        .unwrap();
    broker
        .create_topic(
            "grow",
            Layout::Counts {
                partitions: 1,
                replication_factor: 1,
            },
            BTreeMap::new(),
            false,
        )
        .await
        .unwrap();

    let mut checked = 0;
    for (key, range) in versions::all() {
        for v in range.min..=range.max {
            for body in requests(key, v, t.id) {
                let req = Request {
                    api_key: key,
                    version: v,
                    header: RequestHeader::default()
                        .with_request_api_key(key as i16)
                        .with_request_api_version(v),
                    body,
                };
                let resp = match dispatch(&broker, req, "/127.0.0.1").await {
                    Reply::None => panic!("{key:?} v{v}: no reply"),
                    Reply::Now(r) => *r,
                    Reply::Later(f) => f.await,
                };
                let frame = encode_response(key, v, 7, &resp).unwrap_or_else(|e| panic!("{e}"));
                let mut body = frame.slice(4..);
                let header =
                    ResponseHeader::decode(&mut body, key.response_header_version(v)).unwrap();
                assert_eq!(header.correlation_id, 7);
                ResponseKind::decode(key, &mut body, v)
                    .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} (API, version) pairs checked");
    broker.close().await;
}
