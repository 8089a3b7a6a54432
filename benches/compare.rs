//! Side-by-side comparison with oxifaster 0.1.3 (the earlier Rust port, from
//! crates.io), in one process and one run: the same keys, threads,
//! workloads and key traces on both stores, alternating store by store for
//! every point, both in memory (null devices). After every RMW run each
//! store's counters are summed and compared with the increments issued; a
//! difference is reported as LOST UPDATES.
//!
//! ```sh
//! cargo bench --features compare --bench compare             # 1 M and 10 M keys
//! OXIFASTER_COMPARE_KEYS=1000000 OXIFASTER_COMPARE_SECS=2 cargo bench --features compare --bench compare
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use oxifaster_cli::workload::{Distribution, KeyChooser, Op, Rng, Workload, fnv64, key_trace};

/// One session of a store under test.
trait Worker {
    fn read(&mut self, key: u64) -> bool;
    fn upsert(&mut self, key: u64, value: u64);
    fn rmw(&mut self, key: u64);
    fn settle(&mut self);
    fn get(&mut self, key: u64) -> Option<u64>;
}

/// A store under test.
trait System: Sync {
    type W<'a>: Worker
    where
        Self: 'a;
    fn name(&self) -> &'static str;
    fn worker(&self) -> Self::W<'_>;
}

// ---- oxifaster 0.2 (this crate) ----

struct Ours(oxifaster::Store<u64, u64, oxifaster::device::NullDevice>);
struct OursWorker<'a>(oxifaster::Session<'a, u64, u64, oxifaster::device::NullDevice>);

impl Worker for OursWorker<'_> {
    fn read(&mut self, key: u64) -> bool {
        use oxifaster::store::ReadStatus;
        match self.0.read(&key).expect("read") {
            ReadStatus::Found(_) => true,
            ReadStatus::NotFound => false,
            ReadStatus::Pending { .. } => self.get(key).is_some(),
        }
    }
    fn upsert(&mut self, key: u64, value: u64) {
        self.0.upsert(&key, &value).expect("upsert");
    }
    fn rmw(&mut self, key: u64) {
        self.0.rmw(&key, &1).expect("rmw");
    }
    fn settle(&mut self) {
        self.0.complete_pending(true).expect("complete_pending");
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.read_blocking(&key).expect("read")
    }
}

impl System for Ours {
    type W<'a> = OursWorker<'a>;
    fn name(&self) -> &'static str {
        "oxifaster 0.2"
    }
    fn worker(&self) -> OursWorker<'_> {
        OursWorker(self.0.start_session().expect("session"))
    }
}

fn ours(keys: u64) -> Ours {
    Ours(
        oxifaster::Store::<u64, u64>::builder()
            .table_size((keys / 2).next_power_of_two())
            .log_memory_size_bytes((keys * 24 * 8).next_power_of_two().max(64 << 20))
            .page_size_bits(22)
            .max_sessions(8)
            .open_with_device(oxifaster::device::NullDevice)
            .expect("store"),
    )
}

// ---- oxifaster 0.1.3 ----

type Old = oxifaster_0_1::store::FasterKv<u64, u64, oxifaster_0_1::device::NullDisk>;
struct Previous(Arc<Old>);
/// The session, and whether an operation went pending since the last settle
/// (its `complete_pending(true)` is only called when one did).
struct PreviousWorker(
    oxifaster_0_1::store::Session<u64, u64, oxifaster_0_1::device::NullDisk>,
    bool,
);

impl Worker for PreviousWorker {
    fn read(&mut self, key: u64) -> bool {
        match self.0.read(&key) {
            Ok(found) => found.is_some(),
            Err(_) => self.get(key).is_some(),
        }
    }
    fn upsert(&mut self, key: u64, value: u64) {
        if self.0.upsert(key, value) == oxifaster_0_1::status::Status::Pending {
            self.1 = true;
        }
    }
    fn rmw(&mut self, key: u64) {
        let status = self.0.rmw(key, |v| {
            *v += 1;
            true
        });
        if status == oxifaster_0_1::status::Status::Pending {
            self.1 = true;
        }
    }
    fn settle(&mut self) {
        if std::mem::take(&mut self.1) {
            self.0.complete_pending(true);
        }
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        for _ in 0..1000 {
            match self.0.read(&key) {
                Ok(found) => return found,
                Err(_) => {
                    self.0.complete_pending(true);
                }
            }
        }
        None
    }
}

impl System for Previous {
    type W<'a> = PreviousWorker;
    fn name(&self) -> &'static str {
        "oxifaster 0.1.3"
    }
    fn worker(&self) -> PreviousWorker {
        PreviousWorker(self.0.start_session().expect("session"), false)
    }
}

fn previous(keys: u64) -> Previous {
    let config = oxifaster_0_1::store::FasterKvConfig {
        table_size: (keys / 2).next_power_of_two(),
        log_memory_size: (keys * 64 * 4).next_power_of_two().max(64 << 20),
        page_size_bits: 22,
        mutable_fraction: 0.9,
    };
    Previous(Arc::new(Old::new(config, oxifaster_0_1::device::NullDisk::new())))
}

// ---- the harness ----

fn load<S: System>(system: &S, keys: u64) {
    let mut w = system.worker();
    for i in 0..keys {
        w.upsert(fnv64(i), 0);
    }
    w.settle();
}

struct Outcome {
    mops: f64,
    not_found: u64,
    rmws: u64,
}

fn run<S: System>(
    system: &S,
    threads: usize,
    workload: Workload,
    traces: &[Vec<u64>],
    secs: f64,
) -> Outcome {
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(threads + 1);
    let (counts, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = traces
            .iter()
            .enumerate()
            .map(|(t, trace)| {
                let (stop, ready) = (&stop, &ready);
                scope.spawn(move || {
                    let mut w = system.worker();
                    let mut rng = Rng::new(t as u64 + 1);
                    let (mut ops, mut not_found, mut rmws, mut next) = (0u64, 0u64, 0u64, 0usize);
                    ready.wait();
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..256 {
                            let key = trace[next];
                            next = (next + 1) % trace.len();
                            match workload.next_op(&mut rng) {
                                Op::Read => not_found += u64::from(!w.read(key)),
                                Op::Upsert => w.upsert(key, ops),
                                Op::Rmw => {
                                    w.rmw(key);
                                    rmws += 1;
                                }
                            }
                            ops += 1;
                        }
                        w.settle();
                    }
                    (ops, not_found, rmws)
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        let counts: Vec<_> = handles.into_iter().map(|h| h.join().expect("worker")).collect();
        (counts, start.elapsed())
    });
    let ops: u64 = counts.iter().map(|c| c.0).sum();
    Outcome {
        mops: ops as f64 / elapsed.as_secs_f64() / 1e6,
        not_found: counts.iter().map(|c| c.1).sum(),
        rmws: counts.iter().map(|c| c.2).sum(),
    }
}

fn sum<S: System>(system: &S, keys: u64) -> u64 {
    let mut w = system.worker();
    (0..keys).map(|i| w.get(fnv64(i)).unwrap_or(0)).sum()
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn main() {
    let key_counts: Vec<u64> = match env("OXIFASTER_COMPARE_KEYS") {
        Some(k) => vec![k],
        None => vec![1_000_000, 10_000_000],
    };
    let secs = env("OXIFASTER_COMPARE_SECS").unwrap_or(3) as f64;
    println!(
        "| keys | workload | dist | threads | oxifaster 0.2 Mops/s | oxifaster 0.1.3 Mops/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for keys in key_counts {
        let new = ours(keys);
        let old = previous(keys);
        load(&new, keys);
        load(&old, keys);
        let (mut new_increments, mut old_increments) = (0u64, 0u64);
        let mut points = Vec::new();
        for dist in [Distribution::Uniform, Distribution::Zipf] {
            let chooser = KeyChooser::new(keys, dist);
            for threads in [1usize, 2] {
                let traces: Vec<Vec<u64>> = (0..threads)
                    .map(|t| key_trace(&chooser, &mut Rng::new(100 + t as u64), 1 << 22))
                    .collect();
                points.push((dist, threads, traces));
            }
        }
        // A (with upserts) runs last, so that the counters of the RMW runs
        // can be checked.
        for workload in [Workload::C, Workload::Rmw, Workload::A] {
            for (dist, threads, traces) in &points {
                let (dist, threads) = (*dist, *threads);
                let a = run(&new, threads, workload, traces, secs);
                let b = run(&old, threads, workload, traces, secs);
                new_increments += a.rmws;
                old_increments += b.rmws;
                let mut notes = String::new();
                for (name, o) in [("0.2", &a), ("0.1.3", &b)] {
                    if o.not_found > 0 {
                        notes += &format!(" {name}: {} WRONG NOT-FOUND;", o.not_found);
                    }
                }
                if workload == Workload::Rmw {
                    for (name, system_sum, issued) in [
                        ("0.2", sum(&new, keys), new_increments),
                        ("0.1.3", sum(&old, keys), old_increments),
                    ] {
                        if system_sum != issued {
                            notes += &format!(" {name}: LOST UPDATES ({system_sum} of {issued});");
                        }
                    }
                }
                println!(
                    "| {keys} | {} | {} | {threads} | {:.2} | {:.2} | {:.2}×{notes} |",
                    workload.name(),
                    if dist == Distribution::Uniform { "uniform" } else { "zipf" },
                    a.mops,
                    b.mops,
                    a.mops / b.mops
                );
            }
        }
        let _ = (new.name(), old.name());
    }
}
