//! `oxifaster log-bench`: FasterLog append throughput and commit latency
//! against the disk's sequential write bandwidth.
//!
//! For every entry size × thread count × commit mode, a fresh log in a
//! temporary directory takes appends from `threads` threads for `--secs`
//! seconds:
//!
//! - `group`: writers append as fast as they can; a committer commits every
//!   `--commit-every-ms` (group commit). Throughput counts the bytes
//!   committed by the end; the latency is that of the commit calls.
//! - `each`: every writer commits after each entry and waits for it
//!   (concurrent writers share commits); the latency is enqueue + commit.
//!
//! The yardsticks, in the same directory: a sequential write of
//! `--probe-mib` MiB in 4 MiB `O_DIRECT` requests and one final
//! `fdatasync` (what the disk can take; the log writes its pages the same
//! way), and the same through the page cache in 1 MiB requests (`dd
//! conv=fdatasync`'s pattern). The `% disk` column is against the first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxifaster::log::{FasterLog, LogConfig};

use crate::durability::{BoxResult, mib_per_s, write_probe};

#[derive(Debug, clap::Args)]
pub struct LogBenchArgs {
    /// Entry sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "64,1024,16384")]
    sizes: Vec<usize>,
    /// Writer thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Commit modes: group (every --commit-every-ms), each (after every entry).
    #[arg(long, value_delimiter = ',', default_value = "group,each")]
    modes: Vec<Mode>,
    /// Seconds per run.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// The group-commit interval.
    #[arg(long, default_value_t = 1)]
    commit_every_ms: u64,
    /// MiB written by the disk bandwidth probe (0: skip it).
    #[arg(long, default_value_t = 2048)]
    probe_mib: u64,
    /// log2 of the page size.
    #[arg(long, default_value_t = 22)]
    page_size_bits: u32,
    /// Directory for the logs (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Group,
    Each,
}

struct RunResult {
    entries: u64,
    bytes: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

pub fn run(args: LogBenchArgs) -> BoxResult<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let disk = if args.probe_mib > 0 {
        let probe = tempfile::Builder::new().prefix("oxifaster-probe-").tempdir_in(&base)?;
        let direct = direct_probe(&probe.path().join("direct"), args.probe_mib << 20)?;
        let buffered = write_probe(&probe.path().join("buffered"), args.probe_mib << 20)?;
        println!(
            "disk sequential write, {} MiB + fdatasync: {direct:.0} MiB/s (4 MiB O_DIRECT \
             requests), {buffered:.0} MiB/s (1 MiB buffered requests)",
            args.probe_mib
        );
        Some(direct)
    } else {
        None
    };
    println!(
        "{:>7} {:>7} {:>6} {:>12} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "size", "threads", "commit", "entries/s", "MiB/s", "% disk", "p50 µs", "p99 µs", "commits"
    );
    for &size in &args.sizes {
        for &threads in &args.threads {
            for &mode in &args.modes {
                let r = run_one(&args, &base, size, threads, mode)?;
                let mut lat = r.latencies.clone();
                lat.sort_unstable();
                let mib = mib_per_s(r.bytes, r.elapsed);
                println!(
                    "{:>7} {:>7} {:>6} {:>12.0} {:>9.1} {:>7} {:>9} {:>9} {:>9}",
                    size,
                    threads,
                    match mode {
                        Mode::Group => format!("{}ms", args.commit_every_ms),
                        Mode::Each => "each".into(),
                    },
                    r.entries as f64 / r.elapsed.as_secs_f64(),
                    mib,
                    disk.map_or("-".into(), |d| format!("{:.0}%", 100.0 * mib / d)),
                    micros(percentile(&lat, 0.5)),
                    micros(percentile(&lat, 0.99)),
                    lat.len(),
                );
            }
        }
    }
    Ok(())
}

/// Writes `bytes` in 4 MiB `O_DIRECT` requests and syncs; MiB/s.
fn direct_probe(path: &std::path::Path, bytes: u64) -> BoxResult<f64> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const REQUEST: usize = 4 << 20;
    let mut backing = vec![0xa5u8; REQUEST + 4096];
    let skew = backing.as_ptr().align_offset(4096);
    let buf = &mut backing[skew..skew + REQUEST];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let start = Instant::now();
    let requests = bytes.div_ceil(REQUEST as u64);
    for i in 0..requests {
        file.write_all_at(buf, i * REQUEST as u64)?;
    }
    file.sync_data()?;
    Ok(mib_per_s(requests * REQUEST as u64, start.elapsed()))
}

fn run_one(
    args: &LogBenchArgs,
    base: &std::path::Path,
    size: usize,
    threads: usize,
    mode: Mode,
) -> BoxResult<RunResult> {
    let dir = tempfile::Builder::new().prefix("oxifaster-log-bench-").tempdir_in(base)?;
    let config = LogConfig::new(dir.path())
        .page_size_bits(args.page_size_bits)
        .log_memory_size_bytes(64 << 20);
    let log = FasterLog::open(config)?;
    let payload: Vec<u8> = (0..size).map(|i| (i * 31) as u8).collect();
    let stop = AtomicBool::new(false);
    let entries = AtomicU64::new(0);
    let deadline = Duration::from_secs_f64(args.secs);
    let start = Instant::now();
    let mut latencies = Vec::new();
    std::thread::scope(|scope| -> BoxResult<()> {
        let mut writers = Vec::new();
        for _ in 0..threads {
            let (log, payload, stop, entries) = (&log, &payload, &stop, &entries);
            writers.push(scope.spawn(move || -> oxifaster::Result<Vec<Duration>> {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    log.enqueue(payload)?;
                    if mode == Mode::Each {
                        log.commit()?;
                        lat.push(t.elapsed());
                    }
                    n += 1;
                }
                entries.fetch_add(n, Ordering::Relaxed);
                Ok(lat)
            }));
        }
        if mode == Mode::Group {
            let every = Duration::from_millis(args.commit_every_ms);
            let mut next = Instant::now() + every;
            while start.elapsed() < deadline {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next += every;
                let t = Instant::now();
                log.commit()?;
                latencies.push(t.elapsed());
            }
        } else {
            std::thread::sleep(deadline);
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            latencies.extend(w.join().map_err(|_| "a writer panicked")??);
        }
        Ok(())
    })?;
    // What the writers enqueued is committed by this last commit, and
    // counts only once it is durable.
    log.commit()?;
    let elapsed = start.elapsed();
    let entries = entries.load(Ordering::Relaxed);
    let bytes = entries * size as u64;
    let scanned = log.verify()?;
    if scanned != entries {
        return Err(format!("{entries} entries enqueued but {scanned} in the log").into());
    }
    Ok(RunResult { entries, bytes, elapsed, latencies })
}
