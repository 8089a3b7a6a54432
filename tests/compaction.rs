//! Compaction (`Store::compact`): the live records of the log's oldest
//! range are copied to the tail, the begin address moves past it, and
//! nothing is lost or brought back — against a model, with sessions
//! writing the same keys concurrently, across checkpoints and recovery,
//! and with the log's segments deleted once no checkpoint needs them.
//!
//! `OXIFASTER_COMPACTION_OPS` sets the operations per model run (default
//! 20 000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oxifaster::Error;
use oxifaster::checkpoint::CheckpointKind;
use oxifaster::compaction::CompactionKind;
use oxifaster::store::{RmwStatus, Store};
use oxifaster_cli::workload::Rng;

fn ops() -> u64 {
    std::env::var("OXIFASTER_COMPACTION_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

/// The page-aligned end of what compaction may take now.
fn compactable<K: oxifaster::Key, V: oxifaster::Value, D: oxifaster::device::Device>(
    store: &Store<K, V, D>,
) -> u64 {
    let regions = store.log_regions();
    let page = regions.page_size_bytes;
    (regions.safe_read_only_address / page * page).max(regions.begin_address)
}

fn value_of(key: u64, step: u64) -> String {
    // Lengths vary, so updates append rather than overwrite in place.
    format!("{key}:{step}:{}", "v".repeat((step % 7) as usize))
}

/// One session: upserts, RMWs (appending to strings), deletes and reads
/// of 300 keys against a `BTreeMap`, compacting everything compactable
/// every 400 operations; every key is checked after each compaction and
/// at the end.
#[test]
fn a_model_with_compactions_loses_nothing() {
    for (seed, kind) in [
        (1, CompactionKind::Lookup),
        (2, CompactionKind::Scan),
        (3, CompactionKind::Scan),
        (4, CompactionKind::Lookup),
    ] {
        let store = Store::<u64, String>::builder()
            .table_size(64)
            .page_size_bits(12)
            .log_memory_size_bytes(32 << 10)
            .mutable_fraction(0.5)
            .open()
            .expect("open");
        let mut session = store.start_session().expect("session");
        let mut model: BTreeMap<u64, String> = BTreeMap::new();
        let mut rng = Rng::new(seed);
        let mut compactions = 0;
        for step in 0..ops() {
            let key = rng.below(300);
            match rng.below(10) {
                0..=4 => {
                    let value = value_of(key, step);
                    session.upsert(&key, value.as_str()).expect("upsert");
                    model.insert(key, value);
                }
                5 | 6 => {
                    let input = format!("+{step}");
                    if let RmwStatus::Pending { .. } = session.rmw(&key, &input).expect("rmw") {
                        session.complete_pending().expect("complete");
                    }
                    model.entry(key).or_default().push_str(&input);
                }
                7 => {
                    session.delete(&key).expect("delete");
                    model.remove(&key);
                }
                _ => {
                    let got = session.read_blocking(&key).expect("read");
                    assert_eq!(got.as_ref(), model.get(&key), "seed {seed} step {step} key {key}");
                }
            }
            if step % 400 == 399 {
                let until = compactable(&store);
                let report = store.compact_with(until, kind).expect("compact");
                assert_eq!(store.log_regions().begin_address, until);
                assert!(report.copied <= report.records);
                compactions += u64::from(report.records > 0);
                for (key, value) in &model {
                    let got = session.read_blocking(key).expect("read");
                    assert_eq!(got.as_ref(), Some(value), "seed {seed} after compaction {key}");
                }
            }
        }
        assert!(compactions > 5, "seed {seed}: only {compactions} compactions did anything");
        for key in 0..300u64 {
            assert_eq!(session.read_blocking(&key).expect("read").as_ref(), model.get(&key));
        }
    }
}

/// Two sessions increment counters (RMW) and delete keys while a third
/// thread compacts as fast as it can: no increment is lost, no deleted key
/// comes back, no copy overwrites a newer value.
#[test]
fn concurrent_writers_and_compaction_agree() {
    let store = Store::<u64, u64>::builder()
        .table_size(256)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .mutable_fraction(0.3)
        .open()
        .expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let compactor = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut done = 0u64;
            let kinds = [CompactionKind::Lookup, CompactionKind::Scan];
            while !stop.load(Ordering::Acquire) {
                let until = compactable(&store);
                match store.compact_with(until, kinds[done as usize % 2]) {
                    Ok(report) => done += u64::from(report.records > 0),
                    // The safe read-only address can lag behind a moment.
                    Err(Error::InvalidAddress { .. }) => {}
                    Err(e) => panic!("compaction failed: {e}"),
                }
                std::thread::yield_now();
            }
            done
        })
    };
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let mut session = store.start_session().expect("session");
            std::thread::spawn(move || {
                // Keys of this thread: t, t + 2, t + 4, ... below 400.
                let mut model: BTreeMap<u64, u64> = BTreeMap::new();
                let mut rng = Rng::new(t + 10);
                for step in 0..ops() {
                    let key = (rng.below(200)) * 2 + t;
                    match rng.below(10) {
                        0..=6 => {
                            if let RmwStatus::Pending { .. } = session.rmw(&key, &1).expect("rmw") {
                                session.complete_pending().expect("complete");
                            }
                            *model.entry(key).or_default() += 1;
                        }
                        7 => {
                            session.delete(&key).expect("delete");
                            model.remove(&key);
                        }
                        _ => {
                            let got = session.read_blocking(&key).expect("read");
                            assert_eq!(got, model.get(&key).copied(), "thread {t} step {step}");
                        }
                    }
                }
                session.complete_pending().expect("complete");
                (session, model)
            })
        })
        .collect();
    let results: Vec<_> = writers.into_iter().map(|w| w.join().expect("writer")).collect();
    stop.store(true, Ordering::Release);
    let compactions = compactor.join().expect("compactor");
    assert!(compactions > 0, "no compaction ran while the writers did");
    for (t, (mut session, model)) in results.into_iter().enumerate() {
        for key in (0..200u64).map(|k| k * 2 + t as u64) {
            let got = session.read_blocking(&key).expect("read");
            assert_eq!(got, model.get(&key).copied(), "thread {t} key {key} at the end");
        }
    }
}

/// Compactions between checkpoints: every retained checkpoint recovers
/// exactly its state, and log segments are deleted only once no
/// checkpoint needs them.
#[test]
fn checkpoints_recover_exactly_after_compactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = || {
        Store::<u64, String>::builder()
            .dir(dir.path())
            .segment_size_bits(14)
            .table_size(256)
            .page_size_bits(12)
            .log_memory_size_bytes(32 << 10)
            .checkpoint_every(None)
            .checkpoint_on_close(false)
    };
    let store = builder().open().expect("open");
    let mut session = store.start_session().expect("session");
    let mut model: BTreeMap<u64, String> = BTreeMap::new();
    let mut snapshots: Vec<(String, BTreeMap<u64, String>)> = Vec::new();
    let mut reclaimed = 0;
    for round in 0..6u64 {
        for step in 0..3_000u64 {
            let key = (step * 7 + round) % 500;
            if step % 11 == 0 {
                session.delete(&key).expect("delete");
                model.remove(&key);
            } else {
                let value = value_of(key, round * 10_000 + step);
                session.upsert(&key, value.as_str()).expect("upsert");
                model.insert(key, value);
            }
        }
        let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
        snapshots.push((info.token.to_string(), model.clone()));
        // Keep the two newest checkpoints, as the automatic policy does.
        oxifaster::checkpoint::retain(dir.path(), 2).expect("retain");
        let report = store.compact(compactable(&store)).expect("compact");
        reclaimed += report.reclaimed_bytes;
        for (key, value) in &model {
            assert_eq!(session.read_blocking(key).expect("read").as_ref(), Some(value));
        }
    }
    assert!(reclaimed > 0, "no segment was ever deleted");
    drop(session);
    drop(store);
    // The two retained checkpoints recover exactly.
    for (token, expected) in &snapshots[snapshots.len() - 2..] {
        let store = builder().recover(token).expect("recover");
        let mut session = store.start_session().expect("session");
        for key in 0..500u64 {
            let got = session.read_blocking(&key).expect("read");
            assert_eq!(got.as_ref(), expected.get(&key), "checkpoint {token} key {key}");
        }
    }
}

/// Ranges compaction cannot take are named errors and change nothing.
#[test]
fn bad_ranges_are_named_errors() {
    let store = Store::<u64, String>::builder()
        .table_size(64)
        .page_size_bits(12)
        .log_memory_size_bytes(32 << 10)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    for step in 0..5_000u64 {
        session.upsert(&(step % 100), value_of(step, step).as_str()).expect("upsert");
    }
    let before = store.log_regions();
    let safe = before.safe_read_only_address;
    assert!(safe > before.begin_address + 4096, "the log moved on: {before:?}");
    for until in [safe + 4096, before.tail_address, safe - 4] {
        assert!(
            matches!(store.compact(until), Err(Error::InvalidAddress { .. })),
            "compact({until:#x}) was accepted"
        );
    }
    // Inside a record: the first record of the log starts at the begin
    // address; 8 bytes in is inside it.
    let inside = before.begin_address + 8;
    assert!(matches!(
        store.compact(inside),
        Err(Error::Corruption { .. } | Error::InvalidAddress { .. })
    ));
    assert_eq!(store.log_regions().begin_address, before.begin_address, "nothing moved");
    // A real compaction, then one below the new begin address.
    let until = compactable(&store);
    store.compact(until).expect("compact");
    assert!(matches!(store.compact(until - 4096), Err(Error::InvalidAddress { .. })));
    for key in 0..100u64 {
        assert!(session.read_blocking(&key).expect("read").is_some());
    }
    // A budget that cannot hold the log memory, one index and four
    // segments: a named error, and nothing created.
    let dir = tempfile::tempdir().expect("tempdir");
    let small = small_in(&dir.path().join("store")).disk_budget(Some(100 << 10)).open();
    match small {
        Err(Error::InvalidConfig { what: "disk_budget", why }) => {
            assert!(why.contains("at least"), "{why}")
        }
        other => panic!("a budget below the log memory: {:?}", other.map(|_| ())),
    }
    assert!(!dir.path().join("store").join("SEGMENTS").exists(), "nothing written");
}

/// Readers of keys that are written once and never again (so compaction
/// must copy them, over and over) never miss one, while a writer moves
/// the log on and a compactor moves the begin address past their old
/// records: a read whose walk ends below a begin address that moved under
/// it reads again from the index.
#[test]
fn reads_never_miss_a_key_that_compaction_moves() {
    let store = Store::<u64, String>::builder()
        .table_size(64)
        .page_size_bits(12)
        .log_memory_size_bytes(32 << 10)
        .mutable_fraction(0.3)
        .open()
        .expect("open");
    {
        let mut session = store.start_session().expect("session");
        for key in 0..64u64 {
            session.upsert(&key, format!("static {key}").as_str()).expect("upsert");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut session = store.start_session().expect("session");
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut step = 0u64;
            while !stop.load(Ordering::Acquire) {
                // Stay within 128 KiB of the begin address, so that
                // compaction comes round to the static keys again and again.
                let regions = store.log_regions();
                if regions.tail_address - regions.begin_address > 128 << 10 {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                    continue;
                }
                let key = 1_000 + step % 500;
                session.upsert(&key, value_of(key, step).as_str()).expect("upsert");
                step += 1;
            }
        })
    };
    let moved = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let compactor = {
        let store = store.clone();
        let stop = stop.clone();
        let moved = moved.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                // A page at a time: short passes, so that a read's walk
                // often spans a copy and the begin shift after it.
                let regions = store.log_regions();
                let page = regions.page_size_bytes;
                let until = compactable(&store).min((regions.begin_address / page + 1) * page);
                let kind =
                    [CompactionKind::Lookup, CompactionKind::Scan][(until / page % 2) as usize];
                match store.compact_with(until, kind) {
                    Ok(report) => {
                        moved.fetch_add(report.copied, Ordering::Relaxed);
                    }
                    Err(Error::InvalidAddress { .. }) => {}
                    Err(e) => panic!("compaction failed: {e}"),
                }
            }
        })
    };
    let mut session = store.start_session().expect("session");
    // Read until compaction has moved the static keys many times over.
    let wanted = ops() / 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut step = 0u64;
    while moved.load(Ordering::Relaxed) < wanted && std::time::Instant::now() < deadline {
        step += 1;
        let key = step % 64;
        let got = session.read_blocking(&key).expect("read");
        assert_eq!(got.as_deref(), Some(format!("static {key}").as_str()), "read {step}");
        if step.is_multiple_of(64) {
            let got = session.read(&(step / 64 % 64)).expect("read");
            if let oxifaster::store::ReadStatus::NotFound = got {
                panic!("a parked-path read missed key {}", step / 64 % 64);
            }
            for done in session.complete_pending().expect("complete") {
                assert!(
                    matches!(done.op, oxifaster::store::CompletedOp::Read(Some(_))),
                    "a parked read missed its key: {done:?}"
                );
            }
        }
    }
    stop.store(true, Ordering::Release);
    writer.join().expect("writer");
    compactor.join().expect("compactor");
    let moved = moved.load(Ordering::Relaxed);
    assert!(moved >= wanted, "compaction copied only {moved} records in a minute");
}

/// A small store in `dir`: 4 KiB pages, 64 KiB of log memory, 16 KiB
/// segments.
fn small_in(dir: &std::path::Path) -> oxifaster::StoreBuilder<u64, String> {
    Store::<u64, String>::builder()
        .dir(dir)
        .table_size(256)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .segment_size_bits(14)
}

/// With a disk budget, a store that writes ten times its budget keeps its
/// directory bounded (the background task compacts, checkpoints, prunes
/// and deletes segments; appends wait near the budget), every key reads
/// back exactly, and the store reopens with all of it. The directory,
/// measured every 100 upserts, never passes the budget.
#[test]
fn a_disk_budget_bounds_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = 2u64 << 20;
    let builder = || small_in(dir.path()).disk_budget(Some(budget));
    let mut model: BTreeMap<u64, String> = BTreeMap::new();
    let mut largest = 0;
    {
        let store = builder().open().expect("open");
        let mut session = store.start_session().expect("session");
        let mut written = 0u64;
        let mut step = 0u64;
        while written < 10 * budget {
            let key = step % 400;
            let value = value_of(key, step);
            session.upsert(&key, value.as_str()).expect("upsert");
            written += 24 + value.len() as u64;
            model.insert(key, value);
            step += 1;
            if step.is_multiple_of(100) {
                largest = largest.max(oxifaster::compaction::directory_bytes(dir.path()));
            }
        }
        for (key, value) in &model {
            assert_eq!(session.read_blocking(key).expect("read").as_ref(), Some(value));
        }
        assert!(store.compaction_totals().compactions > 0, "the budget never compacted");
        assert!(store.compaction_totals().reclaimed_bytes > 0, "no segment was deleted");
    }
    assert!(
        largest <= budget,
        "the directory reached {largest} bytes for a budget of {budget} (10x written)"
    );
    let store = builder().open().expect("reopen");
    let mut session = store.start_session().expect("session");
    for (key, value) in &model {
        assert_eq!(session.read_blocking(key).expect("read").as_ref(), Some(value), "key {key}");
    }
}

/// A store reopened 100 times with no new data does not grow: a reopen
/// that writes nothing leaves nothing behind (no final checkpoint, no new
/// incarnation on the device).
#[test]
fn reopening_without_writes_does_not_grow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = || small_in(dir.path());
    {
        let store = builder().open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..2_000u64 {
            session.upsert(&key, value_of(key, key).as_str()).expect("upsert");
        }
        drop(session);
        store.close().expect("close");
    }
    let after_first = oxifaster::compaction::directory_bytes(dir.path());
    for _ in 0..100 {
        let store = builder().open().expect("reopen");
        store.close().expect("close");
    }
    let after_all = oxifaster::compaction::directory_bytes(dir.path());
    assert!(
        after_all <= after_first + (64 << 10),
        "100 empty reopens grew the directory from {after_first} to {after_all} bytes"
    );
    let store = builder().open().expect("open");
    let mut session = store.start_session().expect("session");
    for key in (0..2_000u64).step_by(37) {
        assert_eq!(session.read_blocking(&key).expect("read"), Some(value_of(key, key)));
    }
}

/// Reopening leaves dead space behind (each recovery starts a new
/// incarnation of the log past everything on the device); with a disk
/// budget the same machinery gives it back: 60 reopens, each writing
/// about 120 KiB (3.5 times the budget in all), keep the directory bounded
/// and every key exact.
#[test]
fn reopening_many_times_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = 2u64 << 20;
    let builder = || small_in(dir.path()).disk_budget(Some(budget));
    let mut model: BTreeMap<u64, String> = BTreeMap::new();
    let mut largest = 0;
    for round in 0..60u64 {
        let store = builder().open().expect("open");
        let mut session = store.start_session().expect("session");
        for step in 0..3_000u64 {
            let key = (round * 7 + step) % 300;
            let value = value_of(key, round * 1_000 + step);
            session.upsert(&key, value.as_str()).expect("upsert");
            model.insert(key, value);
        }
        // Long enough for the budget's gauge to see the directory.
        std::thread::sleep(std::time::Duration::from_millis(150));
        drop(session);
        store.close().expect("close");
        largest = largest.max(oxifaster::compaction::directory_bytes(dir.path()));
    }
    assert!(largest <= budget, "the directory reached {largest} bytes over 60 reopens");
    let store = builder().open().expect("open");
    let mut session = store.start_session().expect("session");
    for (key, value) in &model {
        assert_eq!(session.read_blocking(key).expect("read").as_ref(), Some(value), "key {key}");
    }
}
