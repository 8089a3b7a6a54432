//! The `oxifaster` command-line tool.
//!
//! `oxifaster bench` runs YCSB-style workloads on a typed `Store<u64, u64>`
//! in a temporary directory (or `--dir`) and prints throughput, checking
//! every result: reads must find every loaded key, and after read/RMW
//! workloads the sum of all counters must equal the increments issued.
//! `oxifaster info`, `verify` and `checkpoints` inspect, check and prune a
//! store directory of any types.

mod durability;
mod inspect;
mod log_bench;

use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use oxifaster::Store;
use oxifaster::device::{Device, NullDevice};
use oxifaster::store::{CompletedOp, ReadStatus, RmwStatus};
use oxifaster_cli::workload::{Distribution, KeyChooser, Op, Rng, Workload, fnv64, key_trace};

/// oxifaster: a typed, embedded, concurrent key-value store and log engine.
#[derive(Debug, Parser)]
#[command(name = "oxifaster", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run YCSB-style workloads on a Store<u64, u64> and report throughput.
    Bench(BenchArgs),
    /// Measure checkpoints (time, throughput dip) and recovery against the
    /// disk's sequential bandwidth.
    Durability(durability::DurabilityArgs),
    /// Measure FasterLog append throughput and commit latency against the
    /// disk's sequential write bandwidth.
    LogBench(log_bench::LogBenchArgs),
    /// Describe a store directory: checkpoints, layout, log regions and
    /// sizes (any key and value types; records shown as hex).
    Info(inspect::InfoArgs),
    /// Check every checksum of a store directory (checkpoint files and the
    /// log pages each checkpoint needs); exits non-zero on damage.
    Verify(inspect::VerifyArgs),
    /// List a store's checkpoints, or keep only the newest N.
    Checkpoints(inspect::CheckpointsArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorkloadArg {
    /// 50% read, 50% upsert.
    A,
    /// 95% read, 5% upsert.
    B,
    /// 100% read.
    C,
    /// 100% read-modify-write (add 1).
    Rmw,
    /// 50% read, 50% read-modify-write.
    F,
}

impl From<WorkloadArg> for Workload {
    fn from(w: WorkloadArg) -> Self {
        match w {
            WorkloadArg::A => Workload::A,
            WorkloadArg::B => Workload::B,
            WorkloadArg::C => Workload::C,
            WorkloadArg::Rmw => Workload::Rmw,
            WorkloadArg::F => Workload::F,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DistArg {
    Uniform,
    Zipf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// Segment files in the store's directory.
    File,
    /// Segment files, I/O through io_uring (Linux).
    IoUring,
    /// No device: evicted pages are dropped (keep --log-memory above the data).
    Null,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Number of keys loaded.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds per workload run.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Operations per thread per run (instead of --secs).
    #[arg(long)]
    ops: Option<u64>,
    /// Workloads to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "c,a,rmw")]
    workload: Vec<WorkloadArg>,
    /// Key distributions to run each workload with.
    #[arg(long, value_delimiter = ',', default_value = "uniform")]
    dist: Vec<DistArg>,
    /// Log memory, e.g. 512MiB, 2GiB (default: enough for the keys).
    #[arg(long, value_parser = parse_bytes)]
    log_memory: Option<u64>,
    /// Hash buckets, a power of two (default: keys / 2, rounded up).
    #[arg(long)]
    table_size: Option<u64>,
    /// log2 of the page size.
    #[arg(long, default_value_t = 22)]
    page_size_bits: u32,
    /// The device under the log.
    #[arg(long, value_enum, default_value = "file")]
    device: DeviceArg,
    /// Keep the store in this directory (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{s}` is not a size like 512MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        other => return Err(format!("unknown unit `{other}`: use KiB, MiB or GiB")),
    };
    number
        .checked_shl(shift)
        .filter(|v| v >> shift == number)
        .ok_or_else(|| "size overflows".into())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Durability(args)) => durability::run(args),
        Some(Command::LogBench(args)) => log_bench::run(args),
        Some(Command::Info(args)) => inspect::info(args),
        Some(Command::Verify(args)) => inspect::verify(args),
        Some(Command::Checkpoints(args)) => inspect::checkpoints(args),
        None => {
            println!(
                "oxifaster {}: run `oxifaster bench` or `oxifaster --help`",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

struct RunResult {
    ops: u64,
    rmws: u64,
    pending: u64,
    not_found: u64,
    elapsed: Duration,
}

fn bench(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let page_size = 1u64 << args.page_size_bits;
    let data_bytes = args.keys * 24;
    // Default: twice the loaded data (updates append), at least 16 pages.
    let log_memory =
        args.log_memory.unwrap_or_else(|| (data_bytes * 2).next_power_of_two().max(16 * page_size));
    let table_size = args.table_size.unwrap_or_else(|| (args.keys / 2).next_power_of_two().max(64));
    let builder = Store::<u64, u64>::builder()
        .table_size(table_size)
        .log_memory_size_bytes(log_memory)
        .page_size_bits(args.page_size_bits)
        .max_sessions(threads + 2);
    let builder = match &args.dir {
        Some(dir) => builder.dir(dir),
        None => builder,
    };
    if !args.json {
        println!(
            "oxifaster bench: {} keys, {threads} threads, log memory {} MiB, {} buckets, {:?} device",
            args.keys,
            log_memory >> 20,
            table_size,
            args.device
        );
    }
    match args.device {
        DeviceArg::File => {
            let store = builder.open::<u64, u64>()?;
            run_all(&store, &args, threads)
        }
        DeviceArg::IoUring => {
            let dir = match &args.dir {
                Some(dir) => dir.clone(),
                None => {
                    std::env::temp_dir().join(format!("oxifaster-bench-{}", std::process::id()))
                }
            };
            let device = oxifaster::device::IoUringDevice::open(&dir, 30)?;
            let store = builder.open_with_device::<u64, u64, _>(device)?;
            let result = run_all(&store, &args, threads);
            if args.dir.is_none() {
                drop(store);
                let _ = std::fs::remove_dir_all(&dir);
            }
            result
        }
        DeviceArg::Null => {
            let store = builder.open_with_device::<u64, u64, _>(NullDevice)?;
            run_all(&store, &args, threads)
        }
    }
}

fn run_all<D: Device>(
    store: &Store<u64, u64, D>,
    args: &BenchArgs,
    threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let loaded = load(store, args.keys, threads)?;
    report(args, "load", "-", threads, &loaded);
    let mut counters_valid = true;
    let mut increments = 0u64;
    for &dist in &args.dist {
        for &workload in &args.workload {
            let workload = Workload::from(workload);
            if workload.only_increments() && !counters_valid {
                load(store, args.keys, threads)?;
                counters_valid = true;
                increments = 0;
            }
            let distribution = match dist {
                DistArg::Uniform => Distribution::Uniform,
                DistArg::Zipf => Distribution::Zipf,
            };
            let result = run(store, args, threads, workload, distribution)?;
            report(args, workload.name(), &format!("{dist:?}").to_lowercase(), threads, &result);
            if result.not_found > 0 {
                return Err(
                    format!("{} reads of loaded keys found nothing", result.not_found).into()
                );
            }
            if workload.only_increments() {
                increments += result.rmws;
                let sum = sum_all(store, args.keys)?;
                if sum != increments {
                    return Err(format!(
                        "LOST UPDATES: counters sum to {sum}, but {increments} increments were issued"
                    )
                    .into());
                }
            } else {
                counters_valid = false;
            }
        }
    }
    Ok(())
}

fn report(args: &BenchArgs, workload: &str, dist: &str, threads: usize, r: &RunResult) {
    let mops = r.ops as f64 / r.elapsed.as_secs_f64() / 1e6;
    if args.json {
        println!(
            "{{\"workload\":\"{workload}\",\"dist\":\"{dist}\",\"threads\":{threads},\"keys\":{},\"ops\":{},\"secs\":{:.3},\"mops\":{mops:.3},\"pending\":{}}}",
            args.keys,
            r.ops,
            r.elapsed.as_secs_f64(),
            r.pending
        );
    } else {
        println!(
            "{workload:>5} {dist:>8} {threads:>2} thr  {mops:>8.2} Mops/s  {:>11} ops  {:>7.2} s  pending {}",
            r.ops,
            r.elapsed.as_secs_f64(),
            r.pending
        );
    }
}

fn load<D: Device>(
    store: &Store<u64, u64, D>,
    keys: u64,
    threads: usize,
) -> oxifaster::Result<RunResult> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                scope.spawn(move || -> oxifaster::Result<()> {
                    let mut session = store.start_session()?;
                    let mut i = t;
                    while i < keys {
                        session.upsert(&fnv64(i), &0)?;
                        i += threads as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|_| panic!("loader panicked")))
    })?;
    Ok(RunResult { ops: keys, rmws: 0, pending: 0, not_found: 0, elapsed: start.elapsed() })
}

fn run<D: Device>(
    store: &Store<u64, u64, D>,
    args: &BenchArgs,
    threads: usize,
    workload: Workload,
    distribution: Distribution,
) -> oxifaster::Result<RunResult> {
    let chooser = KeyChooser::new(args.keys, distribution);
    let stop = AtomicBool::new(false);
    let duration = Duration::from_secs_f64(args.secs);
    let ready = Barrier::new(threads + 1);
    let (totals, start) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (chooser, stop, ready) = (&chooser, &stop, &ready);
                scope.spawn(move || worker(store, chooser, workload, t, args.ops, stop, ready))
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        if args.ops.is_none() {
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
        }
        let mut total =
            RunResult { ops: 0, rmws: 0, pending: 0, not_found: 0, elapsed: Duration::ZERO };
        for w in workers {
            let r = w.join().unwrap_or_else(|_| panic!("worker panicked"))?;
            total.ops += r.ops;
            total.rmws += r.rmws;
            total.pending += r.pending;
            total.not_found += r.not_found;
        }
        Ok::<_, oxifaster::Error>((total, start))
    })?;
    Ok(RunResult { elapsed: start.elapsed(), ..totals })
}

fn worker<D: Device>(
    store: &Store<u64, u64, D>,
    chooser: &KeyChooser,
    workload: Workload,
    thread: u64,
    ops_limit: Option<u64>,
    stop: &AtomicBool,
    ready: &Barrier,
) -> oxifaster::Result<RunResult> {
    const TRACE_KEYS: u64 = 1 << 22;
    let session = store.start_session();
    let mut rng = Rng::new(0x5eed ^ (thread + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let trace =
        key_trace(chooser, &mut rng, ops_limit.unwrap_or(TRACE_KEYS).min(TRACE_KEYS) as usize);
    let mut r = RunResult { ops: 0, rmws: 0, pending: 0, not_found: 0, elapsed: Duration::ZERO };
    let mut next = 0usize;
    // Every worker reaches the barrier, even one that failed to start.
    ready.wait();
    let mut session = session?;
    loop {
        for _ in 0..256 {
            let key = trace[next];
            next = if next + 1 == trace.len() { 0 } else { next + 1 };
            match workload.next_op(&mut rng) {
                Op::Read => match session.read(&key)? {
                    ReadStatus::Found(_) => {}
                    ReadStatus::NotFound => r.not_found += 1,
                    ReadStatus::Pending { .. } => r.pending += 1,
                },
                Op::Upsert => session.upsert(&key, &r.ops)?,
                Op::Rmw => {
                    r.rmws += 1;
                    if let RmwStatus::Pending { .. } = session.rmw(&key, &1)? {
                        r.pending += 1;
                    }
                }
            }
            r.ops += 1;
        }
        if session.pending_count() > 0 {
            for done in session.complete_pending(true)? {
                if done.op == CompletedOp::Read(None) {
                    r.not_found += 1;
                }
            }
        }
        let limit_reached = ops_limit.is_some_and(|limit| r.ops >= limit);
        if limit_reached || (ops_limit.is_none() && stop.load(Ordering::Relaxed)) {
            return Ok(r);
        }
    }
}

fn sum_all<D: Device>(store: &Store<u64, u64, D>, keys: u64) -> oxifaster::Result<u64> {
    let mut session = store.start_session()?;
    let mut sum = 0u64;
    for i in 0..keys {
        sum += session.read_blocking(&fnv64(i))?.unwrap_or(0);
    }
    Ok(sum)
}
