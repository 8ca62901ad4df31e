//! Metadata under an authorizer (Kafka's rules): a topic the principal may not DESCRIBE is
//! answered TOPIC_AUTHORIZATION_FAILED when asked for by name and left out of an all-topics
//! answer; a missing topic is auto-created only with CREATE on the cluster or the topic; the
//! authorized-operations fields carry the allowed set.

use chronik_auth::acl::{Operation, ResourceType as Rt, CLUSTER_NAME};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{MetadataRequest, RequestKind, ResponseKind};

use super::guard::{Guarded, Post, TOPIC_DENIED};
use super::{supported, Authorizer, Resource, NOT_REQUESTED};

pub fn guard(az: &Authorizer, mut r: MetadataRequest) -> Guarded {
    let mut denied = Vec::new();
    if let Some(topics) = r.topics.as_mut() {
        let (keep, refused): (Vec<_>, Vec<_>) = std::mem::take(topics).into_iter().partition(|t| {
            t.name
                .as_ref()
                .is_none_or(|n| az.allows(Operation::Describe, Rt::Topic, n.0.as_str()))
        });
        *topics = keep;
        denied = refused.into_iter().filter_map(|t| t.name).collect();
        let may_create = |n: &str| {
            az.check(Operation::Create, Rt::Cluster, CLUSTER_NAME)
                || az.check(Operation::Create, Rt::Topic, n)
        };
        if r.allow_auto_topic_creation
            && !topics
                .iter()
                .all(|t| t.name.as_ref().is_none_or(|n| may_create(n.0.as_str())))
        {
            r.allow_auto_topic_creation = false;
        }
    }
    let az = az.clone();
    let post: Post = Box::new(move |resp| {
        let ResponseKind::Metadata(m) = resp else {
            return;
        };
        // Whatever the handler listed (all topics, or v0's empty list meaning all), only the
        // topics the principal may describe stay.
        m.topics.retain(|t| {
            t.name
                .as_ref()
                .is_none_or(|n| az.check(Operation::Describe, Rt::Topic, n.0.as_str()))
        });
        for t in m.topics.iter_mut() {
            if t.topic_authorized_operations != NOT_REQUESTED {
                let name = t.name.as_ref().map_or("", |n| n.0.as_str());
                t.topic_authorized_operations =
                    az.operations(Rt::Topic, name, supported(Resource::Topic));
            }
        }
        if m.cluster_authorized_operations != NOT_REQUESTED {
            m.cluster_authorized_operations =
                az.operations(Rt::Cluster, CLUSTER_NAME, supported(Resource::Cluster));
        }
        for n in denied {
            m.topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(n))
                    .with_error_code(TOPIC_DENIED)
                    .with_topic_authorized_operations(NOT_REQUESTED),
            );
        }
    });
    Guarded::Serve(RequestKind::Metadata(r), Some(post))
}
