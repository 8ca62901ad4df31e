//! Forged calls on the RPC port of real `chronik-server` processes (issue 17): Raft
//! AppendEntries, Vote, Propose and ChangeMembership, a replication Fetch, a transaction
//! coordinator's WriteMarkers and an admin call.
//!
//! - With RPC mutual TLS, a caller without a certificate from the cluster CA gets no answer at
//!   all (the handshake fails), and a caller with node 2's valid certificate who claims to be
//!   node 3 gets PermissionDenied; the cluster's metadata stays as it was.
//! - Without RPC TLS (loopback), the same forged calls are accepted: a Propose from anybody
//!   rewrites a broker's advertised address. That is the attack the first test closes, and it
//!   shows the forged messages are well-formed (a refusal under TLS is the check's doing).
//!
//! Certificates come from the `openssl` CLI (docs/security.md has the same recipe).
//! `CHRONIK_SERVER_BIN` runs another binary (e.g. main's, to see what it accepts).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chronik_admin::pb::admin_client::AdminClient;
use chronik_admin::pb::{DescribeClusterReply, DescribeClusterRequest, DescribeTopicsRequest};
use chronik_cluster::pb::propose_reply::Result as ProposeResult;
use chronik_cluster::pb::raft_client::RaftClient;
use chronik_cluster::pb::{MembershipRequest, ProposeRequest, RaftPayload};
use chronik_metadata::raft::{NodeId, TypeConfig};
use chronik_replication::pb::replication_client::ReplicationClient;
use chronik_replication::pb::FetchRequest;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Vote;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn server_bin() -> PathBuf {
    std::env::var_os("CHRONIK_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chronik-server")))
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir` named `name` (`name.pem`, `name.key`).
fn make_ca(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).expect("pki dir");
    let subj = format!("/CN={name}");
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subj,
            "-keyout", &key, "-out", &pem,
        ],
    );
}

/// `cn.pem`/`cn.key` signed by the CA `ca` in `dir`: nodes carry the shared server name.
fn sign(dir: &Path, ca: &str, cn: &str, node: bool) {
    let ext = if node {
        "subjectAltName=DNS:chronik-rpc\nextendedKeyUsage=serverAuth,clientAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    std::fs::write(dir.join(format!("{cn}.ext")), ext).expect("ext file");
    let subj = format!("/CN={cn}");
    let (key, csr, pem, extf) = (
        format!("{cn}.key"),
        format!("{cn}.csr"),
        format!("{cn}.pem"),
        format!("{cn}.ext"),
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subj, "-keyout", &key, "-out", &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extf,
            "-out",
            &pem,
        ],
    );
}

/// The cluster CA with node-1..3 and admin in `base/ca`; a foreign CA with its own node-2 in
/// `base/foreign`.
fn make_pki(base: &Path) {
    let ours = base.join("ca");
    make_ca(&ours, "cluster-ca");
    for cn in ["node-1", "node-2", "node-3"] {
        sign(&ours, "cluster-ca", cn, true);
    }
    sign(&ours, "cluster-ca", "admin", false);
    let theirs = base.join("foreign");
    make_ca(&theirs, "foreign-ca");
    sign(&theirs, "foreign-ca", "node-2", true);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One `chronik-server` process, killed on drop.
struct Node {
    child: Child,
    rpc: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` nodes on loopback (with RPC TLS from `pki` when given) and waits for every
/// ready line.
fn start_cluster(dir: &Path, n: u64, pki: Option<&Path>) -> Vec<Node> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let peers = (1..=n)
        .map(|i| format!("{i}@127.0.0.1:{}", ports[i as usize - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    let mut ready = Vec::new();
    for i in 1..=n {
        let mut cmd = Command::new(server_bin());
        cmd.args(["--node-id", &i.to_string(), "--cluster", &peers])
            .arg("--data-dir")
            .arg(dir.join(format!("node{i}")))
            .args(["--kafka-addr", "127.0.0.1:0", "--http-addr", "off"])
            .env("CHRONIK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(pki) = pki {
            let ca = pki.join("ca");
            cmd.arg("--rpc-tls-cert")
                .arg(ca.join(format!("node-{i}.pem")))
                .arg("--rpc-tls-key")
                .arg(ca.join(format!("node-{i}.key")))
                .arg("--rpc-tls-ca")
                .arg(ca.join("cluster-ca.pem"));
        }
        let mut child = cmd.spawn().expect("chronik-server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("chronik-server ready") {
                    let _ = tx.send(());
                }
            }
        });
        ready.push(rx);
        nodes.push(Node {
            child,
            rpc: format!("127.0.0.1:{}", ports[i as usize - 1]),
        });
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for (i, rx) in ready.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left)
            .unwrap_or_else(|_| panic!("node {} printed no ready line", i + 1));
    }
    nodes
}

/// How a test client reaches the RPC port.
#[derive(Clone, Copy)]
enum Client<'a> {
    /// Plain HTTP/2, no TLS.
    Plain,
    /// TLS trusting `ca` (a PEM path), presenting `identity` (cert, key) if any.
    Tls {
        ca: &'a Path,
        identity: Option<(&'a Path, &'a Path)>,
    },
}

async fn channel(addr: &str, client: Client<'_>) -> Result<Channel, String> {
    let endpoint = match client {
        Client::Plain => {
            Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?
        }
        Client::Tls { ca, identity } => {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(std::fs::read(ca).expect("ca")))
                .domain_name("chronik-rpc");
            if let Some((cert, key)) = identity {
                tls = tls.identity(Identity::from_pem(
                    std::fs::read(cert).expect("cert"),
                    std::fs::read(key).expect("key"),
                ));
            }
            Endpoint::from_shared(format!("https://{addr}"))
                .and_then(|e| e.tls_config(tls))
                .map_err(|e| e.to_string())?
        }
    };
    endpoint
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))
}

fn payload<T: serde::Serialize>(v: &T) -> RaftPayload {
    RaftPayload {
        json: serde_json::to_vec(v).expect("serializable"),
    }
}

/// AppendEntries from `leader` in `term`, carrying nothing.
fn append_entries(term: u64, leader: NodeId) -> RaftPayload {
    payload(&AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    })
}

/// Propose: node `node`'s advertised Kafka address becomes `host`:1 (clients are sent there).
fn hijack(node: i32, host: &str) -> ProposeRequest {
    let cmd = serde_json::json!({"RegisterBroker": {
        "node_id": node, "host": host, "port": 1, "rack": null, "rpc_addr": "127.0.0.1:1"
    }});
    ProposeRequest {
        from_node: 3,
        command_json: serde_json::to_vec(&cmd).expect("json"),
    }
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<(), Code> {
    r.map(|_| ()).map_err(|s| s.code())
}

/// The outcome of each forged call, by name: `Ok(())` when the node answered it.
async fn forge_all(addr: &str, client: Client<'_>) -> Vec<(&'static str, Result<(), Code>)> {
    let ch = match channel(addr, client).await {
        Ok(ch) => ch,
        // No connection at all: every call is refused.
        Err(_) => return ["all"].map(|n| (n, Err(Code::Unavailable))).to_vec(),
    };
    let mut raft = RaftClient::new(ch.clone());
    let vote = VoteRequest::<NodeId>::new(Vote::new(1000, 3), None);
    vec![
        (
            "AppendEntries",
            code(raft.append_entries(append_entries(1000, 3)).await),
        ),
        ("Vote", code(raft.vote(payload(&vote)).await)),
        (
            "Propose",
            code(raft.propose(hijack(2, "hijacked.invalid")).await),
        ),
        (
            "ChangeMembership",
            code(
                raft.change_membership(MembershipRequest {
                    action: 1,
                    node_id: 9,
                    rpc_addr: "127.0.0.1:1".into(),
                })
                .await,
            ),
        ),
        ("Fetch", fetch(ch.clone(), 3).await),
        (
            "admin DescribeCluster",
            code(
                AdminClient::new(ch)
                    .describe_cluster(DescribeClusterRequest { local_only: true })
                    .await,
            ),
        ),
    ]
}

/// A replication Fetch stream claiming follower `follower`: the first answer's outcome.
async fn fetch(ch: Channel, follower: u64) -> Result<(), Code> {
    let req = FetchRequest {
        follower_id: follower,
        partitions: vec![],
        max_wait_ms: 0,
        max_bytes: 1024,
        ..Default::default()
    };
    let mut stream = ReplicationClient::new(ch)
        .fetch(tokio_stream::iter(vec![req]))
        .await
        .map_err(|s| s.code())?
        .into_inner();
    match stream.message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Code::Aborted),
        Err(s) => Err(s.code()),
    }
}

/// What must not change: members, brokers and their addresses, topics.
/// An abort marker for a producer that never wrote, to a topic that does not exist, in
/// `caller`'s name (the transaction coordinator's WriteMarkers between nodes).
async fn markers(ch: Channel, caller: u64) -> Result<(), Code> {
    use chronik_server::coordinators::transactions::remote::pb;
    let req = pb::WriteMarkersRequest {
        caller_id: caller,
        producer_id: 4242,
        producer_epoch: 0,
        commit: false,
        coordinator_epoch: 0,
        partitions: vec![pb::Partition {
            topic: "none".into(),
            partition: 0,
        }],
    };
    code(
        pb::transactions_client::TransactionsClient::new(ch)
            .write_markers(req)
            .await,
    )
}

async fn metadata(addr: &str, client: Client<'_>) -> String {
    let mut admin = AdminClient::new(channel(addr, client).await.expect("admin channel"));
    let c: DescribeClusterReply = admin
        .describe_cluster(DescribeClusterRequest { local_only: true })
        .await
        .expect("describe cluster")
        .into_inner();
    let topics = admin
        .describe_topics(DescribeTopicsRequest { topics: vec![] })
        .await
        .expect("describe topics")
        .into_inner();
    let brokers: Vec<_> = c
        .brokers
        .iter()
        .map(|b| (b.node_id, b.host.clone(), b.port, b.rpc_addr.clone()))
        .collect();
    let names: Vec<_> = topics.topics.iter().map(|t| t.name.clone()).collect();
    format!(
        "voters={:?} learners={:?} brokers={brokers:?} topics={names:?}",
        c.voters, c.learners
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rpc_tls_forged_calls_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    make_pki(&pki);
    let nodes = start_cluster(dir.path(), 3, Some(&pki));
    let ca_dir = pki.join("ca");
    let ca = ca_dir.join("cluster-ca.pem");
    let (admin_pem, admin_key) = (ca_dir.join("admin.pem"), ca_dir.join("admin.key"));
    let admin = Client::Tls {
        ca: &ca,
        identity: Some((&admin_pem, &admin_key)),
    };
    let before = metadata(&nodes[0].rpc, admin).await;

    // Without a certificate of the cluster CA: no call gets through, on any node.
    let foreign = pki.join("foreign");
    let (f_pem, f_key) = (foreign.join("node-2.pem"), foreign.join("node-2.key"));
    let strangers = [
        ("plaintext", Client::Plain),
        (
            "TLS without a certificate",
            Client::Tls {
                ca: &ca,
                identity: None,
            },
        ),
        (
            "another CA's node-2 certificate",
            Client::Tls {
                ca: &ca,
                identity: Some((&f_pem, &f_key)),
            },
        ),
    ];
    for node in &nodes {
        for (what, client) in strangers {
            for (rpc, outcome) in forge_all(&node.rpc, client).await {
                assert!(
                    outcome.is_err(),
                    "{what}: {rpc} on {} was answered",
                    node.rpc
                );
            }
        }
    }

    // Node 2's own, valid certificate: claiming to be node 3 is refused.
    let (n2_pem, n2_key) = (ca_dir.join("node-2.pem"), ca_dir.join("node-2.key"));
    let node2 = Client::Tls {
        ca: &ca,
        identity: Some((&n2_pem, &n2_key)),
    };
    for node in [&nodes[0], &nodes[2]] {
        let ch = channel(&node.rpc, node2).await.expect("node 2 connects");
        let mut raft = RaftClient::new(ch.clone());
        let forged = raft.append_entries(append_entries(1000, 3)).await;
        assert_eq!(forged.err().map(|s| s.code()), Some(Code::PermissionDenied));
        let vote = VoteRequest::<NodeId>::new(Vote::new(1000, 3), None);
        let forged = raft.vote(payload(&vote)).await;
        assert_eq!(forged.err().map(|s| s.code()), Some(Code::PermissionDenied));
        assert_eq!(fetch(ch.clone(), 3).await, Err(Code::PermissionDenied));
        // The transaction coordinator's calls: a marker written in node 3's name.
        assert_eq!(markers(ch.clone(), 3).await, Err(Code::PermissionDenied));
        // Control: the same calls in node 2's own name reach Raft and replication (an
        // AppendEntries of term 0 is answered, and refused by Raft for its old term).
        raft.append_entries(append_entries(0, 2))
            .await
            .expect("node 2's own AppendEntries is answered");
        assert_eq!(fetch(ch, 2).await, Ok(()));
    }
    // An operator's certificate is not a node's.
    let ch = channel(&nodes[1].rpc, admin).await.expect("admin connects");
    let forged = RaftClient::new(ch)
        .append_entries(append_entries(1000, 1))
        .await;
    assert_eq!(forged.err().map(|s| s.code()), Some(Code::PermissionDenied));
    let ch = channel(&nodes[1].rpc, admin).await.expect("admin connects");
    assert_eq!(markers(ch, 1).await, Err(Code::PermissionDenied));

    for node in &nodes {
        assert_eq!(
            metadata(&node.rpc, admin).await,
            before,
            "metadata on {}",
            node.rpc
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rpc_tls_forged_calls_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(dir.path(), 1, None);
    let addr = &nodes[0].rpc;
    let mut raft = RaftClient::new(channel(addr, Client::Plain).await.expect("connects"));
    let reply = raft
        .propose(hijack(1, "hijacked.invalid"))
        .await
        .expect("an anonymous Propose is answered")
        .into_inner();
    assert!(
        matches!(reply.result, Some(ProposeResult::ReplyJson(_))),
        "{reply:?}"
    );
    let md = metadata(addr, Client::Plain).await;
    assert!(md.contains("hijacked.invalid"), "{md}");
    raft.append_entries(append_entries(0, 3))
        .await
        .expect("an AppendEntries claiming leader 3 is answered");
    let ch = channel(addr, Client::Plain).await.expect("connects");
    assert_eq!(fetch(ch, 3).await, Ok(()));
}
