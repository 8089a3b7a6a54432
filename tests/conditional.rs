//! Conditional operations: insert-if-absent, compare-and-swap, delete-if
//! and decision closures, against a model (tiny memory, so the pending
//! paths run) and racing from several sessions.
//!
//! `OXIFASTER_MODEL_OPS` sets the operations per model run (default
//! 20 000); `OXIFASTER_STRESS_OPS` the increments per thread of the races.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use oxifaster::device::{Device, MemoryDevice};
use oxifaster::record::{Merge, Value};
use oxifaster::store::{CompletedOp, Decision, Outcome, Session, Store, UpdateStatus};
use oxifaster_cli::workload::Rng;

fn ops() -> u64 {
    std::env::var("OXIFASTER_MODEL_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

fn stress_ops() -> u64 {
    std::env::var("OXIFASTER_STRESS_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

/// Values the model test can build from a number and read a number from.
trait Num: Value + Merge + Clone + PartialEq + Debug {
    fn of(n: u64) -> Self;
    fn num(view: Self::View<'_>) -> u64;
}

impl Num for u64 {
    fn of(n: u64) -> Self {
        n
    }
    fn num(view: &u64) -> u64 {
        *view
    }
}

/// Decimal text: its length changes with the number (7 → 10 is longer),
/// so some updates cannot be made in place.
impl Num for String {
    fn of(n: u64) -> Self {
        n.to_string()
    }
    fn num(view: &str) -> u64 {
        view.parse().unwrap_or(u64::MAX)
    }
}

/// The decision closure of the model test: a function of the old value.
fn decide<V: Num>(old: Option<V::View<'_>>) -> Decision<V> {
    match old.map(V::num) {
        None => Decision::Set(V::of(1)),
        Some(n) if n % 5 == 0 => Decision::Delete,
        Some(n) if n % 7 == 0 => Decision::Abort,
        Some(n) if n % 3 == 0 => Decision::Keep,
        Some(n) => Decision::Set(V::of(n * 2 + 1)),
    }
}

/// What `decide` does to the model, and the outcome it reports.
fn decide_model(old: Option<u64>) -> (Option<u64>, Outcome) {
    match old {
        None => (Some(1), Outcome::Set),
        Some(n) if n % 5 == 0 => (None, Outcome::Deleted),
        Some(n) if n % 7 == 0 => (Some(n), Outcome::Aborted),
        Some(n) if n % 3 == 0 => (Some(n), Outcome::Kept),
        Some(n) => (Some(n * 2 + 1), Outcome::Set),
    }
}

/// The outcome of a conditional operation, completing it if it went
/// pending.
fn finish<V: Num, D: Device>(
    session: &mut Session<u64, V, D>,
    status: UpdateStatus,
    pending: &mut u64,
) -> Outcome {
    match status {
        UpdateStatus::Done(outcome) => outcome,
        UpdateStatus::Pending { serial } => {
            *pending += 1;
            let done = session.complete_pending().expect("complete_pending");
            assert_eq!(done.len(), 1, "one parked operation");
            assert_eq!(done[0].serial, serial);
            match &done[0].op {
                CompletedOp::Update(outcome) => *outcome,
                other => panic!("completion {other:?}"),
            }
        }
        other => panic!("status {other:?}"),
    }
}

fn model_run<V: Num, D: Device>(store: Store<u64, V, D>, seed: u64) {
    let mut session = store.start_session().expect("session");
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    let mut rng = Rng::new(seed);
    let keys = 400;
    let mut pending = 0;
    for step in 0..ops() {
        let key = rng.below(keys);
        let old = model.get(&key).copied();
        let what = rng.below(100);
        let (status, expected, after) = if what < 25 {
            let value = rng.below(40);
            session.upsert(&key, &V::of(value)).expect("upsert");
            model.insert(key, value);
            continue;
        } else if what < 30 {
            session.delete(&key).expect("delete");
            model.remove(&key);
            continue;
        } else if what < 45 {
            let value = rng.below(40);
            let status = session.insert_if_absent(&key, &V::of(value)).expect("insert");
            match old {
                None => (status, Outcome::Set, Some(value)),
                Some(_) => (status, Outcome::Aborted, old),
            }
        } else if what < 65 {
            // Half the time the value the key holds, else a guess.
            let expected = match old {
                Some(n) if rng.below(2) == 0 => n,
                _ => rng.below(40),
            };
            let new = rng.below(40);
            let status =
                session.compare_and_swap(&key, &V::of(expected), &V::of(new)).expect("cas");
            match old {
                Some(n) if n == expected => (status, Outcome::Set, Some(new)),
                _ => (status, Outcome::Aborted, old),
            }
        } else if what < 75 {
            let status = session.delete_if(&key, |v| V::num(v) % 2 == 0).expect("delete_if");
            match old {
                Some(n) if n % 2 == 0 => (status, Outcome::Deleted, None),
                _ => (status, Outcome::Aborted, old),
            }
        } else {
            let status = session.update(&key, decide::<V>).expect("update");
            let (after, outcome) = decide_model(old);
            (status, outcome, after)
        };
        let outcome = finish(&mut session, status, &mut pending);
        assert_eq!(outcome, expected, "seed {seed} step {step}: key {key} held {old:?}");
        match after {
            Some(n) => model.insert(key, n),
            None => model.remove(&key),
        };
        if step % 997 == 0 {
            for key in 0..keys {
                let got = session.read_blocking(&key).expect("read");
                assert_eq!(got, model.get(&key).map(|&n| V::of(n)), "seed {seed}: key {key}");
            }
        }
    }
    for key in 0..keys {
        let got = session.read_blocking(&key).expect("read");
        assert_eq!(got, model.get(&key).map(|&n| V::of(n)), "seed {seed}: key {key}");
    }
    assert!(pending > 0, "the pending path ran (seed {seed})");
}

fn tiny<V: Value>() -> oxifaster::StoreBuilder<u64, V> {
    Store::<u64, V>::builder()
        .table_size(64)
        .page_size_bits(10)
        .log_memory_size_bytes(4 << 10)
        .mutable_fraction(0.5)
}

#[test]
fn conditional_ops_match_a_model_one_word_values() {
    for seed in [1, 2] {
        let store = tiny::<u64>().open_with_device(MemoryDevice::new()).expect("open");
        model_run(store, seed);
    }
}

#[test]
fn conditional_ops_match_a_model_text_values_on_files() {
    for seed in [3, 4] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tiny::<String>().dir(dir.path()).open().expect("open");
        model_run(store, seed);
    }
}

/// Counters incremented only through compare-and-swap retries, from two
/// sessions: every increment counts exactly once.
fn cas_counters<V: Num>(store: Store<u64, V, MemoryDevice>, keys: u64) {
    let store = Arc::new(store);
    let per_thread = stress_ops();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut rng = Rng::new(t + 10);
                let mut retries = 0u64;
                for _ in 0..per_thread {
                    let key = rng.below(keys);
                    loop {
                        let current = session.read_blocking(&key).expect("read");
                        let status = match &current {
                            None => session.insert_if_absent(&key, &V::of(1)),
                            Some(v) => {
                                let n = V::num(V::view(&v.to_aligned_bytes()).expect("view"));
                                session.compare_and_swap(&key, v, &V::of(n + 1))
                            }
                        }
                        .expect("cas");
                        let mut pending = 0;
                        match finish(&mut session, status, &mut pending) {
                            Outcome::Set => break,
                            Outcome::Aborted => retries += 1,
                            other => panic!("{other:?}"),
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let retries: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let mut session = store.start_session().expect("session");
    let mut total = 0;
    for key in 0..keys {
        if let Some(v) = session.read_blocking(&key).expect("read") {
            total += V::num(V::view(&v.to_aligned_bytes()).expect("view"));
        }
    }
    assert_eq!(total, 2 * per_thread, "every increment exactly once ({retries} retries)");
}

#[test]
fn cas_counters_are_exact_one_word() {
    let store = Store::<u64, u64>::builder()
        .table_size(64)
        .open_with_device(MemoryDevice::new())
        .expect("open");
    cas_counters(store, 8);
}

#[test]
fn cas_counters_are_exact_text_spilling() {
    // Decimal text grows (9 → 10): copies, seals; tiny memory: pending.
    let store = tiny::<String>().open_with_device(MemoryDevice::new()).expect("open");
    cas_counters(store, 64);
}

/// A lock made of insert-if-absent (acquire) and delete-if (release, only
/// by its holder) guards a plain read-then-upsert counter: with the lock
/// atomic, no increment is lost. The lock key's value is one word, so the
/// release takes the seal-and-drain path.
#[test]
fn insert_if_absent_and_delete_if_make_a_lock() {
    let store = Arc::new(
        Store::<u64, u64>::builder()
            .table_size(64)
            .open_with_device(MemoryDevice::new())
            .expect("ok"),
    );
    const LOCK: u64 = 1;
    const COUNTER: u64 = 2;
    let per_thread = stress_ops() / 4;
    let threads: Vec<_> = (1..=2u64)
        .map(|me| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut pending = 0;
                for _ in 0..per_thread {
                    loop {
                        let status = session.insert_if_absent(&LOCK, &me).expect("acquire");
                        if finish(&mut session, status, &mut pending) == Outcome::Set {
                            break;
                        }
                        std::thread::yield_now();
                    }
                    let n = session.read_blocking(&COUNTER).expect("read").unwrap_or(0);
                    session.upsert(&COUNTER, &(n + 1)).expect("upsert");
                    let status = session.delete_if(&LOCK, move |holder| *holder == me).expect("ok");
                    assert_eq!(finish(&mut session, status, &mut pending), Outcome::Deleted);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let mut session = store.start_session().expect("session");
    assert_eq!(session.read_blocking(&COUNTER).expect("ok"), Some(2 * per_thread));
    assert_eq!(session.read_blocking(&LOCK).expect("ok"), None);
}

/// A delete-if racing in-place upserts of the same keys. The writer
/// stores even values (which the predicate accepts) and odd ones (which
/// it rejects) in turn, and reads each key before its next upsert:
/// finding it deleted while the last value stored was odd means a delete
/// decided on a value that was no longer the key's.
fn delete_if_races<V: Num>(store: Store<u64, V, MemoryDevice>) {
    let store = Arc::new(store);
    let keys = 4u64;
    let rounds = stress_ops();
    let stop = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(AtomicU64::new(0));
    let deleter = {
        let (store, stop, deleted) = (store.clone(), stop.clone(), deleted.clone());
        std::thread::spawn(move || {
            let mut session = store.start_session().expect("session");
            let (mut pending, mut i) = (0, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let status = session.delete_if(&(i % keys), |v| V::num(v) % 2 == 0).expect("ok");
                if finish(&mut session, status, &mut pending) == Outcome::Deleted {
                    deleted.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };
    let mut session = store.start_session().expect("session");
    let mut seen_deleted = 0;
    let started = std::time::Instant::now();
    let mut i = 0;
    // Until both have done their share (the deleter may start late).
    while (i < rounds || deleted.load(Ordering::Relaxed) < 100)
        && started.elapsed() < std::time::Duration::from_secs(30)
    {
        // Each key's values alternate between even and odd.
        let (key, value) = (i % keys, i / keys);
        if session.read_blocking(&key).expect("read").is_none() && value > 0 {
            let last = value - 1;
            assert_eq!(last % 2, 0, "key {key} deleted while it held {last}: a stale decision");
            seen_deleted += 1;
        }
        session.upsert(&key, &V::of(value)).expect("upsert");
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    deleter.join().expect("deleter");
    let deleted = deleted.load(Ordering::Relaxed);
    assert!(deleted >= 100 && seen_deleted <= deleted, "{deleted} deletes, {seen_deleted} seen");
}

#[test]
fn delete_if_decides_on_the_value_it_deletes_one_word() {
    let store = Store::<u64, u64>::builder().table_size(64).open_with_device(MemoryDevice::new());
    delete_if_races(store.expect("ok"));
}

#[test]
fn delete_if_decides_on_the_value_it_deletes_text() {
    let store = Store::<u64, String>::builder().table_size(64);
    delete_if_races(store.open_with_device(MemoryDevice::new()).expect("ok"));
}
