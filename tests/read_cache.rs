//! The read cache: with tiny log memory (most records on the device) and a
//! tiny cache (constant eviction), every read matches a model; a key read
//! from the device is served from the cache afterwards; writes of cached
//! keys are never hidden by the cached copy; concurrent sessions never read
//! a value older than one they already saw; checkpoints taken while keys
//! are cached recover exactly; compaction and index growth run beside the
//! cache; every device; the async API caches too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use oxifaster::checkpoint::CheckpointKind;
use oxifaster::device::{FileDevice, IoUringDevice, MemoryDevice};
use oxifaster::{Store, StoreBuilder};
use oxifaster_cli::workload::Rng;

mod common;

fn builder<V: oxifaster::Value>(dir: &Path, cache_pages: u64) -> StoreBuilder<u64, V> {
    Store::<u64, V>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .read_cache_bytes(cache_pages << 12)
        .table_size(1 << 12)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

fn scale() -> u64 {
    if std::env::var_os("OXIFASTER_LONG").is_some() { 10 } else { 1 }
}

#[test]
fn reads_of_keys_on_the_device_are_cached_and_writes_are_never_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = builder::<u64>(dir.path(), 8).open().expect("open");
    let mut session = store.start_session().expect("session");
    for key in 0..20_000u64 {
        session.upsert(&key, &key).expect("upsert");
    }
    // Key 7's record is on the device; reading it caches it.
    assert!(!session.is_cached(&7));
    assert_eq!(session.read_blocking(&7).expect("read"), Some(7));
    assert!(session.is_cached(&7), "cached after a read from the device");
    assert_eq!(session.read_blocking(&7).expect("read"), Some(7));
    // Every kind of write replaces what the cache holds.
    session.upsert(&7, &70).expect("upsert");
    assert!(!session.is_cached(&7));
    assert_eq!(session.read_blocking(&7).expect("read"), Some(70));
    assert_eq!(session.read_blocking(&8).expect("read"), Some(8));
    session.rmw(&8, &5).expect("rmw");
    while session.pending_count() > 0 {
        session.complete_pending().expect("complete");
    }
    assert_eq!(session.read_blocking(&8).expect("read"), Some(13));
    assert_eq!(session.read_blocking(&9).expect("read"), Some(9));
    session.delete(&9).expect("delete");
    assert_eq!(session.read_blocking(&9).expect("read"), None);
    // A parked read caches too.
    assert!(matches!(
        session.read(&11).expect("read"),
        oxifaster::store::ReadStatus::Pending { .. }
    ));
    session.complete_pending().expect("complete");
    assert!(session.is_cached(&11), "cached by complete_pending");
}

/// Random operations against a model on a store `open` makes, with a
/// cache of `cache_pages` 4 KiB pages; `value(key, n)` makes the values.
/// Every 2 000 operations compaction takes what it may (it copies live
/// records from the log, never from the cache, and moves entries that may
/// point into the cache).
fn model_run<V, D>(
    cache_pages: u64,
    table_size: u64,
    open: impl FnOnce(StoreBuilder<u64, V>) -> Store<u64, V, D>,
    value: impl Fn(u64, u64) -> V,
) where
    V: oxifaster::Value + Clone + PartialEq + std::fmt::Debug,
    D: oxifaster::device::Device,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(builder::<V>(dir.path(), cache_pages).table_size(table_size));
    let mut session = store.start_session().expect("session");
    let mut model: BTreeMap<u64, V> = BTreeMap::new();
    let mut rng = Rng::new(3);
    let keys = 3_000;
    let mut compacted = 0;
    for n in 0..60_000 * scale() {
        // Skewed: a few hot keys read again and again.
        let key = if rng.below(2) == 0 { rng.below(50) } else { rng.below(keys) };
        match rng.below(10) {
            0..=2 => {
                let v = value(key, n);
                session.upsert(&key, &v).expect("upsert");
                model.insert(key, v);
            }
            3 => {
                session.delete(&key).expect("delete");
                model.remove(&key);
            }
            _ => {
                assert_eq!(
                    session.read_blocking(&key).expect("read"),
                    model.get(&key).cloned(),
                    "key {key} at {n}"
                );
            }
        }
        if n % 2_000 == 1_999 {
            let regions = store.log_regions();
            let page = regions.page_size_bytes;
            let until = regions.safe_read_only_address / page * page;
            if until > regions.begin_address {
                compacted += store.compact(until).expect("compact").records;
            }
        }
    }
    assert!(compacted > 0, "compaction copied nothing");
    drop(session);
    common::check_model(&store, &model, keys);
}

fn on_files<V: oxifaster::Value>(builder: StoreBuilder<u64, V>) -> Store<u64, V> {
    builder.open().expect("open")
}

#[test]
fn a_tiny_cache_matches_the_model_with_fixed_values() {
    model_run::<u64, _>(2, 1 << 12, on_files, |key, n| key * 1_000_000 + n);
}

#[test]
fn a_tiny_cache_matches_the_model_with_variable_values() {
    model_run::<Vec<u8>, _>(4, 1 << 12, on_files, |key, n| vec![key as u8; (n % 300) as usize]);
}

/// Three pages: each logical page of the ring still gets a frame of its
/// own when the frame count is not a power of two.
#[test]
fn a_three_page_cache_matches_the_model() {
    model_run::<u64, _>(3, 1 << 12, on_files, |key, n| key * 1_000_000 + n);
}

#[test]
fn a_tiny_cache_matches_the_model_on_every_device() {
    let fixed = |key: u64, n: u64| key * 1_000_000 + n;
    model_run::<u64, _>(
        2,
        1 << 12,
        |b| b.open_with_device(MemoryDevice::new()).expect("open"),
        fixed,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let uring = |b: StoreBuilder<u64, u64>| {
        b.open_with_device(IoUringDevice::open(dir.path(), 16).expect("io_uring")).expect("open")
    };
    model_run::<u64, _>(2, 1 << 12, uring, fixed);
    std::fs::create_dir_all(dir.path().join("d")).expect("dir");
    let direct = |b: StoreBuilder<u64, Vec<u8>>| {
        b.open_with_device(
            FileDevice::open(dir.path().join("d"), 16).expect("file").with_direct_io(),
        )
        .expect("open")
    };
    model_run::<Vec<u8>, _>(4, 1 << 12, direct, |key, n| vec![key as u8; (n % 300) as usize]);
}

/// The index grows (from 16 buckets) while keys are cached: a split puts
/// a cached entry on its key's side, so eviction finds it.
#[test]
fn a_growing_index_keeps_cached_keys_exact() {
    model_run::<u64, _>(2, 16, on_files, |key, n| key * 1_000_000 + n);
}

/// Reads through the async API cache what they read from the device too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_reads_are_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(builder::<u64>(dir.path(), 8).open().expect("open"));
    let mut session = store.start_session().expect("session");
    for key in 0..20_000u64 {
        session.upsert(&key, &key).expect("upsert");
    }
    assert!(!session.is_cached(&7));
    assert_eq!(session.read_async(&7).await.expect("read"), Some(7));
    assert!(session.is_cached(&7), "cached after an async read from the device");
    session.upsert(&7, &70).expect("upsert");
    assert_eq!(session.read_async(&7).await.expect("read"), Some(70));
}

/// Two sessions add to ten hot shared counters and upsert rising values
/// into ten hot keys of their own, while both read all of them (the hot
/// keys leave memory between rounds, so reads fill the cache): values only
/// grow, so a read older than one the reader already saw, or than its own
/// acknowledged upsert, would go down.
#[test]
fn concurrent_sessions_never_read_an_older_value_than_they_saw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(builder::<u64>(dir.path(), 4).open().expect("open"));
    {
        let mut session = store.start_session().expect("session");
        for key in 0..20_000u64 {
            session.upsert(&key, &0).expect("upsert");
        }
    }
    // Hot key `h` of kind `k`: 0 is the shared counter, 1 and 2 a
    // session's own.
    let hot_key = |h: u64, kind: u64| h * 1_000 + kind;
    let workers: Vec<_> = (0..2u64)
        .map(|me| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut seen = [[0u64; 3]; 10];
                let mut added = 0u64;
                let mut rng = Rng::new(me + 1);
                for round in 1..=20_000 * scale() {
                    let (hot, kind) = (rng.below(10), rng.below(3));
                    let key = hot_key(hot, kind);
                    let seen = &mut seen[hot as usize][kind as usize];
                    match rng.below(4) {
                        0 if kind == 0 => {
                            session.rmw(&key, &1).expect("rmw");
                            while session.pending_count() > 0 {
                                session.complete_pending().expect("complete");
                            }
                            added += 1;
                        }
                        0 if kind == me + 1 => {
                            session.upsert(&key, &round).expect("upsert");
                            *seen = round;
                        }
                        _ => {
                            let got = session.read_blocking(&key).expect("read").expect("a value");
                            assert!(got >= *seen, "key {key}: {got} after {seen}");
                            *seen = got;
                        }
                    }
                    // Cold keys push the hot ones out of memory.
                    let cold = 10_000 + rng.below(10_000);
                    session.upsert(&cold, &cold).expect("upsert");
                }
                added
            })
        })
        .collect();
    let added: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    let mut session = store.start_session().expect("session");
    let total: u64 = (0..10)
        .map(|hot| session.read_blocking(&hot_key(hot, 0)).expect("read").expect("a value"))
        .sum();
    assert_eq!(total, added, "every increment counted once");
}

#[test]
fn checkpoints_with_cached_keys_recover_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = builder::<u64>(dir.path(), 4).open().expect("open");
    let mut session = store.start_session().expect("session");
    let mut model = BTreeMap::new();
    for key in 0..10_000u64 {
        session.upsert(&key, &key).expect("upsert");
        model.insert(key, key);
    }
    // Cache some of the keys on the device, then checkpoint.
    for key in (0..2_000u64).step_by(7) {
        assert_eq!(session.read_blocking(&key).expect("read"), Some(key));
    }
    assert!(session.is_cached(&7));
    let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    drop(session);
    drop(store);
    let store = builder::<u64>(dir.path(), 4).recover(info.token.as_str()).expect("recover");
    common::check_model(&store, &model, 10_000);
    // And without a cache.
    drop(store);
    let store = builder::<u64>(dir.path(), 0).recover(info.token.as_str()).expect("recover");
    common::check_model(&store, &model, 10_000);
}

#[test]
fn bad_cache_sizes_are_named_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bytes in [4096u64, 10_000, !4095] {
        let err =
            builder::<u64>(dir.path(), 0).read_cache_bytes(bytes).open().expect_err("refused");
        assert!(
            matches!(err, oxifaster::Error::InvalidConfig { what: "read_cache_bytes", .. }),
            "{bytes}: {err:?}"
        );
    }
}
