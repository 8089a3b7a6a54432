//! A replicated `Store<u64, u64>`: three nodes as three OS processes on
//! 127.0.0.1 (this program started again as `raft_cluster node ...`), a
//! client that increments counters, and, with `--kill`, the leader killed
//! with SIGKILL half-way and restarted; at the end every node holds every
//! acknowledged increment exactly once.
//!
//! ```sh
//! cargo run --release --example raft_cluster            # 3 nodes, 2,000 increments
//! cargo run --release --example raft_cluster -- --kill  # and kill the leader half-way
//! ```

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxifaster_raft::{Client, Node, NodeConfig};

const CLUSTER: &str = "example";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `raft_cluster node ID ADDR DIR PEERS [--init]`: one node, until killed.
async fn run_node(args: &[String]) -> Result<()> {
    let [id, addr, dir, peers, rest @ ..] = args else {
        return Err("node ID ADDR DIR PEERS [--init]".into());
    };
    let peers: BTreeMap<u64, String> = peers
        .split(',')
        .map(|p| {
            let (id, addr) = p.split_once('=').ok_or("ID=ADDR")?;
            Ok((id.parse()?, addr.to_string()))
        })
        .collect::<Result<_>>()?;
    let mut config = NodeConfig::new(id.parse()?, addr.clone(), dir);
    config.cluster = CLUSTER.into();
    config.snapshot_every = 500;
    let node = Node::<u64, u64>::start(config, Arc::new(|b| b)).await?;
    if rest.iter().any(|a| a == "--init") {
        node.initialize(peers).await?;
    }
    std::future::pending::<()>().await;
    Ok(())
}

fn spawn(i: usize, addrs: &[String], base: &std::path::Path, init: bool) -> Result<Child> {
    let peers: Vec<String> =
        addrs.iter().enumerate().map(|(j, a)| format!("{}={a}", j + 1)).collect();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("node")
        .arg((i + 1).to_string())
        .arg(&addrs[i])
        .arg(base.join(format!("node{}", i + 1)))
        .arg(peers.join(","))
        .stdout(Stdio::null());
    if init {
        cmd.arg("--init");
    }
    Ok(cmd.spawn()?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("node") {
        return run_node(&args[1..]).await;
    }
    let kill = args.iter().any(|a| a == "--kill");
    let base = tempfile::tempdir()?;
    // Three free ports.
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<std::io::Result<_>>()?;
    drop(listeners);
    let mut nodes: Vec<Child> =
        (0..3).map(|i| spawn(i, &addrs, base.path(), i == 0)).collect::<Result<_>>()?;
    println!("3 nodes on {addrs:?}");

    let mut client = Client::<u64, u64>::new(1, CLUSTER, &addrs);
    let start = Instant::now();
    let total = 2_000u64;
    for i in 0..total {
        client.rmw(&(i % 10), &1).await?;
        if kill && i == total / 2 {
            let mut probe = Client::<u64, u64>::new(0, CLUSTER, &addrs);
            let leader = loop {
                if let Some(l) = probe.status(0).await.ok().and_then(|s| s.leader) {
                    break l as usize - 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            nodes[leader].kill()?;
            nodes[leader].wait()?;
            println!("killed node {} (the leader) after {i} increments", leader + 1);
            let killed = Instant::now();
            client.rmw(&0, &0).await?;
            println!("a new leader took a write {:?} after the kill", killed.elapsed());
            nodes[leader] = spawn(leader, &addrs, base.path(), false)?;
            println!("node {} restarted", leader + 1);
        }
    }
    println!("{total} increments acknowledged in {:?}", start.elapsed());
    // Linearizable reads through the leader, then each node's own state
    // once it has caught up.
    let mut sum = 0;
    for key in 0..10u64 {
        sum += client.read(&key).await?.unwrap_or(0);
    }
    assert_eq!(sum, total, "every acknowledged increment, once");
    for node in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut local = 0;
            for key in 0..10u64 {
                local += client.read_local(node, &key).await.ok().flatten().unwrap_or(0);
            }
            if local == total {
                println!("node {}: {local} increments", node + 1);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("node {} holds {local} of {total}", node + 1).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for mut node in nodes {
        let _ = node.kill();
        let _ = node.wait();
    }
    Ok(())
}
