//! Three `oxifaster raft-node` processes on 127.0.0.1, killed with SIGKILL
//! under load: every acknowledged increment is applied exactly once on
//! every node; a killed node catches up by log replay and, after the
//! others purged their logs, by a snapshot; reads and writes on a few
//! registers under leader kills form a linearizable history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxifaster_cli::raft_cluster::{CLUSTER, ProcessCluster};
use oxifaster_raft::Client;
use oxifaster_raft::linearizability::{self, Op, OpKind};

const KEYS: u64 = 8;

fn exe() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_oxifaster"))
}

/// Clients incrementing counters until `stop`; returns the increments
/// acknowledged per key.
fn writers(
    addrs: &[String],
    clients: u64,
    first_id: u64,
    stop: &Arc<AtomicBool>,
    acked: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<BTreeMap<u64, u64>>> {
    (0..clients)
        .map(|c| {
            let (addrs, stop, acked) = (addrs.to_vec(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut client = Client::<u64, u64>::new(first_id + c, CLUSTER, &addrs);
                let mut counts = BTreeMap::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let key = i % KEYS;
                    i += 1;
                    client.rmw(&key, &1).await.expect("an increment (retried until applied)");
                    *counts.entry(key).or_insert(0) += 1;
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                counts
            })
        })
        .collect()
}

async fn wait_until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn acked_at_least(acked: &AtomicU64, n: u64) {
    wait_until("acknowledged writes", Duration::from_secs(60), async || {
        acked.load(Ordering::Relaxed) >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_failover_catch_up_and_exactly_once() {
    let temp = tempfile::tempdir().expect("tempdir");
    // OXIFASTER_RAFT_TEST_DIR keeps the nodes' directories for a look after
    // a failure.
    let base = match std::env::var_os("OXIFASTER_RAFT_TEST_DIR") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("mkdir");
            dir
        }
        None => temp.path().to_path_buf(),
    };
    let mut cluster =
        ProcessCluster::start(exe(), &base, 3, &["--snapshot-every", "200", "--keep-logs", "300"])
            .expect("start the nodes");
    let leader = cluster.leader(Duration::from_secs(30)).await.expect("a leader");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let tasks = writers(&cluster.addrs, 4, 100, &stop, &acked);
    acked_at_least(&acked, 300).await;

    // 1. The leader dies mid-stream; a new one is elected and the writes go on.
    let dead_log = cluster.status(leader).await.expect("status").last_log.unwrap_or(0);
    cluster.kill(leader);
    let new_leader = cluster.leader(Duration::from_secs(30)).await.expect("a new leader");
    assert_ne!(new_leader, leader);
    // Writes go on until the others have snapshotted and purged their logs
    // past everything the dead node holds.
    wait_until("a purge past the dead node's log", Duration::from_secs(60), async || {
        cluster.status(new_leader).await.is_some_and(|s| s.purged.unwrap_or(0) > dead_log)
    })
    .await;
    let purged = cluster.status(new_leader).await.expect("status").purged.unwrap_or(0);

    // 2. It restarts and catches up through a snapshot: the others' logs
    //    no longer hold what it misses.
    cluster.restart(leader).expect("restart");
    let target = cluster.status(new_leader).await.expect("status").applied;
    wait_until("the killed leader to catch up", Duration::from_secs(60), async || {
        cluster.status(leader).await.is_some_and(|s| s.applied >= target)
    })
    .await;
    let back = cluster.status(leader).await.expect("status");
    assert!(back.snapshot.unwrap_or(0) >= purged, "caught up by a snapshot: {back:?}");

    // 3. A follower dies and misses a few writes; it catches up by replaying
    //    the leader's log (still holding them).
    //    It is up to date when it dies, and misses far fewer entries than
    //    the 300 every node keeps below its snapshot.
    let leader_now = cluster.leader(Duration::from_secs(30)).await.expect("a leader");
    // Not the node that just caught up (it may still trail by a snapshot).
    let follower = (0..3).find(|&i| i != leader_now && i != leader).expect("a follower");
    let last = cluster.status(leader_now).await.expect("status").last_log;
    wait_until("the follower to be up to date", Duration::from_secs(60), async || {
        cluster.status(follower).await.is_some_and(|s| s.last_log >= last)
    })
    .await;
    let at_kill = cluster.status(follower).await.expect("status");
    cluster.kill(follower);
    let before = acked.load(Ordering::Relaxed);
    acked_at_least(&acked, before + 20).await;
    let leader_status = cluster.status(leader_now).await.expect("status");
    assert!(
        leader_status.purged.unwrap_or(0) <= at_kill.last_log.unwrap_or(0),
        "the leader's log holds what the follower misses: {leader_status:?}, {at_kill:?}"
    );
    cluster.restart(follower).expect("restart");
    let target = cluster.status(leader_now).await.expect("status").applied;
    wait_until("the follower to catch up", Duration::from_secs(60), async || {
        cluster.status(follower).await.is_some_and(|s| s.applied >= target)
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for task in tasks {
        for (key, n) in task.await.expect("writer") {
            *expected.entry(key).or_insert(0) += n;
        }
    }
    // Every node applies everything, and every acknowledged increment
    // exactly once: the retries after the kills were not applied twice.
    let final_leader = cluster.leader(Duration::from_secs(30)).await.expect("a leader");
    let last = cluster.status(final_leader).await.expect("status").last_log;
    for node in 0..3 {
        wait_until("every node to apply everything", Duration::from_secs(60), async || {
            cluster.status(node).await.is_some_and(|s| s.applied >= last)
        })
        .await;
        let mut client = Client::<u64, u64>::new(9_000 + node as u64, CLUSTER, &cluster.addrs);
        for key in 0..KEYS {
            let value = client.read_local(node, &key).await.expect("read");
            assert_eq!(value.unwrap_or(0), expected[&key], "node {} key {key}", node + 1);
        }
    }
    eprintln!(
        "{} increments; snapshot catch-up at {back:?}; log catch-up while the leader kept {:?}",
        expected.values().sum::<u64>(),
        leader_status.purged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_under_leader_kills_are_linearizable() {
    let base = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        ProcessCluster::start(exe(), base.path(), 3, &["--snapshot-every", "500"]).expect("start");
    cluster.leader(Duration::from_secs(30)).await.expect("a leader");
    let clock = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..3u64)
        .map(|c| {
            let (addrs, stop) = (cluster.addrs.clone(), stop.clone());
            tokio::spawn(async move {
                let mut client = Client::<u64, u64>::new(500 + c, CLUSTER, &addrs);
                let mut history = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = i % 3;
                    let call = clock.elapsed().as_nanos() as u64;
                    let kind = if i.is_multiple_of(2) {
                        // Unique values: client, sequence.
                        let value = (c << 32) | i;
                        client.upsert(&key, &value).await.expect("write");
                        OpKind::Write(value)
                    } else {
                        OpKind::Read(client.read(&key).await.expect("read"))
                    };
                    let ret = clock.elapsed().as_nanos() as u64;
                    history.push(Op { key, call, ret, kind });
                    i += 1;
                }
                history
            })
        })
        .collect();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let leader = cluster.leader(Duration::from_secs(30)).await.expect("a leader");
        cluster.kill(leader);
        cluster.leader(Duration::from_secs(30)).await.expect("a new leader");
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.restart(leader).expect("restart");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut history = Vec::new();
    for task in tasks {
        history.extend(task.await.expect("client"));
    }
    assert!(history.len() > 100, "only {} operations", history.len());
    assert_eq!(linearizability::check(&history), Ok(()), "{} operations", history.len());
}
