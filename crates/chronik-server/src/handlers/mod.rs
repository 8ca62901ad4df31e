//! One module per Kafka API. `dispatch` runs the order-sensitive part of a request now
//! and returns what is left (waiting for durability or data) as a [`Reply`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chronik_protocol::Request;
use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::session::Session;

mod acls;
mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
#[cfg(test)]
mod produce_tests;
mod reassignments;
mod sasl_off;
mod scram_users;
mod transactions;
mod txn_offset_commit;
mod write_txn_markers;

pub(crate) use write_txn_markers::write_marker;

/// What a handler hands back to the connection's ordered writer.
pub enum Reply {
    /// No response at all (produce with acks=0).
    None,
    /// A response that is ready now; boxed because responses are large and replies queue up.
    Now(Box<ResponseKind>),
    /// A response that is ready once the future resolves (fsync, long poll).
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
}

impl Reply {
    pub fn now(body: ResponseKind) -> Self {
        Reply::Now(Box::new(body))
    }
}

impl Reply {
    /// The same reply with `post` applied to its answer (when there is one).
    fn then(self, post: crate::authz::guard::Post) -> Reply {
        match self {
            Reply::None => Reply::None,
            Reply::Now(mut body) => {
                post(&mut body);
                Reply::Now(body)
            }
            Reply::Later(fut) => Reply::Later(Box::pin(async move {
                let mut body = fut.await;
                post(&mut body);
                body
            })),
        }
    }
}

/// `session`: the connection's listener, peer and principal. The authorization guard runs
/// first (crate::authz::guard): a refused request is answered there, a narrowed one is
/// served and its answer completed with what was refused.
pub async fn dispatch(broker: &Arc<Broker>, mut req: Request, session: &Session) -> Reply {
    if !broker.config.security.acl_authorizer {
        // No authorizer (Kafka's default): nothing to check, and nothing added to the path of
        // every produce and fetch.
        return serve(broker, req, session).await;
    }
    let state = broker.metadata();
    let az = crate::authz::Authorizer::new(broker, session, &state);
    let body = std::mem::replace(&mut req.body, RequestKind::ApiVersions(Default::default()));
    match crate::authz::guard::guard(&az, &state, body) {
        crate::authz::guard::Guarded::Answer(resp) => Reply::now(resp),
        crate::authz::guard::Guarded::Serve(body, post) => {
            req.body = body;
            let reply = serve(broker, req, session).await;
            match post {
                Some(post) => reply.then(post),
                None => reply,
            }
        }
    }
}

async fn serve(broker: &Arc<Broker>, req: Request, session: &Session) -> Reply {
    let v = req.version;
    let client_id = req.client_id().to_string();
    match req.body {
        RequestKind::ApiVersions(r) => api_versions::handle(r, v),
        RequestKind::Metadata(r) => metadata::handle(broker, r, v, session).await,
        RequestKind::Produce(r) => produce::handle(broker, r, v).await,
        RequestKind::Fetch(r) => fetch::handle(broker, r, v),
        RequestKind::ListOffsets(r) => list_offsets::handle(broker, r, v),
        RequestKind::CreateTopics(r) => create_topics::handle(broker, r, v).await,
        RequestKind::DeleteTopics(r) => delete_topics::handle(broker, r, v).await,
        RequestKind::CreatePartitions(r) => create_partitions::handle(broker, r, v).await,
        RequestKind::DescribeConfigs(r) => describe_configs::handle(broker, r, v),
        RequestKind::DescribeCluster(r) => describe_cluster::handle(broker, r, v, session),
        RequestKind::DescribeTopicPartitions(r) => describe_topic_partitions::handle(broker, r, v),
        RequestKind::InitProducerId(r) => init_producer_id::handle(broker, r, v).await,
        RequestKind::FindCoordinator(r) => find_coordinator::handle(broker, r, v, session),
        RequestKind::OffsetCommit(r) => offset_commit::handle(broker, r, v),
        RequestKind::OffsetFetch(r) => offset_fetch::handle(broker, r, v),
        RequestKind::JoinGroup(r) => groups::join(broker, r, v, &client_id, &session.client_host),
        RequestKind::SyncGroup(r) => groups::sync(broker, r, v),
        RequestKind::Heartbeat(r) => groups::heartbeat(broker, r, v),
        RequestKind::LeaveGroup(r) => groups::leave(broker, r, v),
        RequestKind::ListGroups(r) => groups::list(broker, r, v),
        RequestKind::DescribeGroups(r) => groups::describe(broker, r, v),
        RequestKind::DeleteGroups(r) => groups::delete(broker, r, v).await,
        RequestKind::OffsetDelete(r) => offset_delete::handle(broker, r, v).await,
        RequestKind::OffsetForLeaderEpoch(r) => offset_for_leader_epoch::handle(broker, r, v),
        RequestKind::AlterConfigs(r) => alter_configs::alter(broker, r, v).await,
        RequestKind::IncrementalAlterConfigs(r) => alter_configs::incremental(broker, r, v).await,
        RequestKind::ElectLeaders(r) => elect_leaders::handle(broker, r, v).await,
        RequestKind::AlterPartitionReassignments(r) => reassignments::alter(broker, r, v).await,
        RequestKind::ListPartitionReassignments(r) => reassignments::list(broker, r, v),
        RequestKind::DeleteRecords(r) => delete_records::handle(broker, r, v),
        RequestKind::DescribeLogDirs(r) => describe_log_dirs::handle(broker, r, v),
        RequestKind::DescribeProducers(r) => describe_producers::handle(broker, r, v),
        RequestKind::DescribeUserScramCredentials(r) => scram_users::describe(broker, r),
        RequestKind::AlterUserScramCredentials(r) => scram_users::alter(broker, r).await,
        // On a SASL listener the connection answers these itself (crate::sasl).
        RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) => {
            sasl_off::handle(req.api_key)
        }
        RequestKind::CreateAcls(r) => acls::create(broker, r).await,
        RequestKind::DescribeAcls(r) => acls::describe(broker, r),
        RequestKind::DeleteAcls(r) => acls::delete(broker, r).await,
        RequestKind::WriteTxnMarkers(r) => write_txn_markers::handle(broker, r, v),
        RequestKind::AddPartitionsToTxn(r) => transactions::add_partitions(broker, r, v).await,
        RequestKind::AddOffsetsToTxn(r) => transactions::add_offsets(broker, r, v).await,
        RequestKind::EndTxn(r) => transactions::end_txn(broker, r, v).await,
        RequestKind::TxnOffsetCommit(r) => txn_offset_commit::handle(broker, r, v),
        RequestKind::DescribeTransactions(r) => transactions::describe(broker, r),
        RequestKind::ListTransactions(r) => transactions::list(broker, r),
        other => {
            // The decoder only lets through keys in the versions table, all listed above.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for an advertised API");
            Reply::None
        }
    }
}

/// The topic name as text.
fn topic_str(name: &TopicName) -> &str {
    name.0.as_str()
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
