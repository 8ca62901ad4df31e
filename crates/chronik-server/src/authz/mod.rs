//! Authorization: what a client may do with a resource.
//!
//! - [`authorizer`]: the decision for one request's principal (ACLs with `--authorizer acl`,
//!   else everything allowed, as Kafka without an authorizer).
//! - [`guard`] (with [`metadata`] and [`guard_admin`]): every API's check, in front of the
//!   handlers, which check nothing themselves.
//! - Here: the "authorized operations" fields of Metadata, DescribeTopicPartitions,
//!   DescribeCluster and DescribeGroups. Handlers fill them with every operation Kafka defines
//!   for the resource type (Kafka's answer without an authorizer, `AuthHelper.
//!   authorizedOperations` = `AclEntry.supportedOperations`); with an authorizer the guard's
//!   post step replaces them with the allowed set.

pub mod authorizer;
pub mod guard;
pub mod guard_admin;
pub mod guard_cluster;
pub mod guard_txn;
pub mod metadata;

use chronik_auth::acl::Operation;

pub use authorizer::Authorizer;

/// The resource types that carry authorized operations in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic,
    Group,
    Cluster,
}

/// The value of an authorized-operations field the client did not ask for (Kafka's
/// `Integer.MIN_VALUE`: "not provided").
pub const NOT_REQUESTED: i32 = i32::MIN;

/// Every operation Kafka defines for `resource` (`AclEntry.supportedOperations`).
pub fn supported(resource: Resource) -> &'static [Operation] {
    use Operation::*;
    match resource {
        Resource::Topic => &[
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
            AlterConfigs,
        ],
        Resource::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        Resource::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
    }
}

/// Kafka's bit field of every supported operation (`Utils.to32BitField`: bit i for code i).
pub fn authorized_operations(resource: Resource) -> i32 {
    supported(resource)
        .iter()
        .fold(0i32, |bits, op| bits | (1 << op.code()))
}

/// The field's value: the bit field when the client asked for it, else [`NOT_REQUESTED`].
pub fn field(requested: bool, resource: Resource) -> i32 {
    if requested {
        authorized_operations(resource)
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_match_kafka_without_an_authorizer() {
        // Measured against Apache Kafka 4.4.0 without an authorizer (Metadata v12,
        // DescribeCluster v1, DescribeGroups v5 with the include flags set).
        assert_eq!(authorized_operations(Resource::Topic), 3576);
        assert_eq!(authorized_operations(Resource::Cluster), 8096);
        assert_eq!(authorized_operations(Resource::Group), 3400);
        assert_eq!(field(false, Resource::Topic), i32::MIN);
    }
}
