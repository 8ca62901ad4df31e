//! What a client may do with a resource: the one place that decides it, so the authorizer
//! (issue 17) replaces this module and no handler changes.
//!
//! Until an authorizer exists every operation is allowed, and the "authorized operations"
//! fields of Metadata, DescribeTopicPartitions, DescribeCluster and DescribeGroups carry
//! every operation Kafka defines for the resource type, as Kafka does without an authorizer
//! (`AuthHelper.authorizedOperations` answers `AclEntry.supportedOperations`).

/// Kafka's `AclOperation` codes (org.apache.kafka.common.acl.AclOperation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

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
fn supported(resource: Resource) -> &'static [AclOperation] {
    use AclOperation::*;
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

/// The operations allowed on `resource`: today every supported one (no authorizer).
pub fn allowed(resource: Resource) -> impl Iterator<Item = AclOperation> {
    supported(resource).iter().copied()
}

/// Kafka's bit field of authorized operations (`Utils.to32BitField`: bit i set for code i).
pub fn authorized_operations(resource: Resource) -> i32 {
    allowed(resource).fold(0i32, |bits, op| bits | (1 << op as u8))
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
