//! The transaction coordinator's calls between nodes (`proto/txn.proto`, served on the nodes'
//! gRPC port with its mutual TLS): markers for partitions another node leads, and KIP-890
//! verification asked of the coordinator on another node. Kafka does both over its own
//! inter-broker protocol (WriteTxnMarkers, AddPartitionsToTxn v4 verify_only).

use std::sync::{Arc, Weak};
use std::time::Duration;

use chronik_txn::{AddPartitions, TopicPartition};
use dashmap::DashMap;
use kafka_protocol::ResponseError;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::txn::{EndTxnMarker, MarkerType};

pub mod pb {
    tonic::include_proto!("chronik.txn");
}

use pb::transactions_client::TransactionsClient;
use pb::transactions_server::{Transactions, TransactionsServer};

/// A marker write waits for replication (30 s at most on the called node) plus the trip.
const WRITE_MARKERS_DEADLINE: Duration = Duration::from_secs(35);
/// A verification is a lookup in the coordinator's memory.
const VERIFY_DEADLINE: Duration = Duration::from_secs(10);

/// The server side, holding the broker weakly (a server still draining must not keep a stopped
/// broker alive).
pub struct TxnService {
    broker: Weak<Broker>,
}

/// The service to add to the node's gRPC routes.
pub fn service(broker: &Arc<Broker>) -> TransactionsServer<TxnService> {
    TransactionsServer::new(TxnService {
        broker: Arc::downgrade(broker),
    })
}

impl TxnService {
    fn broker(&self) -> Result<Arc<Broker>, Status> {
        self.broker
            .upgrade()
            .ok_or_else(|| Status::unavailable("shutting down"))
    }
}

#[tonic::async_trait]
impl Transactions for TxnService {
    async fn write_markers(
        &self,
        req: Request<pb::WriteMarkersRequest>,
    ) -> Result<Response<pb::WriteMarkersResponse>, Status> {
        chronik_rpc::auth::require_node(&req, "WriteMarkers", req.get_ref().caller_id)?;
        let broker = self.broker()?;
        let r = req.into_inner();
        let marker = EndTxnMarker {
            producer_id: r.producer_id,
            producer_epoch: i16::try_from(r.producer_epoch)
                .map_err(|_| Status::invalid_argument("producer epoch out of range"))?,
            marker: MarkerType::from_committed(r.commit),
            coordinator_epoch: r.coordinator_epoch,
        };
        let mut codes = vec![0i32; r.partitions.len()];
        let mut waits = Vec::new();
        // Appended in request order now; the replication waits run side by side.
        for (i, p) in r.partitions.iter().enumerate() {
            match crate::handlers::write_marker(&broker, &p.topic, p.partition, &marker) {
                Ok(written) => waits.push(async move { (i, written.await) }),
                Err(code) => codes[i] = i32::from(code.code()),
            }
        }
        for (i, result) in futures::future::join_all(waits).await {
            if let Err(code) = result {
                codes[i] = i32::from(code.code());
            }
        }
        Ok(Response::new(pb::WriteMarkersResponse {
            error_codes: codes,
        }))
    }

    async fn verify_partition(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        chronik_rpc::auth::require_node(&req, "VerifyPartition", req.get_ref().caller_id)?;
        let broker = self.broker()?;
        let r = req.into_inner();
        let p = r
            .partition
            .ok_or_else(|| Status::invalid_argument("no partition"))?;
        let add = AddPartitions {
            transactional_id: r.transactional_id,
            producer_id: r.producer_id,
            producer_epoch: i16::try_from(r.producer_epoch)
                .map_err(|_| Status::invalid_argument("producer epoch out of range"))?,
            partitions: vec![TopicPartition::new(p.topic, p.partition)],
        };
        let code = broker.txns.verify(&add).first().map_or(0, |(_, e)| *e);
        Ok(Response::new(pb::VerifyResponse {
            error_code: i32::from(code),
        }))
    }
}

/// Channels to the other nodes, by RPC address, made once each (lazily connected; tonic
/// reconnects them). Bounded by the cluster's nodes.
#[derive(Default)]
pub struct Peers {
    channels: DashMap<String, Channel>,
}

/// Why a call to another node did not answer: retriable, as a partition without a reachable
/// leader is.
fn unreachable(what: &str, node: i32, e: impl std::fmt::Display) -> ResponseError {
    crate::warn_limited!("txn_rpc_failed", node, error = %e, "{what} to another node failed");
    ResponseError::NotLeaderOrFollower
}

impl Peers {
    fn client(
        &self,
        broker: &Broker,
        node: i32,
    ) -> Result<TransactionsClient<Channel>, ResponseError> {
        let state = broker.metadata();
        let addr = state
            .brokers
            .get(&node)
            .map(|b| b.rpc_addr.clone())
            .filter(|a| !a.is_empty())
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        if let Some(c) = self.channels.get(&addr) {
            return Ok(TransactionsClient::new(c.clone()));
        }
        let endpoint =
            chronik_rpc::endpoint(&addr).map_err(|e| unreachable("connecting", node, e))?;
        let channel = endpoint.connect_lazy();
        self.channels.insert(addr, channel.clone());
        Ok(TransactionsClient::new(channel))
    }

    /// Writes `marker` to `partitions` on `node` (their leader): the outcome per partition.
    pub async fn write_markers(
        &self,
        broker: &Broker,
        node: i32,
        marker: &EndTxnMarker,
        partitions: &[TopicPartition],
    ) -> Vec<Result<(), ResponseError>> {
        let all = |code| vec![Err(code); partitions.len()];
        let mut client = match self.client(broker, node) {
            Ok(c) => c,
            Err(code) => return all(code),
        };
        let mut req = Request::new(pb::WriteMarkersRequest {
            caller_id: broker.node_id as u64,
            producer_id: marker.producer_id,
            producer_epoch: i32::from(marker.producer_epoch),
            commit: marker.marker == MarkerType::Commit,
            coordinator_epoch: marker.coordinator_epoch,
            partitions: partitions
                .iter()
                .map(|tp| pb::Partition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })
                .collect(),
        });
        req.set_timeout(WRITE_MARKERS_DEADLINE);
        match client.write_markers(req).await {
            Ok(resp) => {
                let codes = resp.into_inner().error_codes;
                (0..partitions.len())
                    .map(|i| code_result(codes.get(i).copied()))
                    .collect()
            }
            Err(e) => all(unreachable("WriteMarkers", node, e)),
        }
    }

    /// Asks the coordinator on `node` whether the partition is in the transaction: its Kafka
    /// error code (0: it is).
    pub async fn verify(
        &self,
        broker: &Broker,
        node: i32,
        v: &crate::txn::VerifyRequest,
    ) -> Result<(), ResponseError> {
        let mut client = self.client(broker, node)?;
        let mut req = Request::new(pb::VerifyRequest {
            caller_id: broker.node_id as u64,
            transactional_id: v.transactional_id.clone(),
            producer_id: v.producer_id,
            producer_epoch: i32::from(v.producer_epoch),
            partition: Some(pb::Partition {
                topic: v.topic.clone(),
                partition: v.partition,
            }),
        });
        req.set_timeout(VERIFY_DEADLINE);
        match client.verify_partition(req).await {
            Ok(resp) => code_result(Some(resp.into_inner().error_code)),
            // Retriable for the producer (NOT_COORDINATOR maps to NOT_ENOUGH_REPLICAS).
            Err(e) => Err(unreachable_coordinator(node, e)),
        }
    }
}

fn unreachable_coordinator(node: i32, e: impl std::fmt::Display) -> ResponseError {
    let _ = unreachable("VerifyPartition", node, e);
    ResponseError::NotCoordinator
}

/// A Kafka error code from the wire as a result (a missing or unknown one is an error).
fn code_result(code: Option<i32>) -> Result<(), ResponseError> {
    match code.and_then(|c| i16::try_from(c).ok()) {
        Some(0) => Ok(()),
        Some(c) => {
            Err(ResponseError::try_from_code(c).unwrap_or(ResponseError::UnknownServerError))
        }
        None => Err(ResponseError::UnknownServerError),
    }
}
