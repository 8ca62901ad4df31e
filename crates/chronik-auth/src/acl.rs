//! Kafka's ACL model, without I/O: bindings (a resource pattern and an entry), the filters
//! Describe/DeleteAcls match them with, and the decision [`Acls::authorize`] makes, as Kafka's
//! StandardAuthorizer makes it:
//! - a super user may do everything;
//! - a matching DENY wins over any ALLOW;
//! - otherwise a matching ALLOW for the operation, or for one that implies it, allows
//!   (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//!   ALL implies everything);
//! - otherwise the request is denied (`allow.everyone.if.no.acl.found=false`).
//!
//! A binding matches a request when its principal is the request's or `User:*`, its host the
//! client's or `*`, and its pattern covers the resource: a LITERAL name equal to it or `*`, or
//! a PREFIXED name it starts with. Codes are Kafka's (AclOperation, ResourceType, ...), so the
//! wire values convert without tables elsewhere.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

macro_rules! kafka_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),+ }
            }
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
            /// Kafka's name, as kafka-acls prints it.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

kafka_enum!(
    /// Kafka's ResourceType (0, UNKNOWN, is no value here).
    ResourceType {
        Any = 1 => "ANY",
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
    }
);

kafka_enum!(
    /// Kafka's PatternType.
    PatternType {
        Any = 1 => "ANY",
        Match = 2 => "MATCH",
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
);

kafka_enum!(
    /// Kafka's AclOperation.
    Operation {
        Any = 1 => "ANY",
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
    }
);

kafka_enum!(
    /// Kafka's AclPermissionType.
    Permission {
        Any = 1 => "ANY",
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
);

/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name that stands for every resource of its type.
pub const WILDCARD: &str = "*";

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`; `User:*` is every user.
    pub principal: String,
    /// A client address, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding cannot be created (Kafka answers INVALID_REQUEST with the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAcl(pub String);

impl AclBinding {
    /// Kafka's checks on a new binding: concrete resource type, pattern, operation and
    /// permission (no ANY or MATCH), a `Type:name` principal, a non-empty name and host.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        let bad = |m: &str| Err(InvalidAcl(m.to_string()));
        if self.resource_type == ResourceType::Any {
            return bad("Resource type ANY is not a valid ACL resource type");
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return bad("Only LITERAL and PREFIXED ACLs can be created");
        }
        if self.operation == Operation::Any {
            return bad("Operation ANY is not a valid ACL operation");
        }
        if self.permission == Permission::Any {
            return bad("Permission type ANY is not a valid ACL permission");
        }
        if self.resource_name.is_empty() {
            return bad("Resource name must not be empty");
        }
        if self.host.is_empty() {
            return bad("Host must not be empty");
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(()),
            _ => bad("Could not parse principal: expected Type:name, e.g. User:alice"),
        }
    }

    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }
}

/// Describe/DeleteAcls filters: `None` fields and ANY values match anything; MATCH matches
/// every binding that would apply to the named resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource = (self.resource_type == ResourceType::Any
            || self.resource_type == b.resource_type)
            && match (&self.resource_name, self.pattern_type) {
                (None, PatternType::Any | PatternType::Match) => true,
                (None, p) => p == b.pattern_type,
                (Some(n), PatternType::Any) => *n == b.resource_name,
                (Some(n), PatternType::Match) => b.covers(b.resource_type, n),
                (Some(n), p) => p == b.pattern_type && *n == b.resource_name,
            };
        resource
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == Operation::Any || self.operation == b.operation)
            && (self.permission == Permission::Any || self.permission == b.permission)
    }
}

/// The request an authorization decision is about.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    pub principal: &'a str,
    pub host: &'a str,
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub resource_name: &'a str,
}

/// Every binding of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acls {
    bindings: BTreeSet<AclBinding>,
}

impl Acls {
    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.bindings.iter()
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Adds a binding (already validated); adding one that exists changes nothing.
    pub fn insert(&mut self, b: AclBinding) {
        self.bindings.insert(b);
    }

    /// Removes and returns every binding the filter matches.
    pub fn remove_matching(&mut self, filter: &AclFilter) -> Vec<AclBinding> {
        let gone: Vec<AclBinding> = self
            .bindings
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect();
        for b in &gone {
            self.bindings.remove(b);
        }
        gone
    }

    /// The decision for one action, super users aside (the caller checks those).
    pub fn authorize(&self, a: &Action<'_>) -> bool {
        let applies = |b: &&AclBinding| {
            (b.principal == a.principal || b.principal == "User:*")
                && (b.host == a.host || b.host == WILDCARD)
                && b.covers(a.resource_type, a.resource_name)
        };
        let mut allowed = false;
        for b in self.bindings.iter().filter(applies) {
            match b.permission {
                Permission::Deny if b.operation == a.operation || b.operation == Operation::All => {
                    return false
                }
                Permission::Allow if implies(b.operation, a.operation) => allowed = true,
                _ => {}
            }
        }
        allowed
    }
}

/// Whether an ALLOW for `granted` allows `wanted`.
pub fn implies(granted: Operation, wanted: Operation) -> bool {
    use Operation as O;
    granted == wanted
        || granted == O::All
        || (wanted == O::Describe && matches!(granted, O::Read | O::Write | O::Delete | O::Alter))
        || (wanted == O::DescribeConfigs && granted == O::AlterConfigs)
}

#[cfg(test)]
mod tests;
