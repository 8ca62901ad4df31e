//! Failover and replay: what a successor coordinator rebuilds from the log, and what happens
//! to requests parked on a partition this node leaves.

use bytes::Bytes;
use kafka_protocol::ResponseError::*;

use super::tests::*;
use super::*;

/// Failover: a new coordinator replays the log, finishes what was half-way (markers for
/// PrepareCommit/PrepareAbort, then their Complete record) and times out what was Ongoing.
#[test]
fn a_replayed_log_completes_prepared_transactions() {
    let mut log: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    let mut m = manager();
    let (pid, epoch) = ongoing(&mut m, &[("t", 0), ("t", 2)], 0);
    let effects = m.end_txn(1, &end_req(pid, epoch, true), 1);
    if let [Effect::AppendLog { key, value, .. }] = effects.as_slice() {
        log.push((key.clone(), value.clone()));
    }
    let ongoing_other = value(77, 3, TxnState::Ongoing, &[("u", 1)], 100);
    log.push(record("other", &ongoing_other));
    log.push(record("gone", &value(78, 0, TxnState::Empty, &[], 0)));
    log.push((encode_key("gone").unwrap(), None));
    log.push((Bytes::from_static(b"\x00"), None)); // a damaged key: skipped
    log.push((
        encode_key("bad").unwrap(),
        Some(Bytes::from_static(b"\x00\x00\x01")),
    ));

    let mut m = manager();
    let effects = m.load(0, 9, log, 50);
    let (answers, markers) = split_markers(effects);
    assert!(answers.is_empty());
    let (p, e, commit, coordinator_epoch, partitions) = marker_request(&markers);
    assert_eq!((p, e, commit, coordinator_epoch), (pid, epoch, true, 9));
    let want = vec![TopicPartition::new("t", 0), TopicPartition::new("t", 2)];
    assert_eq!(partitions, want);
    assert_eq!(
        m.len(),
        2,
        "the tombstoned and the undecodable ids are not there"
    );
    let (token, v) = the_append(m.markers_written(&marker_token(&markers)));
    assert_eq!(v.unwrap().state, TxnState::CompleteCommit);
    m.log_written(&token, 51);
    // The Ongoing one (1 s timeout from 100) is aborted by the timer.
    assert!(m.tick(1_100).is_empty());
    let (_, v) = the_append(m.tick(1_101));
    let v = v.unwrap();
    assert_eq!(
        (v.producer_id, v.producer_epoch, v.state),
        (77, 4, TxnState::PrepareAbort)
    );
}

#[test]
fn leaving_a_partition_answers_its_parked_requests() {
    let mut m = manager_with(TxnConfig {
        transaction_state_partitions: 2,
        ..TxnConfig::default()
    });
    let p = m.partition_of(ID);
    let (token, _) = the_append(m.init_producer_id(4, &init_req(None), &mut ids(), 0));
    let r = the_response(m.unload(p), 4);
    assert_eq!(
        r,
        Response::InitProducerId {
            error: NotCoordinator.code(),
            producer_id: -1,
            producer_epoch: -1
        }
    );
    assert!(
        m.log_written(&token, 1).is_empty(),
        "a late confirmation is ignored"
    );
    assert!(!m.is_coordinator(ID));
    assert_eq!(init(&mut m, &init_req(None), 1).0, NotCoordinator.code());
    assert!(m.begin_load(p, 8).is_empty());
    assert_eq!(
        init(&mut m, &init_req(None), 1).0,
        CoordinatorLoadInProgress.code()
    );
    assert_eq!(
        m.list(&ListFilter::default(), 0).error,
        CoordinatorLoadInProgress.code()
    );
    assert!(m.load(p, 8, Vec::new(), 2).is_empty());
    // Tokens of the earlier leadership stay ignored.
    assert!(m.log_written(&token, 2).is_empty());
    assert_eq!(init(&mut m, &init_req(None), 3).0, 0);
}

/// An I/O layer whose appends and marker writes always succeed, keeping the log it wrote.
struct Driver {
    m: TxnManager,
    log: Vec<(Bytes, Option<Bytes>)>,
    answers: Vec<(RequestId, Response)>,
}

impl Driver {
    fn run(&mut self, effects: Vec<Effect>, now: i64) {
        let mut todo: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = todo.pop_front() {
            match effect {
                Effect::AppendLog {
                    token, key, value, ..
                } => {
                    self.log.push((key, value));
                    todo.extend(self.m.log_written(&token, now));
                }
                Effect::WriteMarkers { token, .. } => todo.extend(self.m.markers_written(&token)),
                Effect::Respond { request, response } => self.answers.push((request, response)),
            }
        }
    }

    /// InitProducerId for `id`: its (producer id, epoch).
    fn init(&mut self, id: &str, now: i64) -> (i64, i16) {
        let mut req = init_req(None);
        req.transactional_id = id.into();
        // A producer id no earlier call got (answers grow by one per call).
        let pid = 5000 + self.answers.len() as i64;
        let effects = self.m.init_producer_id(0, &req, &mut || Some(pid), now);
        self.run(effects, now);
        match self.answers.last() {
            Some((
                0,
                Response::InitProducerId {
                    error: 0,
                    producer_id,
                    producer_epoch,
                },
            )) => (*producer_id, *producer_epoch),
            other => panic!("{other:?}"),
        }
    }
}

/// Everything a coordinator wrote, replayed by its successor, gives the same transactions,
/// in both value versions.
#[test]
fn replaying_the_written_log_rebuilds_the_same_state() {
    for version in [0, 1] {
        let config = TxnConfig {
            transaction_state_partitions: 1,
            log_value_version: version,
            ..TxnConfig::default()
        };
        let mut d = Driver {
            m: manager_with(config.clone()),
            log: Vec::new(),
            answers: Vec::new(),
        };
        let ids = ["a", "b", "c", "d"];
        let mut pids = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            pids.push(d.init(id, i as i64));
        }
        let add = |id: &str, (pid, epoch): (i64, i16), parts: &[(&str, i32)]| AddPartitions {
            transactional_id: id.into(),
            ..add_req(pid, epoch, parts)
        };
        let end = |id: &str, (pid, epoch): (i64, i16), commit| EndTxn {
            transactional_id: id.into(),
            ..end_req(pid, epoch, commit)
        };
        let e =
            d.m.add_partitions(1, &add("a", pids[0], &[("t", 0), ("t", 1)]), 10);
        d.run(e, 10);
        let e = d.m.end_txn(2, &end("a", pids[0], true), 11);
        d.run(e, 11);
        let e = d.m.add_partitions(3, &add("b", pids[1], &[("t", 2)]), 12);
        d.run(e, 12);
        let e = d.m.end_txn(4, &end("b", pids[1], false), 13);
        d.run(e, 13);
        let offsets = AddOffsets {
            transactional_id: "c".into(),
            producer_id: pids[2].0,
            producer_epoch: pids[2].1,
            offsets_partition: 3,
        };
        let e = d.m.add_offsets(5, &offsets, 14);
        d.run(e, 14);
        d.init("d", 15);
        assert!(d.answers.iter().all(|(_, r)| match r {
            Response::InitProducerId { error, .. }
            | Response::AddPartitions { error }
            | Response::EndTxn { error } => *error == 0,
        }));

        let mut next = manager_with(config);
        assert!(
            next.load(0, 8, d.log.clone(), 20).is_empty(),
            "nothing half-way"
        );
        assert_eq!(
            next.list(&ListFilter::default(), 20),
            d.m.list(&ListFilter::default(), 20)
        );
        for id in ids {
            assert_eq!(next.describe(id), d.m.describe(id), "{id} v{version}");
        }
        let states: Vec<_> = ids
            .iter()
            .map(|id| next.describe(id).unwrap().state)
            .collect();
        assert_eq!(
            states,
            ["CompleteCommit", "CompleteAbort", "Ongoing", "Empty"]
        );
        assert_eq!(next.describe("d").unwrap().producer_epoch, 1);
    }
}
