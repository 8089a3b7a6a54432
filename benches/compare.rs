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

/// One worker's run: replays `trace` with `workload`'s mix until `stop`;
/// returns (operations, reads that found nothing, RMWs).
fn drive<W: Worker>(
    mut w: W,
    workload: Workload,
    trace: &[u64],
    thread: usize,
    stop: &AtomicBool,
    ready: &Barrier,
) -> (u64, u64, u64) {
    let mut rng = Rng::new(thread as u64 + 1);
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
                scope.spawn(move || drive(system.worker(), workload, trace, t, stop, ready))
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

/// `run` for oxifaster 0.1.3 under a watchdog: its workers run on detached
/// threads, and if they have not stopped `grace` after the run ends (0.1.3
/// can hang), `None` — the threads are left behind, and the caller stops
/// measuring 0.1.3.
fn run_watched(
    system: &Arc<Previous>,
    threads: usize,
    workload: Workload,
    traces: &[Vec<u64>],
    secs: f64,
    grace: Duration,
) -> Option<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(threads + 1));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (t, trace) in traces.iter().enumerate().take(threads) {
        let (system, stop, ready, done_tx) =
            (system.clone(), stop.clone(), ready.clone(), done_tx.clone());
        let trace = trace.clone();
        std::thread::spawn(move || {
            let counts = drive(system.worker(), workload, &trace, t, &stop, &ready);
            let _ = done_tx.send(counts);
        });
    }
    drop(done_tx);
    ready.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + grace;
    let mut counts = Vec::new();
    while counts.len() < threads {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(c) => counts.push(c),
            Err(_) => return None,
        }
    }
    let elapsed = start.elapsed();
    let ops: u64 = counts.iter().map(|c| c.0).sum();
    Some(Outcome {
        mops: ops as f64 / elapsed.as_secs_f64() / 1e6,
        not_found: counts.iter().map(|c| c.1).sum(),
        rmws: counts.iter().map(|c| c.2).sum(),
    })
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
        let old = Arc::new(previous(keys));
        let mut old_hung: Option<String> = None;
        load(&new, keys);
        load(&*old, keys);
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
                let dist_name = if dist == Distribution::Uniform { "uniform" } else { "zipf" };
                let a = run(&new, threads, workload, traces, secs);
                new_increments += a.rmws;
                let b = match &old_hung {
                    Some(_) => None,
                    None => {
                        let grace = Duration::from_secs(30);
                        let b = run_watched(&old, threads, workload, traces, secs, grace);
                        if b.is_none() {
                            old_hung =
                                Some(format!("{} {dist_name} {threads} thr", workload.name()));
                        }
                        b
                    }
                };
                let mut notes = String::new();
                if a.not_found > 0 {
                    notes += &format!(" 0.2: {} WRONG NOT-FOUND;", a.not_found);
                }
                if let Some(b) = &b {
                    old_increments += b.rmws;
                    if b.not_found > 0 {
                        notes += &format!(" 0.1.3: {} WRONG NOT-FOUND;", b.not_found);
                    }
                }
                if workload == Workload::Rmw {
                    let new_sum = sum(&new, keys);
                    if new_sum != new_increments {
                        notes += &format!(" 0.2: LOST UPDATES ({new_sum} of {new_increments});");
                    }
                    if b.is_some() {
                        let old_sum = sum(&*old, keys);
                        if old_sum != old_increments {
                            notes +=
                                &format!(" 0.1.3: LOST UPDATES ({old_sum} of {old_increments});");
                        }
                    }
                }
                match (&b, &old_hung) {
                    (Some(b), _) => println!(
                        "| {keys} | {} | {dist_name} | {threads} | {:.2} | {:.2} | {:.2}×{notes} |",
                        workload.name(),
                        a.mops,
                        b.mops,
                        a.mops / b.mops
                    ),
                    (None, Some(at)) => println!(
                        "| {keys} | {} | {dist_name} | {threads} | {:.2} | HUNG (no progress 30 s after the run, at {at}; not measured further) | — |{notes}",
                        workload.name(),
                        a.mops,
                    ),
                    (None, None) => {}
                }
            }
        }
        let _ = (new.name(), old.name());
    }
}
