//! The decision for one request's principal: `--authorizer acl` with the cluster's ACLs and
//! `--super-users`, or (no authorizer) everything allowed, as Kafka without
//! `authorizer.class.name`. Denials are counted (`chronik_authorization_denied_total`) and
//! logged, rate-limited, with the principal, host, operation and resource.

use std::sync::Arc;

use chronik_auth::acl::{Acls, Action, Operation, Permission, ResourceType};
use chronik_metadata::MetadataState;

use crate::broker::Broker;
use crate::session::Session;

pub const DENIED: &str = "chronik_authorization_denied_total";

/// One request's view of the authorizer; cheap to clone into a response's post-processing.
#[derive(Clone)]
pub struct Authorizer {
    /// The metadata holding the ACLs; `None`: no authorizer configured, everything allowed.
    state: Option<Arc<MetadataState>>,
    super_user: bool,
    principal: Arc<str>,
    host: Arc<str>,
}

impl Authorizer {
    pub fn new(broker: &Broker, session: &Session, state: &Arc<MetadataState>) -> Authorizer {
        let security = &broker.config.security;
        let principal = session.principal.clone();
        Authorizer {
            state: security.acl_authorizer.then(|| state.clone()),
            super_user: security.super_users.iter().any(|u| **u == *principal),
            principal,
            // Kafka matches ACL hosts against the bare address.
            host: Arc::from(session.client_host.trim_start_matches('/')),
        }
    }

    /// An authorizer with `--authorizer acl` over `state`'s ACLs for `principal` (no super
    /// user), without a broker (guard tests).
    #[cfg(test)]
    pub fn for_test(state: Arc<MetadataState>, principal: &str) -> Authorizer {
        Authorizer {
            state: Some(state),
            super_user: false,
            principal: Arc::from(principal),
            host: Arc::from("127.0.0.1"),
        }
    }

    fn acls(&self) -> Option<&Acls> {
        self.state.as_ref().map(|s| &s.acls)
    }

    /// Whether `op` on the resource is allowed; a denial is counted and logged.
    pub fn allows(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let ok = self.check(op, rt, name);
        if !ok {
            metrics::counter!(DENIED, "resource_type" => rt.name(), "operation" => op.name())
                .increment(1);
            crate::warn_limited!(
                "authorization_denied",
                principal = &*self.principal,
                host = &*self.host,
                operation = op.name(),
                resource_type = rt.name(),
                resource = name,
                "authorization denied"
            );
        }
        ok
    }

    /// The same decision without counting or logging it: for filtering what a listing shows
    /// (Kafka does not log topics it leaves out of a full Metadata answer).
    pub fn check(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let Some(acls) = self.acls() else { return true };
        self.super_user
            || acls.authorize(&Action {
                principal: &self.principal,
                host: &self.host,
                operation: op,
                resource_type: rt,
                resource_name: name,
            })
    }

    /// Whether `op` is allowed on some resource of type `rt` (Kafka's
    /// authorizeByResourceType): an ALLOW that applies to the principal and host, for the
    /// operation or one implying it, not cancelled by a DENY of everything of that type.
    pub fn allows_any(&self, op: Operation, rt: ResourceType) -> bool {
        let Some(acls) = self.acls() else { return true };
        if self.super_user {
            return true;
        }
        let applies = |principal: &str, host: &str| {
            (principal == &*self.principal || principal == "User:*")
                && (host == &*self.host || host == "*")
        };
        let mut allowed = false;
        for b in acls
            .iter()
            .filter(|b| b.resource_type == rt && applies(&b.principal, &b.host))
        {
            let op_matches = b.operation == op || b.operation == Operation::All;
            match b.permission {
                Permission::Deny if op_matches && b.resource_name == "*" => return false,
                Permission::Allow if chronik_auth::acl::implies(b.operation, op) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// Kafka's bit field of the operations allowed on a resource, out of `supported`.
    pub fn operations(&self, rt: ResourceType, name: &str, supported: &[Operation]) -> i32 {
        supported
            .iter()
            .filter(|op| self.check(**op, rt, name))
            .fold(0i32, |bits, op| bits | (1 << op.code()))
    }
}
