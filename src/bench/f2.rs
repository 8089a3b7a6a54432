//! `oxifaster bench --store f2`: the same runs on an `F2Store<u64, u64>`
//! under a memory budget (hot log, hot index and the cold index's memory
//! together), checked as they go: every read of a loaded key must find it,
//! and after RMW runs the counters must sum to the increments issued. The
//! report adds what each part of memory takes, the index memory per key
//! that lives only in the cold tier, and what a cold lookup costs in
//! device reads.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxifaster::f2::{ColdProbe, F2Store};
use oxifaster::store::{CompletedOp, ReadStatus};
use oxifaster_cli::workload::{Distribution, KeyChooser, Op, Rng, Workload, fnv64};

use super::{BenchArgs, DistArg, WorkloadArg};

/// The default memory budget.
const DEFAULT_BUDGET: u64 = 256 << 20;

/// One timed run's totals.
#[derive(Default)]
struct F2Run {
    ops: u64,
    reads: u64,
    not_found: u64,
    rmws: u64,
    /// Reads the hot tier's read cache answered.
    cache_hits: u64,
    probe: ColdProbe,
    elapsed: Duration,
}

pub(crate) fn bench_f2(args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !args.value_size.is_counter() {
        return Err("--store f2 runs with 8-byte values (--value-size 8)".into());
    }
    if args.batch > 1 {
        return Err("--store f2 runs single operations (no --batch)".into());
    }
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let budget = args.memory_budget.unwrap_or(DEFAULT_BUDGET);
    // Chunks for about 16 cold keys each (half a slot per key).
    let chunks = (args.keys / 16).max(1);
    // Pages small enough for the budget to hold every log's four pages.
    let page_size_bits = args.page_size_bits.min((budget / 64).max(4096).ilog2());
    let builder = F2Store::<u64, u64>::builder()
        .page_size_bits(page_size_bits)
        .memory_budget(budget)
        .cold_index_chunks(chunks)
        .max_sessions(threads + 2)
        .direct_io(args.direct_io)
        .promote_cold_reads(args.promote_cold_reads)
        // Cold compaction once the cold log holds about twice the loaded
        // records (48 bytes each with the entry's header).
        .cold_log_size_bytes(Some((args.keys * 96).max(64 << 20)))
        .checkpoint_every(None)
        .checkpoint_on_close(false);
    let builder = match &args.dir {
        Some(dir) => builder.dir(dir),
        None => builder,
    };
    let store: F2Store<u64, u64> = builder.open()?;
    let m = store.memory();
    if !args.json {
        println!(
            "oxifaster bench --store f2: {} keys, 8-byte values, {threads} threads, memory budget {} MiB \
             (hot log {} MiB, hot index {} MiB, read cache {} MiB, cold index log {} MiB, cold index table {} MiB, \
             cold log {} MiB; pages of {} KiB), {chunks} cold index chunks, in {}",
            args.keys,
            budget >> 20,
            m.hot_log >> 20,
            m.hot_index >> 20,
            m.read_cache >> 20,
            m.cold_index_log >> 20,
            m.cold_index_table >> 20,
            m.cold_log >> 20,
            (1u64 << page_size_bits) >> 10,
            store.dir().display()
        );
        println!(
            "{:>5} {:>8} {:>3} {:>9} {:>12} {:>12} {:>14} {:>14} {:>11}",
            "work",
            "dist",
            "thr",
            "Mops/s",
            "cached/read",
            "cold/op",
            "chunk reads",
            "records/lookup",
            "cold kIOPS"
        );
    }
    let loaded = load(&store, args.keys, threads)?;
    let load_mops = args.keys as f64 / loaded.as_secs_f64() / 1e6;
    report_row(args, "load", "-", threads, load_mops, None, &F2Run::default());
    settle(args, &store);
    report_memory(args, &store);
    let mut increments = 0u64;
    let mut counters_valid = true;
    for &dist in &args.dist {
        for &workload in &args.workload {
            let workload = match workload {
                WorkloadArg::C => Workload::C,
                WorkloadArg::A => Workload::A,
                WorkloadArg::B => Workload::B,
                WorkloadArg::Rmw => Workload::Rmw,
                WorkloadArg::F => Workload::F,
                WorkloadArg::Load => continue,
                other => {
                    return Err(format!("--store f2 runs c, a, b, rmw and f, not {other:?}").into());
                }
            };
            if workload.only_increments() && !counters_valid {
                load(&store, args.keys, threads)?;
                settle(args, &store);
                counters_valid = true;
                increments = 0;
            }
            let distribution = match dist {
                DistArg::Uniform => Distribution::Uniform,
                DistArg::Zipf => Distribution::Zipf,
            };
            let r = run(&store, args, threads, workload, distribution)?;
            let mops = r.ops as f64 / r.elapsed.as_secs_f64() / 1e6;
            let dist_name = format!("{dist:?}").to_lowercase();
            report_row(args, workload.name(), &dist_name, threads, mops, Some(r.ops), &r);
            if r.not_found > 0 {
                return Err(format!("{} reads of loaded keys found nothing", r.not_found).into());
            }
            if workload.only_increments() {
                increments += r.rmws;
                let sum = sum_all(&store, args.keys)?;
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
    report_memory(args, &store);
    Ok(())
}

/// Loads every key with value 0 (the counters), the keys spread over the
/// threads; background migrations move the hot log's older half to the
/// cold tier as it outgrows the budget.
fn load(store: &F2Store<u64, u64>, keys: u64, threads: usize) -> oxifaster::Result<Duration> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                scope.spawn(move || -> oxifaster::Result<()> {
                    let mut session = store.start_session()?;
                    let mut i = t;
                    while i < keys {
                        session.upsert(&fnv64(i), &0u64)?;
                        i += threads as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap_or_else(|_| panic!("loader panicked"))?;
        }
        Ok::<_, oxifaster::Error>(())
    })?;
    Ok(start.elapsed())
}

/// Waits for the migrations a load leaves due (the hot log at its
/// admission limit, twice its size), so that the points after it are not
/// measured behind them; says how long that took.
fn settle(args: &BenchArgs, store: &F2Store<u64, u64>) {
    let start = Instant::now();
    let settled = store.settle(Duration::from_secs(3_600));
    if !args.json {
        let how = if settled { "settled" } else { "still migrating" };
        println!("(after the load: background {how} in {:.1} s)", start.elapsed().as_secs_f64());
    }
}

fn run(
    store: &F2Store<u64, u64>,
    args: &BenchArgs,
    threads: usize,
    workload: Workload,
    distribution: Distribution,
) -> oxifaster::Result<F2Run> {
    let chooser = KeyChooser::new(args.keys, distribution);
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(threads + 1);
    let done = AtomicU64::new(0);
    let duration = Duration::from_secs_f64(args.secs);
    let cache_hits = || store.hot().stats().operations.reads_from_cache;
    let hits_before = cache_hits();
    let (mut total, start) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (chooser, stop, ready, done) = (&chooser, &stop, &ready, &done);
                let ops_limit = args.ops;
                scope.spawn(move || -> oxifaster::Result<F2Run> {
                    let mut session = store.start_session()?;
                    let mut rng = Rng::new(0xf2 ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    let mut r = F2Run::default();
                    ready.wait();
                    // Rounds of 256 operations, then the pending reads
                    // (hot device reads and cold lookups) completed as one
                    // batch, as the `Store` bench does.
                    while !stop.load(Ordering::Relaxed) && ops_limit.is_none_or(|n| r.ops < n) {
                        for _ in 0..256 {
                            let key = fnv64(chooser.next(&mut rng));
                            match workload.next_op(&mut rng) {
                                Op::Read => {
                                    r.reads += 1;
                                    if matches!(session.read(&key)?, ReadStatus::NotFound) {
                                        r.not_found += 1;
                                    }
                                }
                                Op::Upsert => session.upsert(&key, &r.ops)?,
                                Op::Rmw => {
                                    session.rmw(&key, &1)?;
                                    r.rmws += 1;
                                }
                                Op::Cas | Op::Insert => unreachable!("not an F2 bench workload"),
                            }
                            r.ops += 1;
                        }
                        for done in session.complete_pending()? {
                            match done.op {
                                CompletedOp::Read(None) => r.not_found += 1,
                                CompletedOp::Failed(e) => return Err(failed(&e)),
                                _ => {}
                            }
                        }
                    }
                    done.fetch_add(r.ops, Ordering::Relaxed);
                    r.probe = session.cold_probe();
                    Ok(r)
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        while start.elapsed() < duration && !workers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        let mut total = F2Run::default();
        for w in workers {
            let r = w.join().unwrap_or_else(|_| panic!("worker panicked"))?;
            total.ops += r.ops;
            total.reads += r.reads;
            total.not_found += r.not_found;
            total.rmws += r.rmws;
            total.probe += r.probe;
        }
        Ok::<_, oxifaster::Error>((total, start))
    })?;
    total.elapsed = start.elapsed();
    total.cache_hits = cache_hits() - hits_before;
    Ok(total)
}

/// The error of a pending read of the bench that failed.
fn failed(e: &impl std::fmt::Display) -> oxifaster::Error {
    oxifaster::Error::Io {
        context: "a pending read of the bench".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The sum of every loaded key's counter, read in rounds of 256 whose
/// device reads (hot and cold) are in flight together, as the bench's own
/// reads are.
fn sum_all(store: &F2Store<u64, u64>, keys: u64) -> oxifaster::Result<u64> {
    let mut session = store.start_session()?;
    let mut sum = 0u64;
    let mut next = 0;
    while next < keys {
        let end = (next + 256).min(keys);
        for i in next..end {
            if let ReadStatus::Found(v) = session.read(&fnv64(i))? {
                sum += v;
            }
        }
        next = end;
        while session.pending_count() > 0 {
            for done in session.complete_pending()? {
                match done.op {
                    CompletedOp::Read(Some(v)) => sum += v,
                    CompletedOp::Failed(e) => return Err(failed(&e)),
                    _ => {}
                }
            }
        }
    }
    Ok(sum)
}

fn report_row(
    args: &BenchArgs,
    workload: &str,
    dist: &str,
    threads: usize,
    mops: f64,
    ops: Option<u64>,
    r: &F2Run,
) {
    let lookups = r.probe.chunks;
    let per_op = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    let cold_per_op = ops.map_or(0.0, |ops| per_op(lookups, ops));
    let cached = per_op(r.cache_hits, r.reads);
    let chunk_reads = per_op(r.probe.chunk_misses, lookups);
    let records = per_op(r.probe.records, lookups);
    // The cold tier's device reads per second: chunks and records.
    let secs = r.elapsed.as_secs_f64();
    let device_reads = (r.probe.chunk_misses + r.probe.record_misses) as f64;
    let kiops = if secs > 0.0 { device_reads / secs / 1e3 } else { 0.0 };
    if args.json {
        println!(
            "{{\"store\":\"f2\",\"workload\":\"{workload}\",\"dist\":\"{dist}\",\"threads\":{threads},\"keys\":{},\"mops\":{mops:.3},\"cached_per_read\":{cached:.4},\"cold_lookups\":{lookups},\"cold_lookups_per_op\":{cold_per_op:.4},\"chunk_device_reads_per_lookup\":{chunk_reads:.4},\"records_per_lookup\":{records:.4},\"cold_device_reads_per_sec\":{:.0}}}",
            args.keys,
            kiops * 1e3
        );
    } else {
        println!(
            "{workload:>5} {dist:>8} {threads:>3} {mops:>9.2} {cached:>12.3} {cold_per_op:>12.3} {chunk_reads:>14.3} {records:>14.3} {kiops:>11.1}"
        );
    }
}

/// What each part of memory takes, and the index memory per key for the
/// keys that live only in the cold tier (the chunk store's index and its
/// in-memory log, over the keys not in the hot index).
fn report_memory(args: &BenchArgs, store: &F2Store<u64, u64>) {
    let m = store.memory();
    let hot_keys = store.hot().index_stats().entries;
    let cold_only = args.keys.saturating_sub(hot_keys).max(1);
    let cold_index_per_key = m.cold_index_table as f64 / cold_only as f64;
    let t = store.totals();
    let (begin, tail) = store.cold_log_range();
    if args.json {
        println!(
            "{{\"hot_log_bytes\":{},\"hot_index_bytes\":{},\"read_cache_bytes\":{},\"cold_index_log_bytes\":{},\"cold_index_table_bytes\":{},\"cold_log_memory_bytes\":{},\"total_bytes\":{},\"hot_index_entries\":{hot_keys},\"cold_index_table_bytes_per_cold_key\":{cold_index_per_key:.4},\"migrations\":{},\"migrated_records\":{},\"cold_log_bytes\":{}}}",
            m.hot_log,
            m.hot_index,
            m.read_cache,
            m.cold_index_log,
            m.cold_index_table,
            m.cold_log,
            m.total(),
            t.migrations,
            t.migrated_records,
            tail - begin
        );
    } else {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "memory: hot log {:.1} MiB, hot index {:.1} MiB ({hot_keys} entries), read cache {:.1} MiB, cold index log {:.1} MiB, \
             cold index table {:.2} MiB ({cold_index_per_key:.3} bytes per cold-only key), cold log {:.1} MiB; \
             total {:.1} MiB. {} migrations moved {} records; cold log {:.1} MiB",
            mib(m.hot_log),
            mib(m.hot_index),
            mib(m.read_cache),
            mib(m.cold_index_log),
            mib(m.cold_index_table),
            mib(m.cold_log),
            mib(m.total()),
            t.migrations,
            t.migrated_records,
            mib(tail - begin)
        );
    }
}
