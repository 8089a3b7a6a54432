//! The disk budget's soak: two sessions write a store under a budget for a
//! while — 50:50 reads and upserts of 100-byte values, uniform keys then
//! zipfian ones, a fold-over checkpoint at a fixed interval — and the
//! store directory, measured every 50 ms, never passes the budget. Every
//! read during the run returns the value its key's last write left (each
//! thread owns half of the keys, so it knows it); at the end every key is
//! exact, and again after closing and reopening.
//!
//! CI size: 100,000 keys, 8 MiB of log memory, a 64 MiB budget, 4 s per
//! distribution, a checkpoint every 2 s. The long mode is the one
//! BENCHMARKS.md and TESTING.md report: `OXIFASTER_SOAK_SECS=600` runs
//! 1,000,000 keys, 64 MiB of log memory, a 512 MiB budget and a checkpoint
//! every 10 s, for that many seconds per distribution (run it with
//! `--test-threads=1`, so that the two distributions do not share the
//! cores).
//! `OXIFASTER_SOAK_TRACE=FILE` writes the directory's size over time
//! (`distribution,seconds,bytes` lines).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxifaster::checkpoint::CheckpointKind;
use oxifaster::{Error, Store};
use oxifaster_cli::workload::{Distribution, KeyChooser, Rng};

struct Plan {
    keys: u64,
    page_bits: u32,
    log_memory: u64,
    budget: u64,
    secs: u64,
    checkpoint_every: Duration,
}

fn plan() -> Plan {
    match std::env::var("OXIFASTER_SOAK_SECS").ok().and_then(|s| s.parse().ok()) {
        Some(secs) => Plan {
            keys: 1_000_000,
            page_bits: 22,
            log_memory: 64 << 20,
            budget: 512 << 20,
            secs,
            checkpoint_every: Duration::from_secs(10),
        },
        None => Plan {
            keys: 100_000,
            page_bits: 20,
            log_memory: 8 << 20,
            budget: 64 << 20,
            secs: 4,
            checkpoint_every: Duration::from_secs(2),
        },
    }
}

const VALUE_SIZE: usize = 100;

/// Key `key`'s value after its `version`th write: 100 bytes naming both.
fn value(key: u64, version: u32) -> Vec<u8> {
    let mut v = vec![(key as u32).wrapping_add(version) as u8; VALUE_SIZE];
    v[..8].copy_from_slice(&key.to_le_bytes());
    v[8..12].copy_from_slice(&version.to_le_bytes());
    v
}

fn builder(dir: &Path, plan: &Plan) -> oxifaster::StoreBuilder<u64, Vec<u8>> {
    Store::<u64, Vec<u8>>::builder()
        .dir(dir)
        .table_size((plan.keys / 2).next_power_of_two())
        .page_size_bits(plan.page_bits)
        .log_memory_size_bytes(plan.log_memory)
        .checkpoint_every(None)
        .disk_budget(Some(plan.budget))
}

/// Samples the directory every 50 ms; returns the largest size seen.
fn monitor(dir: &Path, stop: Arc<AtomicBool>, name: &'static str) -> std::thread::JoinHandle<u64> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut trace = std::env::var_os("OXIFASTER_SOAK_TRACE").map(|path| {
            std::fs::OpenOptions::new().create(true).append(true).open(path).expect("trace file")
        });
        let started = Instant::now();
        let mut largest = 0;
        while !stop.load(Ordering::Acquire) {
            let bytes = oxifaster::compaction::directory_bytes(&dir);
            largest = largest.max(bytes);
            if let Some(file) = trace.as_mut() {
                let secs = started.elapsed().as_secs_f64();
                writeln!(file, "{name},{secs:.2},{bytes}").expect("trace");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        largest
    })
}

fn soak(distribution: Distribution, name: &'static str) {
    let plan = plan();
    let dir = tempfile::tempdir().expect("tempdir");
    // Each thread owns the keys of its parity and the versions it wrote.
    let mut versions: Vec<Vec<u32>> = vec![vec![0; plan.keys as usize / 2]; 2];
    let ops = AtomicU64::new(0);
    let largest;
    {
        let store = builder(dir.path(), &plan).open().expect("open");
        {
            let mut session = store.start_session().expect("session");
            for key in 0..plan.keys {
                session.upsert(&key, &value(key, 0)).expect("load");
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = monitor(dir.path(), stop.clone(), name);
        let chooser = KeyChooser::new(plan.keys, distribution);
        let until = Instant::now() + Duration::from_secs(plan.secs);
        std::thread::scope(|scope| {
            for (t, versions) in versions.iter_mut().enumerate() {
                let (store, chooser, ops) = (&store, &chooser, &ops);
                scope.spawn(move || {
                    let mut session = store.start_session().expect("session");
                    let mut rng = Rng::new(0x5eed + t as u64);
                    let mut n = 0u64;
                    while !n.is_multiple_of(1024) || Instant::now() < until {
                        // `keys` is even: the key stays below it.
                        let key = (chooser.next(&mut rng) & !1) | t as u64;
                        let slot = &mut versions[key as usize / 2];
                        if rng.below(2) == 0 {
                            let got = session.read_blocking(&key).expect("read");
                            assert_eq!(got, Some(value(key, *slot)), "key {key} mid-run");
                        } else {
                            *slot += 1;
                            session.upsert(&key, &value(key, *slot)).expect("upsert");
                        }
                        n += 1;
                    }
                    ops.fetch_add(n, Ordering::Relaxed);
                });
            }
            let mut next = Instant::now() + plan.checkpoint_every;
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
                if Instant::now() >= next {
                    match store.checkpoint_and_wait(CheckpointKind::FoldOver) {
                        Ok(_) | Err(Error::CheckpointInProgress { .. }) => {}
                        Err(e) => panic!("checkpoint: {e}"),
                    }
                    next = Instant::now() + plan.checkpoint_every;
                }
            }
        });
        let totals = store.compaction_totals();
        let mut session = store.start_session().expect("session");
        check_all(&mut session, &versions, "at the end");
        drop(session);
        store.close().expect("close");
        stop.store(true, Ordering::Release);
        largest = sampler.join().expect("monitor");
        eprintln!(
            "{name}: {:.2} Mops/s, directory at most {:.1} MiB of {:.0} MiB; {totals:?}",
            ops.load(Ordering::Relaxed) as f64 / plan.secs as f64 / 1e6,
            largest as f64 / (1 << 20) as f64,
            plan.budget as f64 / (1 << 20) as f64
        );
        assert!(totals.compactions > 0, "{name}: the budget never compacted");
    }
    assert!(
        largest <= plan.budget,
        "{name}: the directory reached {largest} bytes for a budget of {}",
        plan.budget
    );
    let store = builder(dir.path(), &plan).open().expect("reopen");
    let mut session = store.start_session().expect("session");
    check_all(&mut session, &versions, "after reopening");
}

fn check_all(
    session: &mut oxifaster::store::Session<u64, Vec<u8>, oxifaster::device::FileDevice>,
    versions: &[Vec<u32>],
    when: &str,
) {
    for (t, versions) in versions.iter().enumerate() {
        for (i, version) in versions.iter().enumerate() {
            let key = i as u64 * 2 + t as u64;
            let got = session.read_blocking(&key).expect("read");
            assert_eq!(got, Some(value(key, *version)), "key {key} {when}");
        }
    }
}

#[test]
fn soak_uniform_under_a_disk_budget() {
    soak(Distribution::Uniform, "uniform");
}

#[test]
fn soak_zipf_under_a_disk_budget() {
    soak(Distribution::Zipf, "zipf");
}
