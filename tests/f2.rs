//! F2: two tiers under one API. Reads fall through to the cold tier,
//! deletes hide cold versions, RMWs merge onto cold values, migrations and
//! cold compactions run while sessions write, and checkpoints of both
//! tiers recover exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oxifaster::Error;
use oxifaster::f2::{F2Builder, F2Session, F2Store};
use oxifaster::store::{CompletedOp, Decision, Outcome, ReadStatus};
use oxifaster_cli::workload::Rng;

/// Small pages and memory, a tiny cold index (long chains), no background
/// work: the tests drive migrations, compactions and checkpoints.
fn small(dir: &Path) -> F2Builder {
    F2Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .segment_size_bits(16)
        .hot_log_memory_bytes(64 << 10)
        .hot_table_size(64)
        .cold_index_chunks(16)
        .cold_index_memory_bytes(64 << 10)
        // Three pages: a frame count that is not a power of two.
        .read_cache_bytes(12 << 10)
        .hot_log_size_bytes(None)
        .checkpoint_every(None)
}

/// `future`, checked to be `Send` (it can move into a spawned task).
fn assert_send<F: std::future::Future + Send>(future: F) -> F {
    future
}

fn scale() -> u64 {
    if std::env::var_os("OXIFASTER_LONG").is_some() { 10 } else { 1 }
}

#[test]
fn reads_deletes_and_rmws_reach_the_cold_tier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: F2Store<u64, u64> = small(dir.path()).open().expect("open");
    let mut session = store.start_session().expect("session");
    for key in 0..3_000u64 {
        session.upsert(&key, &(key * 10)).expect("upsert");
    }
    let report = store.migrate_all().expect("migrate");
    assert!(report.copied >= 3_000, "{report:?}");
    assert!(store.totals().migrated_records >= 3_000);
    let regions = store.hot().log_regions();
    assert_eq!(regions.begin_address, report.until, "the hot log let go of the range");
    // ... and the hot index of the keys: it holds entries for hot keys only.
    let entries = store.hot().index_stats().entries;
    assert_eq!(entries, 0, "hot index entries left after everything migrated");
    assert!(store.totals().hot_entries_freed >= 2_900, "{:?}", store.totals());
    // Every key now comes from the cold tier.
    for key in (0..3_000u64).step_by(7) {
        assert_eq!(session.read_blocking(&key).expect("read"), Some(key * 10), "key {key}");
    }
    let probe = session.cold_probe();
    assert!(probe.records >= 3_000 / 7, "cold records read: {probe:?}");
    // Pending reads finish in complete_pending.
    let mut serials = BTreeMap::new();
    for key in 0..50u64 {
        match session.read(&key).expect("read") {
            ReadStatus::Pending { serial } => {
                serials.insert(serial, key);
            }
            ReadStatus::Found(v) => assert_eq!(v, key * 10),
            other => panic!("key {key}: {other:?}"),
        }
    }
    assert!(!serials.is_empty(), "cold reads go pending");
    for done in session.complete_pending().expect("complete") {
        let key = serials.remove(&done.serial).expect("a serial we issued");
        assert_eq!(done.op, oxifaster::store::CompletedOp::Read(Some(key * 10)));
    }
    assert!(serials.is_empty());
    // A delete hides the cold version, in the hot tier and after it moves.
    session.delete(&5).expect("delete");
    assert_eq!(session.read_blocking(&5).expect("read"), None);
    // An RMW merges onto the cold value (u64 merges by adding).
    session.rmw(&6, &1).expect("rmw");
    assert_eq!(session.read_blocking(&6).expect("read"), Some(61));
    // An absent key's RMW starts from its input.
    session.rmw(&1_000_000, &3).expect("rmw");
    assert_eq!(session.read_blocking(&1_000_000).expect("read"), Some(3));
    store.migrate_all().expect("migrate again");
    assert_eq!(session.read_blocking(&5).expect("read"), None, "the deletion went cold too");
    assert_eq!(session.read_blocking(&6).expect("read"), Some(61));
    assert_eq!(session.read_blocking(&1_000_000).expect("read"), Some(3));
    session.rmw(&6, &1).expect("rmw");
    assert_eq!(session.read_blocking(&6).expect("read"), Some(62));
    // Cold compaction: superseded versions and deletions go, the rest
    // stays readable, the range is truncated at the next checkpoint.
    let (begin, tail) = store.cold_log_range();
    let copied = store.compact_cold(tail).expect("compact cold");
    assert!(copied > 0 && copied < 3_010, "{copied} copied");
    store.checkpoint().expect("checkpoint");
    let (new_begin, _) = store.cold_log_range();
    assert!(new_begin > begin, "cold log truncated: {begin:#x} -> {new_begin:#x}");
    for key in 0..3_000u64 {
        let want = match key {
            5 => None,
            6 => Some(62),
            _ => Some(key * 10),
        };
        assert_eq!(session.read_blocking(&key).expect("read"), want, "key {key}");
    }
}

/// With `promote_cold_reads`, a read the cold tier served copies the value
/// into the hot tier: the next read needs no cold lookup, and a later
/// write still wins.
#[test]
fn promoted_cold_reads_become_hot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: F2Store<u64, u64> =
        small(dir.path()).read_cache_bytes(0).promote_cold_reads(true).open().expect("open");
    let mut session = store.start_session().expect("session");
    for key in 0..1_000u64 {
        session.upsert(&key, &(key + 1)).expect("upsert");
    }
    store.migrate_all().expect("migrate");
    assert_eq!(store.hot().index_stats().entries, 0);
    assert_eq!(session.read_blocking(&10).expect("read"), Some(11));
    let probe = session.cold_probe();
    assert_eq!(probe.promoted, 1, "{probe:?}");
    assert_eq!(store.hot().index_stats().entries, 1, "the key is hot now");
    assert_eq!(session.read_blocking(&10).expect("read"), Some(11));
    assert_eq!(session.cold_probe().chunks, probe.chunks, "the second read stayed hot");
    session.upsert(&10, &99).expect("upsert");
    assert_eq!(session.read_blocking(&10).expect("read"), Some(99));
    // Pending reads promote too, and report only their own serials.
    let serial = match session.read(&20).expect("read") {
        ReadStatus::Pending { serial } => serial,
        other => panic!("{other:?}"),
    };
    let done = session.complete_pending().expect("complete");
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].serial, &done[0].op),
        (serial, &oxifaster::store::CompletedOp::Read(Some(21)))
    );
    assert_eq!(session.pending_count(), 0);
    assert!(
        matches!(session.read(&20).expect("read"), ReadStatus::Found(21)),
        "hot after the pending read"
    );
}

/// A memory budget the parts cannot fit at their least (every log keeps
/// four pages) is refused by name; with smaller pages it opens, and the
/// parts it reports stay within it.
#[test]
fn a_budget_too_small_for_the_pages_is_a_named_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = F2Store::<u64, u64>::builder()
        .dir(dir.path())
        .page_size_bits(22)
        .memory_budget(64 << 20)
        .open::<u64, u64>();
    match refused {
        Err(Error::InvalidConfig { what: "memory_budget", why }) => {
            assert!(why.contains("page_size_bits"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let store: F2Store<u64, u64> = F2Store::<u64, u64>::builder()
        .dir(dir.path())
        .page_size_bits(20)
        .memory_budget(64 << 20)
        .open()
        .expect("open");
    let m = store.memory();
    assert!(m.total() <= 64 << 20, "{m:?}");
    assert_eq!(m.cold_log, 4 << 20, "{m:?}");
}

/// Under a memory budget the parts stay within it while the store holds
/// far more keys than its memory: neither index grows past its share
/// (keys past the hot table's slots take overflow buckets), and the chunk
/// store's table, sized for its chunks, takes at most a byte per key.
#[test]
fn a_loaded_store_stays_within_its_memory_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = 2u64 << 20;
    let keys = 200_000 * scale();
    let store: F2Store<u64, u64> = F2Store::<u64, u64>::builder()
        .dir(dir.path())
        .page_size_bits(12)
        .segment_size_bits(16)
        .memory_budget(budget)
        .cold_index_chunks(keys / 16)
        .checkpoint_every(None)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    for key in 0..keys {
        session.upsert(&key, &(key * 3)).expect("upsert");
    }
    assert!(store.settle(Duration::from_secs(60)), "settled");
    for key in (0..keys).step_by(7) {
        assert_eq!(session.read_blocking(&key).expect("read"), Some(key * 3), "key {key}");
    }
    let m = store.memory();
    assert!(m.total() <= budget + budget / 16, "{m:?}");
    assert!(m.hot_index <= (budget / 4) * 5 / 4, "{m:?}");
    assert!(m.cold_index_table <= keys, "{m:?}: more than a byte per key");
}

/// `settle` waits out the migrations a load leaves due: afterwards the hot
/// log is back within its size and every key reads back.
#[test]
fn settle_waits_for_the_migrations_a_load_leaves_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = 256u64 << 10;
    let store: F2Store<u64, u64> = small(dir.path())
        .hot_log_memory_bytes(128 << 10)
        .hot_log_size_bytes(Some(limit))
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    let keys = 30_000 * scale();
    for key in 0..keys {
        session.upsert(&key, &key).expect("upsert");
    }
    assert!(store.settle(std::time::Duration::from_secs(60)), "still migrating after a minute");
    let r = store.hot().log_regions();
    assert!(
        r.tail_address - r.begin_address <= limit,
        "the hot log holds {} bytes past its {limit}",
        r.tail_address - r.begin_address
    );
    assert!(store.totals().migrations > 0);
    for key in 0..keys {
        assert_eq!(session.read_blocking(&key).expect("read"), Some(key), "key {key}");
    }
}

/// Reads that the cold tier served are linked into the hot tier's read
/// cache: the next read of the key does no cold lookup; a write or a
/// delete replaces the cached value; evicted records free the hot index
/// entries they took.
#[test]
fn cold_reads_are_served_by_the_read_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: F2Store<u64, u64> = small(dir.path()).open().expect("open");
    let mut session = store.start_session().expect("session");
    for key in 0..1_000u64 {
        session.upsert(&key, &(key + 1)).expect("upsert");
    }
    store.migrate_all().expect("migrate");
    assert_eq!(store.hot().index_stats().entries, 0);
    let from_cache = |store: &F2Store<u64, u64>| store.hot().stats().operations.reads_from_cache;
    assert_eq!(session.read_blocking(&10).expect("read"), Some(11));
    let lookups = session.cold_probe().chunks;
    assert_eq!(store.hot().index_stats().entries, 1, "the cached key's entry");
    assert_eq!(session.read_blocking(&10).expect("read"), Some(11));
    assert!(matches!(session.read(&10).expect("read"), ReadStatus::Found(11)));
    assert_eq!(session.cold_probe().chunks, lookups, "served by the cache, not the cold tier");
    assert_eq!(from_cache(&store), 2);
    assert_eq!(session.cold_probe().promoted, 0, "cached, not copied into the hot log");
    // A write replaces the cached value, a delete hides it.
    session.upsert(&10, &99).expect("upsert");
    assert_eq!(session.read_blocking(&10).expect("read"), Some(99));
    session.delete(&10).expect("delete");
    assert_eq!(session.read_blocking(&10).expect("read"), None);
    // Pending reads are cached too.
    let serial = match session.read(&20).expect("read") {
        ReadStatus::Pending { serial } => serial,
        other => panic!("{other:?}"),
    };
    let done = session.complete_pending().expect("complete");
    assert_eq!((done[0].serial, &done[0].op), (serial, &CompletedOp::Read(Some(21))));
    assert!(matches!(session.read(&20).expect("read"), ReadStatus::Found(21)));
    // Every key through a cache of four 4 KiB pages: pages are evicted and
    // the entries their records took freed; every value stays exact.
    for round in 0..2 {
        for key in 0..1_000u64 {
            let want = match key {
                10 => None,
                k => Some(k + 1),
            };
            assert_eq!(
                session.read_blocking(&key).expect("read"),
                want,
                "key {key}, round {round}"
            );
        }
    }
    let cache = store.hot().stats().read_cache.expect("a read cache");
    assert!(cache.evicted_pages > 2, "{cache:?}");
    let entries = store.hot().index_stats().entries;
    assert!(entries < 600, "{entries} hot index entries for a cache of at most 512 records");
    // A migration leaves cached keys exact (their cache records stay, over
    // hot records that left).
    for key in 0..100u64 {
        session.upsert(&key, &(key + 7)).expect("upsert");
    }
    store.migrate_all().expect("migrate");
    for key in 0..1_000u64 {
        let want = if key < 100 { key + 7 } else { key + 1 };
        assert_eq!(session.read_blocking(&key).expect("read"), Some(want), "key {key}");
    }
}

/// Sets `session`'s pause hook so that, the first time it runs, another
/// session writes 100 to `key` and a migration moves that write to the
/// cold tier (the hot tier has no record of the key again).
fn race_on_pause(store: &Arc<F2Store<u64, u64>>, session: &mut F2Session<u64, u64>, key: u64) {
    let (other_store, mut other) = (store.clone(), store.start_session().expect("session"));
    let mut fired = false;
    session.set_rmw_pause(Some(Box::new(move || {
        if !std::mem::replace(&mut fired, true) {
            other.upsert(&key, &100).expect("the racing write");
            other_store.migrate_all().expect("the racing migration");
        }
    })));
}

/// The race a read-cache link must not lose: between a read's cold lookup
/// and its link, another session writes the key and a migration moves the
/// write to the cold tier and frees the key's hot entry, so that the entry
/// looks as it did when the read missed. The link checks that no
/// migration published since; without that check the stale cold value
/// would be cached and served.
#[test]
fn a_read_cache_link_after_a_racing_write_and_migration_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<F2Store<u64, u64>> = Arc::new(small(dir.path()).open().expect("open"));
    let mut session = store.start_session().expect("session");
    session.upsert(&7, &5).expect("upsert");
    store.migrate_all().expect("migrate");
    race_on_pause(&store, &mut session, 7);
    assert_eq!(session.read_blocking(&7).expect("read"), Some(5), "the read's own value");
    assert_eq!(store.hot().index_stats().entries, 0, "the stale value was linked into the cache");
    session.set_rmw_pause(None);
    assert_eq!(session.read_blocking(&7).expect("read"), Some(100), "a stale value was cached");
    assert_eq!(session.read_blocking(&7).expect("read"), Some(100));
}

/// Random operations from two sessions on their own keys, against a model,
/// while a third thread migrates, compacts the cold log and checkpoints;
/// every key exact at the end, and after reopening.
fn model_run<V, F>(value_of: F, promote: bool)
where
    V: oxifaster::Value + oxifaster::Merge + Clone + PartialEq + std::fmt::Debug,
    F: Fn(u64) -> V + Send + Sync + Copy + 'static,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<F2Store<u64, V>> =
        Arc::new(small(dir.path()).promote_cold_reads(promote).open().expect("open"));
    let stop = Arc::new(AtomicBool::new(false));
    let maintainer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(99);
            let mut rounds = 0u64;
            while rounds < 40 * scale() {
                match rng.below(4) {
                    0 | 1 => {
                        store.migrate_all().expect("migrate");
                    }
                    2 => {
                        let (begin, tail) = store.cold_log_range();
                        store.compact_cold(begin + (tail - begin) / 2).expect("cold compaction");
                    }
                    _ => {
                        store.checkpoint().expect("checkpoint");
                    }
                }
                rounds += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            stop.store(true, Ordering::Release);
            rounds
        })
    };
    let sessions = 2u64;
    let workers: Vec<_> = (0..sessions)
        .map(|me| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut model: BTreeMap<u64, V> = BTreeMap::new();
                let mut rng = Rng::new(7 + me);
                // At least the operations, and on until the maintainer has
                // done its rounds.
                let mut step = 0u64;
                while step < 20_000 * scale() || !stop.load(Ordering::Acquire) {
                    step += 1;
                    let key = rng.below(1_500) * sessions + me;
                    match rng.below(10) {
                        0..=3 => {
                            let value = value_of(step);
                            session.upsert(&key, &value).expect("upsert");
                            model.insert(key, value);
                        }
                        4..=5 => {
                            let input = value_of(step % 5);
                            session.rmw(&key, &input).expect("rmw");
                            let merged = match model.get(&key) {
                                Some(old) => merge_of(old, &input),
                                None => V::initial(&input),
                            };
                            model.insert(key, merged);
                        }
                        6 => {
                            session.delete(&key).expect("delete");
                            model.remove(&key);
                        }
                        7 => {
                            let got = session.read_blocking(&key).expect("read");
                            assert_eq!(got.as_ref(), model.get(&key), "key {key} at step {step}");
                        }
                        _ => {
                            // A burst of reads, the cold ones completed
                            // together as one batch.
                            let mut waiting = BTreeMap::new();
                            for _ in 0..1 + rng.below(24) {
                                let key = rng.below(1_500) * sessions + me;
                                match session.read(&key).expect("read") {
                                    ReadStatus::Found(v) => {
                                        assert_eq!(Some(&v), model.get(&key), "key {key}")
                                    }
                                    ReadStatus::NotFound => {
                                        assert_eq!(None, model.get(&key), "key {key}")
                                    }
                                    ReadStatus::Pending { serial } => {
                                        waiting.insert(serial, key);
                                    }
                                    other => panic!("key {key}: {other:?}"),
                                }
                            }
                            while !waiting.is_empty() {
                                for done in session.complete_pending().expect("complete") {
                                    let key = waiting.remove(&done.serial).expect("our serial");
                                    let CompletedOp::Read(got) = done.op else {
                                        panic!("key {key}: {:?}", done.op)
                                    };
                                    assert_eq!(got.as_ref(), model.get(&key), "key {key}");
                                }
                            }
                        }
                    }
                }
                model
            })
        })
        .collect();
    let mut model = BTreeMap::new();
    for worker in workers {
        model.extend(worker.join().expect("worker"));
    }
    let rounds = maintainer.join().expect("maintainer");
    assert!(rounds >= 40, "only {rounds} maintenance rounds ran");
    let totals = store.totals();
    assert!(totals.migrations > 0 && totals.cold_compactions > 0, "{totals:?}");
    let cached = store.hot().stats().operations.reads_from_cache;
    assert!(cached > 0, "the read cache served no read");
    let check = |store: &F2Store<u64, V>| {
        let mut session = store.start_session().expect("session");
        for key in 0..1_500 * sessions {
            assert_eq!(
                session.read_blocking(&key).expect("read").as_ref(),
                model.get(&key),
                "key {key}"
            );
        }
    };
    check(&store);
    drop(Arc::into_inner(store).expect("last handle")); // checkpoints on close
    let reopened: F2Store<u64, V> = small(dir.path()).open().expect("reopen");
    check(&reopened);
}

/// The merge the model applies (the store's `Merge` through a view).
fn merge_of<V: oxifaster::Value + oxifaster::Merge>(old: &V, input: &V) -> V {
    let bytes = old.to_aligned_bytes();
    V::copy_update(V::view(bytes.as_slice()).expect("view"), input)
}

#[test]
fn model_with_fixed_size_values() {
    model_run::<u64, _>(|step| step, false);
}

/// The same with cold reads copied into the hot tier (their conditional
/// inserts racing the sessions' writes and the migrations).
#[test]
fn model_with_promoted_cold_reads() {
    model_run::<u64, _>(|step| step, true);
}

#[test]
fn model_with_variable_length_values() {
    model_run::<String, _>(|step| format!("{step}:{}", "v".repeat((step % 9) as usize)), false);
}

/// RMW counters from two sessions on the same keys while migrations run
/// back to back: every increment lands exactly once, whether the key was
/// hot, cold, or moving between the two (the conditional insert's
/// migration check).
#[test]
fn rmw_counters_racing_migrations_are_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<F2Store<u64, u64>> = Arc::new(small(dir.path()).open().expect("open"));
    let stop = Arc::new(AtomicBool::new(false));
    let migrator = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            for _ in 0..200 * scale() {
                store.migrate_all().expect("migrate");
            }
            stop.store(true, Ordering::Release);
        })
    };
    let keys = 64u64;
    // Each session increments until the migrations are done (and at least
    // 20,000 times), counting its increments.
    let workers: Vec<_> = (0..2u64)
        .map(|me| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut rng = Rng::new(31 + me);
                let mut done = 0u64;
                while done < 20_000 * scale() || !stop.load(Ordering::Acquire) {
                    session.rmw(&rng.below(keys), &1).expect("rmw");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let increments: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    migrator.join().expect("migrator");
    assert!(store.totals().migrations >= 200);
    let mut session = store.start_session().expect("session");
    let total: u64 = (0..keys).map(|k| session.read_blocking(&k).expect("read").unwrap_or(0)).sum();
    assert_eq!(total, increments, "increments lost or doubled");
}

/// A cold compaction runs in slices (the maintenance lock released
/// between them, so that migrations go on meanwhile): with writes,
/// deletions and migrations racing a compaction of many slices, every key
/// stays exact, a second compaction of the same range copies nothing, and
/// the truncated log recovers exactly.
#[test]
fn a_cold_compaction_in_slices_races_migrations_and_keeps_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = 12_000u64;
    let mut model = BTreeMap::new();
    {
        let store: Arc<F2Store<u64, u64>> = Arc::new(small(dir.path()).open().expect("open"));
        let mut session = store.start_session().expect("session");
        // Three versions of every key in the cold log (tens of thousands of
        // records: several slices), every 5th key deleted in the last.
        for version in 0..3u64 {
            for key in 0..keys {
                if version == 2 && key % 5 == 0 {
                    session.delete(&key).expect("delete");
                } else {
                    session.upsert(&key, &(key * 10 + version)).expect("upsert");
                }
            }
            store.migrate_all().expect("migrate");
        }
        for key in 0..keys {
            model.insert(key, (key % 5 != 0).then_some(key * 10 + 2));
        }
        let (_, tail) = store.cold_log_range();
        // A writer that upserts, deletes and migrates while the compaction
        // of everything below `tail` runs.
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut rng = Rng::new(77);
                let mut written = BTreeMap::new();
                for round in 0..20u64 {
                    for _ in 0..300 {
                        let key = rng.below(keys);
                        if rng.below(4) == 0 {
                            session.delete(&key).expect("delete");
                            written.insert(key, None);
                        } else {
                            session.upsert(&key, &(round * 1_000_000 + key)).expect("upsert");
                            written.insert(key, Some(round * 1_000_000 + key));
                        }
                    }
                    store.migrate_all().expect("migrate");
                }
                written
            })
        };
        let copied = store.compact_cold(tail).expect("compact cold");
        let written = writer.join().expect("writer");
        model.extend(written);
        assert!(copied > 0, "the newest records were copied");
        assert_eq!(store.compact_cold(tail).expect("again"), 0, "a compacted range copies nothing");
        let check = |session: &mut oxifaster::f2::F2Session<u64, u64>| {
            for (key, want) in &model {
                assert_eq!(session.read_blocking(key).expect("read"), *want, "key {key}");
            }
        };
        check(&mut session);
        let (begin, _) = store.cold_log_range();
        store.checkpoint().expect("checkpoint");
        let (new_begin, _) = store.cold_log_range();
        assert!(new_begin > begin, "cold log truncated: {begin:#x} -> {new_begin:#x}");
        check(&mut session);
    }
    let store: F2Store<u64, u64> = small(dir.path()).open().expect("reopen");
    let mut session = store.start_session().expect("session");
    for (key, want) in &model {
        assert_eq!(session.read_blocking(key).expect("read"), *want, "key {key} after reopen");
    }
}

/// The race the RMW's migration check closes, made to happen: between an
/// RMW's cold read and its hot insert, another session writes the key and
/// a migration moves that write to the cold tier (the hot tier has no
/// record of the key again). The insert must not land on the stale cold
/// value: the RMW starts over and merges onto the write.
#[test]
fn an_rmw_or_update_whose_cold_read_went_stale_starts_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<F2Store<u64, u64>> = Arc::new(small(dir.path()).open().expect("open"));
    let mut session = store.start_session().expect("session");
    session.upsert(&7, &5).expect("upsert");
    store.migrate_all().expect("migrate");
    race_on_pause(&store, &mut session, 7);
    session.rmw(&7, &1).expect("rmw");
    assert_eq!(session.read_blocking(&7).expect("read"), Some(101), "the racing write was lost");
    // The same race against a conditional update.
    session.upsert(&8, &5).expect("upsert");
    store.migrate_all().expect("migrate");
    race_on_pause(&store, &mut session, 8);
    let add = |old: Option<&u64>| oxifaster::store::Decision::Set(old.copied().unwrap_or(0) + 1);
    session.update(&8, add).expect("update");
    assert_eq!(session.read_blocking(&8).expect("read"), Some(101), "the racing write was lost");
}

/// Conditional operations see the key's value in whichever tier it is,
/// and decide on it exactly once per effect; counters incremented by
/// `update` from two sessions while migrations run are exact.
#[test]
fn conditional_operations_span_both_tiers() {
    use oxifaster::store::{Decision, Outcome};
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<F2Store<u64, u64>> = Arc::new(small(dir.path()).open().expect("open"));
    let mut session = store.start_session().expect("session");
    for key in 0..100u64 {
        session.upsert(&key, &key).expect("upsert");
    }
    session.delete(&7).expect("delete");
    store.migrate_all().expect("migrate");
    // Cold values: present, deleted, absent.
    assert_eq!(session.insert_if_absent(&3, &1).expect("insert"), Outcome::Aborted);
    assert_eq!(
        session.insert_if_absent(&7, &70).expect("insert"),
        Outcome::Set,
        "a deleted key is absent"
    );
    assert_eq!(session.insert_if_absent(&500, &5).expect("insert"), Outcome::Set);
    assert_eq!(session.read_blocking(&7).expect("read"), Some(70));
    assert_eq!(session.delete_if(&4, |v| *v == 5).expect("delete_if"), Outcome::Aborted);
    assert_eq!(session.delete_if(&4, |v| *v == 4).expect("delete_if"), Outcome::Deleted);
    assert_eq!(session.read_blocking(&4).expect("read"), None);
    let keep = |old: Option<&u64>| if old.is_some() { Decision::Keep } else { Decision::Abort };
    assert_eq!(session.update(&5, keep).expect("update"), Outcome::Kept);
    assert_eq!(session.update(&4, keep).expect("update"), Outcome::Aborted, "deleted, hot");
    store.migrate_all().expect("migrate");
    assert_eq!(session.read_blocking(&4).expect("read"), None, "the deletion moved too");
    assert_eq!(session.update(&4, keep).expect("update"), Outcome::Aborted, "deleted, cold");
    // compare_and_swap on cold, hot, other, deleted and absent values.
    let cas = |s: &mut oxifaster::f2::F2Session<u64, u64>, key: u64, old: u64, new: u64| {
        s.compare_and_swap(&key, &old, &new).expect("compare_and_swap")
    };
    assert_eq!(cas(&mut session, 9, 9, 90), Outcome::Set, "a cold value");
    assert_eq!(cas(&mut session, 9, 9, 91), Outcome::Aborted, "the hot value differs");
    assert_eq!(cas(&mut session, 9, 90, 92), Outcome::Set, "a hot value");
    assert_eq!(cas(&mut session, 10, 11, 1), Outcome::Aborted, "a cold value that differs");
    assert_eq!(cas(&mut session, 4, 4, 1), Outcome::Aborted, "a cold deletion");
    assert_eq!(cas(&mut session, 600, 0, 1), Outcome::Aborted, "an absent key");
    assert_eq!(session.read_blocking(&9).expect("read"), Some(92));
    assert_eq!(session.read_blocking(&10).expect("read"), Some(10));
    assert_eq!(session.read_blocking(&4).expect("read"), None);
    assert_eq!(session.read_blocking(&600).expect("read"), None);
    // Racing increments through `update` (one session) and through reads
    // and `compare_and_swap` (the other), with migrations moving the
    // values between the tiers meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let migrator = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            for _ in 0..100 * scale() {
                store.migrate_all().expect("migrate");
            }
            stop.store(true, Ordering::Release);
        })
    };
    let workers: Vec<_> = (0..2u64)
        .map(|me| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut session = store.start_session().expect("session");
                let mut rng = Rng::new(77 + me);
                let mut done = 0u64;
                while done < 10_000 * scale() || !stop.load(Ordering::Acquire) {
                    let key = 1_000 + rng.below(32);
                    if me == 0 {
                        let add = |old: Option<&u64>| Decision::Set(old.copied().unwrap_or(0) + 1);
                        assert_eq!(session.update(&key, add).expect("update"), Outcome::Set);
                    } else {
                        // Until a swap from the value read lands.
                        while match session.read_blocking(&key).expect("read") {
                            Some(v) => session.compare_and_swap(&key, &v, &(v + 1)),
                            None => session.insert_if_absent(&key, &1),
                        }
                        .expect("swap")
                            != Outcome::Set
                        {}
                    }
                    done += 1;
                }
                done
            })
        })
        .collect();
    let increments: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    migrator.join().expect("migrator");
    let total: u64 =
        (1_000..1_032u64).map(|k| session.read_blocking(&k).expect("read").unwrap_or(0)).sum();
    assert_eq!(total, increments, "increments lost or doubled");
}

/// A crash (no checkpoint on close) recovers the last checkpoint exactly:
/// writes after it are gone, everything before it is there, in both tiers.
#[test]
fn a_crash_recovers_the_last_checkpoint_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = BTreeMap::new();
    {
        let store: F2Store<u64, u64> =
            small(dir.path()).checkpoint_on_close(false).open().expect("open");
        let mut session = store.start_session().expect("session");
        for round in 0..4u64 {
            for key in 0..800u64 {
                session.upsert(&key, &(round * 1_000 + key)).expect("upsert");
                model.insert(key, round * 1_000 + key);
            }
            for key in (0..800u64).step_by(13) {
                session.delete(&key).expect("delete");
                model.remove(&key);
            }
            store.migrate_all().expect("migrate");
        }
        let (_, tail) = store.cold_log_range();
        store.compact_cold(tail).expect("cold compaction");
        store.checkpoint().expect("checkpoint");
        // After the checkpoint: lost in the crash.
        for key in 0..800u64 {
            session.upsert(&key, &7).expect("upsert");
        }
        store.migrate_all().expect("migrate");
        drop(session);
    }
    let store: F2Store<u64, u64> = small(dir.path()).open().expect("recover");
    let mut session = store.start_session().expect("session");
    for key in 0..800u64 {
        assert_eq!(
            session.read_blocking(&key).expect("read"),
            model.get(&key).copied(),
            "key {key}"
        );
    }
}

#[test]
fn bad_directories_and_manifests_are_named_errors() {
    // A plain store's directory is not an F2 store.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = oxifaster::Store::<u64, u64>::builder().dir(dir.path()).open().expect("store");
        drop(store);
    }
    let err = small(dir.path()).open::<u64, u64>().expect_err("not an F2 store");
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    // A damaged manifest.
    let dir = tempfile::tempdir().expect("tempdir");
    drop(small(dir.path()).open::<u64, u64>().expect("open"));
    let manifest = dir.path().join("F2");
    let mut bytes = std::fs::read(&manifest).expect("manifest");
    bytes[20] ^= 0x40;
    std::fs::write(&manifest, &bytes).expect("write");
    let err = small(dir.path()).open::<u64, u64>().expect_err("damaged");
    assert!(matches!(err, Error::CheckpointCorrupt { .. }), "{err}");
    std::fs::write(&manifest, b"OXF2MAN").expect("write");
    let err = small(dir.path()).open::<u64, u64>().expect_err("truncated");
    assert!(matches!(err, Error::CheckpointCorrupt { .. }), "{err}");
    // A store whose manifest is lost is refused, never cleared: putting
    // the manifest back gives everything back.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store: F2Store<u64, u64> = small(dir.path()).open().expect("open");
        store.start_session().expect("session").upsert(&9, &90).expect("upsert");
    }
    let manifest = dir.path().join("F2");
    let saved = std::fs::read(&manifest).expect("manifest");
    std::fs::remove_file(&manifest).expect("remove");
    let err = small(dir.path()).open::<u64, u64>().expect_err("a lost manifest");
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    std::fs::write(&manifest, &saved).expect("restore");
    let store: F2Store<u64, u64> = small(dir.path()).open().expect("reopen");
    assert_eq!(store.start_session().expect("session").read_blocking(&9).expect("read"), Some(90));
    drop(store);
    // A creation that crashed before its first manifest (its marker left)
    // starts over.
    std::fs::remove_file(&manifest).expect("remove");
    std::fs::write(dir.path().join("F2.creating"), b"").expect("marker");
    let store: F2Store<u64, u64> = small(dir.path()).open().expect("an unfinished creation");
    assert_eq!(store.start_session().expect("session").read_blocking(&9).expect("read"), None);
    assert!(!dir.path().join("F2.creating").exists(), "the marker goes once the manifest is there");
    drop(store);
    // Other value types than the store was written with.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store: F2Store<u64, u64> = small(dir.path()).open().expect("open");
        store.start_session().expect("session").upsert(&1, &1).expect("upsert");
    }
    let err = small(dir.path()).open::<u64, String>().expect_err("other types");
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{err}");
}

/// A cold record damaged on disk is reported as corruption by the read that
/// meets it, never returned.
#[test]
fn a_damaged_cold_record_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store: F2Store<u64, u64> = small(dir.path()).open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..500u64 {
            session.upsert(&key, &key).expect("upsert");
        }
        store.migrate_all().expect("migrate");
    }
    // Flip bytes in the cold log's second and third pages (not the tail
    // page, which reopening checks).
    let log_dir = dir.path().join("cold").join("log").join("log");
    let mut damaged = 0;
    for entry in std::fs::read_dir(&log_dir).expect("log dir").flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !path.is_file() || !name.starts_with("log.") {
            continue;
        }
        damaged += 1;
        let mut bytes = std::fs::read(&path).expect("segment");
        for at in (4096..bytes.len().min(3 * 4096)).step_by(64) {
            bytes[at] ^= 0x5a;
        }
        std::fs::write(&path, &bytes).expect("write");
    }
    assert!(damaged > 0, "no cold log segment found");
    let store: F2Store<u64, u64> = small(dir.path()).open().expect("reopen");
    let mut session = store.start_session().expect("session");
    let mut errors = 0;
    for key in 0..500u64 {
        match session.read_blocking(&key) {
            Ok(Some(v)) => assert_eq!(v, key, "a damaged record was returned"),
            Ok(None) => panic!("key {key} silently lost"),
            Err(Error::Corruption { .. }) => errors += 1,
            Err(e) => panic!("unexpected error for key {key}: {e}"),
        }
    }
    assert!(errors > 0, "no read met the damage");
}

/// The async reads and writes: futures that are `Send` (sessions move into
/// spawned tasks), reads of hot keys on the device and of cold keys
/// awaited, deletions hiding cold values; and a read dropped at its
/// `.await` leaves the session working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_reads_and_writes_span_both_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<F2Store<u64, u64>> = Arc::new(small(dir.path()).open().expect("open"));
    let mut session = store.start_session().expect("session");
    for key in 0..4_000u64 {
        assert_send(session.upsert_async(&key, &(key + 1))).await.expect("upsert");
    }
    store.migrate_all().expect("migrate");
    // Hot again, and on the hot log's device (the hot log holds 64 KiB).
    for key in 0..2_000u64 {
        session.upsert_async(&key, &(key + 2)).await.expect("upsert");
    }
    assert_send(session.delete_async(&3_000)).await.expect("delete");
    let want = |key: u64| match key {
        3_000 => None,
        k if k < 2_000 => Some(k + 2),
        k if k < 4_000 => Some(k + 1),
        _ => None,
    };
    let before = session.cold_probe();
    for key in (0..4_100u64).step_by(3) {
        assert_eq!(assert_send(session.read_async(&key)).await.expect("read"), want(key), "{key}");
    }
    assert!(session.cold_probe().records > before.records, "cold lookups ran");
    // A read dropped before it finished: the session goes on.
    let dropped = tokio::time::timeout(std::time::Duration::ZERO, session.read_async(&3_999)).await;
    drop(dropped);
    assert_eq!(session.read_async(&3_999).await.expect("read"), Some(4_000));
    // Sessions move into tasks.
    let tasks: Vec<_> = (0..2u64)
        .map(|t| {
            let mut session = store.start_session().expect("session");
            tokio::spawn(async move {
                for key in (t..4_000u64).step_by(2) {
                    assert_eq!(session.read_async(&key).await.expect("read"), want(key), "{key}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

/// The async forms of the RMW and the conditional operations decide on the
/// value in whichever tier it is (cold values awaited on the blocking
/// pool, hot ones on the hot log's device); counters incremented with
/// `rmw_async` from tasks on two threads while migrations run are exact;
/// the futures are `Send`; an RMW dropped at its `.await` is applied at
/// most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_rmw_and_conditional_operations_span_both_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<F2Store<u64, u64>> = Arc::new(small(dir.path()).open().expect("open"));
    let mut session = store.start_session().expect("session");
    for key in 0..1_000u64 {
        session.upsert(&key, &10).expect("upsert");
    }
    store.migrate_all().expect("migrate");
    // Cold values.
    assert_send(session.rmw_async(&1, &5)).await.expect("rmw");
    assert_eq!(session.read_async(&1).await.expect("read"), Some(15));
    let double = |old: Option<&u64>| old.map_or(Decision::Abort, |v| Decision::Set(v * 2));
    assert_eq!(assert_send(session.update_async(&2, double)).await.expect("update"), Outcome::Set);
    assert_eq!(session.read_async(&2).await.expect("read"), Some(20));
    let cas = session.compare_and_swap_async(&3, &11, &99).await.expect("cas");
    assert_eq!(cas, Outcome::Aborted, "the stored value is 10");
    let cas = assert_send(session.compare_and_swap_async(&3, &10, &99)).await.expect("cas");
    assert_eq!(cas, Outcome::Set);
    assert_eq!(session.read_async(&3).await.expect("read"), Some(99));
    let insert = assert_send(session.insert_if_absent_async(&4, &7)).await.expect("insert");
    assert_eq!(insert, Outcome::Aborted, "a cold value is a value");
    assert_eq!(session.insert_if_absent_async(&5_000, &7).await.expect("insert"), Outcome::Set);
    let deleted = assert_send(session.delete_if_async(&5, |v| *v == 10)).await.expect("delete_if");
    assert_eq!(deleted, Outcome::Deleted);
    assert_eq!(session.read_async(&5).await.expect("read"), None);
    // An RMW dropped at once is applied zero or one times.
    let dropped = tokio::time::timeout(std::time::Duration::ZERO, session.rmw_async(&6, &1)).await;
    let six = session.read_async(&6).await.expect("read").expect("a value");
    match dropped {
        Ok(_) => assert_eq!(six, 11, "the RMW finished"),
        Err(_) => assert!(six == 10 || six == 11, "applied more than once: {six}"),
    }
    // Counters from tasks on two threads, migrations racing.
    let stop = Arc::new(AtomicBool::new(false));
    let migrator = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0u64;
            while !stop.load(Ordering::Acquire) {
                store.migrate_all().expect("migrate");
                runs += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            runs
        })
    };
    let per_task = 2_000 * scale();
    let tasks: Vec<_> = (0..2u64)
        .map(|t| {
            let mut session = store.start_session().expect("session");
            tokio::spawn(async move {
                let mut rng = Rng::new(t + 1);
                for _ in 0..per_task {
                    let key = 100 + rng.below(32);
                    session.rmw_async(&key, &1).await.expect("rmw");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    stop.store(true, Ordering::Release);
    assert!(migrator.join().expect("migrator") > 0);
    let mut sum = 0;
    for key in 100..132u64 {
        sum += session.read_async(&key).await.expect("read").expect("a value") - 10;
    }
    assert_eq!(sum, 2 * per_task, "increments lost or doubled");
}
