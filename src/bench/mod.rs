//! `oxifaster bench`: YCSB-style runs on a typed store, checked as they go
//! (every read of a loaded key must find it; after RMW runs the counters
//! must sum to the increments issued).

mod f2;
mod scan;
pub(crate) mod value;

use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use oxifaster::device::{Device, NullDevice};
use oxifaster::store::{CompletedOp, Outcome, ReadStatus, RmwStatus, UpdateStatus};
use oxifaster::{Session, Store};
use oxifaster_cli::workload::{Distribution, KeyChooser, Op, Rng, Workload, fnv64, key_trace};

pub(crate) use value::Values;
use value::{BenchValue, Payload, ValueSize, parse_value_size};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum WorkloadArg {
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
    /// 100% compare-and-swap increments (each a read, then a CAS of the
    /// value read for it plus 1; a CAS that loses a race counts as an
    /// operation that did not increment).
    Cas,
    /// 100% insert-if-absent of the loaded (present) keys.
    Insert,
    /// One scan of the live records (one thread): records/s and the log
    /// bytes read per second.
    Scan,
    /// Only the load (every run starts with it).
    Load,
}

impl From<WorkloadArg> for Workload {
    fn from(w: WorkloadArg) -> Self {
        match w {
            WorkloadArg::A => Workload::A,
            WorkloadArg::B => Workload::B,
            WorkloadArg::C => Workload::C,
            WorkloadArg::Rmw => Workload::Rmw,
            WorkloadArg::F => Workload::F,
            WorkloadArg::Cas => Workload::Cas,
            WorkloadArg::Insert => Workload::Insert,
            WorkloadArg::Load | WorkloadArg::Scan => unreachable!("not a timed run"),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DistArg {
    Uniform,
    Zipf,
}

/// How a timed run gets its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeygenArg {
    /// From a trace generated before the run (FASTER's own benchmark):
    /// the loop does nothing but operations.
    Trace,
    /// Computed in the loop, as a YCSB client does: uniform, a random
    /// draw and the FNV scrambling; zipf, the scrambled-zipfian draw with
    /// its `pow`, hash and modulo, then the FNV scrambling.
    Inline,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DeviceArg {
    /// Segment files in the store's directory.
    File,
    /// Segment files, I/O through io_uring (Linux).
    IoUring,
    /// No device: evicted pages are dropped (keep --log-memory above the data).
    Null,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Number of keys loaded (at least 1).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Worker threads (default: every core; at least 1).
    #[arg(long, value_parser = at_least_one)]
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
    /// Value size in bytes: 8 (a `u64` counter, fixed-size records), or
    /// a variable-length payload of N bytes (a counter and filler), or
    /// MIN-MAX for payloads of sizes drawn from that range (upserts then
    /// change record sizes).
    #[arg(long, value_parser = parse_value_size, default_value = "8")]
    value_size: ValueSize,
    /// Key distributions to run each workload with.
    #[arg(long, value_delimiter = ',', default_value = "uniform")]
    dist: Vec<DistArg>,
    /// Log memory, e.g. 512MiB, 2GiB (default: enough for the keys).
    #[arg(long, value_parser = parse_bytes)]
    log_memory: Option<u64>,
    /// Hash buckets at open, a power of two (default: keys / 2, rounded
    /// up). The table doubles by itself when its entries pass four per
    /// bucket; the report after the load says how often and to what.
    #[arg(long)]
    table_size: Option<u64>,
    /// Keep the table at `--table-size` (no automatic growth).
    #[arg(long)]
    no_auto_grow: bool,
    /// A read cache of this size, e.g. 256MiB (whole pages; default none):
    /// records read back from the device stay in memory for the next reads.
    #[arg(long, value_parser = parse_bytes)]
    read_cache: Option<u64>,
    /// log2 of the page size.
    #[arg(long, default_value_t = 22)]
    page_size_bits: u32,
    /// The device under the log.
    #[arg(long, value_enum, default_value = "file")]
    device: DeviceArg,
    /// Keep the store in this directory (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Take a fold-over checkpoint every this many seconds during runs
    /// (file and io_uring devices).
    #[arg(long)]
    checkpoint_every: Option<f64>,
    /// Keep the store directory (log and checkpoints) under this size,
    /// e.g. 512MiB: compaction runs in the background (file and io_uring
    /// devices). The report adds the directory's largest and final size
    /// and what compaction did.
    #[arg(long, value_parser = parse_bytes)]
    disk_budget: Option<u64>,
    /// Write the store directory's size every 50 ms to this file
    /// (`seconds,bytes` lines; needs `--dir`): for charts of a run.
    #[arg(long)]
    dir_trace: Option<PathBuf>,
    /// Empty the page cache (root) before `--workload scan`, and measure
    /// a cold sequential read of a new file of the log's size as its
    /// yardstick.
    #[arg(long)]
    drop_caches: bool,
    /// Read and write the log with O_DIRECT, around the page cache (file
    /// and io-uring devices).
    #[arg(long)]
    direct_io: bool,
    /// Serve the store's statistics as Prometheus text at
    /// http://ADDR/metrics while the bench runs (e.g. 127.0.0.1:9898),
    /// refreshed every 100 ms.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// A TOML configuration file for the store (`oxifaster config
    /// --print-default` shows the keys), applied over the bench's own
    /// settings and flags, with the `OXIFASTER_` environment over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the timed loop's keys come from.
    #[arg(long, value_enum, default_value = "trace")]
    keygen: KeygenArg,
    /// Operations per call: 1 runs single operations; N > 1 gathers N
    /// operations and runs their reads, upserts and RMWs with
    /// `read_batch`, `upsert_batch` and `rmw_batch` (C, A, B, RMW and F;
    /// latencies are then a batch's time divided by its size).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    batch: usize,
    /// Start each worker this many small stack frames (about 64 bytes
    /// each) deeper: a layout control for A/B comparisons (see
    /// `scripts/ab.py --stack-pads`).
    #[arg(long, default_value_t = 0)]
    stack_pad: u32,
    /// The store: `store` (a `Store`) or `f2` (an `F2Store`: hot and cold
    /// tiers under `--memory-budget`; 8-byte values; C, A, B, RMW, F).
    #[arg(long, value_enum, default_value = "store")]
    store: StoreArg,
    /// With `--store f2`: the memory of the hot log, the hot index and the
    /// cold index together, e.g. 1GiB (default 256 MiB).
    #[arg(long, value_parser = parse_bytes)]
    memory_budget: Option<u64>,
    /// With `--store f2`: copy every value the cold tier serves into the
    /// hot tier (`F2Builder::promote_cold_reads`).
    #[arg(long)]
    promote_cold_reads: bool,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreArg {
    /// `Store<u64, V>`.
    Store,
    /// `F2Store<u64, u64>`.
    F2,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// An engine configuration error, in the tool's own terms: the flag that
/// sets the value, not the builder setter.
pub(crate) fn flag_error(e: oxifaster::Error) -> Box<dyn std::error::Error> {
    if let oxifaster::Error::InvalidConfig { what, why } = &e {
        let flag = match *what {
            "log_memory_size_bytes" => "--log-memory",
            "page_size_bits" => "--page-size-bits",
            "table_size" => "--table-size",
            "max_sessions" => "--threads",
            "disk_budget" => "--disk-budget",
            _ => return e.into(),
        };
        return format!("{flag}: {why}").into();
    }
    e.into()
}

pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let bytes = oxifaster::config::parse_size(s)?;
    // A bare number is bytes, but a log memory of a few KiB is never
    // meant: ask for the unit.
    if bytes < 1 << 16 && s.trim().bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` would be {bytes} bytes: give a unit, e.g. {bytes}MiB"));
    }
    Ok(bytes)
}

pub(crate) struct RunResult {
    ops: u64,
    rmws: u64,
    pending: u64,
    not_found: u64,
    pub(crate) elapsed: Duration,
    /// Sampled operation latencies, in nanoseconds.
    latency: Histogram<u64>,
    /// Bytes this process caused to be written to storage during the run.
    write_bytes: u64,
    /// Checkpoints taken during the run.
    checkpoints: u64,
}

impl RunResult {
    fn new() -> Self {
        Self {
            ops: 0,
            rmws: 0,
            pending: 0,
            not_found: 0,
            elapsed: Duration::ZERO,
            latency: latency_histogram(),
            write_bytes: 0,
            checkpoints: 0,
        }
    }
}

/// Latencies from 1 ns to 100 s at 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
}

/// The process's resident set, from `/proc/self/status` (0 where there is
/// none).
fn rss_bytes() -> u64 {
    proc_field("/proc/self/status", "VmRSS:").map_or(0, |kib| kib * 1024)
}

/// Bytes this process has caused to be written to storage so far.
fn write_bytes() -> u64 {
    proc_field("/proc/self/io", "write_bytes:").unwrap_or(0)
}

fn proc_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// A progress bar on stderr (hidden when it is not a terminal, or with
/// `--json`).
fn progress_bar(args: &BenchArgs, len: u64, what: &str) -> ProgressBar {
    if args.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed} ")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

pub(crate) fn bench(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.store == StoreArg::F2 {
        return f2::bench_f2(&args);
    }
    if args.memory_budget.is_some() {
        return Err("--memory-budget is for --store f2".into());
    }
    if args.batch > 1
        && let Some(w) =
            args.workload.iter().find(|w| matches!(w, WorkloadArg::Cas | WorkloadArg::Insert))
    {
        let name = w.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
        return Err(format!("--batch runs reads, upserts and RMWs: not --workload {name}").into());
    }
    if args.value_size.is_counter() {
        bench_values::<u64>(args)
    } else {
        bench_values::<Payload>(args)
    }
}

/// The bytes a record of `value_size` takes in the log: the header (a
/// payload's record also holds its seqlock and lengths), the key and the
/// value, padded to 8.
fn record_bytes(value_size: ValueSize) -> u64 {
    if value_size.is_counter() { 24 } else { 8 * 4 + value_size.max.div_ceil(8) as u64 * 8 }
}

fn bench_values<V: BenchValue>(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let values = Values::<V>::new(args.value_size)?;
    let page_size = 1u64 << args.page_size_bits;
    let record = record_bytes(args.value_size);
    if record > page_size / 2 {
        return Err(format!(
            "--value-size {} needs pages larger than {page_size} bytes (--page-size-bits)",
            args.value_size
        )
        .into());
    }
    let data_bytes = args.keys * record;
    // Default: twice the loaded data (updates append), at least 16 pages.
    let log_memory =
        args.log_memory.unwrap_or_else(|| (data_bytes * 2).next_power_of_two().max(16 * page_size));
    let table_size = args.table_size.unwrap_or_else(|| (args.keys / 2).next_power_of_two().max(64));
    let builder = Store::<u64, V>::builder()
        .table_size(table_size)
        .log_memory_size_bytes(log_memory)
        .page_size_bits(args.page_size_bits)
        .max_sessions(threads + 2)
        // `--checkpoint-every` is the bench's own policy.
        .checkpoint_every(None)
        .checkpoint_on_close(false)
        .disk_budget(args.disk_budget)
        .direct_io(args.direct_io)
        .auto_grow_index(!args.no_auto_grow)
        .read_cache_bytes(args.read_cache.unwrap_or(0));
    let builder = match &args.dir {
        Some(dir) => builder.dir(dir),
        None => builder,
    };
    let builder = match &args.config {
        Some(file) => builder.config_file(file)?,
        None => builder,
    };
    let (log_memory, table_size) =
        (builder.config().log_memory_size_bytes, builder.config().table_size);
    if !args.json {
        println!(
            "oxifaster bench: {} keys, {}-byte values, {threads} threads, log memory {} MiB, {} buckets, {:?} device",
            args.keys,
            args.value_size,
            log_memory >> 20,
            table_size,
            args.device
        );
    }
    match args.device {
        DeviceArg::File => {
            let store = builder.open().map_err(flag_error)?;
            run_all(&store, &args, threads, &values)
        }
        DeviceArg::IoUring => {
            let dir = match &args.dir {
                Some(dir) => dir.clone(),
                None => {
                    std::env::temp_dir().join(format!("oxifaster-bench-{}", std::process::id()))
                }
            };
            let device = match args.direct_io {
                true => oxifaster::device::IoUringDevice::open_direct_io(&dir, 30)?,
                false => oxifaster::device::IoUringDevice::open(&dir, 30)?,
            };
            let store = builder.open_with_device(device).map_err(flag_error)?;
            let result = run_all(&store, &args, threads, &values);
            if args.dir.is_none() {
                drop(store);
                let _ = std::fs::remove_dir_all(&dir);
            }
            result
        }
        DeviceArg::Null => {
            let store = builder.open_with_device(NullDevice).map_err(flag_error)?;
            run_all(&store, &args, threads, &values)
        }
    }
}

fn run_all<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    args: &BenchArgs,
    threads: usize,
    values: &Values<V>,
) -> Result<(), Box<dyn std::error::Error>> {
    if args.checkpoint_every.is_some() && matches!(args.device, DeviceArg::Null) {
        return Err("--checkpoint-every needs the file or io_uring device".into());
    }
    if args.disk_budget.is_some() && matches!(args.device, DeviceArg::Null) {
        return Err("--disk-budget needs the file or io_uring device".into());
    }
    if args.dir_trace.is_some() && store.dir().is_none() {
        return Err("--dir-trace needs the file or io_uring device".into());
    }
    let watch = args.disk_budget.is_some() || args.dir_trace.is_some();
    let monitor = match store.dir().filter(|_| watch) {
        Some(dir) => Some(DirMonitor::start(dir, args.dir_trace.as_deref())?),
        None => None,
    };
    let result = match args.metrics_addr {
        None => run_workloads(store, args, threads, values),
        Some(addr) => serve_metrics(store, addr, || run_workloads(store, args, threads, values))?,
    };
    if let Some(monitor) = monitor {
        let (largest, last) = monitor.stop();
        report_disk(args, store, largest, last);
    }
    result
}

/// Runs `work` while the store's statistics are served as Prometheus text
/// at `http://addr/metrics` (the standard exporter, fed through the
/// `metrics` facade every 100 ms).
fn serve_metrics<V: BenchValue, D: Device, R>(
    store: &Store<u64, V, D>,
    addr: std::net::SocketAddr,
    work: impl FnOnce() -> R,
) -> Result<R, Box<dyn std::error::Error>> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    store.stats().record_metrics();
    let stop = AtomicBool::new(false);
    Ok(std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                store.stats().record_metrics();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = work();
        stop.store(true, Ordering::Relaxed);
        result
    }))
}

/// Samples a directory's size (the blocks its files take) every 50 ms,
/// writing each sample to a trace file if given.
struct DirMonitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
    dir: PathBuf,
}

impl DirMonitor {
    fn start(
        dir: &std::path::Path,
        trace: Option<&std::path::Path>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        use std::io::Write as _;
        let mut trace = match trace {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .map_err(|e| format!("--dir-trace {}: {e}", path.display()))?,
            )),
            None => None,
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, path) = (stop.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut largest = 0;
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                let bytes = oxifaster::compaction::directory_bytes(&path);
                largest = largest.max(bytes);
                if let Some(out) = trace.as_mut() {
                    let _ = writeln!(out, "{:.2},{bytes}", started.elapsed().as_secs_f64());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            largest
        });
        Ok(Self { stop, thread, dir: dir.to_path_buf() })
    }

    /// The largest size seen, and the size now.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let largest = self.thread.join().unwrap_or(0);
        let last = oxifaster::compaction::directory_bytes(&self.dir);
        (largest.max(last), last)
    }
}

/// The directory's size against the budget, and what compaction did.
fn report_disk<V: BenchValue, D: Device>(
    args: &BenchArgs,
    store: &Store<u64, V, D>,
    largest: u64,
    last: u64,
) {
    let budget = args.disk_budget.unwrap_or(0);
    let t = store.compaction_totals();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    if args.json {
        println!(
            "{{\"disk_budget_bytes\":{budget},\"dir_largest_bytes\":{largest},\"dir_final_bytes\":{last},\"compactions\":{},\"scanned_bytes\":{},\"copied_bytes\":{},\"reclaimed_bytes\":{},\"compaction_secs\":{:.3}}}",
            t.compactions,
            t.scanned_bytes,
            t.copied_bytes,
            t.reclaimed_bytes,
            t.duration.as_secs_f64()
        );
    } else {
        let budget = match budget {
            0 => "no budget".to_string(),
            b => format!("budget {:.1} MiB", mib(b)),
        };
        println!(
            "directory: largest {:.1} MiB, final {:.1} MiB, {budget}; {} compactions: \
             scanned {:.1} MiB, copied {:.1} MiB, freed {:.1} MiB in {:.2} s",
            mib(largest),
            mib(last),
            t.compactions,
            mib(t.scanned_bytes),
            mib(t.copied_bytes),
            mib(t.reclaimed_bytes),
            t.duration.as_secs_f64()
        );
    }
}

fn run_workloads<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    args: &BenchArgs,
    threads: usize,
    values: &Values<V>,
) -> Result<(), Box<dyn std::error::Error>> {
    let opened_with = store.index_stats().buckets;
    report_header(args);
    let loaded = load(store, args.keys, threads, values, &progress_bar(args, args.keys, "load"))?;
    report(args, "load", "-", threads, &loaded);
    report_index(args, store, opened_with);
    let mut counters_valid = true;
    let mut increments = 0u64;
    for &dist in &args.dist {
        for &workload in &args.workload {
            if matches!(workload, WorkloadArg::Load) {
                continue;
            }
            if matches!(workload, WorkloadArg::Scan) {
                scan::scan(store, args)?;
                continue;
            }
            let workload = Workload::from(workload);
            if workload.only_increments() && !counters_valid {
                load(store, args.keys, threads, values, &progress_bar(args, args.keys, "reload"))?;
                counters_valid = true;
                increments = 0;
            }
            let distribution = match dist {
                DistArg::Uniform => Distribution::Uniform,
                DistArg::Zipf => Distribution::Zipf,
            };
            let result = run(store, args, threads, workload, distribution, values)?;
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

/// The hash index after the load: its growths (automatic unless
/// `--no-auto-grow`) and its fill.
fn report_index<V: BenchValue, D: Device>(
    args: &BenchArgs,
    store: &Store<u64, V, D>,
    opened_with: u64,
) {
    let stats = store.index_stats();
    let growths = store.index_growths();
    if args.json {
        println!(
            "{{\"index_buckets_at_open\":{opened_with},\"index_growths\":{growths},\"index_buckets\":{},\"index_overflow_buckets\":{},\"index_entries\":{}}}",
            stats.buckets, stats.overflow_buckets, stats.entries
        );
    } else {
        println!(
            "index: {} buckets ({growths} growths from {opened_with}), {} overflow buckets, {} entries ({:.2} per bucket)",
            stats.buckets,
            stats.overflow_buckets,
            stats.entries,
            stats.entries as f64 / stats.buckets as f64
        );
    }
}

fn report(args: &BenchArgs, workload: &str, dist: &str, threads: usize, r: &RunResult) {
    let mops = r.ops as f64 / r.elapsed.as_secs_f64() / 1e6;
    let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1000.0;
    let max = r.latency.max() as f64 / 1000.0;
    let rss = rss_bytes();
    if args.json {
        println!(
            "{{\"workload\":\"{workload}\",\"dist\":\"{dist}\",\"threads\":{threads},\"keys\":{},\"value_size\":\"{}\",\"ops\":{},\"secs\":{:.3},\"mops\":{mops:.3},\"p50_us\":{:.3},\"p99_us\":{:.3},\"p999_us\":{:.3},\"max_us\":{max:.3},\"latency_samples\":{},\"pending\":{},\"rss_bytes\":{rss},\"write_bytes\":{},\"checkpoints\":{}}}",
            args.keys,
            args.value_size,
            r.ops,
            r.elapsed.as_secs_f64(),
            us(0.5),
            us(0.99),
            us(0.999),
            r.latency.len(),
            r.pending,
            r.write_bytes,
            r.checkpoints,
        );
    } else {
        println!(
            "{workload:>5} {dist:>8} {threads:>3} {mops:>9.2} {:>8.2} {:>8.2} {:>8.2} {max:>9.1} {:>9} {:>9} {:>10} {:>12}",
            us(0.5),
            us(0.99),
            us(0.999),
            r.pending,
            format!("{} MiB", rss >> 20),
            format!("{} MiB", r.write_bytes >> 20),
            r.ops,
        );
    }
}

/// The table's header (latencies in microseconds, sampled).
fn report_header(args: &BenchArgs) {
    if !args.json {
        println!(
            "{:>5} {:>8} {:>3} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>12}",
            "work",
            "dist",
            "thr",
            "Mops/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "pending",
            "RSS",
            "written",
            "ops"
        );
    }
}

pub(crate) fn load<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    keys: u64,
    threads: usize,
    values: &Values<V>,
    bar: &ProgressBar,
) -> oxifaster::Result<RunResult> {
    let done = AtomicU64::new(0);
    let written = write_bytes();
    let start = Instant::now();
    let mut latency = latency_histogram();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let done = &done;
                scope.spawn(move || -> oxifaster::Result<Histogram<u64>> {
                    let mut session = store.start_session()?;
                    let mut latency = latency_histogram();
                    let mut i = t;
                    let mut n = 0u64;
                    while i < keys {
                        let key = fnv64(i);
                        if n.is_multiple_of(SAMPLE_EVERY) {
                            let at = Instant::now();
                            session.upsert(&key, values.for_key(key))?;
                            let _ = latency.record(at.elapsed().as_nanos() as u64);
                        } else {
                            session.upsert(&key, values.for_key(key))?;
                        }
                        n += 1;
                        if n.is_multiple_of(4096) {
                            done.fetch_add(4096, Ordering::Relaxed);
                        }
                        i += threads as u64;
                    }
                    Ok(latency)
                })
            })
            .collect();
        while !workers.iter().all(|w| w.is_finished()) {
            bar.set_position(done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        for w in workers {
            let h = w.join().unwrap_or_else(|_| panic!("loader panicked"))?;
            let _ = latency.add(&h);
        }
        Ok::<_, oxifaster::Error>(())
    })?;
    bar.finish_and_clear();
    Ok(RunResult {
        ops: keys,
        elapsed: start.elapsed(),
        latency,
        write_bytes: write_bytes().saturating_sub(written),
        ..RunResult::new()
    })
}

/// One operation in this many is timed (the clock reads cost more than
/// an in-memory operation).
const SAMPLE_EVERY: u64 = 64;

fn run<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    args: &BenchArgs,
    threads: usize,
    workload: Workload,
    distribution: Distribution,
    values: &Values<V>,
) -> oxifaster::Result<RunResult> {
    let chooser = KeyChooser::new(args.keys, distribution);
    let stop = AtomicBool::new(false);
    let duration = Duration::from_secs_f64(args.secs);
    let ready = Barrier::new(threads + 1);
    let done = AtomicU64::new(0);
    let bar = match args.ops {
        Some(ops) => progress_bar(args, ops * threads as u64, workload.name()),
        None => progress_bar(args, (args.secs * 10.0) as u64, workload.name()),
    };
    let written = write_bytes();
    let (totals, start) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let ctx = Ctx {
                    workload,
                    ops_limit: args.ops,
                    stop: &stop,
                    ready: &ready,
                    done: &done,
                    values,
                };
                let chooser = &chooser;
                scope.spawn(move || {
                    let mut rng = Rng::new(0x5eed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    let inline = || InlineKeys { chooser, rng: Rng::new(0xca11 ^ (t + 1)) };
                    below_stack_pad(args.stack_pad, || match (args.keygen, args.batch) {
                        (KeygenArg::Trace, 1) => {
                            worker(store, &ctx, TraceKeys::new(chooser, &mut rng, args.ops), rng)
                        }
                        (KeygenArg::Inline, 1) => worker(store, &ctx, inline(), rng),
                        (KeygenArg::Trace, n) => batch_worker(
                            store,
                            &ctx,
                            TraceKeys::new(chooser, &mut rng, args.ops),
                            rng,
                            n,
                        ),
                        (KeygenArg::Inline, n) => batch_worker(store, &ctx, inline(), rng, n),
                    })
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        let mut checkpoints = 0u64;
        let mut next_checkpoint = args.checkpoint_every.map(|s| start + Duration::from_secs_f64(s));
        // A failed checkpoint ends the run, but only after the workers have
        // been told to stop and have finished: returning from the scope
        // first would wait for them for ever.
        let mut failed = None;
        loop {
            let finished = match args.ops {
                Some(_) => workers.iter().all(|w| w.is_finished()),
                None => start.elapsed() >= duration,
            };
            if finished {
                break;
            }
            if let Some(at) = next_checkpoint
                && Instant::now() >= at
            {
                match store.checkpoint_and_wait(oxifaster::checkpoint::CheckpointKind::FoldOver) {
                    Ok(_) => checkpoints += 1,
                    // One the disk budget's task took is running: it
                    // serves as well.
                    Err(oxifaster::Error::CheckpointInProgress { .. }) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                next_checkpoint =
                    args.checkpoint_every.map(|s| Instant::now() + Duration::from_secs_f64(s));
            }
            bar.set_position(match args.ops {
                Some(_) => done.load(Ordering::Relaxed),
                None => (start.elapsed().as_secs_f64() * 10.0) as u64,
            });
            std::thread::sleep(
                Duration::from_millis(20)
                    .min(duration.saturating_sub(start.elapsed()))
                    .max(Duration::from_millis(1)),
            );
        }
        stop.store(true, Ordering::Relaxed);
        let mut total = RunResult::new();
        total.checkpoints = checkpoints;
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| panic!("worker panicked")))
            .collect();
        if let Some(e) = failed {
            return Err(e);
        }
        for r in results {
            let r = r?;
            total.ops += r.ops;
            total.rmws += r.rmws;
            total.pending += r.pending;
            total.not_found += r.not_found;
            let _ = total.latency.add(&r.latency);
        }
        Ok::<_, oxifaster::Error>((total, start))
    })?;
    bar.finish_and_clear();
    Ok(RunResult {
        elapsed: start.elapsed(),
        write_bytes: write_bytes().saturating_sub(written),
        ..totals
    })
}

/// What every worker of a run shares.
struct Ctx<'a, V> {
    workload: Workload,
    ops_limit: Option<u64>,
    stop: &'a AtomicBool,
    ready: &'a Barrier,
    done: &'a AtomicU64,
    values: &'a Values<V>,
}

impl<V> Ctx<'_, V> {
    /// Whether a worker that has done `ops` operations stops.
    fn finished(&self, ops: u64) -> bool {
        match self.ops_limit {
            Some(limit) => ops >= limit,
            None => self.stop.load(Ordering::Relaxed),
        }
    }
}

/// Where a worker's keys come from (`--keygen`).
trait Keys {
    fn next_key(&mut self) -> u64;
}

/// A trace generated before the run, read round and round.
struct TraceKeys {
    trace: Vec<u64>,
    next: usize,
}

impl TraceKeys {
    /// A trace of `--ops` keys, or of 4 M keys for a timed run.
    fn new(chooser: &KeyChooser, rng: &mut Rng, ops: Option<u64>) -> Self {
        const TRACE_KEYS: u64 = 1 << 22;
        let len = ops.unwrap_or(TRACE_KEYS).min(TRACE_KEYS) as usize;
        Self { trace: key_trace(chooser, rng, len), next: 0 }
    }
}

impl Keys for TraceKeys {
    #[inline(always)]
    fn next_key(&mut self) -> u64 {
        let key = self.trace[self.next];
        self.next = if self.next + 1 == self.trace.len() { 0 } else { self.next + 1 };
        key
    }
}

/// Keys computed in the loop, as a YCSB client computes them.
struct InlineKeys<'a> {
    chooser: &'a KeyChooser,
    rng: Rng,
}

impl Keys for InlineKeys<'_> {
    #[inline(always)]
    fn next_key(&mut self) -> u64 {
        fnv64(self.chooser.next(&mut self.rng))
    }
}

/// Single operations: rounds of 256, then the pending ones completed.
fn worker<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    ctx: &Ctx<'_, V>,
    mut keys: impl Keys,
    mut rng: Rng,
) -> oxifaster::Result<RunResult> {
    let (workload, values) = (ctx.workload, ctx.values);
    let session = store.start_session();
    let mut r = RunResult::new();
    let mut batch = 0u64;
    // Every worker reaches the barrier, even one that failed to start.
    ctx.ready.wait();
    let mut session = session?;
    loop {
        // One operation of every `SAMPLE_EVERY` is timed, at a place in
        // the batch that moves from batch to batch.
        let sampled = (batch.wrapping_mul(37) % SAMPLE_EVERY) as usize;
        batch += 1;
        for i in 0..256usize {
            let key = keys.next_key();
            let timed = (i % SAMPLE_EVERY as usize == sampled).then(Instant::now);
            match workload.next_op(&mut rng) {
                Op::Read => match session.read(&key)? {
                    ReadStatus::Found(_) => {}
                    ReadStatus::NotFound => r.not_found += 1,
                    ReadStatus::Pending { .. } => r.pending += 1,
                    _ => {}
                },
                Op::Upsert => session.upsert(&key, values.upsert(r.ops))?,
                // Out of line: the loop of the other workloads stays as
                // it was (inlined here, these cost reads 25%).
                Op::Cas => cas_increment(&mut session, key, &mut r)?,
                Op::Insert => insert_if_absent(&mut session, key, values.upsert(r.ops), &mut r)?,
                Op::Rmw => {
                    r.rmws += 1;
                    if let RmwStatus::Pending { .. } =
                        session.rmw(&key, values.increment_for(key))?
                    {
                        r.pending += 1;
                    }
                }
            }
            if let Some(at) = timed {
                let _ = r.latency.record(at.elapsed().as_nanos() as u64);
            }
            r.ops += 1;
        }
        ctx.done.fetch_add(256, Ordering::Relaxed);
        settle(&mut session, &mut r)?;
        if ctx.finished(r.ops) {
            return Ok(r);
        }
    }
}

/// Completes a session's pending operations, counting reads that found
/// nothing.
fn settle<V: BenchValue, D: Device>(
    session: &mut Session<u64, V, D>,
    r: &mut RunResult,
) -> oxifaster::Result<()> {
    if session.pending_count() > 0 {
        for done in session.complete_pending()? {
            if matches!(done.op, CompletedOp::Read(None)) {
                r.not_found += 1;
            }
        }
    }
    Ok(())
}

/// Batched operations (`--batch N`): N operations are drawn, then their
/// reads, upserts and RMWs run as one `read_batch`, `upsert_batch` and
/// `rmw_batch` each. One batch in 16 is timed; its time divided by N is
/// recorded as an operation's latency.
fn batch_worker<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    ctx: &Ctx<'_, V>,
    mut keys: impl Keys,
    mut rng: Rng,
    batch: usize,
) -> oxifaster::Result<RunResult> {
    let (workload, values) = (ctx.workload, ctx.values);
    let session = store.start_session();
    let mut r = RunResult::new();
    let (mut reads, mut upserts, mut rmws) = (Vec::new(), Vec::new(), Vec::new());
    let (mut read_statuses, mut rmw_statuses) = (Vec::new(), Vec::new());
    let mut unsettled = 0usize;
    ctx.ready.wait();
    let mut session = session?;
    for round in 0u64.. {
        reads.clear();
        upserts.clear();
        rmws.clear();
        let timed = round.is_multiple_of(16).then(Instant::now);
        for _ in 0..batch {
            let key = keys.next_key();
            match workload.next_op(&mut rng) {
                Op::Read => reads.push(key),
                Op::Upsert => upserts.push((key, values.upsert(r.ops).clone())),
                Op::Rmw => rmws.push((key, values.increment_for(key).clone())),
                Op::Cas | Op::Insert => unreachable!("refused by `bench`"),
            }
        }
        if !reads.is_empty() {
            session.read_batch(&reads, &mut read_statuses)?;
            for status in &read_statuses {
                match status {
                    ReadStatus::NotFound => r.not_found += 1,
                    ReadStatus::Pending { .. } => r.pending += 1,
                    _ => {}
                }
            }
        }
        if !upserts.is_empty() {
            session.upsert_batch(&upserts)?;
        }
        if !rmws.is_empty() {
            session.rmw_batch(&rmws, &mut rmw_statuses)?;
            r.rmws += rmws.len() as u64;
            r.pending +=
                rmw_statuses.iter().filter(|s| matches!(s, RmwStatus::Pending { .. })).count()
                    as u64;
        }
        if let Some(at) = timed {
            let _ = r.latency.record(at.elapsed().as_nanos() as u64 / batch as u64);
        }
        r.ops += batch as u64;
        ctx.done.fetch_add(batch as u64, Ordering::Relaxed);
        unsettled += batch;
        if unsettled >= 256 {
            unsettled = 0;
            settle(&mut session, &mut r)?;
        }
        if ctx.finished(r.ops) {
            break;
        }
    }
    settle(&mut session, &mut r)?;
    Ok(r)
}

/// A read, then a compare-and-swap of the value read for it plus 1.
#[inline(never)]
fn cas_increment<V: BenchValue, D: Device>(
    session: &mut Session<u64, V, D>,
    key: u64,
    r: &mut RunResult,
) -> oxifaster::Result<()> {
    match session.read(&key)? {
        ReadStatus::Found(old) => match session.compare_and_swap(&key, &old, &old.incremented())? {
            UpdateStatus::Done(Outcome::Set) => r.rmws += 1,
            // Lost a race with another thread: no increment.
            UpdateStatus::Done(_) => {}
            UpdateStatus::Pending { .. } => r.pending += 1,
            _ => {}
        },
        ReadStatus::NotFound => r.not_found += 1,
        ReadStatus::Pending { .. } => r.pending += 1,
        _ => {}
    }
    Ok(())
}

/// An insert-if-absent.
#[inline(never)]
fn insert_if_absent<V: BenchValue, D: Device>(
    session: &mut Session<u64, V, D>,
    key: u64,
    value: &V,
    r: &mut RunResult,
) -> oxifaster::Result<()> {
    if let UpdateStatus::Pending { .. } = session.insert_if_absent(&key, value)? {
        r.pending += 1;
    }
    Ok(())
}

fn sum_all<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    keys: u64,
) -> std::result::Result<u64, Box<dyn std::error::Error>> {
    // One scan: sequential reads, where a read per key would cost a
    // random disk read each on a store larger than memory.
    let (mut sum, mut live) = (0u64, 0u64);
    for item in store.iter()? {
        sum += item?.1.counter();
        live += 1;
    }
    if live != keys {
        return Err(format!("the store holds {live} keys, {keys} were loaded").into());
    }
    Ok(sum)
}

/// Runs `f` `levels` small frames further down the stack. A worker's loop
/// keeps its locals on the stack, and on some processors a load whose
/// address matches an earlier store's in its low 12 bits waits for it
/// (4 KiB aliasing): the same binary then runs up to ~12% faster or
/// slower with where its worker's stack happens to start. `--stack-pad`
/// moves it, so that an A/B comparison can average over positions
/// instead of measuring one layout's luck.
#[inline(never)]
fn below_stack_pad<R>(levels: u32, f: impl FnOnce() -> R) -> R {
    if levels == 0 {
        return f();
    }
    let frame = [0u8; 48];
    std::hint::black_box(&frame);
    let result = below_stack_pad(levels - 1, f);
    // Used after the call: the recursion is not a tail call, so each
    // level keeps its frame.
    std::hint::black_box(&frame);
    result
}
