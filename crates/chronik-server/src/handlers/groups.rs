//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
//! DescribeGroups, DeleteGroups. The state machine is `chronik_groups::membership`; this
//! module translates requests and responses and turns waits into [`Reply::Later`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronik_groups::membership::{
    code, JoinRequest, JoinResponse, Reply as GroupReply, SyncResponse,
};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, ResponseKind,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Reply};
use crate::authz::{self, Resource};
use crate::broker::Broker;

/// JoinGroup v0 has no rebalance timeout: Kafka uses the session timeout.
fn rebalance_timeout(req: &JoinGroupRequest, version: i16) -> Duration {
    let ms = if version == 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    Duration::from_millis(ms.max(0) as u64)
}

fn join_response(r: JoinResponse) -> ResponseKind {
    ResponseKind::JoinGroup(
        JoinGroupResponse::default()
            .with_error_code(r.error)
            .with_generation_id(r.generation)
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(Some(str_bytes(r.protocol_name.unwrap_or_default())))
            .with_leader(str_bytes(r.leader))
            .with_skip_assignment(r.skip_assignment)
            .with_member_id(str_bytes(r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_group_instance_id(m.instance_id.map(str_bytes))
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
    )
}

fn sync_response(r: SyncResponse) -> ResponseKind {
    ResponseKind::SyncGroup(
        SyncGroupResponse::default()
            .with_error_code(r.error)
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes))
            .with_assignment(r.assignment),
    )
}

pub fn join(
    broker: &Arc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> Reply {
    if !broker.groups.is_coordinator(req.group_id.as_str()) {
        return Reply::now(join_response(JoinResponse {
            error: code::NOT_COORDINATOR,
            generation: -1,
            member_id: req.member_id.to_string(),
            ..Default::default()
        }));
    }
    let rebalance_timeout = rebalance_timeout(&req, version);
    let request = JoinRequest {
        group: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        rebalance_timeout,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let member_id = request.member_id.clone();
    match broker.groups.members().join(request, Instant::now()) {
        GroupReply::Now(r) => Reply::now(join_response(r)),
        GroupReply::Wait(rx) => Reply::Later(Box::pin(async move {
            // The rebalance deadline bounds the wait; the extra margin covers the ticker.
            let limit = rebalance_timeout + Duration::from_secs(5);
            let r = match tokio::time::timeout(limit, rx).await {
                Ok(Ok(r)) => r,
                _ => JoinResponse {
                    error: code::REBALANCE_IN_PROGRESS,
                    generation: -1,
                    member_id,
                    ..Default::default()
                },
            };
            join_response(r)
        })),
    }
}

pub fn sync(broker: &Arc<Broker>, req: SyncGroupRequest, _version: i16) -> Reply {
    if !broker.groups.is_coordinator(req.group_id.as_str()) {
        return Reply::now(sync_response(SyncResponse {
            error: code::NOT_COORDINATOR,
            ..Default::default()
        }));
    }
    let outcome = broker.groups.members().sync(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
        req.protocol_type.as_deref(),
        req.protocol_name.as_deref(),
        req.assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
        Instant::now(),
    );
    match outcome {
        GroupReply::Now(r) => Reply::now(sync_response(r)),
        GroupReply::Wait(rx) => Reply::Later(Box::pin(async move {
            // The leader's SyncGroup, a leave or a new rebalance always answers a waiter;
            // the bound only guards against a leader that never syncs.
            let r = match tokio::time::timeout(Duration::from_secs(300), rx).await {
                Ok(Ok(r)) => r,
                _ => SyncResponse {
                    error: code::REBALANCE_IN_PROGRESS,
                    ..Default::default()
                },
            };
            sync_response(r)
        })),
    }
}

pub fn heartbeat(broker: &Arc<Broker>, req: HeartbeatRequest, _version: i16) -> Reply {
    if !broker.groups.is_coordinator(req.group_id.as_str()) {
        return Reply::now(ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(code::NOT_COORDINATOR),
        ));
    }
    let error = broker.groups.members().heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
        Instant::now(),
    );
    Reply::now(ResponseKind::Heartbeat(
        HeartbeatResponse::default().with_error_code(error),
    ))
}

pub fn leave(broker: &Arc<Broker>, req: LeaveGroupRequest, version: i16) -> Reply {
    if !broker.groups.is_coordinator(req.group_id.as_str()) {
        return Reply::now(ResponseKind::LeaveGroup(
            LeaveGroupResponse::default().with_error_code(code::NOT_COORDINATOR),
        ));
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let errors = broker
        .groups
        .members()
        .leave(req.group_id.0.as_str(), &members, Instant::now());
    let resp = if version >= 3 {
        LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(errors)
                .map(|((id, instance), e)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_error_code(e)
                })
                .collect(),
        )
    } else {
        LeaveGroupResponse::default().with_error_code(errors.first().copied().unwrap_or(0))
    };
    Reply::now(ResponseKind::LeaveGroup(resp))
}

/// The only group type Chronik has (KIP-848's `consumer` groups are not implemented).
const GROUP_TYPE_CLASSIC: &str = "classic";

pub fn list(broker: &Arc<Broker>, req: ListGroupsRequest, _version: i16) -> Reply {
    let mut groups: Vec<(String, String, &'static str)> = broker.groups.members().list();
    // Groups known only by their committed offsets are listed too, as Empty.
    for g in broker.groups.offsets().group_ids() {
        if !groups.iter().any(|(id, _, _)| *id == g) {
            groups.push((g, String::new(), "Empty"));
        }
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    // v5: a types filter without "classic" matches none of Chronik's groups (as in Kafka,
    // compared in lower case).
    let classic_wanted = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.to_lowercase() == GROUP_TYPE_CLASSIC);
    let listed = groups
        .into_iter()
        .filter(|_| classic_wanted)
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.to_lowercase()))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(StrBytes::from_static_str(state))
                .with_group_type(StrBytes::from_static_str(GROUP_TYPE_CLASSIC))
        })
        .collect();
    Reply::now(ResponseKind::ListGroups(
        ListGroupsResponse::default().with_groups(listed),
    ))
}

pub fn describe(broker: &Arc<Broker>, req: DescribeGroupsRequest, version: i16) -> Reply {
    let ops = authz::field(req.include_authorized_operations, Resource::Group);
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let d = broker.groups.members().describe(g.0.as_str());
            let out = DescribedGroup::default().with_group_id(g.clone());
            match d {
                Some(d) => out
                    .with_group_state(StrBytes::from_static_str(d.state))
                    .with_protocol_type(str_bytes(d.protocol_type))
                    .with_protocol_data(str_bytes(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                None if broker.groups.offsets().has_group(g.0.as_str()) => {
                    out.with_group_state(StrBytes::from_static_str("Empty"))
                }
                // Kafka describes a group it does not know as Dead: with GROUP_ID_NOT_FOUND
                // from v6 (KIP-1043), with no error before.
                None if version >= 6 => out
                    .with_group_state(StrBytes::from_static_str("Dead"))
                    .with_error_code(code::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str_bytes(format!("Group {} not found.", g.0)))),
                None => out.with_group_state(StrBytes::from_static_str("Dead")),
            }
        })
        // Kafka sets the operations only on groups described without an error.
        .map(|g| {
            if g.error_code == 0 {
                g.with_authorized_operations(ops)
            } else {
                g
            }
        })
        .collect();
    Reply::now(ResponseKind::DescribeGroups(
        DescribeGroupsResponse::default().with_groups(groups),
    ))
}

pub async fn delete(broker: &Arc<Broker>, req: DeleteGroupsRequest, _version: i16) -> Reply {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let id = g.0.to_string();
        let error = if id.is_empty() {
            code::INVALID_GROUP_ID
        } else {
            let known = broker.groups.members().delete(&id);
            match known {
                Err(e) => e,
                Ok(had_members_state) => {
                    let had_offsets = broker.groups.offsets().has_group(&id);
                    if !had_members_state && !had_offsets {
                        code::GROUP_ID_NOT_FOUND
                    } else {
                        match broker
                            .groups
                            .offsets()
                            .delete_group(&broker.partitions, &id)
                            .await
                        {
                            Ok(()) => code::NONE,
                            Err(e) => e.code().code(),
                        }
                    }
                }
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(error),
        );
    }
    Reply::now(ResponseKind::DeleteGroups(
        DeleteGroupsResponse::default().with_results(results),
    ))
}
