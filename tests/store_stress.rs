//! Concurrency stress of the store on a file device with a memory budget of
//! at most 1/8 of the data, so records are evicted to disk between updates:
//!
//! - RMW counters from several sessions: the final sums equal the increments
//!   issued (no lost update, including for keys read back from disk), and a
//!   reader session never sees a counter go backwards.
//! - Multi-word values updated in place by upserts and RMWs while other
//!   sessions read them: no reader ever sees a torn value.
//!
//! `OXIFASTER_STRESS_OPS` sets the operations per thread (default 100 000).

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use oxifaster::FasterValue;
use oxifaster::device::FileDevice;
use oxifaster::store::{CompletedOp, ReadStatus, RmwStatus, Store};

fn ops() -> u64 {
    std::env::var("OXIFASTER_STRESS_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000)
}

/// The shared SplitMix64 generator, stepped from a plain state word.
fn splitmix(state: &mut u64) -> u64 {
    let mut rng = oxifaster_cli::workload::Rng::new(*state);
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    rng.next_u64()
}

const KEYS: u64 = 20_000;

fn counters(threads: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = FileDevice::open(dir.path(), 20).expect("device");
    // 20 000 keys × 24-byte records = 480 KB of live data; 48 KiB of memory.
    let store = Store::<u64, u64>::builder()
        .table_size(1 << 12)
        .page_size_bits(12)
        .log_memory_size_bytes(48 << 10)
        .mutable_fraction(0.5)
        .open_with_device(device)
        .expect("store");
    let ops = ops();
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let issued: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut session = store.start_session().expect("session");
            let mut last = vec![0u64; KEYS as usize];
            let mut state = 99u64;
            barrier.wait();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = splitmix(&mut state) % KEYS;
                let value = session.read_blocking(&key).expect("read").unwrap_or(0);
                assert!(
                    value >= last[key as usize],
                    "key {key} went back from {} to {value}",
                    last[key as usize]
                );
                last[key as usize] = value;
                reads += 1;
            }
            println!("reader: {reads} monotone reads");
        });
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let (store, barrier) = (&store, &barrier);
                scope.spawn(move || {
                    let mut session = store.start_session().expect("session");
                    let mut mine = vec![0u64; KEYS as usize];
                    let mut state = t as u64 + 1;
                    barrier.wait();
                    let mut pending = 0u64;
                    for i in 0..ops {
                        let key = splitmix(&mut state) % KEYS;
                        mine[key as usize] += 1;
                        if let RmwStatus::Pending { .. } = session.rmw(&key, &1).expect("rmw") {
                            pending += 1;
                        }
                        if i % 64 == 0 || session.pending_count() > 32 {
                            let done = session.complete_pending().expect("complete");
                            assert!(done.iter().all(|c| c.op == CompletedOp::Rmw));
                        }
                    }
                    session.complete_pending().expect("complete");
                    println!("writer {t}: {ops} rmws, {pending} went to disk");
                    mine
                })
            })
            .collect();
        let issued = writers.into_iter().map(|w| w.join().expect("writer")).collect();
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("reader");
        issued
    });
    let mut session = store.start_session().expect("session");
    let mut total = 0u64;
    for key in 0..KEYS {
        let expected: u64 = issued.iter().map(|m| m[key as usize]).sum();
        let value = session.read_blocking(&key).expect("read").unwrap_or(0);
        assert_eq!(value, expected, "key {key}: lost updates");
        total += value;
    }
    assert_eq!(total, ops * threads as u64);
    let log = store.log_regions();
    assert!(log.head_address > log.begin_address, "nothing was evicted");
    println!(
        "threads {threads}: total {total}, log tail {}, head {}",
        log.tail_address, log.head_address
    );
}

#[test]
fn rmw_counters_have_no_lost_updates_2_threads() {
    counters(2);
}

#[test]
fn rmw_counters_have_no_lost_updates_4_threads() {
    counters(4);
}

/// Every word is derived from `a`, so a torn value breaks the invariant.
#[derive(FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
#[faster(merge_with = "advance")]
struct Shape {
    a: u64,
    not_a: u64,
    copies: [u64; 4],
}

fn advance(stored: &mut Shape, input: &Shape) {
    *stored = Shape::of(stored.a.wrapping_add(input.a));
}

impl Shape {
    fn of(a: u64) -> Self {
        Shape { a, not_a: !a, copies: [a; 4] }
    }
    fn is_whole(&self) -> bool {
        self.not_a == !self.a && self.copies == [self.a; 4]
    }
}

fn torn(threads: usize) {
    let store = Store::<u64, Shape>::builder()
        .table_size(1 << 8)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .open()
        .expect("store");
    const HOT: u64 = 16;
    let ops = ops();
    let barrier = Barrier::new(threads * 2);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (store, barrier) = (&store, &barrier);
            scope.spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut state = t as u64 + 7;
                barrier.wait();
                for _ in 0..ops {
                    let key = splitmix(&mut state) % HOT;
                    if splitmix(&mut state).is_multiple_of(2) {
                        session.upsert(&key, &Shape::of(splitmix(&mut state))).expect("upsert");
                    } else if let RmwStatus::Pending { .. } =
                        session.rmw(&key, &Shape::of(1)).expect("rmw")
                    {
                        session.complete_pending().expect("complete");
                    }
                }
            });
            scope.spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut state = t as u64 + 1000;
                barrier.wait();
                for _ in 0..ops {
                    let key = splitmix(&mut state) % HOT;
                    match session.read(&key).expect("read") {
                        ReadStatus::Found(v) => assert!(v.is_whole(), "torn read: {v:?}"),
                        ReadStatus::NotFound => {}
                        ReadStatus::Pending { .. } => {
                            for c in session.complete_pending().expect("complete") {
                                if let CompletedOp::Read(Some(v)) = c.op {
                                    assert!(v.is_whole(), "torn read from disk: {v:?}");
                                }
                            }
                        }
                        other => panic!("read: {other:?}"),
                    }
                    session
                        .read_with(&key, |view| {
                            if let Some(v) = view {
                                assert!(v.is_whole(), "torn zero-copy read: {v:?}");
                            }
                        })
                        .expect("read_with");
                }
            });
        }
    });
}

#[test]
fn multi_word_values_are_never_torn_2_threads() {
    torn(1);
}

#[test]
fn multi_word_values_are_never_torn_4_threads() {
    torn(2);
}

/// A variable-length value whose RMW fits in place when the new name has
/// the old name's length, and is copied to the tail when it does not.
#[derive(FasterValue, Clone, PartialEq, Debug)]
struct Tally {
    #[faster(merge = "sum")]
    count: u64,
    name: String,
}

/// Sessions mix in-place RMWs and copy-updates of the same records: a copy
/// must never miss an in-place update that raced with it.
fn mixed_in_place_and_copy(threads: usize) {
    let store = Store::<u64, Tally>::builder()
        .table_size(1 << 8)
        .page_size_bits(16)
        .log_memory_size_bytes(16 << 20)
        .open()
        .expect("store");
    const HOT: u64 = 4;
    let rmws = (ops() / 2).max(1000);
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (store, barrier) = (&store, &barrier);
            scope.spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut state = t as u64 + 31;
                barrier.wait();
                for _ in 0..rmws {
                    let key = splitmix(&mut state) % HOT;
                    let len = 1 + usize::from(splitmix(&mut state).is_multiple_of(8));
                    let input = Tally { count: 1, name: "n".repeat(len) };
                    if let RmwStatus::Pending { .. } = session.rmw(&key, &input).expect("rmw") {
                        session.complete_pending().expect("complete");
                    }
                }
            });
        }
    });
    let mut session = store.start_session().expect("session");
    let total: u64 =
        (0..HOT).map(|k| session.read_blocking(&k).expect("read").map_or(0, |v| v.count)).sum();
    assert_eq!(total, threads as u64 * rmws, "updates were lost");
}

#[test]
fn in_place_updates_and_copies_lose_nothing_2_threads() {
    mixed_in_place_and_copy(2);
}

#[test]
fn in_place_updates_and_copies_lose_nothing_4_threads() {
    mixed_in_place_and_copy(4);
}

/// The closure form of RMW from several sessions: counters stored as
/// variable-length text (so some updates grow and are copied), no update lost.
#[test]
fn closure_rmw_counters_lose_nothing() {
    let store = Store::<u64, String>::builder()
        .table_size(1 << 8)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .open()
        .expect("store");
    const THREADS: u64 = 4;
    const KEYS: u64 = 64;
    let per_thread = (ops() / 10).max(1000);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                let mut session = store.start_session().expect("session");
                for i in 0..per_thread {
                    let key = (i * 7 + t) % KEYS;
                    session
                        .rmw_with(&key, |old: Option<String>| {
                            let n: u64 = old.map_or(0, |s| s.parse().expect("a number"));
                            (n + 1).to_string()
                        })
                        .expect("rmw_with");
                }
            });
        }
    });
    let mut session = store.start_session().expect("session");
    let total: u64 = (0..KEYS)
        .map(|k| {
            session
                .read_blocking(&k)
                .expect("read")
                .map_or(0, |s| s.parse::<u64>().expect("a number"))
        })
        .sum();
    assert_eq!(total, THREADS * per_thread);
}
