//! Batched operations (`read_batch`, `read_batch_with`, `upsert_batch`,
//! `rmw_batch`): random batches, with duplicate keys within a batch and
//! most records on the device (tiny pages, tiny memory), against a model
//! applied one operation at a time in slice order; pending reads and RMWs
//! finish through `complete_pending` under the serials the batch returned.
//! Then batched RMW counters from several threads, summed exactly, and the
//! documented stop at an error.
//!
//! `OXIFASTER_MODEL_OPS` sets the batches per run (default 3 000).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use common::{merged, tiny};
use oxifaster::Error;
use oxifaster::device::{Device, FileDevice, MemoryDevice};
use oxifaster::record::{Key, Merge, Value};
use oxifaster::store::{CompletedOp, ReadStatus, RmwStatus, Session, Store};
use oxifaster_cli::workload::Rng;

fn batches() -> u64 {
    std::env::var("OXIFASTER_MODEL_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3_000)
}

/// What a batch run saw, so that a test can insist the paths ran.
#[derive(Default, Debug)]
struct Seen {
    pending_reads: u64,
    pending_rmws: u64,
    found: u64,
    not_found: u64,
    duplicate_keys: u64,
}

/// Finishes the session's pending operations and checks each against
/// `expected` (serial → what it must complete with); every expected serial
/// must complete.
fn complete<K: Key, V: Value + Merge + Clone + PartialEq + Debug, D: Device>(
    session: &mut Session<K, V, D>,
    mut expected: HashMap<u64, CompletedOp<V>>,
    context: &str,
) {
    if expected.is_empty() {
        return;
    }
    for done in session.complete_pending().expect("complete_pending") {
        let want = expected.remove(&done.serial).unwrap_or_else(|| {
            panic!("{context}: serial {} completed but was not pending", done.serial)
        });
        assert_eq!(done.op, want, "{context}: serial {}", done.serial);
    }
    assert!(expected.is_empty(), "{context}: never completed: {:?}", expected.keys());
}

fn run<K, V, D>(
    store: &Store<K, V, D>,
    seed: u64,
    mut key: impl FnMut(&mut Rng) -> K,
    mut value: impl FnMut(&mut Rng) -> V,
    owned: impl Fn(V::View<'_>) -> V,
) -> Seen
where
    K: Key + Ord + Clone + Debug,
    V: Value + Merge + Clone + PartialEq + Debug,
    D: Device,
{
    let mut rng = Rng::new(seed);
    let mut model: BTreeMap<K, V> = BTreeMap::new();
    let mut session = store.start_session().expect("session");
    let mut seen = Seen::default();
    let mut reads = Vec::new();
    let mut rmws = Vec::new();
    for step in 0..batches() {
        let context = format!("seed {seed} batch {step}");
        let len = 1 + rng.below(40) as usize;
        let keys: Vec<K> = (0..len).map(|_| key(&mut rng)).collect();
        let distinct: std::collections::BTreeSet<&K> = keys.iter().collect();
        seen.duplicate_keys += (keys.len() - distinct.len()) as u64;
        match rng.below(100) {
            0..30 => {
                let pairs: Vec<(K, V)> = keys.into_iter().map(|k| (k, value(&mut rng))).collect();
                session.upsert_batch(&pairs).expect("upsert_batch");
                for (k, v) in pairs {
                    model.insert(k, v);
                }
            }
            30..50 => {
                session.read_batch(&keys, &mut reads).expect("read_batch");
                assert_eq!(reads.len(), keys.len(), "{context}");
                let mut pending = HashMap::new();
                for (k, status) in keys.iter().zip(&reads) {
                    let want = model.get(k);
                    match status {
                        ReadStatus::Found(v) => {
                            seen.found += 1;
                            assert_eq!(Some(v), want, "{context}: {k:?}");
                        }
                        ReadStatus::NotFound => {
                            seen.not_found += 1;
                            assert_eq!(None, want, "{context}: {k:?}");
                        }
                        ReadStatus::Pending { serial } => {
                            seen.pending_reads += 1;
                            pending.insert(*serial, CompletedOp::Read(want.cloned()));
                        }
                        other => panic!("{context}: {other:?}"),
                    }
                }
                complete(&mut session, pending, &context);
            }
            50..65 => {
                let mut calls = 0;
                let mut pending = HashMap::new();
                session
                    .read_batch_with(&keys, |i, status| {
                        assert_eq!(i, calls, "{context}: calls in slice order");
                        calls += 1;
                        let want = model.get(&keys[i]);
                        match status {
                            ReadStatus::Found(view) => {
                                assert_eq!(Some(&owned(view)), want, "{context}: {:?}", keys[i])
                            }
                            ReadStatus::NotFound => assert_eq!(None, want, "{context}"),
                            ReadStatus::Pending { serial } => {
                                pending.insert(serial, CompletedOp::Read(want.cloned()));
                            }
                            _ => panic!("{context}: an unknown status"),
                        }
                    })
                    .expect("read_batch_with");
                assert_eq!(calls, keys.len(), "{context}");
                seen.pending_reads += pending.len() as u64;
                complete(&mut session, pending, &context);
            }
            65..95 => {
                let pairs: Vec<(K, V)> = keys.into_iter().map(|k| (k, value(&mut rng))).collect();
                session.rmw_batch(&pairs, &mut rmws).expect("rmw_batch");
                assert_eq!(rmws.len(), pairs.len(), "{context}");
                let mut pending = HashMap::new();
                for status in &rmws {
                    match status {
                        RmwStatus::Done => {}
                        RmwStatus::Pending { serial } => {
                            seen.pending_rmws += 1;
                            pending.insert(*serial, CompletedOp::Rmw);
                        }
                        other => panic!("{context}: {other:?}"),
                    }
                }
                complete(&mut session, pending, &context);
                for (k, input) in &pairs {
                    let next = merged(model.get(k), input);
                    model.insert(k.clone(), next);
                }
            }
            _ => {
                for k in keys {
                    session.delete(&k).expect("delete");
                    model.remove(&k);
                }
            }
        }
    }
    // Every key of the model, in batches, then by single reads.
    let all: Vec<K> = model.keys().cloned().collect();
    for chunk in all.chunks(64) {
        session.read_batch(chunk, &mut reads).expect("final read_batch");
        for (k, status) in chunk.iter().zip(&reads) {
            if let ReadStatus::Found(v) = status {
                assert_eq!(Some(v), model.get(k), "seed {seed}: final {k:?}");
            }
        }
        let _ = session.complete_pending().expect("complete_pending");
    }
    for (k, v) in &model {
        assert_eq!(session.read_blocking(k).expect("read").as_ref(), Some(v), "seed {seed}: {k:?}");
    }
    seen
}

fn assert_paths_ran(seen: &Seen) {
    println!("{seen:?}");
    assert!(seen.pending_reads > 0, "no batched read went to the device: {seen:?}");
    assert!(seen.pending_rmws > 0, "no batched RMW went to the device: {seen:?}");
    assert!(seen.found > 0 && seen.not_found > 0, "{seen:?}");
    assert!(seen.duplicate_keys > 0, "no batch held a key twice: {seen:?}");
}

#[test]
fn fixed_size_batches_follow_the_model_on_a_memory_device() {
    for seed in [1, 2] {
        let store = tiny().open_with_device(MemoryDevice::new()).expect("store");
        let seen = run(&store, seed, |r| r.below(300), |r| r.below(1000), |v: &u64| *v);
        assert_paths_ran(&seen);
    }
}

#[test]
fn fixed_size_batches_follow_the_model_on_a_file_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = FileDevice::open(dir.path(), 16).expect("device");
    let store = tiny().open_with_device(device).expect("store");
    let seen = run(&store, 3, |r| r.below(300), |r| r.below(1000), |v: &u64| *v);
    assert_paths_ran(&seen);
}

#[test]
fn variable_length_batches_follow_the_model() {
    // String values merge by appending: the order of two RMWs of one key
    // in a batch shows in the result.
    let store =
        tiny().for_types::<Vec<u8>, String>().open_with_device(MemoryDevice::new()).expect("store");
    let seen = run(
        &store,
        4,
        |r| {
            let n = r.below(200);
            vec![b'k'; 1 + (n % 7) as usize].into_iter().chain(n.to_le_bytes()).collect()
        },
        |r| {
            let digits = 1 + r.below(6);
            format!("{:x}", r.below(1 << (4 * digits)))
        },
        |v: &str| v.to_string(),
    );
    assert_paths_ran(&seen);
}

#[test]
fn batched_rmw_counters_from_several_threads_sum_exactly() {
    const THREADS: u64 = 3;
    const BATCHES: u64 = 2_000;
    const KEYS: u64 = 50;
    // Small enough that some counters leave memory and their RMWs go
    // pending; large enough for the hot ones to be updated in place.
    let store = Store::<u64, u64>::builder()
        .table_size(64)
        .page_size_bits(12)
        .log_memory_size_bytes(16 << 10)
        .open_with_device(MemoryDevice::new())
        .expect("store");
    let issued: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    let mut session = store.start_session().expect("session");
                    let mut rng = Rng::new(100 + t);
                    let mut statuses = Vec::new();
                    let mut issued = 0u64;
                    for _ in 0..BATCHES {
                        let len = 1 + rng.below(32) as usize;
                        // Skewed toward a few keys: duplicates in a batch
                        // and races between threads on one key.
                        let pairs: Vec<(u64, u64)> =
                            (0..len).map(|_| (rng.below(KEYS).min(rng.below(KEYS)), 1)).collect();
                        session.rmw_batch(&pairs, &mut statuses).expect("rmw_batch");
                        issued += pairs.len() as u64;
                        if rng.below(4) == 0 {
                            session.complete_pending().expect("complete_pending");
                        }
                    }
                    session.complete_pending().expect("complete_pending");
                    assert_eq!(session.pending_count(), 0);
                    issued
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let mut session = store.start_session().expect("session");
    let keys: Vec<u64> = (0..KEYS).collect();
    let mut total = 0;
    for key in &keys {
        total += session.read_blocking(key).expect("read").unwrap_or(0);
    }
    assert_eq!(total, issued, "increments lost or applied twice");
    drop(session);
    let ops = store.stats().operations;
    assert_eq!(
        ops.rmws_in_place + ops.rmws_copy_update + ops.rmws_initial,
        issued,
        "every batched RMW applied is counted once"
    );
}

#[test]
fn a_batch_stops_at_an_error_with_the_earlier_results_kept() {
    let store = tiny().max_pending(8).open_with_device(MemoryDevice::new()).expect("store");
    let mut session = store.start_session().expect("session");
    let pairs: Vec<(u64, u64)> = (0..2_000).map(|k| (k, k * 10)).collect();
    session.upsert_batch(&pairs).expect("load");
    // The oldest keys are on the device: each read of one parks.
    let keys: Vec<u64> = (0..40).collect();
    let mut out = Vec::new();
    let err = session.read_batch(&keys, &mut out).expect_err("more than 8 pending");
    assert!(matches!(err, Error::TooManyPending { limit: 8 }), "{err}");
    assert_eq!(out.len(), 8, "the statuses before the failed key");
    let serials: Vec<u64> = out
        .iter()
        .map(|s| match s {
            ReadStatus::Pending { serial } => *serial,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut done = session.complete_pending().expect("complete_pending");
    done.sort_by_key(|c| c.serial);
    assert_eq!(done.iter().map(|c| c.serial).collect::<Vec<_>>(), serials);
    for (c, key) in done.iter().zip(0u64..) {
        assert_eq!(c.op, CompletedOp::Read(Some(key * 10)));
    }
    // Nothing after the failed key was read: the session is clean and
    // a smaller batch goes through.
    assert_eq!(session.pending_count(), 0);
    session.read_batch(&keys[..8], &mut out).expect("8 fit");
    assert_eq!(out.len(), 8);
}

#[test]
fn an_empty_batch_does_nothing() {
    let store = Store::<u64, u64>::builder().open_with_device(MemoryDevice::new()).expect("store");
    let mut session = store.start_session().expect("session");
    let serial = session.serial();
    let mut out = vec![ReadStatus::NotFound];
    session.read_batch(&[] as &[u64], &mut out).expect("read");
    assert!(out.is_empty());
    session.upsert_batch(&[] as &[(u64, u64)]).expect("upsert");
    session.read_batch_with(&[] as &[u64], |_, _| panic!("no key")).expect("read_with");
    assert_eq!(session.serial(), serial, "no operation ran");
}
