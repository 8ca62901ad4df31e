//! A partition's transactional state through its real log: appends, markers, fencing, the
//! KIP-890 hook, and the rebuild on reopen.

use std::path::Path;
use std::sync::Arc;

use chronik_replication::Role;
use chronik_wal::{LogConfig, PartitionLog};
use kafka_protocol::ResponseError;

use super::tests::data_batch;
use super::{AbortedTxn, EndTxnMarker, MarkerType};
use crate::partition::{Accepted, Partition};
use crate::topic_config::ProduceConfig;

const MAX: usize = 1 << 20;

async fn open(dir: &Path) -> Arc<Partition> {
    let log = PartitionLog::open(dir, "t", 0, LogConfig::default())
        .await
        .expect("log");
    let config = ProduceConfig {
        policy: Default::default(),
        max_message_bytes: MAX,
        min_insync_replicas: 1,
        compaction: None,
    };
    let p = Partition::open(log, 1, None, config).await.expect("open");
    p.replica.set_role(Role::Leader {
        epoch: 0,
        isr: vec![1],
        min_isr: 1,
    });
    p
}

/// Waits for `a` to be committed and moves the high watermark to it.
async fn commit(p: &Partition, a: Accepted) {
    p.log
        .wait_appended(a.end_offset, a.generation)
        .await
        .expect("committed");
    p.replica.update_high_watermark();
}

fn marker(pid: i64, epoch: i16, marker: MarkerType, coordinator_epoch: i32) -> EndTxnMarker {
    EndTxnMarker {
        producer_id: pid,
        producer_epoch: epoch,
        marker,
        coordinator_epoch,
    }
}

#[tokio::test]
async fn transactions_lso_and_aborted_index_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = open(dir.path()).await;
    let append = |b: Vec<u8>| p.append(&b, MAX, 0).expect("append");
    assert_eq!(append(data_batch(1, 0, 0, 2, true)).base_offset, 0);
    assert_eq!(append(data_batch(2, 0, 0, 1, true)).base_offset, 2);
    append(data_batch(1, 0, 2, 1, true));
    let a = p
        .append_marker(&marker(2, 0, MarkerType::Abort, 0), 0)
        .expect("abort");
    assert_eq!(a.base_offset, 4);
    let a = append(data_batch(3, 0, 0, 1, true));
    commit(&p, a).await;
    assert_eq!(p.replica.high_watermark(), 6);
    // Producer 1's transaction (from 0) is open: nothing is stable.
    assert_eq!(p.last_stable_offset(), 0);
    let a = p
        .append_marker(&marker(1, 0, MarkerType::Commit, 0), 0)
        .expect("commit");
    assert_eq!(a.base_offset, 6);
    // The marker is not below the high watermark yet: the LSO waits for it.
    assert_eq!(p.last_stable_offset(), 0);
    commit(&p, a).await;
    assert_eq!(p.last_stable_offset(), 5);
    let aborted = AbortedTxn {
        producer_id: 2,
        first_offset: 2,
        last_offset: 4,
        last_stable_offset: 0,
    };
    let before = p.txn_snapshot();
    assert_eq!(before, (vec![(3, 5)], vec![aborted]));
    assert_eq!(p.aborted_transactions(0, 5), vec![(2, 2)]);
    assert_eq!(p.aborted_transactions(5, 7), vec![]);
    p.log.close().await.expect("close");
    drop(p);

    let p = open(dir.path()).await;
    assert_eq!(p.txn_snapshot(), before);
    p.replica.update_high_watermark();
    assert_eq!(p.last_stable_offset(), 5);
    // DescribeProducers' view: producer 3's open transaction, producer 1's coordinator.
    let active = p.active_producers();
    let find = |pid| {
        active
            .iter()
            .find(|a| a.producer_id == pid)
            .expect("tracked")
    };
    assert_eq!(find(3).current_txn_start_offset, 5);
    assert_eq!(
        (find(1).current_txn_start_offset, find(1).coordinator_epoch),
        (-1, 0)
    );
    assert_eq!(find(2).coordinator_epoch, 0);
    // Sequences and epochs came back too: producer 1 goes on at 3, producer 3 at 1.
    p.append(&data_batch(1, 0, 3, 1, true), MAX, 0)
        .expect("producer 1 in sequence");
    let e = p.append(&data_batch(3, 0, 5, 1, true), MAX, 0).unwrap_err();
    assert_eq!(e.code(), ResponseError::OutOfOrderSequenceNumber);
    // DeleteRecords past the abort marker (at 4): its index entry goes, from the answers and
    // from memory (at the next marker).
    p.log.advance_log_start(5).expect("log start");
    assert_eq!(p.aborted_transactions(5, 7), vec![]);
    p.append_marker(&marker(3, 0, MarkerType::Commit, 0), 0)
        .expect("commit");
    assert_eq!(p.txn_snapshot(), (vec![(1, 7)], vec![]));
    p.log.close().await.expect("close");
}

#[tokio::test]
async fn markers_from_an_old_producer_or_coordinator_epoch_are_fenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = open(dir.path()).await;
    p.append(&data_batch(1, 2, 0, 1, true), MAX, 0)
        .expect("append");
    let e = p
        .append_marker(&marker(1, 1, MarkerType::Abort, 0), 0)
        .unwrap_err();
    assert_eq!(e.code(), ResponseError::InvalidProducerEpoch);
    p.append_marker(&marker(1, 2, MarkerType::Commit, 5), 0)
        .expect("marker");
    let e = p
        .append_marker(&marker(1, 2, MarkerType::Abort, 4), 0)
        .unwrap_err();
    assert_eq!(e.code(), ResponseError::TransactionCoordinatorFenced);
    // Nothing refused reached the log: one data batch and one marker.
    assert_eq!(p.log.log_end_offset(), 2);
    // A client may not write a marker itself (Kafka's LogValidator).
    let forged =
        super::control::encode_marker(&marker(1, 2, MarkerType::Commit, 5), 0).expect("encode");
    let e = p.append(&forged, MAX, 0).unwrap_err();
    assert_eq!(e.code(), ResponseError::InvalidRecord);
    p.log.close().await.expect("close");
}

#[tokio::test]
async fn only_the_first_batch_of_a_transaction_asks_for_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = open(dir.path()).await;
    let first = data_batch(1, 0, 0, 1, true);
    let req = p.needs_txn_verification(&first, "tx").expect("asks");
    assert_eq!(
        (
            req.transactional_id.as_str(),
            req.producer_id,
            req.topic.as_str()
        ),
        ("tx", 1, "t")
    );
    p.append(&first, MAX, 0).expect("append");
    assert!(p
        .needs_txn_verification(&data_batch(1, 0, 1, 1, true), "tx")
        .is_none());
    // Idempotent batches never ask.
    assert!(p
        .needs_txn_verification(&data_batch(2, 0, 0, 1, false), "tx")
        .is_none());
    // Inside its transaction, a producer may not write outside it (Kafka: INVALID_TXN_STATE).
    let e = p
        .append(&data_batch(1, 0, 1, 1, false), MAX, 0)
        .unwrap_err();
    assert_eq!(e.code(), ResponseError::InvalidTxnState);
    p.append_marker(&marker(1, 0, MarkerType::Commit, 0), 0)
        .expect("marker");
    // The next transaction's first batch asks again.
    assert!(p
        .needs_txn_verification(&data_batch(1, 0, 1, 1, true), "tx")
        .is_some());
    p.log.close().await.expect("close");
}
