//! What the answers to `requests.rs` must say: never UNSUPPORTED_VERSION, and for each API
//! the error codes Kafka 4.4 answers to the same requests (confirmed by running the sweep
//! against it), plus the values of the features the newer versions add.

use kafka_protocol::messages::*;

use crate::requests::LIST_OFFSETS_SPECS;

/// Kafka's AclOperation bit fields without an authorizer (topic, cluster, group).
const TOPIC_OPS: i32 = 3576;
const CLUSTER_OPS: i32 = 8096;
const GROUP_OPS: i32 = 3400;
const NOT_REQUESTED: i32 = i32::MIN;

const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REQUEST: i16 = 42;
const SECURITY_DISABLED: i16 = 54;
const ILLEGAL_SASL_STATE: i16 = 34;
const GROUP_ID_NOT_FOUND: i16 = 69;

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

fn topic_name(n: &Option<TopicName>) -> &str {
    n.as_ref().map_or("", |n| n.0.as_str())
}

pub fn check(v: i16, i: usize, resp: &ResponseKind) -> Result<(), String> {
    let text = format!("{resp:?}");
    if text.contains(&format!("error_code: {UNSUPPORTED_VERSION},")) {
        return Err(format!("UNSUPPORTED_VERSION in {text}"));
    }
    match resp {
        ResponseKind::Produce(r) => {
            let parts = &r.responses[0].partition_responses;
            expect("partition 0", parts[0].error_code, NONE)?;
            expect(
                "partition 9",
                parts[1].error_code,
                UNKNOWN_TOPIC_OR_PARTITION,
            )?;
            if v >= 13 {
                expect("topic id echoed", r.responses[0].topic_id.is_nil(), false)?;
            }
        }
        ResponseKind::Fetch(r) => {
            let want = [NONE, OFFSET_OUT_OF_RANGE][i];
            expect("error", r.responses[0].partitions[0].error_code, want)?;
        }
        ResponseKind::ListOffsets(r) => list_offsets(i, &r.topics[0].partitions[0])?,
        ResponseKind::Metadata(r) => metadata(v, i, r)?,
        ResponseKind::DescribeCluster(r) => {
            expect("error", r.error_code, NONE)?;
            let want = if i == 0 { CLUSTER_OPS } else { NOT_REQUESTED };
            expect("cluster ops", r.cluster_authorized_operations, want)?;
        }
        ResponseKind::DescribeTopicPartitions(r) => describe_topic_partitions(i, r)?,
        ResponseKind::AlterUserScramCredentials(r) => {
            expect("upsert", r.results[0].error_code, NONE)?;
        }
        ResponseKind::DescribeUserScramCredentials(r) => expect("error", r.error_code, NONE)?,
        ResponseKind::SaslHandshake(r) => expect("handshake", r.error_code, ILLEGAL_SASL_STATE)?,
        ResponseKind::SaslAuthenticate(r) => {
            expect("authenticate", r.error_code, ILLEGAL_SASL_STATE)?
        }
        ResponseKind::CreateAcls(r) => {
            expect("create", r.results[0].error_code, SECURITY_DISABLED)?
        }
        ResponseKind::DescribeAcls(r) => expect("describe", r.error_code, SECURITY_DISABLED)?,
        ResponseKind::DeleteAcls(r) => {
            expect("delete", r.filter_results[0].error_code, SECURITY_DISABLED)?
        }
        ResponseKind::WriteTxnMarkers(r) => {
            // Kafka answers the partitions in another order than asked: found by index.
            let code = |i: i32| {
                let parts = r.markers[0].topics.iter().flat_map(|t| &t.partitions);
                let mut found = parts.filter(|p| p.partition_index == i);
                found.next().map(|p| p.error_code)
            };
            expect("grow-0", code(0), Some(NONE))?;
            expect("grow-99", code(99), Some(UNKNOWN_TOPIC_OR_PARTITION))?;
        }
        ResponseKind::CreatePartitions(r) => {
            expect("grow", r.results[0].error_code, NONE)?;
            expect(
                "missing",
                r.results[1].error_code,
                UNKNOWN_TOPIC_OR_PARTITION,
            )?;
        }
        ResponseKind::FindCoordinator(r) => find_coordinator(v, i, r)?,
        // Kafka may answer topics and groups in another order than asked: found by name.
        ResponseKind::OffsetCommit(r) => {
            let code = |n: &str| {
                let t = r.topics.iter().find(|t| t.name.0.as_str() == n);
                t.map(|t| t.partitions[0].error_code)
            };
            expect("topic t", code("t"), Some(NONE))?;
            expect("missing", code("missing"), Some(UNKNOWN_TOPIC_OR_PARTITION))?;
        }
        ResponseKind::OffsetFetch(r) if v >= 8 => {
            for g in &r.groups {
                expect("group error", g.error_code, NONE)?;
            }
            let committed = r.groups[0].topics.iter().find(|t| t.name.0.as_str() == "t");
            committed.ok_or("group g's commits to t not listed")?;
            expect(
                "other's t",
                r.groups[1].topics[0].partitions[0].error_code,
                NONE,
            )?;
        }
        ResponseKind::OffsetFetch(r) => {
            expect("error", r.error_code, NONE)?;
            expect("t-0", r.topics[0].partitions[0].error_code, NONE)?;
        }
        ResponseKind::ListGroups(r) => {
            expect("error", r.error_code, NONE)?;
            let g = r.groups.iter().find(|g| g.group_id.0.as_str() == "g");
            expect("group g listed", g.is_some(), true)?;
        }
        ResponseKind::DescribeGroups(r) => {
            let group = |n: &str| r.groups.iter().find(|g| g.group_id.0.as_str() == n);
            let (g, never) = (group("g").ok_or("no g")?, group("never").ok_or("no never")?);
            expect("g", g.error_code, NONE)?;
            let ops = if v >= 3 { GROUP_OPS } else { NOT_REQUESTED };
            expect("g ops", g.authorized_operations, ops)?;
            let missing = if v >= 6 { GROUP_ID_NOT_FOUND } else { NONE };
            expect("unknown group", never.error_code, missing)?;
            expect("unknown group state", never.group_state.as_str(), "Dead")?;
        }
        _ => {}
    }
    Ok(())
}

fn list_offsets(
    i: usize,
    p: &list_offsets_response::ListOffsetsPartitionResponse,
) -> Result<(), String> {
    expect("error", p.error_code, NONE)?;
    match LIST_OFFSETS_SPECS[i] {
        i64::MAX => expect("i64::MAX", p.offset, -1)?,
        // Every Produce batch holds 3 records, the second with the largest timestamp; the
        // first batch holding it is the first one written (base offset 0).
        -3 => expect("max timestamp", (p.offset, p.timestamp), (1, 5_000))?,
        -4 => expect("earliest local", p.offset, 0)?,
        -5 => expect("latest tiered", p.offset, -1)?,
        _ => {}
    }
    Ok(())
}

fn metadata(v: i16, i: usize, r: &MetadataResponse) -> Result<(), String> {
    let t = r.topics.iter().find(|t| topic_name(&t.name) == "t");
    let t = t.ok_or("topic t not answered")?;
    expect("t", t.error_code, NONE)?;
    let asked = i == 0 && v >= 8;
    let ops = if asked { TOPIC_OPS } else { NOT_REQUESTED };
    expect("topic ops", t.topic_authorized_operations, ops)?;
    let cluster = if asked && v <= 10 {
        CLUSTER_OPS
    } else {
        NOT_REQUESTED
    };
    expect("cluster ops", r.cluster_authorized_operations, cluster)?;
    expect("error", r.error_code, NONE)
}

fn describe_topic_partitions(i: usize, r: &DescribeTopicPartitionsResponse) -> Result<(), String> {
    let names: Vec<(&str, i16, usize)> = r
        .topics
        .iter()
        .map(|t| (topic_name(&t.name), t.error_code, t.partitions.len()))
        .collect();
    let cursor = r
        .next_cursor
        .as_ref()
        .map(|c| (c.topic_name.0.as_str(), c.partition_index));
    match i {
        // Name order, unknown and invalid names with their errors, no cursor.
        0 => {
            expect(
                "topics",
                names,
                vec![
                    ("bad name", INVALID_TOPIC_EXCEPTION, 0),
                    ("missing", UNKNOWN_TOPIC_OR_PARTITION, 0),
                    ("t", NONE, 1),
                ],
            )?;
            let t = &r.topics[2];
            expect("t ops", t.topic_authorized_operations, TOPIC_OPS)?;
            expect("t-0 leader epoch", t.partitions[0].leader_epoch >= 0, true)?;
            expect("cursor", cursor, None)?;
        }
        // "grow" (5 partitions by now) in pages of two.
        1 | 2 => {
            let first = if i == 1 { 0 } else { 2 };
            let got: Vec<i32> = r.topics[0]
                .partitions
                .iter()
                .map(|p| p.partition_index)
                .collect();
            expect("partitions", got, vec![first, first + 1])?;
            expect("cursor", cursor, Some(("grow", first + 2)))?;
        }
        3 => expect("topics", names, vec![("t", INVALID_REQUEST, 0)])?,
        _ => {
            let t = r.topics.iter().find(|t| topic_name(&t.name) == "t");
            expect("t listed", t.map(|t| t.error_code), Some(NONE))?;
        }
    }
    Ok(())
}

fn find_coordinator(v: i16, i: usize, r: &FindCoordinatorResponse) -> Result<(), String> {
    // From v6 the first request asks for a share coordinator, which Chronik does not serve.
    let share = v >= 6 && i == 0;
    let group = if v >= 6 { i == 1 } else { i == 0 };
    let code = if v >= 4 {
        r.coordinators[0].error_code
    } else {
        r.error_code
    };
    if share {
        expect("share coordinator", code, INVALID_REQUEST)?;
    } else if group {
        expect("group coordinator", code, NONE)?;
    }
    Ok(())
}
