//! The produce path's KIP-890 hook with a real standalone broker: a verification that is not
//! answered at once holds back only that partition's append, a refusal answers its error, and
//! only a transaction's first batch asks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ResponseKind, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::Reply;
use crate::broker::Broker;
use crate::config::{BrokerConfig, ServerArgs};
use crate::shutdown::Shutdown;
use crate::startup::StartupPhase;
use crate::txn::tests::data_batch;
use crate::txn::{TxnVerifier, Verification, VerifyRequest};

async fn standalone(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig::resolve(ServerArgs {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    })
    .expect("config");
    let endpoint = chronik_metadata::Endpoint {
        name: "PLAINTEXT".into(),
        host: "127.0.0.1".into(),
        port: 9092,
    };
    let phase = StartupPhase::default();
    crate::wiring::start(config, vec![endpoint], None, Shutdown::new(), phase)
        .await
        .expect("broker start")
}

/// Answers each verification once the test opens the gate (or refuses, when `refuse`).
#[derive(Default)]
struct Gate {
    open: Mutex<Option<oneshot::Receiver<()>>>,
    calls: AtomicUsize,
    refuse: bool,
}

impl TxnVerifier for Gate {
    fn verify(&self, request: VerifyRequest) -> Verification {
        assert_eq!(request.transactional_id, "tx");
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.refuse {
            return Verification::Refused(ResponseError::InvalidTxnState, "not in it".into());
        }
        let gate = self.open.lock().expect("lock").take().expect("one pending");
        Verification::Pending(Box::pin(async move {
            gate.await.ok();
            Ok(())
        }))
    }
}

fn produce(seq: i32) -> ProduceRequest {
    let records = bytes::Bytes::from(data_batch(1, 0, seq, 1, true));
    ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(super::topic_name("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

/// (error code, base offset) of the one partition.
async fn answer(reply: Reply) -> (i16, i64) {
    let body = match reply {
        Reply::Now(body) => *body,
        Reply::Later(fut) => fut.await,
        Reply::None => panic!("no answer"),
    };
    let ResponseKind::Produce(r) = body else {
        panic!("not a produce answer")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A standalone broker with topic t led here and a verifier that answers once `open` is sent.
async fn gated(
    dir: &std::path::Path,
) -> (
    Arc<Broker>,
    Arc<crate::partition::Partition>,
    oneshot::Sender<()>,
    Arc<Gate>,
) {
    let broker = standalone(dir).await;
    broker.get_or_auto_create("t", true).await.expect("topic");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let part = loop {
        if let Some(p) = broker.partitions.partition("t", 0) {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "t-0 never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (open, gate) = oneshot::channel();
    let verifier = Arc::new(Gate {
        open: Mutex::new(Some(gate)),
        ..Gate::default()
    });
    broker.set_txn_verifier(verifier.clone());
    (broker, part, open, verifier)
}

#[tokio::test]
async fn only_a_transactions_first_batch_waits_for_its_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, part, open, verifier) = gated(dir.path()).await;
    let b = broker.clone();
    let pending =
        tokio::spawn(async move { answer(super::produce::handle(&b, produce(0), 9).await).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        part.log.log_end_offset(),
        0,
        "appended before it was verified"
    );
    open.send(()).expect("gate");
    assert_eq!(pending.await.expect("join"), (0, 0));
    // The transaction is open on the partition now: its next batch is not verified again.
    assert_eq!(
        answer(super::produce::handle(&broker, produce(1), 9).await).await,
        (0, 1)
    );
    assert_eq!(verifier.calls.load(Ordering::SeqCst), 1);

    // A refusal answers its error and writes nothing (producer 1's transaction is open, so a
    // new producer id would ask; the same producer after a marker too).
    let refuse = Arc::new(Gate {
        refuse: true,
        ..Gate::default()
    });
    broker.set_txn_verifier(refuse.clone());
    let marker = crate::txn::EndTxnMarker {
        producer_id: 1,
        producer_epoch: 0,
        marker: crate::txn::MarkerType::Commit,
        coordinator_epoch: 0,
    };
    part.append_marker(&marker, 0).expect("marker");
    let code = ResponseError::InvalidTxnState.code();
    assert_eq!(
        answer(super::produce::handle(&broker, produce(2), 9).await).await,
        (code, -1)
    );
    assert_eq!(part.log.log_end_offset(), 3);
}

/// A connection handles its next request once `handle` returns (connection.rs). Found with
/// Kafka Streams (exactly_once_v2) on three nodes: the first batch of a transaction on a
/// partition waited for a remote coordinator's verification after `handle` had returned, so
/// the producer's pipelined next batch (seq 74) was checked first and answered
/// OUT_OF_ORDER_SEQUENCE_NUMBER (expected 47); the client, seeing 47..73 acknowledged after
/// that, took it as fatal and Streams aborted the transaction. The verified append must be in
/// the log before `handle` returns.
#[tokio::test]
async fn a_verified_append_is_in_the_log_before_the_next_request_is_handled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, part, open, _verifier) = gated(dir.path()).await;
    let b = broker.clone();
    let first = tokio::spawn(async move { super::produce::handle(&b, produce(0), 9).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !first.is_finished(),
        "handle returned before its verified append: the connection would serve the next request first"
    );
    open.send(()).expect("gate");
    let first = first.await.expect("join");
    assert_eq!(
        part.log.log_end_offset(),
        1,
        "the verified batch is not in the log"
    );
    // The connection's next request, the producer's next batch, before the first is answered.
    let next = super::produce::handle(&broker, produce(1), 9).await;
    assert_eq!(answer(first).await, (0, 0));
    assert_eq!(answer(next).await, (0, 1));
}
