//! `oxifaster raft-node` (one node of a replicated `Store<u64, u64>`) and
//! `oxifaster raft-bench` (a cluster of such processes on 127.0.0.1 under
//! client load, optionally with a leader killed mid-run).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use oxifaster_cli::raft_cluster::{CLUSTER, ProcessCluster};
use oxifaster_cli::workload::Rng;
use oxifaster_raft::{Client, Node, NodeConfig};

/// Arguments of `oxifaster raft-node`.
#[derive(Debug, Args)]
pub struct RaftNodeArgs {
    /// This node's id (1, 2, ...).
    #[arg(long)]
    id: u64,
    /// The address to listen on, e.g. 127.0.0.1:7001.
    #[arg(long)]
    addr: String,
    /// The node's data directory (created if new).
    #[arg(long)]
    dir: PathBuf,
    /// Every voter of the cluster, `ID=HOST:PORT` comma-separated (this
    /// node included).
    #[arg(long)]
    peers: String,
    /// The cluster's name: peers and directories of another cluster are
    /// refused.
    #[arg(long, default_value = "oxifaster")]
    cluster: String,
    /// Initialize a new cluster with `--peers` as its voters (on one node,
    /// once; harmless later).
    #[arg(long)]
    init: bool,
    /// A snapshot after this many log entries since the last one.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Log entries kept below the newest snapshot.
    #[arg(long, default_value_t = 1_000)]
    keep_logs: u64,
    /// The largest network frame, in bytes.
    #[arg(long, default_value_t = oxifaster_raft::network::DEFAULT_MAX_FRAME)]
    max_frame: usize,
}

fn parse_peers(peers: &str) -> Result<BTreeMap<u64, String>, Box<dyn std::error::Error>> {
    let mut out = BTreeMap::new();
    for part in peers.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| crate::usage(format!("--peers: {part:?} is not ID=HOST:PORT")))?;
        let id: u64 =
            id.trim().parse().map_err(|_| crate::usage(format!("--peers: {id:?} is not an id")))?;
        if id == 0 {
            return Err(crate::usage("--peers: node ids start at 1"));
        }
        out.insert(id, addr.trim().to_string());
    }
    if out.is_empty() {
        return Err(crate::usage("--peers: no peers"));
    }
    Ok(out)
}

fn runtime() -> Result<tokio::runtime::Runtime, Box<dyn std::error::Error>> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Runs one node until SIGINT or SIGTERM.
pub fn node(args: RaftNodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let peers = parse_peers(&args.peers)?;
    if !peers.contains_key(&args.id) && args.init {
        return Err(crate::usage(format!("--init: node {} is not in --peers", args.id)));
    }
    runtime()?.block_on(async move {
        let mut config = NodeConfig::new(args.id, args.addr.clone(), args.dir.clone());
        config.cluster = args.cluster.clone();
        config.snapshot_every = args.snapshot_every;
        config.keep_logs = args.keep_logs;
        config.max_frame = args.max_frame;
        let node = Node::<u64, u64>::start(config, Arc::new(|b| b)).await?;
        if args.init {
            node.initialize(peers).await?;
        }
        println!("node {} of {:?} listening on {}", args.id, args.cluster, node.addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        node.shutdown().await?;
        Ok(())
    })
}

/// Arguments of `oxifaster raft-bench`.
#[derive(Debug, Args)]
pub struct RaftBenchArgs {
    /// Nodes (1 for the same workload without replication).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients, one command outstanding each; a run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Counters the clients increment (uniformly).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Kill the leader (SIGKILL) half-way through each run and report the
    /// time from the kill to the first write acknowledged after it.
    #[arg(long)]
    failover: bool,
    /// Where the nodes keep their data (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A snapshot after this many log entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
}

/// One run's totals.
struct RunResult {
    acked: u64,
    failed: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    failover: Option<Duration>,
}

/// Runs the benchmark.
pub fn bench(args: RaftBenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.nodes == 0 || args.clients.contains(&0) || args.keys == 0 {
        return Err(crate::usage("--nodes, --clients and --keys must be at least 1"));
    }
    if args.failover && args.nodes < 3 {
        return Err(crate::usage("--failover needs at least 3 nodes"));
    }
    let temp = tempfile::Builder::new().prefix("oxifaster-raft-bench-").tempdir()?;
    let base = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let exe = std::env::current_exe()?;
    let snapshot_every = args.snapshot_every.to_string();
    let mut cluster =
        ProcessCluster::start(&exe, &base, args.nodes, &["--snapshot-every", &snapshot_every])?;
    println!(
        "{:>5} {:>7} {:>10} {:>9} {:>9} {:>9} {:>12}",
        "nodes", "clients", "writes/s", "p50 µs", "p99 µs", "failed", "failover ms"
    );
    let rt = runtime()?;
    let mut next_client = 1u64;
    let mut expected = 0u64;
    for &clients in &args.clients {
        let result = rt.block_on(run(&mut cluster, &args, clients, &mut next_client))?;
        expected += result.acked;
        println!(
            "{:>5} {:>7} {:>10.0} {:>9.0} {:>9.0} {:>9} {:>12}",
            args.nodes,
            clients,
            result.acked as f64 / result.elapsed.as_secs_f64(),
            result.latency.value_at_quantile(0.50) as f64 / 1000.0,
            result.latency.value_at_quantile(0.99) as f64 / 1000.0,
            result.failed,
            result.failover.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0)),
        );
        if args.failover {
            // Bring the killed node back for the next run.
            for i in 0..args.nodes {
                if !cluster.is_up(i) {
                    cluster.restart(i)?;
                }
            }
        }
    }
    // Every acknowledged increment is in the counters exactly once (a
    // command that failed past its deadline may or may not be).
    let total = rt.block_on(async {
        let mut c = Client::<u64, u64>::new(next_client, CLUSTER, &cluster.addrs);
        let mut total = 0u64;
        for key in 0..args.keys {
            total += c.read(&key).await?.unwrap_or(0);
        }
        Ok::<_, oxifaster_raft::Error>(total)
    })?;
    if total < expected {
        return Err(Box::new(crate::Exit {
            code: 1,
            message: format!("LOST UPDATES: {total} in the counters, {expected} acknowledged"),
        }));
    }
    println!("counters checked: {total} increments ({expected} acknowledged)");
    Ok(())
}

async fn run(
    cluster: &mut ProcessCluster,
    args: &RaftBenchArgs,
    clients: usize,
    next_client: &mut u64,
) -> Result<RunResult, Box<dyn std::error::Error>> {
    cluster.leader(Duration::from_secs(30)).await.ok_or("no leader within 30 s")?;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let id = *next_client;
        *next_client += 1;
        let (stop, acked, addrs, keys) =
            (stop.clone(), acked.clone(), cluster.addrs.clone(), args.keys);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::<u64, u64>::new(id, CLUSTER, &addrs);
            let mut rng = Rng::new(id * 7919 + c as u64);
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = rng.next_u64() % keys;
                let start = Instant::now();
                match client.rmw(&key, &1).await {
                    Ok(_) => {
                        let _ = latency.record(start.elapsed().as_nanos() as u64);
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => failed += 1,
                }
            }
            (latency, failed)
        }));
    }
    let start = Instant::now();
    let mut failover = None;
    if args.failover {
        tokio::time::sleep(Duration::from_secs_f64(args.secs / 2.0)).await;
        let leader = cluster.leader(Duration::from_secs(10)).await.ok_or("no leader")?;
        cluster.kill(leader);
        let killed = Instant::now();
        let mut probe = Client::<u64, u64>::new(*next_client, CLUSTER, &cluster.addrs);
        *next_client += 1;
        probe.rmw(&0, &0).await?;
        failover = Some(killed.elapsed());
        let left = Duration::from_secs_f64(args.secs).saturating_sub(start.elapsed());
        tokio::time::sleep(left).await;
    } else {
        tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut latency = Histogram::<u64>::new(3)?;
    let mut failed = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latency.add(&l)?;
        failed += f;
    }
    Ok(RunResult { acked: acked.load(Ordering::Relaxed), failed, elapsed, latency, failover })
}
