//! The coordinator's behaviour, request by request, against what Kafka's
//! TransactionCoordinator answers.

use bytes::Bytes;
use kafka_protocol::ResponseError::*;

use super::*;
use crate::record::TxnLogValue;

pub(super) const ID: &str = "tx";

/// A manager leading the only `__transaction_state` partition at coordinator epoch 7.
pub(super) fn manager() -> TxnManager {
    manager_with(TxnConfig {
        transaction_state_partitions: 1,
        ..TxnConfig::default()
    })
}

pub(super) fn manager_with(config: TxnConfig) -> TxnManager {
    let mut m = TxnManager::new(config);
    for p in 0..m.config().transaction_state_partitions {
        assert!(m.load(p, 7, Vec::new(), 0).is_empty());
    }
    m
}

/// Producer ids from 1000 on.
pub(super) fn ids() -> impl FnMut() -> Option<i64> {
    let mut next = 1000;
    move || {
        next += 1;
        Some(next - 1)
    }
}

pub(super) fn init_req(epoch_of: Option<(i64, i16)>) -> InitProducerId {
    let (producer_id, producer_epoch) = epoch_of.unwrap_or((-1, -1));
    InitProducerId {
        transactional_id: ID.into(),
        transaction_timeout_ms: 60_000,
        producer_id,
        producer_epoch,
    }
}

pub(super) fn add_req(pid: i64, epoch: i16, parts: &[(&str, i32)]) -> AddPartitions {
    AddPartitions {
        transactional_id: ID.into(),
        producer_id: pid,
        producer_epoch: epoch,
        partitions: parts
            .iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect(),
    }
}

pub(super) fn end_req(pid: i64, epoch: i16, commit: bool) -> EndTxn {
    EndTxn {
        transactional_id: ID.into(),
        producer_id: pid,
        producer_epoch: epoch,
        commit,
    }
}

/// The single effect of `effects`, an append: its token and decoded value (None: tombstone).
pub(super) fn the_append(effects: Vec<Effect>) -> (AppendToken, Option<TxnLogValue>) {
    match <[Effect; 1]>::try_from(effects) {
        Ok(
            [Effect::AppendLog {
                token, key, value, ..
            }],
        ) => {
            assert_eq!(
                crate::record::TxnKey::decode(&key).unwrap(),
                crate::record::TxnKey::TransactionalId(token.transactional_id.clone())
            );
            (token, value.map(|v| TxnLogValue::decode(&v).unwrap()))
        }
        Ok(other) => panic!("expected one append, got {other:?}"),
        Err(v) => panic!("expected one append, got {v:?}"),
    }
}

pub(super) fn the_response(effects: Vec<Effect>, request: RequestId) -> Response {
    match <[Effect; 1]>::try_from(effects) {
        Ok(
            [Effect::Respond {
                request: r,
                response,
            }],
        ) if r == request => response,
        other => panic!("expected one answer to {request}, got {other:?}"),
    }
}

pub(super) fn end_error(effects: Vec<Effect>, request: RequestId) -> i16 {
    match the_response(effects, request) {
        Response::EndTxn { error } => error,
        other => panic!("not an EndTxn answer: {other:?}"),
    }
}

pub(super) fn add_error(effects: Vec<Effect>, request: RequestId) -> i16 {
    match the_response(effects, request) {
        Response::AddPartitions { error } => error,
        other => panic!("not an AddPartitions answer: {other:?}"),
    }
}

/// InitProducerId through to its answer: (error, producer id, epoch).
pub(super) fn init(m: &mut TxnManager, req: &InitProducerId, now: i64) -> (i16, i64, i16) {
    let mut effects = m.init_producer_id(1, req, &mut ids(), now);
    if let [Effect::AppendLog { token, .. }] = effects.as_slice() {
        let token = token.clone();
        effects = m.log_written(&token, now);
    }
    match the_response(effects, 1) {
        Response::InitProducerId {
            error,
            producer_id,
            producer_epoch,
        } => (error, producer_id, producer_epoch),
        other => panic!("not an InitProducerId answer: {other:?}"),
    }
}

/// A transaction with `parts` open: returns (producer id, epoch).
pub(super) fn ongoing(m: &mut TxnManager, parts: &[(&str, i32)], now: i64) -> (i64, i16) {
    let (error, pid, epoch) = init(m, &init_req(None), now);
    assert_eq!(error, 0);
    let (token, value) = the_append(m.add_partitions(2, &add_req(pid, epoch, parts), now));
    assert_eq!(value.unwrap().state, TxnState::Ongoing);
    assert_eq!(add_error(m.log_written(&token, now), 2), 0);
    (pid, epoch)
}

/// After a Prepare record was confirmed: the answers and the marker request.
pub(super) fn split_markers(effects: Vec<Effect>) -> (Vec<(RequestId, Response)>, Option<Effect>) {
    let mut answers = Vec::new();
    let mut markers = None;
    for e in effects {
        match e {
            Effect::Respond { request, response } => answers.push((request, response)),
            e @ Effect::WriteMarkers { .. } => markers = Some(e),
            e => panic!("unexpected {e:?}"),
        }
    }
    (answers, markers)
}

/// (producer id, epoch, commit, coordinator epoch, partitions) of a marker request.
pub(super) fn marker_request(e: &Option<Effect>) -> (i64, i16, bool, i32, Vec<TopicPartition>) {
    match e {
        Some(Effect::WriteMarkers {
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            partitions,
            ..
        }) => (
            *producer_id,
            *producer_epoch,
            *commit,
            *coordinator_epoch,
            partitions.clone(),
        ),
        other => panic!("no markers: {other:?}"),
    }
}

pub(super) fn marker_token(e: &Option<Effect>) -> AppendToken {
    match e {
        Some(Effect::WriteMarkers { token, .. }) => token.clone(),
        other => panic!("no markers: {other:?}"),
    }
}

#[test]
fn init_gives_a_new_id_epoch_0_then_bumps_the_epoch() {
    let mut m = manager();
    let effects = m.init_producer_id(1, &init_req(None), &mut ids(), 5);
    let (token, value) = the_append(effects);
    let v = value.unwrap();
    assert_eq!(
        (v.producer_id, v.producer_epoch, v.state),
        (1000, 0, TxnState::Empty)
    );
    assert_eq!(
        (v.transaction_timeout_ms, v.start_timestamp_ms),
        (60_000, -1)
    );
    assert_eq!(token.coordinator_epoch, 7);
    // Nothing is answered before the record is durable.
    let r = the_response(m.log_written(&token, 5), 1);
    assert_eq!(
        r,
        Response::InitProducerId {
            error: 0,
            producer_id: 1000,
            producer_epoch: 0
        }
    );
    // The same token again (a duplicate confirmation) changes nothing.
    assert!(m.log_written(&token, 5).is_empty());
    // A second instance: same producer id, next epoch.
    assert_eq!(init(&mut m, &init_req(None), 6), (0, 1000, 1));
}

#[test]
fn init_refuses_what_kafka_refuses() {
    let mut m = manager();
    let mut req = init_req(None);
    req.transaction_timeout_ms = 900_001;
    assert_eq!(init(&mut m, &req, 0).0, InvalidTransactionTimeout.code());
    req.transaction_timeout_ms = 0;
    assert_eq!(init(&mut m, &req, 0).0, InvalidTransactionTimeout.code());
    let mut req = init_req(None);
    req.transactional_id = String::new();
    assert_eq!(init(&mut m, &req, 0).0, InvalidRequest.code());
    assert_eq!(
        init(&mut m, &init_req(Some((-1, 3))), 0).0,
        InvalidRequest.code()
    );
    // No producer id at hand (a block being reserved): retriable.
    let r = the_response(m.init_producer_id(1, &init_req(None), &mut || None, 0), 1);
    assert_eq!(
        r,
        Response::InitProducerId {
            error: CoordinatorLoadInProgress.code(),
            producer_id: -1,
            producer_epoch: -1
        }
    );
    // A second InitProducerId while the first is being written.
    let _pending = m.init_producer_id(1, &init_req(None), &mut ids(), 0);
    assert_eq!(
        init(&mut m, &init_req(None), 0).0,
        ConcurrentTransactions.code()
    );
}

/// KIP-360: a client that sends its current producer id and epoch is let back in with the
/// next epoch; a retry of that gets the same answer; a stale one is fenced.
#[test]
fn init_with_the_current_epoch_recovers_and_stale_ones_are_fenced() {
    let mut m = manager();
    let (_, pid, epoch) = init(&mut m, &init_req(None), 0);
    assert_eq!(
        init(&mut m, &init_req(Some((pid, epoch))), 1),
        (0, pid, epoch + 1)
    );
    assert_eq!(
        init(&mut m, &init_req(Some((pid, epoch))), 2),
        (0, pid, epoch + 1)
    );
    assert_eq!(
        init(&mut m, &init_req(Some((pid, epoch + 5))), 3).0,
        ProducerFenced.code()
    );
    assert_eq!(
        init(&mut m, &init_req(Some((pid + 1, epoch + 1))), 3).0,
        ProducerFenced.code()
    );
    // Old clients get INVALID_PRODUCER_EPOCH instead (KafkaApis).
    let (fenced, old) = (ProducerFenced.code(), InvalidProducerEpoch.code());
    let cases = [
        (TxnApi::InitProducerId, 3, fenced, old),
        (TxnApi::InitProducerId, 4, fenced, fenced),
        (TxnApi::EndTxn, 1, fenced, old),
        (TxnApi::AddOffsetsToTxn, 2, fenced, fenced),
        (TxnApi::AddPartitionsToTxn, 1, fenced, old),
        (TxnApi::AddPartitionsToTxn, 0, 51, 51),
    ];
    for (api, version, error, want) in cases {
        assert_eq!(
            downgrade_fenced_error(api, version, error),
            want,
            "{api:?} v{version}"
        );
    }
}

pub(super) fn record(id: &str, v: &TxnLogValue) -> (Bytes, Option<Bytes>) {
    (encode_key(id).unwrap(), Some(v.encode(0).unwrap()))
}

pub(super) fn value(
    pid: i64,
    epoch: i16,
    state: TxnState,
    parts: &[(&str, i32)],
    start: i64,
) -> TxnLogValue {
    TxnLogValue {
        producer_id: pid,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: epoch,
        transaction_timeout_ms: 1000,
        state,
        partitions: parts
            .iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect(),
        last_update_timestamp_ms: start,
        start_timestamp_ms: start,
        client_transaction_version: 0,
        next_producer_epoch: -1,
    }
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut m = manager();
    let v = value(5, i16::MAX - 1, TxnState::CompleteCommit, &[], 0);
    assert!(m.load(0, 8, vec![record(ID, &v)], 0).is_empty());
    assert_eq!(init(&mut m, &init_req(None), 1), (0, 1000, 0));
    // The client that held the exhausted epoch may come back with it (KIP-360).
    let mut m = manager();
    m.load(0, 8, vec![record(ID, &v)], 0);
    assert_eq!(
        init(&mut m, &init_req(Some((5, i16::MAX - 1))), 1),
        (0, 1000, 0)
    );
    // A retry of that request (its answer lost) is recognised: the old id as the previous
    // one, its exhausted epoch as the last one, and answered the same.
    assert_eq!(
        init(&mut m, &init_req(Some((5, i16::MAX - 1))), 1),
        (0, 1000, 0)
    );
    assert_eq!(
        init(&mut m, &init_req(Some((5, i16::MAX - 3))), 1).0,
        ProducerFenced.code()
    );
}

/// The whole commit: Ongoing → PrepareCommit (answer) → markers → CompleteCommit, with the
/// answers Kafka gives to everything that arrives in between and after.
#[test]
fn commit_goes_through_prepare_markers_complete() {
    let mut m = manager();
    let (pid, epoch) = ongoing(&mut m, &[("t", 0), ("t", 1)], 10);
    // Already in the transaction: answered at once, nothing written.
    assert_eq!(
        add_error(
            m.add_partitions(3, &add_req(pid, epoch, &[("t", 1)]), 11),
            3
        ),
        0
    );
    let (token, v) = the_append(m.add_partitions(3, &add_req(pid, epoch, &[("u", 0)]), 12));
    let v = v.unwrap();
    assert_eq!((v.partitions.len(), v.start_timestamp_ms), (3, 10));
    assert_eq!(add_error(m.log_written(&token, 12), 3), 0);

    let (token, v) = the_append(m.end_txn(4, &end_req(pid, epoch, true), 20));
    let v = v.unwrap();
    assert_eq!(
        (v.state, v.producer_epoch, v.partitions.len()),
        (TxnState::PrepareCommit, epoch, 3)
    );
    // While the Prepare record is being written.
    let busy = ConcurrentTransactions.code();
    assert_eq!(
        end_error(m.end_txn(5, &end_req(pid, epoch, true), 21), 5),
        busy
    );
    let (answers, markers) = split_markers(m.log_written(&token, 22));
    assert_eq!(answers, vec![(4, Response::EndTxn { error: 0 })]);
    let (p, e, commit, coordinator_epoch, partitions) = marker_request(&markers);
    assert_eq!((p, e, commit, coordinator_epoch), (pid, epoch, true, 7));
    assert_eq!(partitions.len(), 3);
    // While the markers are being written: CONCURRENT_TRANSACTIONS for the same result and
    // for new work, INVALID_TXN_STATE for the opposite result.
    assert_eq!(
        end_error(m.end_txn(6, &end_req(pid, epoch, true), 23), 6),
        busy
    );
    assert_eq!(
        add_error(
            m.add_partitions(6, &add_req(pid, epoch, &[("t", 0)]), 23),
            6
        ),
        busy
    );
    assert_eq!(init(&mut m, &init_req(None), 23).0, busy);
    assert_eq!(m.describe(ID).unwrap().state, "PrepareCommit");

    let (token, v) = the_append(m.markers_written(&marker_token(&markers)));
    let v = v.unwrap();
    assert_eq!(v.state, TxnState::CompleteCommit);
    assert!(v.partitions.is_empty());
    assert!(m.log_written(&token, 24).is_empty());
    assert_eq!(m.describe(ID).unwrap().state, "CompleteCommit");
    // A retried EndTxn: same result OK, the opposite INVALID_TXN_STATE.
    assert_eq!(
        end_error(m.end_txn(7, &end_req(pid, epoch, true), 25), 7),
        0
    );
    let invalid = InvalidTxnState.code();
    assert_eq!(
        end_error(m.end_txn(7, &end_req(pid, epoch, false), 25), 7),
        invalid
    );
    // The next transaction starts afresh.
    let (_, v) = the_append(m.add_partitions(8, &add_req(pid, epoch, &[("t", 0)]), 30));
    assert_eq!(v.unwrap().start_timestamp_ms, 30);
}

#[test]
fn end_txn_errors_are_kafkas() {
    let mut m = manager();
    let (error, pid, epoch) = init(&mut m, &init_req(None), 0);
    assert_eq!(error, 0);
    let invalid = InvalidTxnState.code();
    assert_eq!(
        end_error(m.end_txn(1, &end_req(pid, epoch, true), 1), 1),
        invalid,
        "no transaction"
    );
    assert_eq!(
        end_error(m.end_txn(1, &end_req(pid, epoch, false), 1), 1),
        invalid
    );
    let fenced = ProducerFenced.code();
    assert_eq!(
        end_error(m.end_txn(1, &end_req(pid, epoch + 1, true), 1), 1),
        fenced
    );
    assert_eq!(
        end_error(m.end_txn(1, &end_req(pid, epoch - 1, true), 1), 1),
        fenced
    );
    let mapping = InvalidProducerIdMapping.code();
    assert_eq!(
        end_error(m.end_txn(1, &end_req(pid + 1, epoch, true), 1), 1),
        mapping
    );
    let mut other = end_req(pid, epoch, true);
    other.transactional_id = "unknown".into();
    assert_eq!(end_error(m.end_txn(1, &other, 1), 1), mapping);
    // Markers of an abort in flight: a transition is in progress, so whatever the result
    // the answer is CONCURRENT_TRANSACTIONS (Kafka checks the pending state first).
    let (pid, epoch) = ongoing(&mut m, &[("t", 0)], 2);
    let (token, _) = the_append(m.end_txn(2, &end_req(pid, epoch, false), 3));
    split_markers(m.log_written(&token, 3));
    let busy = ConcurrentTransactions.code();
    assert_eq!(
        end_error(m.end_txn(3, &end_req(pid, epoch, false), 4), 3),
        busy
    );
    assert_eq!(
        end_error(m.end_txn(3, &end_req(pid, epoch, true), 4), 3),
        busy
    );
}

#[test]
fn add_partitions_checks_the_producer() {
    let mut m = manager();
    let (pid, epoch) = ongoing(&mut m, &[("t", 0)], 0);
    let req = |p, e| add_req(p, e, &[("t", 1)]);
    assert_eq!(
        add_error(m.add_partitions(1, &req(pid, epoch - 1), 1), 1),
        ProducerFenced.code()
    );
    assert_eq!(
        add_error(m.add_partitions(1, &req(pid + 1, epoch), 1), 1),
        InvalidProducerIdMapping.code()
    );
    let mut unknown = req(pid, epoch);
    unknown.transactional_id = "other".into();
    assert_eq!(
        add_error(m.add_partitions(1, &unknown, 1), 1),
        InvalidProducerIdMapping.code()
    );
    unknown.transactional_id = String::new();
    assert_eq!(
        add_error(m.add_partitions(1, &unknown, 1), 1),
        InvalidRequest.code()
    );
    // AddOffsetsToTxn adds the group's offsets partition.
    let offsets = AddOffsets {
        transactional_id: ID.into(),
        producer_id: pid,
        producer_epoch: epoch,
        offsets_partition: 13,
    };
    let (_, v) = the_append(m.add_offsets(2, &offsets, 2));
    assert!(v
        .unwrap()
        .partitions
        .contains(&TopicPartition::new("__consumer_offsets", 13)));
}

/// KIP-890 part 1: the partition leader asks whether a partition is in the transaction.
#[test]
fn verification_answers_without_adding() {
    let mut m = manager();
    let (pid, epoch) = ongoing(&mut m, &[("t", 0)], 0);
    let got = m.verify_partitions(&add_req(pid, epoch, &[("t", 0), ("t", 1)]));
    assert_eq!(
        got,
        vec![
            (TopicPartition::new("t", 0), 0),
            (TopicPartition::new("t", 1), TransactionAbortable.code())
        ]
    );
    assert_eq!(
        m.describe(ID).unwrap().topics,
        vec![("t".to_string(), vec![0])]
    );
    let fenced = m.verify_partitions(&add_req(pid, epoch + 1, &[("t", 0), ("u", 0)]));
    assert!(fenced.iter().all(|(_, e)| *e == ProducerFenced.code()));
    let (token, _) = the_append(m.end_txn(1, &end_req(pid, epoch, true), 1));
    split_markers(m.log_written(&token, 1));
    let busy = m.verify_partitions(&add_req(pid, epoch, &[("t", 0)]));
    assert_eq!(busy[0].1, ConcurrentTransactions.code());
}

/// InitProducerId while a transaction is Ongoing (a new instance of the same
/// transactional.id): the old producer is fenced at once, the transaction aborted with the
/// bumped epoch, and the new instance told to retry until the abort is complete.
#[test]
fn init_over_an_ongoing_transaction_fences_and_aborts_it() {
    let mut m = manager();
    let (pid, epoch) = ongoing(&mut m, &[("t", 0)], 0);
    let (token, v) = the_append(m.init_producer_id(9, &init_req(None), &mut ids(), 5));
    let v = v.unwrap();
    assert_eq!(
        (v.state, v.producer_epoch),
        (TxnState::PrepareAbort, epoch + 1)
    );
    // The old instance is fenced before the record is even written (EndTxn looks at the
    // epoch first); AddPartitionsToTxn looks at the transition in progress first (Kafka 4.4).
    let fenced = ProducerFenced.code();
    assert_eq!(
        end_error(m.end_txn(1, &end_req(pid, epoch, true), 6), 1),
        fenced
    );
    let add = add_req(pid, epoch, &[("t", 5)]);
    let busy = ConcurrentTransactions.code();
    assert_eq!(add_error(m.add_partitions(1, &add, 6), 1), busy);
    let (answers, markers) = split_markers(m.log_written(&token, 6));
    assert_eq!(
        answers,
        vec![(
            9,
            Response::InitProducerId {
                error: ConcurrentTransactions.code(),
                producer_id: -1,
                producer_epoch: -1
            }
        )]
    );
    let (_, marker_epoch, commit, _, _) = marker_request(&markers);
    assert_eq!((commit, marker_epoch), (false, epoch + 1));
    assert_eq!(
        init(&mut m, &init_req(None), 7).0,
        ConcurrentTransactions.code()
    );
    let (token, v) = the_append(m.markers_written(&marker_token(&markers)));
    assert_eq!(v.unwrap().state, TxnState::CompleteAbort);
    m.log_written(&token, 8);
    assert_eq!(init(&mut m, &init_req(None), 9), (0, pid, epoch + 2));
}

#[test]
fn timed_out_transactions_are_aborted_and_idle_ids_expire() {
    let mut m = manager_with(TxnConfig {
        transaction_state_partitions: 1,
        transactional_id_expiration_ms: 10_000,
        ..TxnConfig::default()
    });
    let (pid, epoch) = ongoing(&mut m, &[("t", 0)], 1_000);
    assert!(m.tick(61_000).is_empty(), "60 s timeout not yet passed");
    let (token, v) = the_append(m.tick(61_001));
    let v = v.unwrap();
    assert_eq!(
        (v.state, v.producer_epoch),
        (TxnState::PrepareAbort, epoch + 1)
    );
    assert!(m.tick(61_002).is_empty(), "one abort at a time");
    let (answers, markers) = split_markers(m.log_written(&token, 61_002));
    assert!(answers.is_empty(), "nobody asked");
    let (token, _) = the_append(m.markers_written(&marker_token(&markers)));
    m.log_written(&token, 61_003);
    assert_eq!(
        end_error(m.end_txn(1, &end_req(pid, epoch, true), 61_004), 1),
        ProducerFenced.code()
    );
    let listed = m.list(&ListFilter::default(), 61_004);
    assert_eq!(listed.transactions[0].state, "CompleteAbort");
    // transactional.id.expiration.ms after the last update: a tombstone, then gone.
    assert!(m.tick(71_001).is_empty());
    let (token, v) = the_append(m.tick(71_002));
    assert_eq!(v, None, "a tombstone");
    assert!(
        m.describe(ID).is_ok(),
        "still there until the tombstone is durable"
    );
    assert!(m.log_written(&token, 71_004).is_empty());
    assert_eq!(m.describe(ID), Err(TransactionalIdNotFound.code()));
    assert!(m.is_empty());
}

#[test]
fn failed_appends_answer_with_coordinator_errors() {
    let mut m = manager();
    let (pid, epoch) = ongoing(&mut m, &[("t", 0)], 0);
    let (token, _) = the_append(m.add_partitions(1, &add_req(pid, epoch, &[("u", 0)]), 1));
    let e = m.log_failed(&token, NotEnoughReplicas.code());
    assert_eq!(add_error(e, 1), CoordinatorNotAvailable.code());
    assert_eq!(
        log_append_error(NotLeaderOrFollower.code()),
        NotCoordinator.code()
    );
    assert_eq!(
        log_append_error(MessageTooLarge.code()),
        UnknownServerError.code()
    );
    assert_eq!(
        log_append_error(RequestTimedOut.code()),
        CoordinatorNotAvailable.code()
    );
    // The transition was dropped: the next try goes through.
    let (token, _) = the_append(m.add_partitions(1, &add_req(pid, epoch, &[("u", 0)]), 2));
    assert_eq!(add_error(m.log_written(&token, 2), 1), 0);
    // A Complete record that fails is appended again by the next tick, with a new token.
    let (token, _) = the_append(m.end_txn(2, &end_req(pid, epoch, false), 3));
    let (_, markers) = split_markers(m.log_written(&token, 3));
    let (token, _) = the_append(m.markers_written(&marker_token(&markers)));
    assert!(m.log_failed(&token, RequestTimedOut.code()).is_empty());
    assert!(
        m.log_written(&token, 4).is_empty(),
        "a failed append's token is spent"
    );
    let (again, v) = the_append(m.tick(5));
    assert_eq!(v.unwrap().state, TxnState::CompleteAbort);
    assert_ne!(again.seq, token.seq);
    m.log_written(&again, 6);
    assert_eq!(m.describe(ID).unwrap().state, "CompleteAbort");
}

/// A fence whose PrepareAbort append failed: the epoch was bumped in memory but never given
/// out, so the next fence keeps it (Kafka's hasFailedEpochFence).
#[test]
fn a_failed_fence_is_not_bumped_again() {
    let mut m = manager();
    let (_, epoch) = ongoing(&mut m, &[("t", 0)], 0);
    let (token, _) = the_append(m.init_producer_id(3, &init_req(None), &mut ids(), 1));
    let r = the_response(m.log_failed(&token, NotEnoughReplicas.code()), 3);
    assert_eq!(
        r,
        Response::InitProducerId {
            error: CoordinatorNotAvailable.code(),
            producer_id: -1,
            producer_epoch: -1
        }
    );
    let (token, v) = the_append(m.init_producer_id(3, &init_req(None), &mut ids(), 2));
    assert_eq!(v.unwrap().producer_epoch, epoch + 1);
    split_markers(m.log_written(&token, 2));
}

#[test]
fn describe_and_list_report_kafkas_names_and_filters() {
    let mut m = manager();
    let (pid, _) = ongoing(&mut m, &[("b", 1), ("a", 2), ("a", 0)], 1_000);
    let d = m.describe(ID).unwrap();
    assert_eq!(
        (d.state, d.producer_id, d.transaction_start_time_ms),
        ("Ongoing", pid, 1_000)
    );
    assert_eq!(
        d.topics,
        vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]
    );
    assert_eq!(m.describe(""), Err(InvalidRequest.code()));
    assert_eq!(m.describe("nope"), Err(TransactionalIdNotFound.code()));
    let mut req = init_req(None);
    req.transactional_id = "idle".into();
    let (token, _) = the_append(m.init_producer_id(1, &req, &mut || Some(2000), 1_500));
    m.log_written(&token, 1_500);

    let list = |m: &TxnManager, f: ListFilter, now| m.list(&f, now);
    let all = list(&m, ListFilter::default(), 2_000);
    let names: Vec<_> = all
        .transactions
        .iter()
        .map(|t| (t.transactional_id.as_str(), t.state))
        .collect();
    assert_eq!(names, vec![("idle", "Empty"), ("tx", "Ongoing")]);
    let states = |names: &[&str]| ListFilter {
        states: names.iter().map(|s| s.to_string()).collect(),
        ..ListFilter::default()
    };
    let by_state = list(&m, states(&["Ongoing", "Bogus"]), 2_000);
    assert_eq!(by_state.transactions.len(), 1);
    assert_eq!(by_state.unknown_state_filters, vec!["Bogus".to_string()]);
    let pids = |ids: Vec<i64>| ListFilter {
        producer_ids: ids,
        ..ListFilter::default()
    };
    assert_eq!(
        list(&m, pids(vec![pid]), 2_000).transactions[0].transactional_id,
        "tx"
    );
    assert!(list(&m, pids(vec![12345]), 2_000).transactions.is_empty());
    // Running longer than 900 ms at 2 000: tx (started at 1 000) is; at 1 900 it is not.
    let long = ListFilter {
        min_duration_ms: 900,
        ..states(&["Ongoing"])
    };
    assert_eq!(list(&m, long.clone(), 2_000).transactions.len(), 1);
    assert!(list(&m, long, 1_900).transactions.is_empty());
    // KIP-1152: the pattern must match the whole id; a bad one is Kafka's error.
    let pattern = |p: &str| ListFilter {
        transactional_id_pattern: Some(p.into()),
        ..ListFilter::default()
    };
    let found = list(&m, pattern("i.*"), 2_000).transactions;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].transactional_id, "idle");
    assert!(list(&m, pattern("dl"), 2_000).transactions.is_empty());
    assert_eq!(list(&m, pattern(""), 2_000).transactions.len(), 2);
    let bad = list(&m, pattern("("), 2_000);
    assert_eq!(bad.error, InvalidRegularExpression.code());
}

#[test]
fn bounds_answer_with_retriable_or_kafka_errors() {
    let mut m = manager_with(TxnConfig {
        transaction_state_partitions: 1,
        max_partitions_per_transaction: 2,
        max_transactional_ids: 1,
        ..TxnConfig::default()
    });
    let (pid, epoch) = ongoing(&mut m, &[("t", 0), ("t", 1)], 0);
    let e = m.add_partitions(1, &add_req(pid, epoch, &[("t", 2)]), 1);
    assert_eq!(add_error(e, 1), UnknownServerError.code());
    let mut req = init_req(None);
    req.transactional_id = "second".into();
    assert_eq!(init(&mut m, &req, 1).0, CoordinatorNotAvailable.code());
    assert_eq!(m.len(), 1);
}
