//! Three metadata nodes in one process, talking real gRPC over 127.0.0.1 and keeping real
//! files: formation from one peer list, writes from a follower, leader failover, no writes
//! without a quorum, and restart with the same state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chronik_cluster::{MetadataNode, NodeConfig, PeerList, ProposeError};
use chronik_metadata::{BrokerInfo, BrokerState, MetadataCommand, MetadataState};
use tokio::net::TcpListener;
use tokio::time::Instant;

const READY: Duration = Duration::from_secs(20);

async fn start(id: u64, peers: &PeerList, root: &Path, listener: TcpListener) -> Arc<MetadataNode> {
    MetadataNode::start(NodeConfig {
        node_id: id,
        peers: peers.clone(),
        dir: root.join(format!("n{id}")),
        rpc_listener: Some(listener),
        propose_timeout: Duration::from_secs(3),
        heartbeat: Duration::from_millis(100),
        snapshot_after_logs: 20,
        services: None,
        join: None,
    })
    .await
    .expect("start node")
}

fn register(id: i32) -> MetadataCommand {
    MetadataCommand::RegisterBroker(BrokerInfo {
        node_id: id,
        host: "127.0.0.1".into(),
        port: 9000 + id,
        listeners: Vec::new(),
        rack: None,
        rpc_addr: String::new(),
        state: BrokerState::Alive,
        incarnation: 0,
    })
}

/// Polls until every node's applied state satisfies `f`, or panics at the deadline.
async fn converge(nodes: &[&Arc<MetadataNode>], what: &str, f: impl Fn(&MetadataState) -> bool) {
    let deadline = Instant::now() + READY;
    while !nodes.iter().all(|n| f(&n.state())) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leader_among(nodes: &[&Arc<MetadataNode>]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<u64> = nodes.iter().filter_map(|n| n.leader()).collect();
        if leaders.len() == nodes.len()
            && leaders.iter().all(|l| *l == leaders[0])
            && nodes.iter().any(|n| n.node_id == leaders[0])
        {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no common leader among live nodes within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three RPC listeners on OS-picked ports and the peer list naming them.
async fn three_listeners() -> (PeerList, Vec<TcpListener>) {
    let mut listeners = Vec::new();
    let mut map = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        map.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    (PeerList(map), listeners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_fail_over_refuse_without_quorum_and_restart() {
    let root = tempfile::tempdir().unwrap();
    let (peers, listeners) = three_listeners().await;

    // All three start at the same moment with the same list.
    let mut starts = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let (peers, dir) = (peers.clone(), root.path().to_path_buf());
        starts.push(tokio::spawn(async move {
            start(i as u64 + 1, &peers, &dir, l).await
        }));
    }
    let mut nodes = Vec::new();
    for s in starts {
        nodes.push(s.await.unwrap());
    }
    let cluster_id = nodes[0].wait_ready(READY).await.unwrap().cluster_id.clone();
    let all: Vec<&Arc<MetadataNode>> = nodes.iter().collect();
    converge(&all, "one cluster id everywhere", |s| {
        s.cluster_id == cluster_id
    })
    .await;

    // A write on a follower is forwarded to the leader and reaches every node.
    let leader = leader_among(&all).await;
    let follower = nodes.iter().find(|n| n.node_id != leader).unwrap();
    follower.propose(register(7)).await.unwrap();
    converge(&all, "broker 7 everywhere", |s| s.brokers.contains_key(&7)).await;
    // Refusals come back to the proposer as refusals, not as unavailability.
    follower.propose(topic_t(1)).await.unwrap();
    let again = follower.propose(topic_t(2)).await;
    assert!(matches!(again, Err(ProposeError::Refused(_))), "{again:?}");

    // The leader stops: the other two elect a new one within 10 s and take writes.
    let old = nodes.iter().position(|n| n.node_id == leader).unwrap();
    let stopped = nodes.remove(old);
    stopped.shutdown().await;
    let t0 = Instant::now();
    let live: Vec<&Arc<MetadataNode>> = nodes.iter().collect();
    let new_leader = leader_among(&live).await;
    assert_ne!(new_leader, leader);
    nodes[0].propose(register(8)).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "failover took {:?}",
        t0.elapsed()
    );
    converge(&live, "broker 8 on the survivors", |s| {
        s.brokers.contains_key(&8)
    })
    .await;

    // One node left: a write fails with a clear error within its timeout.
    let second = nodes.remove(0);
    second.shutdown().await;
    let t0 = Instant::now();
    let r = nodes[0].propose(register(9)).await;
    assert!(matches!(r, Err(ProposeError::Unavailable(_))), "{r:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t0.elapsed()
    );
    let last = nodes.remove(0);
    last.shutdown().await;
    drop((stopped, second, last));

    // All three restart on their directories: same cluster id, same topics and brokers.
    let mut nodes = Vec::new();
    for (id, addr) in &peers.0 {
        let l = bind_again(addr).await;
        nodes.push(start(*id, &peers, root.path(), l).await);
    }
    let all: Vec<&Arc<MetadataNode>> = nodes.iter().collect();
    converge(&all, "state after restart", |s| {
        s.cluster_id == cluster_id
            && s.brokers.contains_key(&7)
            && s.brokers.contains_key(&8)
            && s.topics.contains_key("t")
    })
    .await;
    leader_among(&all).await;
    nodes[2].propose(register(10)).await.unwrap();
    // Broker 9's write timed out on a lone leader and may survive in its log: once a later
    // write is committed and applied everywhere, its fate is decided and every node agrees.
    converge(&all, "broker 10 everywhere", |s| {
        s.brokers.contains_key(&10)
    })
    .await;
    let nine: Vec<bool> = nodes
        .iter()
        .map(|n| n.state().brokers.contains_key(&9))
        .collect();
    assert!(
        nine.iter().all(|x| *x == nine[0]),
        "nodes disagree on broker 9: {nine:?}"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

/// Creates topic "t" (two partitions on broker 7) under topic id `id`.
fn topic_t(id: u128) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: "t".into(),
        id: uuid::Uuid::from_u128(id),
        assignments: vec![vec![7], vec![7]],
        configs: BTreeMap::new(),
        internal: false,
        partitions: None,
        replication_factor: None,
    }
}

/// Binds the address a stopped node used (its server may need a moment to let go).
async fn bind_again(addr: &str) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("rebinding {addr}: {e}"),
        }
    }
}

#[tokio::test]
async fn a_node_refuses_a_peer_list_that_conflicts_with_its_data() {
    let root = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let peers: PeerList = format!("1@{addr}").parse().unwrap();
    let n = start(1, &peers, root.path(), l).await;
    n.wait_ready(READY).await.unwrap();
    n.shutdown().await;
    drop(n);

    let other: PeerList = format!("1@{addr},2@127.0.0.1:1").parse().unwrap();
    let l = bind_again(&addr).await;
    let r = MetadataNode::start(NodeConfig {
        node_id: 1,
        peers: other,
        dir: root.path().join("n1"),
        rpc_listener: Some(l),
        propose_timeout: Duration::from_secs(1),
        heartbeat: Duration::from_millis(100),
        snapshot_after_logs: 20,
        services: None,
        join: None,
    })
    .await;
    let msg = r.err().expect("conflicting peer list accepted").to_string();
    assert!(msg.contains("started as node 1 with --cluster"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let (peers, mut listeners) = three_listeners().await;
    let l3 = listeners.pop().unwrap();
    let addr3 = l3.local_addr().unwrap().to_string();
    drop(l3);
    // Nodes 1 and 2 form a quorum and commit far more than the log keeps.
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(start(i as u64 + 1, &peers, root.path(), l).await);
    }
    nodes[0].wait_ready(READY).await.unwrap();
    for id in 100..200 {
        nodes[id as usize % 2].propose(register(id)).await.unwrap();
    }
    let two: Vec<&Arc<MetadataNode>> = nodes.iter().collect();
    converge(&two, "200 brokers on 1 and 2", |s| s.brokers.len() >= 100).await;
    // The log was purged behind a snapshot (built in the background): its first entries go.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let purged = nodes[0].raft().metrics().borrow().purged;
        if purged.is_some_and(|p| p.index > 20) {
            break;
        }
        assert!(Instant::now() < deadline, "log not purged: {purged:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Node 3 starts empty and can only catch up through InstallSnapshot.
    let n3 = start(3, &peers, root.path(), bind_again(&addr3).await).await;
    nodes.push(n3);
    let all: Vec<&Arc<MetadataNode>> = nodes.iter().collect();
    let want = nodes[0].state();
    converge(&all, "node 3 has the whole state", |s| {
        s.brokers == want.brokers && s.cluster_id == want.cluster_id
    })
    .await;
    let snap = nodes[2].raft().metrics().borrow().snapshot;
    assert!(snap.is_some(), "node 3 has no snapshot");
    for n in nodes {
        n.shutdown().await;
    }
}
