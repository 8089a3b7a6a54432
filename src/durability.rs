//! `oxifaster durability`: what checkpoints and recovery cost.
//!
//! 1. Loads `--keys` keys, then runs a 50:50 read/upsert workload for
//!    `--secs` seconds, sampling throughput every 50 ms, with one checkpoint
//!    of each `--kind` taken in the middle: the dip is the median throughput
//!    of the samples during a checkpoint against those outside any.
//! 2. Times a checkpoint with no load, and recovery from it (index load).
//! 3. Times recovery that replays the whole log (a log-only checkpoint on an
//!    index checkpoint taken before the load).
//! 4. Measures the disk's sequential write (with fsync) and read bandwidth
//!    on the same directory, as the yardstick.
//!
//! `--drop-caches` (Linux, root) empties the page cache before each read
//! measurement, so that recovery and the sequential read come from the disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxifaster::Store;
use oxifaster::checkpoint::CheckpointKind;
use oxifaster_cli::workload::{Distribution, KeyChooser, Op, Rng, Workload, fnv64};

#[derive(Debug, clap::Args)]
pub struct DurabilityArgs {
    /// Number of keys loaded.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Worker threads during the dip run (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds of the dip run.
    #[arg(long, default_value_t = 6.0)]
    secs: f64,
    /// Checkpoint kinds for the dip run: fold-over, snapshot.
    #[arg(long, value_delimiter = ',', default_value = "fold-over,snapshot")]
    kind: Vec<KindArg>,
    /// log2 of the page size.
    #[arg(long, default_value_t = 22)]
    page_size_bits: u32,
    /// Keep the store in this directory (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Empty the page cache before read measurements (Linux, needs root).
    #[arg(long)]
    drop_caches: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KindArg {
    FoldOver,
    Snapshot,
}

impl From<KindArg> for CheckpointKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::FoldOver => CheckpointKind::FoldOver,
            KindArg::Snapshot => CheckpointKind::Snapshot,
        }
    }
}

pub(crate) type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

pub(crate) fn drop_caches(enabled: bool) -> BoxResult<()> {
    if enabled {
        // Write back dirty pages, then ask the kernel to drop clean ones.
        std::process::Command::new("sync").status()?;
        std::fs::write("/proc/sys/vm/drop_caches", "3\n")?;
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(args: DurabilityArgs) -> BoxResult<()> {
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let temp = tempfile::Builder::new()
        .prefix("oxifaster-durability-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let data_bytes = args.keys * 24;
    let page_size = 1u64 << args.page_size_bits;
    let log_memory = (data_bytes * 2).next_power_of_two().max(16 * page_size);
    let table_size = (args.keys / 2).next_power_of_two().max(64);
    let builder = |dir: &Path| {
        Store::<u64, u64>::builder()
            .dir(dir)
            .table_size(table_size)
            .log_memory_size_bytes(log_memory)
            .page_size_bits(args.page_size_bits)
            .max_sessions(threads + 4)
            // Every checkpoint here is taken and timed by hand.
            .checkpoint_every(None)
            .checkpoint_on_close(false)
    };
    println!(
        "oxifaster durability: {} keys, {threads} threads, log memory {} MiB, {table_size} buckets ({} MiB of index), in {}",
        args.keys,
        log_memory >> 20,
        (table_size * 64) >> 20,
        temp.path().display()
    );

    // 1 and 2: the dip, then an idle checkpoint and its recovery.
    let dir = temp.path().join("store");
    {
        let store = builder(&dir).open()?;
        let loaded = load_counters(&store, args.keys, threads)?;
        println!("load: {:.2} Mops/s", args.keys as f64 / loaded.elapsed.as_secs_f64() / 1e6);
        dip(&store, &args, threads)?;
        for &kind in &args.kind {
            // The yardstick right before: a file as large as the index,
            // written and synced on the same directory, from a clean page
            // cache (the disk's speed here varies from minute to minute).
            let yardstick = write_probe(&temp.path().join("probe"), table_size * 64)?;
            std::process::Command::new("sync").status()?;
            let flushed = store.log_regions().flushed_until_address;
            let start = Instant::now();
            let info = store.checkpoint_and_wait(kind.into())?;
            let elapsed = start.elapsed();
            let written = dir_bytes(&dir.join("checkpoints").join(info.token.as_str()))
                + info.final_address.saturating_sub(flushed);
            println!(
                "idle {:?} checkpoint: {:.2} s, {} MiB written ({:.0} MiB/s; a plain file write+fsync just before: {yardstick:.0} MiB/s)",
                CheckpointKind::from(kind),
                elapsed.as_secs_f64(),
                written >> 20,
                mib_per_s(written, elapsed)
            );
        }
    }
    let index_bytes = table_size * 64;
    let (elapsed, info, replayed) = timed_recovery(&builder(&dir), &dir, &args)?;
    println!(
        "recovery ({:?}): {:.2} s: index {} MiB + log replay {} MiB ({:.0} MiB/s)",
        info.kind,
        elapsed.as_secs_f64(),
        index_bytes >> 20,
        replayed >> 20,
        mib_per_s(index_bytes + replayed, elapsed)
    );

    // 3: recovery that replays the whole log.
    let dir = temp.path().join("replay");
    {
        let store = builder(&dir).open()?;
        store.checkpoint_and_wait(CheckpointKind::IndexOnly)?;
        load_counters(&store, args.keys, threads)?;
        store.checkpoint_and_wait(CheckpointKind::LogOnly)?;
    }
    let (elapsed, _, replayed) = timed_recovery(&builder(&dir), &dir, &args)?;
    println!(
        "recovery replaying the whole log: {:.2} s for {} MiB of log + {} MiB of index ({:.0} MiB/s)",
        elapsed.as_secs_f64(),
        replayed >> 20,
        index_bytes >> 20,
        mib_per_s(replayed + index_bytes, elapsed)
    );

    // 4: the yardstick.
    std::process::Command::new("sync").status()?;
    let probe = temp.path().join("probe");
    let bytes = (data_bytes + index_bytes).clamp(256 << 20, 4 << 30);
    let write = write_probe(&probe, bytes)?;
    drop_caches(args.drop_caches)?;
    let start = Instant::now();
    {
        let mut file = std::fs::File::open(&probe)?;
        let mut buf = vec![0u8; 1 << 20];
        while file.read(&mut buf)? > 0 {}
    }
    let read = mib_per_s(bytes, start.elapsed());
    println!(
        "sequential, same directory, {} MiB in 1 MiB requests: write+fsync {write:.0} MiB/s, read {read:.0} MiB/s{}",
        bytes >> 20,
        if args.drop_caches { " (cold)" } else { " (page cache warm)" }
    );
    Ok(())
}

/// Recovers the newest checkpoint in `dir` (after emptying the page cache
/// if asked), checks a sample of keys, and returns the time it took, the
/// checkpoint, and the log bytes replayed (a snapshot's file included).
fn timed_recovery(
    builder: &oxifaster::StoreBuilder<u64, u64>,
    dir: &Path,
    args: &DurabilityArgs,
) -> BoxResult<(Duration, oxifaster::checkpoint::CheckpointInfo, u64)> {
    drop_caches(args.drop_caches)?;
    let start = Instant::now();
    let store = builder.clone().recover_latest()?;
    let elapsed = start.elapsed();
    let info = store.recovered().ok_or("no recovered checkpoint")?;
    let snapshot =
        std::fs::metadata(dir.join("checkpoints").join(info.token.as_str()).join("snapshot"))
            .map_or(0, |m| m.len());
    let replayed = info.final_address - info.log_start + snapshot;
    check_some(&store, args.keys)?;
    Ok((elapsed, info, replayed))
}

/// Writes `bytes` to a new file in 1 MiB requests and syncs it; returns
/// MiB/s.
pub(crate) fn write_probe(path: &Path, bytes: u64) -> BoxResult<f64> {
    let _ = std::fs::remove_file(path);
    std::process::Command::new("sync").status()?;
    let chunk = vec![0xa5u8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(path)?;
    for _ in 0..bytes.div_ceil(1 << 20) {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(mib_per_s(bytes.next_multiple_of(1 << 20), start.elapsed()))
}

/// Reads back a sample of keys: each must be found.
fn check_some(store: &Store<u64, u64>, keys: u64) -> BoxResult<()> {
    let mut session = store.start_session()?;
    let mut rng = Rng::new(42);
    for _ in 0..10_000.min(keys) {
        let key = fnv64(rng.below(keys));
        if session.read_blocking(&key)?.is_none() {
            return Err(format!("recovered store lost key {key}").into());
        }
    }
    Ok(())
}

/// The 50:50 run with checkpoints in the middle, sampled every 50 ms.
fn dip(store: &Store<u64, u64>, args: &DurabilityArgs, threads: usize) -> BoxResult<()> {
    const SAMPLE: Duration = Duration::from_millis(50);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let chooser = KeyChooser::new(args.keys, Distribution::Uniform);
    let secs = args.secs;
    let kinds: Vec<CheckpointKind> = args.kind.iter().map(|&k| k.into()).collect();
    let (samples, windows) = std::thread::scope(|scope| -> BoxResult<_> {
        let mut workers = Vec::new();
        for t in 0..threads as u64 {
            let (stop, done, chooser) = (&stop, &done, &chooser);
            workers.push(scope.spawn(move || -> oxifaster::Result<()> {
                let mut session = store.start_session()?;
                let mut rng = Rng::new(t + 1);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let key = fnv64(chooser.next(&mut rng));
                        match Workload::A.next_op(&mut rng) {
                            Op::Read => {
                                session.read(&key)?;
                            }
                            _ => session.upsert(&key, &rng.next_u64())?,
                        }
                    }
                    done.fetch_add(256, Ordering::Relaxed);
                    if session.pending_count() > 0 {
                        session.complete_pending()?;
                    }
                }
                Ok(())
            }));
        }
        let begin = Instant::now();
        let kinds = &kinds;
        let checkpointer =
            scope.spawn(move || -> oxifaster::Result<Vec<(CheckpointKind, f64, f64)>> {
                let mut windows = Vec::new();
                for (i, &kind) in kinds.iter().enumerate() {
                    let at = secs * (i + 1) as f64 / (kinds.len() + 1) as f64;
                    let wait = Duration::from_secs_f64(at).saturating_sub(begin.elapsed());
                    std::thread::sleep(wait);
                    let from = begin.elapsed().as_secs_f64();
                    store.checkpoint_and_wait(kind)?;
                    windows.push((kind, from, begin.elapsed().as_secs_f64()));
                }
                Ok(windows)
            });
        let mut samples = Vec::new();
        let mut last = 0;
        while begin.elapsed().as_secs_f64() < secs {
            std::thread::sleep(SAMPLE);
            let now = done.load(Ordering::Relaxed);
            samples.push((begin.elapsed().as_secs_f64(), now - last));
            last = now;
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().map_err(|_| "worker panicked")??;
        }
        let windows = checkpointer.join().map_err(|_| "checkpointer panicked")??;
        Ok((samples, windows))
    })?;
    let rate = |ops: u64| ops as f64 / SAMPLE.as_secs_f64() / 1e6;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let during = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|(t, _)| *t > from && *t - SAMPLE.as_secs_f64() < to)
            .map(|(_, n)| rate(*n))
            .collect::<Vec<_>>()
    };
    let outside: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| {
            windows.iter().all(|(_, from, to)| *t < *from || *t - SAMPLE.as_secs_f64() > *to + 0.2)
        })
        .map(|(_, n)| rate(*n))
        .collect();
    let baseline = median(outside);
    println!(
        "50:50 uniform, {threads} threads: {baseline:.2} Mops/s outside checkpoints (median of 50 ms samples)"
    );
    for (kind, from, to) in windows {
        let inside = during(from, to);
        let min = inside.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "  during {kind:?} ({:.2} s): median {:.2} Mops/s ({:.0}%), lowest sample {:.2}",
            to - from,
            median(inside.clone()),
            100.0 * median(inside) / baseline.max(1e-9),
            if min.is_finite() { min } else { 0.0 }
        );
    }
    Ok(())
}

/// Loads `keys` counters (value 0) with `threads` sessions, without a
/// progress bar.
fn load_counters<D: oxifaster::device::Device>(
    store: &Store<u64, u64, D>,
    keys: u64,
    threads: usize,
) -> oxifaster::Result<crate::bench::RunResult> {
    let values = crate::bench::Values::<u64>::counters();
    crate::bench::load(store, keys, threads, &values, &indicatif::ProgressBar::hidden())
}
