//! CreateAcls, DescribeAcls and DeleteAcls: ACL bindings kept in the Raft metadata. Without
//! `--authorizer acl` each answers SECURITY_DISABLED, as Kafka does with no authorizer.

use std::sync::Arc;

use chronik_auth::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use chronik_metadata::MetadataCommand;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, Reply};
use crate::broker::{Broker, TopicError};

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn disabled(broker: &Broker) -> Option<TopicError> {
    (!broker.config.security.acl_authorizer)
        .then(|| TopicError::new(ResponseError::SecurityDisabled, NO_AUTHORIZER))
}

pub async fn create(broker: &Arc<Broker>, req: CreateAclsRequest) -> Reply {
    let results = match disabled(broker) {
        Some(e) => req.creations.iter().map(|_| Err(e.clone())).collect(),
        None => create_all(broker, &req.creations).await,
    };
    let results = results
        .into_iter()
        .map(|r| match r {
            Ok(()) => AclCreationResult::default(),
            Err(e) => AclCreationResult::default()
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(e.message))),
        })
        .collect();
    Reply::now(ResponseKind::CreateAcls(
        CreateAclsResponse::default().with_results(results),
    ))
}

/// Each creation checked on its own; the valid ones committed in one command.
async fn create_all(
    broker: &Arc<Broker>,
    creations: &[AclCreation],
) -> Vec<Result<(), TopicError>> {
    let mut results: Vec<Result<(), TopicError>> = Vec::with_capacity(creations.len());
    let mut valid = Vec::new();
    for c in creations {
        let binding = binding(c).and_then(|b| {
            b.validate()
                .map(|()| b)
                .map_err(|e| TopicError::new(ResponseError::InvalidRequest, e.0))
        });
        match binding {
            Ok(b) => {
                valid.push(b);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if !valid.is_empty() {
        let want = valid.clone();
        let cmd = MetadataCommand::CreateAcls { bindings: valid };
        let done = move |s: &chronik_metadata::MetadataState| {
            want.iter().all(|b| s.acls.iter().any(|x| x == b))
        };
        if let Err(e) = broker.propose(cmd, done).await {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
    }
    results
}

pub fn describe(broker: &Arc<Broker>, req: DescribeAclsRequest) -> Reply {
    let answer = |r: DescribeAclsResponse| Reply::now(ResponseKind::DescribeAcls(r));
    if let Some(e) = disabled(broker) {
        return answer(error_response(e));
    }
    let filter = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => return answer(error_response(e)),
    };
    let state = broker.metadata();
    // Grouped by resource pattern, as Kafka answers.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in state.acls.iter().filter(|b| filter.matches(b)) {
        let acl = AclDescription::default()
            .with_principal(str_bytes(&b.principal))
            .with_host(str_bytes(&b.host))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission.code());
        let same = |r: &&mut DescribeAclsResource| {
            r.resource_type == b.resource_type.code()
                && r.resource_name.as_str() == b.resource_name
                && r.pattern_type == b.pattern_type.code()
        };
        match resources.iter_mut().find(same) {
            Some(r) => r.acls.push(acl),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(str_bytes(&b.resource_name))
                    .with_pattern_type(b.pattern_type.code())
                    .with_acls(vec![acl]),
            ),
        }
    }
    answer(DescribeAclsResponse::default().with_resources(resources))
}

fn error_response(e: TopicError) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(e.code.code())
        .with_error_message(Some(str_bytes(e.message)))
}

pub async fn delete(broker: &Arc<Broker>, req: DeleteAclsRequest) -> Reply {
    let failed = |e: &TopicError| {
        DeleteAclsFilterResult::default()
            .with_error_code(e.code.code())
            .with_error_message(Some(str_bytes(e.message.clone())))
    };
    let answer = |results| {
        Reply::now(ResponseKind::DeleteAcls(
            DeleteAclsResponse::default().with_filter_results(results),
        ))
    };
    if let Some(e) = disabled(broker) {
        return answer(req.filters.iter().map(|_| failed(&e)).collect());
    }
    let parsed: Vec<Result<AclFilter, TopicError>> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|f| f.as_ref().ok().cloned())
        .collect();
    let deleted = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        let cmd = MetadataCommand::DeleteAcls { filters: valid };
        broker.apply_acl_deletion(cmd).await
    };
    let mut deleted = match deleted {
        Ok(d) => d.into_iter(),
        Err(e) => return answer(req.filters.iter().map(|_| failed(&e)).collect()),
    };
    let results = parsed
        .iter()
        .map(|f| match f {
            Err(e) => failed(e),
            Ok(_) => DeleteAclsFilterResult::default().with_matching_acls(
                deleted
                    .next()
                    .unwrap_or_default()
                    .iter()
                    .map(matching)
                    .collect(),
            ),
        })
        .collect();
    answer(results)
}

fn matching(b: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(str_bytes(&b.resource_name))
        .with_pattern_type(b.pattern_type.code())
        .with_principal(str_bytes(&b.principal))
        .with_host(str_bytes(&b.host))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}

fn invalid(what: &str, code: i8) -> TopicError {
    TopicError::new(
        ResponseError::InvalidRequest,
        format!("unknown {what} {code}"),
    )
}

fn binding(c: &AclCreation) -> Result<AclBinding, TopicError> {
    Ok(AclBinding {
        resource_type: ResourceType::from_code(c.resource_type)
            .ok_or_else(|| invalid("resource type", c.resource_type))?,
        resource_name: c.resource_name.to_string(),
        pattern_type: PatternType::from_code(c.resource_pattern_type)
            .ok_or_else(|| invalid("pattern type", c.resource_pattern_type))?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation)
            .ok_or_else(|| invalid("operation", c.operation))?,
        permission: Permission::from_code(c.permission_type)
            .ok_or_else(|| invalid("permission type", c.permission_type))?,
    })
}

#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, TopicError> {
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| invalid("resource type", resource_type))?,
        resource_name: name.map(|n| n.to_string()),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| invalid("pattern type", pattern_type))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: Operation::from_code(operation)
            .ok_or_else(|| invalid("operation", operation))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| invalid("permission type", permission))?,
    })
}
