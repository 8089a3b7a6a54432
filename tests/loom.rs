//! L7 (TESTING.md): loom models of the lock-free protocols, on the real
//! code (its atomics come from `oxifaster::sync`, loom's under
//! `--cfg oxifaster_loom`). Each model has a deliberately broken variant
//! (`oxifaster::sync::broken`) that loom must catch.
//!
//! ```sh
//! RUSTFLAGS="--cfg oxifaster_loom" cargo test --release --test loom
//! ```
//!
//! Without the cfg this file is empty.
#![cfg(oxifaster_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use oxifaster::epoch::Epoch;
use oxifaster::sync::broken;

/// Epoch protection (the module invariant of `epoch.rs`): a reader protects
/// itself and then reads a shared pointer; a writer swaps the pointer and
/// frees the old target in an action bumped on the epoch. If the reader saw
/// the old pointer, the free must not have happened while it is
/// protected.
fn epoch_model() {
    loom::model(|| {
        let epoch = Arc::new(Epoch::new(2));
        let pointer = Arc::new(AtomicU64::new(0));
        let freed = Arc::new(AtomicBool::new(false));
        let reader = {
            let (epoch, pointer, freed) = (epoch.clone(), pointer.clone(), freed.clone());
            loom::thread::spawn(move || {
                let handle = epoch.register().expect("entry");
                handle.protect();
                if pointer.load(Ordering::SeqCst) == 0 {
                    assert!(!freed.load(Ordering::SeqCst), "a protected reader saw a freed object");
                }
                handle.unprotect();
            })
        };
        pointer.store(1, Ordering::SeqCst);
        let f = freed.clone();
        epoch.bump_with_action(move || f.store(true, Ordering::SeqCst));
        reader.join().expect("reader");
    });
}

#[test]
fn epoch_protection_holds_back_reclamation() {
    broken::set_weak_protect(false);
    epoch_model();
}

#[test]
fn a_relaxed_protect_is_caught() {
    expect_caught(
        broken::set_weak_protect,
        epoch_model,
        &["a protected reader saw a freed object"],
    );
}

/// Tail allocation across a page turn: two threads allocate 240 bytes at
/// once on a 512-byte page whose first 64 bytes are reserved, so the
/// second allocation turns the page (which shifts the read-only address
/// with an epoch action). Their ranges never overlap and never span a
/// page.
fn tail_model() {
    use oxifaster::device::MemoryDevice;
    const SIZE: u64 = 240;
    use oxifaster::hlog::{HybridLog, LogGeometry};
    loom::model(|| {
        let epoch = Arc::new(Epoch::new(2));
        let log = Arc::new(
            HybridLog::new(
                LogGeometry { page_bits: 9, frames: 4, mutable_pages: 1, sealed: false },
                MemoryDevice::new(),
            )
            .expect("log"),
        );
        let take = |epoch: &Epoch, log: &HybridLog<MemoryDevice>| {
            let handle = epoch.register().expect("entry");
            handle.protect();
            let a = log.allocate(SIZE, &handle).expect("allocate").raw();
            handle.unprotect();
            a
        };
        let other = {
            let (epoch, log) = (epoch.clone(), log.clone());
            loom::thread::spawn(move || take(&epoch, &log))
        };
        let mine = take(&epoch, &log);
        let theirs = other.join().expect("allocator");
        assert!(mine + SIZE <= theirs || theirs + SIZE <= mine, "overlapping allocations");
        for a in [mine, theirs] {
            assert_eq!(a >> 9, (a + SIZE - 1) >> 9, "an allocation spans pages");
        }
        assert_ne!(mine >> 9, theirs >> 9, "no page turn happened");
    });
}

#[test]
fn tail_allocations_never_overlap() {
    broken::set_plain_tail(false);
    tail_model();
}

#[test]
fn a_non_atomic_tail_update_is_caught() {
    expect_caught(
        broken::set_plain_tail,
        tail_model,
        &["overlapping allocations", "an allocation spans pages"],
    );
}

/// The FasterLog commit point: one thread enqueues an entry while another
/// commits. If the entry lies below the commit point, its exact bytes are
/// on the device when `commit` returns (the flush ran as an epoch action,
/// only once the writer had left its enqueue).
fn commit_point_model() {
    use oxifaster::device::{Device, MemoryDevice};
    use oxifaster::log::{FasterLog, LogConfig};
    loom::model(|| {
        let config =
            LogConfig::default().page_size_bits(9).log_memory_size_bytes(4 << 9).max_threads(2);
        let log = Arc::new(
            FasterLog::with_devices(config, MemoryDevice::new(), MemoryDevice::new()).expect("log"),
        );
        let payload = [7u8; 24];
        let writer = {
            let log = log.clone();
            loom::thread::spawn(move || log.enqueue(&payload).expect("enqueue"))
        };
        let point = log.commit().expect("commit");
        let address = writer.join().expect("writer");
        if address < point {
            let mut bytes = [0u8; 32];
            log.data_device().read_at(address.raw(), &mut bytes).expect("on the device");
            let mut expected = [0u8; 32];
            oxifaster::log::entry::encode(address.raw(), &payload, &mut expected);
            assert_eq!(bytes, expected, "a committed entry is not on the device whole");
        }
    });
}

#[test]
fn committed_entries_are_whole_on_the_device() {
    broken::set_eager_flush(false);
    commit_point_model();
}

#[test]
fn a_flush_that_does_not_wait_for_writers_is_caught() {
    expect_caught(
        broken::set_eager_flush,
        commit_point_model,
        &["a committed entry is not on the device whole"],
    );
}

/// The index's tentative-bit insert (the module invariant of
/// `index/mod.rs`): two threads insert the same key hash into one bucket
/// at once. A tag never gets two entries: both end up with the same slot.
/// (With two threads, a thread that passes a taken slot has seen the other's
/// claim; the fence matters once back-outs reopen slots, which takes a
/// third thread and more schedules than loom explores here: that case is
/// `tests/index_stress.rs`'s.)
fn index_insert_model() {
    use oxifaster::index::HashIndex;
    let threads = 2;
    loom::model(move || {
        let index = Arc::new(HashIndex::new(1).expect("index"));
        const HASH: u64 = 0x0123_4567_89ab_cdef;
        let slot_of = |index: &HashIndex| {
            let found = index.find_or_create_entry(HASH);
            found.slot as *const _ as usize
        };
        let others: Vec<_> = (1..threads)
            .map(|_| {
                let index = index.clone();
                loom::thread::spawn(move || slot_of(&index))
            })
            .collect();
        let mine = slot_of(&index);
        for other in others {
            assert_eq!(other.join().expect("inserter"), mine, "two entries for one tag");
        }
    });
}

#[test]
fn an_index_tag_never_gets_two_entries() {
    broken::set_no_rescan(false);
    index_insert_model();
}

#[test]
fn an_insert_without_its_rescan_is_caught() {
    expect_caught(broken::set_no_rescan, index_insert_model, &["two entries for one tag"]);
}

/// Compaction's conditional copy (the protocol at the top of
/// `store/session/copy.rs`) racing a session's write of the same key: key
/// 7's record holds 1 and is read-only; one thread copies it to the tail
/// as compaction does while another upserts 2, adds 5 by RMW (`u64`'s
/// merge is addition) or deletes the key. After both, the key holds the
/// session's result: the copy never overwrites it nor brings the key back.
/// Loom explores the interleavings with at most four preemptions (the two
/// operations take a few dozen atomic steps each).
fn copy_race_model(write: Write) {
    use oxifaster::Store;
    use oxifaster::device::MemoryDevice;
    const KEY: u64 = 7;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(4);
    builder.max_branches = 1_000_000;
    builder.check(move || {
        // Small, so that setting it up stays within loom's counters.
        let store = Store::<u64, u64>::builder()
            .table_size(8)
            .max_sessions(2)
            .page_size_bits(9)
            .log_memory_size_bytes(8 << 9)
            .mutable_fraction(0.1)
            .open_with_device(MemoryDevice::new())
            .expect("store");
        let mut writer = store.start_session().expect("session");
        let mut compactor = store.start_session().expect("session");
        writer.upsert(&KEY, &1).expect("upsert");
        let old = compactor.loom_entry_address(&KEY);
        // Other keys until the record is read-only (no in-place update).
        let mut filler = 100u64;
        while store.log_regions().read_only_address <= old {
            writer.upsert(&filler, &filler).expect("filler");
            filler += 1;
        }
        let session = loom::thread::spawn(move || {
            match write {
                Write::Upsert => writer.upsert(&KEY, &2).expect("upsert"),
                Write::Rmw => drop(writer.rmw(&KEY, &5).expect("rmw")),
                Write::Delete => writer.delete(&KEY).expect("delete"),
            }
            writer
        });
        compactor.loom_copy_if_newest(old, &KEY.to_ne_bytes(), &1u64.to_ne_bytes()).expect("copy");
        drop(session.join().expect("session"));
        let expected = match write {
            Write::Upsert => Some(2),
            Write::Rmw => Some(6),
            Write::Delete => None,
        };
        assert_eq!(
            compactor.read_blocking(&KEY).expect("read"),
            expected,
            "the copy overwrote the session's write"
        );
    });
}

/// The session's write in [`copy_race_model`].
#[derive(Clone, Copy)]
enum Write {
    Upsert,
    Rmw,
    Delete,
}

#[test]
fn a_compaction_copy_never_overwrites_an_upsert() {
    broken::set_unconditional_copy(false);
    copy_race_model(Write::Upsert);
}

#[test]
fn a_compaction_copy_never_loses_an_rmw() {
    broken::set_unconditional_copy(false);
    copy_race_model(Write::Rmw);
}

#[test]
fn a_compaction_copy_never_resurrects_a_delete() {
    broken::set_unconditional_copy(false);
    copy_race_model(Write::Delete);
}

#[test]
fn a_copy_without_its_newest_check_is_caught() {
    expect_caught(
        broken::set_unconditional_copy,
        || copy_race_model(Write::Upsert),
        &["the copy overwrote the session's write"],
    );
}

/// The hand-off between operations and a growth of the index (the
/// protocol at the top of `store/grow.rs`): a session upserts key 7 (2
/// over 1) while another thread doubles the table. The upsert either
/// finishes before the split reads its bucket or helps the growth and then
/// writes the new table: afterwards the key reads 2.
fn grow_handoff_model() {
    use oxifaster::Store;
    use oxifaster::device::MemoryDevice;
    const KEY: u64 = 7;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.max_branches = 1_000_000;
    builder.check(move || {
        let store = Arc::new(
            Store::<u64, u64>::builder()
                .table_size(1)
                .max_sessions(2)
                .page_size_bits(9)
                .log_memory_size_bytes(8 << 9)
                .auto_grow_index(false)
                .open_with_device(MemoryDevice::new())
                .expect("store"),
        );
        let mut writer = store.start_session().expect("session");
        writer.upsert(&KEY, &1).expect("upsert");
        // Read-only now: the upsert appends and swings the index entry (an
        // update in place would not touch the index).
        store.flush().expect("flush");
        let session = loom::thread::spawn(move || {
            writer.upsert(&KEY, &2).expect("upsert");
            writer
        });
        store.grow_index().expect("grow");
        let mut writer = session.join().expect("session");
        assert_eq!(writer.read_blocking(&KEY).expect("read"), Some(2), "the upsert was lost");
        drop(writer);
    });
}

#[test]
fn an_upsert_racing_a_growth_is_kept() {
    broken::set_no_grow_drain(false);
    grow_handoff_model();
}

#[test]
fn a_growth_without_its_epoch_drain_is_caught() {
    expect_caught(broken::set_no_grow_drain, grow_handoff_model, &["the upsert was lost"]);
}

/// The F2 store's conditional update (the invariant at the top of
/// `f2/protocol.rs`) racing a write and a migration of the same key: key
/// 7's value 1 lives only in the cold tier (a model of it, one value and
/// the migration count). One thread adds 5 by the F2 RMW: it finds no hot
/// record, reads the cold value and inserts the merged value only if the
/// key still has no hot record and no migration published. The other
/// upserts 2 in the hot tier and migrates the whole hot log to the cold
/// tier, which frees the key's hot entry. Either order is a valid history
/// (7, or 2 when the upsert came last); 6 means the RMW landed on the cold
/// 1 after the upsert had replaced it: the upsert was lost.
fn f2_migration_model() {
    use oxifaster::Store;
    use oxifaster::device::MemoryDevice;
    use oxifaster::f2::{Tiered, loom_model};
    const KEY: u64 = 7;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.max_branches = 1_000_000;
    builder.check(|| {
        drop(oxifaster::sync::take_notes());
        let store = Store::<u64, Tiered<u64>>::builder()
            .table_size(8)
            .max_sessions(4)
            .page_size_bits(9)
            .log_memory_size_bytes(8 << 9)
            .mutable_fraction(0.1)
            .open_with_device(MemoryDevice::new())
            .expect("store");
        let store = Arc::new(store);
        let tiers = Arc::new(loom_model::ModelTiers::new(Some(1)));
        let mut writer = store.start_session().expect("session");
        let mut updater = store.start_session().expect("session");
        let other = {
            let (store, tiers) = (store.clone(), tiers.clone());
            loom::thread::spawn(move || {
                writer.upsert(&KEY, &Tiered::Live(2u64)).expect("upsert");
                tiers.note("upsert 2 done".into());
                loom_model::migrate_all(&store, &tiers).expect("migrate");
                drop(writer);
            })
        };
        loom_model::rmw(&mut updater, &tiers, KEY, 5).expect("rmw");
        other.join().expect("writer");
        let got = loom_model::read(&mut updater, &tiers, KEY).expect("read");
        assert!(
            got == Some(7) || got == Some(2),
            "the racing write was lost: {got:?} after {:#?}",
            tiers.events()
        );
    });
}

// Not run by default: loom reports an interleaving in which the update
// sees the migrated record below the begin address yet reads the count
// from before the migration published. On hardware the begin address is
// stored (Release) after the count moves and loaded (Acquire) before the
// update reads the count, so that cannot happen; but the region
// addresses are std atomics, which loom does not track, so it misses the
// edge. With them modelled (loom's atomics in `AtomicAddress`) the model
// no longer fits the time budget of a test run (over 12 minutes).
#[test]
#[ignore = "the region addresses are not loom atomics: see above"]
fn an_f2_update_never_lands_on_a_migrated_write() {
    broken::set_no_migration_check(false);
    f2_migration_model();
}

#[test]
#[ignore = "its correct variant does not pass under loom yet: see above"]
fn an_f2_update_without_its_migration_check_is_caught() {
    expect_caught(
        broken::set_no_migration_check,
        f2_migration_model,
        &["the racing write was lost"],
    );
}

/// Runs `model` with a broken variant switched on by `switch`: loom must
/// fail it with one of the model's own assertions (one of `messages`).
fn expect_caught(switch: fn(bool), model: fn(), messages: &[&str]) {
    switch(true);
    let caught = std::panic::catch_unwind(model);
    switch(false);
    let message = panic_message(caught.expect_err("loom did not catch the broken variant"));
    assert!(
        messages.iter().any(|m| message.contains(m)),
        "loom failed for another reason: {message}"
    );
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
