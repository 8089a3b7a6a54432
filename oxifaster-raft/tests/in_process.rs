//! Three nodes in one process: replication, failover, catch-up through a
//! snapshot, exactly-once retries, refusals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxifaster_raft::network::{Connection, Message};
use oxifaster_raft::{Client, Node, NodeConfig, Response};

type N = Node<u64, u64>;

async fn start(id: u64, dir: &std::path::Path, listen: &str, snapshot_every: u64) -> N {
    let mut config = NodeConfig::new(id, listen, dir.join(format!("n{id}")));
    config.snapshot_every = snapshot_every;
    config.keep_logs = 0;
    Node::start(config, Arc::new(|b| b)).await.expect("start")
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_fails_over_and_catches_up_through_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes: Vec<Option<N>> = Vec::new();
    for id in 1..=3 {
        nodes.push(Some(start(id, dir.path(), "127.0.0.1:0", 50).await));
    }
    let addrs: Vec<String> =
        nodes.iter().map(|n| n.as_ref().expect("node").addr().to_string()).collect();
    let members: BTreeMap<u64, String> =
        addrs.iter().enumerate().map(|(i, a)| (i as u64 + 1, a.clone())).collect();
    nodes[0].as_ref().expect("node").initialize(members).await.expect("initialize");
    let mut client = Client::<u64, u64>::new(7, "oxifaster", &addrs);
    for i in 0..100u64 {
        assert_eq!(client.rmw(&(i % 5), &1).await.expect("rmw"), Response::Applied);
    }
    assert_eq!(client.read(&0).await.expect("read"), Some(20));

    // Stop the leader; the others elect a new one and take writes.
    let leader = nodes[0].as_ref().expect("node").status().leader.expect("a leader");
    let down = (leader - 1) as usize;
    let leader_addr = addrs[down].clone();
    let applied_at_stop = nodes[down].as_ref().expect("node").status().applied.expect("applied");
    nodes[down].take().expect("node").shutdown().await.expect("shutdown");
    for i in 0..300u64 {
        client.rmw(&(i % 5), &1).await.expect("rmw after the failover");
    }
    assert_eq!(client.read(&0).await.expect("read"), Some(80));

    // The stopped node restarts; the others purged their logs past what it
    // has, so it catches up through a snapshot.
    let up = (down + 1) % 3;
    {
        let survivor = nodes[up].as_ref().expect("a survivor");
        wait_for("a purge", async || survivor.status().purged.unwrap_or(0) > applied_at_stop + 50)
            .await;
    }
    nodes[down] = Some(start(leader, dir.path(), &leader_addr, 50).await);
    let back = nodes[down].as_ref().expect("node");
    let survivor = nodes[up].as_ref().expect("a survivor");
    wait_for("the restarted node to catch up", async || {
        let s = back.status();
        s.applied >= survivor.status().applied
    })
    .await;
    // It could not have caught up from the others' logs (purged past what it
    // had): it installed a snapshot newer than anything it had built.
    assert!(back.status().snapshot.expect("a snapshot") > applied_at_stop, "{:?}", back.status());
    for node in nodes.iter().flatten() {
        for key in 0..5u64 {
            assert_eq!(node.reader().read(&key).await.expect("read"), Some(80), "key {key}");
        }
    }
    for node in nodes.into_iter().flatten() {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_applies_once_and_strangers_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(1, dir.path(), "127.0.0.1:0", 10_000).await;
    let addr = node.addr().to_string();
    node.initialize(BTreeMap::from([(1, addr.clone())])).await.expect("initialize");
    let mut client = Client::<u64, u64>::new(9, "oxifaster", std::slice::from_ref(&addr));
    client.rmw(&1, &5).await.expect("rmw");
    // The same request again (a retry after a lost reply): not applied twice.
    let mut conn = Connection::new(addr.clone(), "oxifaster", 1 << 20);
    let retry = Message::Write(oxifaster_raft::Request {
        client: 9,
        serial: 1,
        command: oxifaster_raft::Command::Rmw {
            key: 1u64.to_ne_bytes().to_vec(),
            input: 5u64.to_ne_bytes().to_vec(),
        },
    });
    let reply = conn.call(&retry, Duration::from_secs(5)).await.expect("retry");
    assert!(format!("{reply:?}").contains("Applied"), "{reply:?}");
    assert_eq!(client.read(&1).await.expect("read"), Some(5));
    // A peer of another protocol version, or of another cluster, is refused.
    let mut old = Connection::new(addr.clone(), "oxifaster", 1 << 20).with_version(99);
    let err = old.call(&Message::Status, Duration::from_secs(5)).await.expect_err("refused");
    assert!(err.to_string().contains("protocol version 99"), "{err}");
    let mut other = Connection::new(addr.clone(), "elsewhere", 1 << 20);
    let err = other.call(&Message::Status, Duration::from_secs(5)).await.expect_err("refused");
    assert!(err.to_string().contains("cluster"), "{err}");
    // A frame above the limit is refused; the node keeps serving.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        raw.write_all(&u32::MAX.to_le_bytes()).await.expect("write");
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the connection is closed");
    }
    assert_eq!(client.read(&1).await.expect("still serving"), Some(5));
    node.shutdown().await.expect("shutdown");
    // Another cluster's node id in this directory is refused.
    let mut config = NodeConfig::new(2, "127.0.0.1:0", dir.path().join("n1"));
    config.cluster = "oxifaster".into();
    let err = Node::<u64, u64>::start(config, Arc::new(|b| b)).await.expect_err("wrong node");
    assert!(matches!(err, oxifaster_raft::Error::WrongIdentity { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_add_a_learner_promote_it_and_remove_a_voter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = Vec::new();
    for id in 1..=4 {
        nodes.push(start(id, dir.path(), "127.0.0.1:0", 10_000).await);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let members: BTreeMap<u64, String> =
        addrs[..3].iter().enumerate().map(|(i, a)| (i as u64 + 1, a.clone())).collect();
    nodes[0].initialize(members).await.expect("initialize");
    let mut client = Client::<u64, u64>::new(11, "oxifaster", &addrs[..3]);
    for _ in 0..50 {
        client.rmw(&1, &1).await.expect("rmw");
    }
    // Node 4 joins as a learner (the call returns once its log caught up;
    // it applies what it received soon after) ...
    client.add_learner(4, &addrs[3]).await.expect("add a learner");
    wait_for("the learner to apply the log", async || {
        nodes[3].reader().read(&1).await.expect("read") == Some(50)
    })
    .await;
    assert!(!nodes[3].status().voters.contains(&4));
    // ... is promoted to a voter, and node 1 is removed.
    client.change_membership([1, 2, 3, 4].into()).await.expect("promote");
    client.change_membership([2, 3, 4].into()).await.expect("remove node 1");
    let mut client = Client::<u64, u64>::new(12, "oxifaster", &addrs[1..]);
    client.rmw(&1, &1).await.expect("rmw after the change");
    assert_eq!(client.read(&1).await.expect("read"), Some(51));
    wait_for("node 4 to apply the change", async || nodes[3].status().voters == [2, 3, 4].into())
        .await;
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}
