//! Checkpoints and recovery: every kind recovers exactly the state at its
//! commit points, recovery is non-destructive, and bad checkpoints are
//! named errors.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use oxifaster::checkpoint::{self, CheckpointKind};
use oxifaster::{Error, Store, StoreBuilder};
use oxifaster_cli::workload::Rng;

/// Small pages and memory: most of the data lives on the device.
fn builder(dir: &Path) -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 10)
        // Checkpoints here are taken by hand, and a drop is a crash.
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

/// Random upserts, RMWs and deletes on `keys` keys, applied to the model.
fn random_ops(
    session: &mut oxifaster::Session<u64, u64, oxifaster::device::FileDevice>,
    model: &mut BTreeMap<u64, u64>,
    rng: &mut Rng,
    ops: usize,
    keys: u64,
) {
    for _ in 0..ops {
        let key = rng.below(keys);
        match rng.below(10) {
            0..=3 => {
                let value = rng.next_u64();
                session.upsert(&key, &value).expect("upsert");
                model.insert(key, value);
            }
            4..=7 => {
                let input = rng.below(1000);
                let status = session.rmw(&key, &input).expect("rmw");
                if matches!(status, oxifaster::store::RmwStatus::Pending { .. }) {
                    session.complete_pending().expect("complete");
                }
                let entry = model.entry(key).or_insert(0);
                *entry = entry.wrapping_add(input);
            }
            _ => {
                session.delete(&key).expect("delete");
                model.remove(&key);
            }
        }
    }
}

#[test]
fn every_kind_recovers_exactly_its_state() {
    // Small memory (most records on disk) and large (all in memory).
    for (kind, memory) in [
        (CheckpointKind::FoldOver, 64 << 10),
        (CheckpointKind::Snapshot, 64 << 10),
        (CheckpointKind::LogOnly, 64 << 10),
        (CheckpointKind::FoldOver, 16 << 20),
        (CheckpointKind::Snapshot, 16 << 20),
        (CheckpointKind::LogOnly, 16 << 20),
        (CheckpointKind::IncrementalSnapshot, 64 << 10),
        (CheckpointKind::IncrementalSnapshot, 16 << 20),
    ] {
        let builder = |dir: &Path| builder(dir).log_memory_size_bytes(memory);
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = 5_000;
        let mut model = BTreeMap::new();
        let mut rng = Rng::new(7);
        let info = {
            let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
            let mut session = store.start_session().expect("session");
            random_ops(&mut session, &mut model, &mut rng, 30_000, keys);
            if kind == CheckpointKind::IncrementalSnapshot {
                // The base, then changes on top of it.
                store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("base");
                random_ops(&mut session, &mut model, &mut rng, 10_000, keys);
            }
            let info = store.checkpoint_and_wait(kind).expect("checkpoint");
            assert_eq!(info.kind, kind);
            assert_eq!(info.commit_point(session.id()).expect("point").until, session.serial());
            // Later operations are not in the checkpoint.
            let mut later = model.clone();
            random_ops(&mut session, &mut later, &mut rng, 5_000, keys);
            info
        };
        let store: Store<u64, u64> =
            builder(dir.path()).recover(info.token.as_str()).expect("recover");
        common::check_model(&store, &model, keys);
        assert_eq!(store.recovered().expect("recovered").token, info.token);
    }
}

#[test]
fn a_recovered_store_keeps_working_and_recovery_destroys_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = 3_000;
    let mut rng = Rng::new(11);
    let mut first = BTreeMap::new();
    let mut second;
    let (a, b) = {
        let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
        let mut session = store.start_session().expect("session");
        random_ops(&mut session, &mut first, &mut rng, 20_000, keys);
        let a = store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("checkpoint a");
        second = first.clone();
        random_ops(&mut session, &mut second, &mut rng, 20_000, keys);
        let b = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint b");
        (a, b)
    };
    // Recover the older one and write a new history on it.
    let mut third = first.clone();
    let c = {
        let store: Store<u64, u64> =
            builder(dir.path()).recover(a.token.as_str()).expect("recover a");
        common::check_model(&store, &first, keys);
        assert!(store.version() > b.version, "a new incarnation numbers past every checkpoint");
        let mut session = store.start_session().expect("session");
        random_ops(&mut session, &mut third, &mut rng, 20_000, keys);
        store.checkpoint_and_wait(CheckpointKind::LogOnly).expect("checkpoint c")
    };
    // Every checkpoint still recovers to its own state.
    for (token, model) in [(&a.token, &first), (&b.token, &second), (&c.token, &third)] {
        let store: Store<u64, u64> = builder(dir.path()).recover(token.as_str()).expect("recover");
        common::check_model(&store, model, keys);
    }
    let latest: Store<u64, u64> = builder(dir.path()).recover_latest().expect("latest");
    assert_eq!(latest.recovered().expect("recovered").token, c.token);
    // Retention keeps the newest and what it needs.
    let deleted = checkpoint::retain(dir.path(), 1).expect("retain");
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert_eq!(checkpoint::list(dir.path()).expect("list").len(), 1);
}

#[test]
fn variable_length_values_recover_from_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = BTreeMap::new();
    let token = {
        let store: Store<String, Vec<u8>> = Store::<String, Vec<u8>>::builder()
            .dir(dir.path())
            .page_size_bits(12)
            .log_memory_size_bytes(64 << 10)
            .open()
            .expect("open");
        let mut session = store.start_session().expect("session");
        let mut rng = Rng::new(3);
        for i in 0..4_000u64 {
            let key = format!("key-{}", rng.below(1_500));
            let value = vec![(i % 251) as u8; rng.below(200) as usize];
            session.upsert(&key, &value).expect("upsert");
            model.insert(key, value);
        }
        store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("checkpoint").token
    };
    let store: Store<String, Vec<u8>> =
        Store::recover(dir.path(), token.as_str()).expect("recover");
    let mut session = store.start_session().expect("session");
    for (key, value) in &model {
        assert_eq!(session.read_blocking(key).expect("read").as_ref(), Some(value), "{key}");
    }
}

#[test]
fn sessions_resume_from_their_commit_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, token) = {
        let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..100u64 {
            session.upsert(&key, &key).expect("upsert");
        }
        let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
        (session.id(), info.token)
    };
    let store: Store<u64, u64> = Store::recover(dir.path(), token.as_str()).expect("recover");
    assert_eq!(store.recovered_sessions().len(), 1);
    let (mut session, point) = store.continue_session(id).expect("continue");
    assert_eq!(point.until, 100);
    assert_eq!(session.serial(), 100);
    session.upsert(&1000, &1).expect("upsert");
    assert_eq!(session.serial(), 101);
    assert!(matches!(store.continue_session(id), Err(Error::UnknownSession { .. })));
    assert!(matches!(store.continue_session(999), Err(Error::UnknownSession { id: 999 })));
    let fresh = store.start_session().expect("session");
    assert!(fresh.id() > id, "new ids never reuse recovered ones");
}

#[test]
fn background_checkpoints_are_one_at_a_time() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().expect("tempdir");
    let durable: Arc<Mutex<Vec<checkpoint::CheckpointInfo>>> = Arc::default();
    let sink = durable.clone();
    let store: Store<u64, u64> = builder(dir.path())
        .on_checkpoint(move |info| sink.lock().expect("lock").push(info.clone()))
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    for key in 0..10_000u64 {
        session.upsert(&key, &key).expect("upsert");
    }
    let token = store.checkpoint(CheckpointKind::Snapshot).expect("start");
    // A second one while the first runs is refused by name (or, if the first
    // already finished, it simply runs).
    match store.checkpoint_and_wait(CheckpointKind::FoldOver) {
        Err(Error::CheckpointInProgress { .. }) | Ok(_) => {}
        Err(e) => panic!("{e}"),
    }
    let info = store.wait_for_checkpoint(&token).expect("wait");
    assert_eq!(info.token, token);
    assert_eq!(info.commit_point(session.id()).expect("point").until, 10_000);
    // The persistence callback saw it (and any other that ran), durable.
    let durable = durable.lock().expect("lock");
    assert!(durable.iter().any(|d| d.token == token));
    for d in durable.iter() {
        checkpoint::verify(dir.path(), d.token.as_str()).expect("durable when announced");
    }
}

#[test]
fn bad_checkpoints_and_tokens_are_named_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = {
        let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..1_000u64 {
            session.upsert(&key, &key).expect("upsert");
        }
        store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint").token.to_string()
    };
    let recover = |token: &str| builder(dir.path()).recover(token).map(|_| ());
    assert!(matches!(recover("0000000001-nope"), Err(Error::CheckpointNotFound { .. })));
    for hostile in ["../etc", "a/b", "", ".", "x\0y", &"a".repeat(65)] {
        assert!(matches!(recover(hostile), Err(Error::InvalidToken { .. })), "{hostile:?}");
    }
    // Other key and value types.
    let err = builder(dir.path())
        .for_types::<u32, u64>()
        .recover(&token)
        .map(|_| ())
        .expect_err("u32 keys");
    assert!(matches!(err, Error::LayoutMismatch { what: "key", .. }), "{err}");
    assert!(err.to_string().contains("u32"), "{err}");
    let err = builder(dir.path())
        .for_types::<u64, [u8; 16]>()
        .recover(&token)
        .map(|_| ())
        .expect_err("arrays");
    assert!(matches!(err, Error::LayoutMismatch { what: "value", .. }), "{err}");
    let err = builder(dir.path())
        .for_types::<u64, String>()
        .recover(&token)
        .map(|_| ())
        .expect_err("strings");
    assert!(matches!(err, Error::LayoutMismatch { what: "value", .. }), "{err}");

    // Damaged files.
    let cp = dir.path().join("checkpoints").join(&token);
    let meta = std::fs::read(cp.join("meta")).expect("meta");
    let index = std::fs::read(cp.join("index")).expect("index");
    std::fs::write(cp.join("meta"), &meta[..meta.len() / 2]).expect("truncate");
    assert!(matches!(recover(&token), Err(Error::CheckpointCorrupt { .. })));
    let mut flipped = meta.clone();
    flipped[meta.len() - 3] ^= 0x10;
    std::fs::write(cp.join("meta"), &flipped).expect("flip");
    assert!(matches!(recover(&token), Err(Error::CheckpointCorrupt { .. })));
    std::fs::write(cp.join("meta"), &meta).expect("restore");
    let mut flipped = index.clone();
    flipped[100] ^= 1;
    std::fs::write(cp.join("index"), &flipped).expect("flip");
    assert!(matches!(recover(&token), Err(Error::CheckpointCorrupt { .. })));
    assert!(matches!(checkpoint::verify(dir.path(), &token), Err(Error::CheckpointCorrupt { .. })));
    std::fs::remove_file(cp.join("index")).expect("remove");
    assert!(matches!(recover(&token), Err(Error::Io { .. })));
    std::fs::write(cp.join("index"), &index).expect("restore");
    checkpoint::verify(dir.path(), &token).expect("healthy again");
    recover(&token).expect("recovers again");

    // A checkpoint whose metadata never landed is not a checkpoint.
    std::fs::remove_file(cp.join("meta")).expect("remove");
    assert!(matches!(recover(&token), Err(Error::CheckpointNotFound { .. })));
    assert!(matches!(builder(dir.path()).recover_latest(), Err(Error::CheckpointNotFound { .. })));
}

#[test]
fn progress_reaches_the_total_of_every_phase() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().expect("tempdir");
    let seen: Arc<Mutex<Vec<checkpoint::Progress>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        move |p: checkpoint::Progress| seen.lock().expect("lock").push(p)
    };
    let token = {
        let store: Store<u64, u64> =
            builder(dir.path()).on_progress(record.clone()).open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..20_000u64 {
            session.upsert(&key, &key).expect("upsert");
        }
        store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("checkpoint").token
    };
    builder(dir.path()).on_progress(record).recover(token.as_str()).expect("recover");
    let seen = seen.lock().expect("lock");
    for phase in ["index", "snapshot", "metadata", "replay"] {
        let events: Vec<_> = seen.iter().filter(|p| p.phase == phase).collect();
        assert!(!events.is_empty(), "no {phase} progress");
        assert!(events.windows(2).all(|w| w[0].done <= w[1].done), "{phase} goes backwards");
        let last = events.last().expect("last");
        assert_eq!(last.done, last.total, "{phase} ends at its total");
    }
}

#[test]
fn sessions_closed_at_rest_are_forgotten_and_their_writes_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
    for key in 0..100u64 {
        let mut session = store.start_session().expect("session");
        session.upsert(&key, &key).expect("upsert");
    }
    let mut live = store.start_session().expect("session");
    live.upsert(&1_000, &1).expect("upsert");
    let a = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("a");
    // A session dropped while no checkpoint runs has finished all its
    // operations: it is forgotten at once (a store that opens a session per
    // request stays flat), and its writes are in the checkpoint.
    assert_eq!(a.sessions.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![live.id()]);
    let recovered: Store<u64, u64> = {
        let copy = tempfile::tempdir().expect("tempdir");
        common::copy_dir(dir.path(), copy.path());
        let store = builder(copy.path()).recover(&a.token).expect("recover");
        let mut session = store.start_session().expect("session");
        for key in 0..100u64 {
            assert_eq!(session.read_blocking(&key).expect("read"), Some(key));
        }
        drop(session);
        std::mem::forget(copy);
        store
    };
    drop(recovered);
    let b = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("b");
    assert_eq!(b.sessions.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![live.id()]);
}

#[test]
fn reopening_a_store_directory_recovers_it_and_destroys_no_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..5_000u64 {
            session.upsert(&key, &key).expect("upsert");
        }
        store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint")
    };
    // `open` on the same directory reopens the store...
    let second = {
        let store: Store<u64, u64> = builder(dir.path()).open().expect("open again");
        assert_eq!(store.recovered().expect("recovered").token, first.token);
        let mut session = store.start_session().expect("session");
        assert_eq!(session.read_blocking(&1).expect("read"), Some(1), "open reopens");
        for key in 0..5_000u64 {
            session.upsert(&key, &(key + 7)).expect("upsert");
        }
        let second = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
        assert!(second.version > first.version, "versions keep increasing");
        second
    };
    // ...whose new incarnation went past the old log: both checkpoints
    // recover intact.
    for (token, offset) in [(&first.token, 0), (&second.token, 7)] {
        let store: Store<u64, u64> = builder(dir.path()).recover(token.as_str()).expect("recover");
        let mut session = store.start_session().expect("session");
        for key in (0..5_000u64).step_by(7) {
            assert_eq!(session.read_blocking(&key).expect("read"), Some(key + offset));
        }
    }
    let latest: Store<u64, u64> = builder(dir.path()).recover_latest().expect("latest");
    assert_eq!(latest.recovered().expect("recovered").token, second.token);
}

#[test]
fn a_store_directory_is_locked_while_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
    store.start_session().expect("session").upsert(&1, &1).expect("upsert");
    let token = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint").token;
    assert!(matches!(builder(dir.path()).open(), Err(Error::Locked { .. })));
    assert!(matches!(builder(dir.path()).recover(token.as_str()), Err(Error::Locked { .. })));
    // Reading the directory's checkpoints needs no lock.
    assert_eq!(Store::<u64, u64>::checkpoints(dir.path()).expect("list").len(), 1);
    drop(store);
    let store: Store<u64, u64> = builder(dir.path()).recover(token.as_str()).expect("recover");
    assert_eq!(store.start_session().expect("session").read_blocking(&1).expect("read"), Some(1));
}

/// Found by `tests/store_proptest.rs`: a snapshot of a recovered, empty
/// store holds no page; recovering it overflowed a page count.
#[test]
fn an_empty_snapshot_after_a_recovery_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
        store.checkpoint_and_wait(CheckpointKind::LogOnly).expect("log-only");
    }
    {
        let store: Store<u64, u64> = builder(dir.path()).recover_latest().expect("recover");
        store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("snapshot");
    }
    let store: Store<u64, u64> =
        builder(dir.path()).recover_latest().expect("recover the snapshot");
    let mut session = store.start_session().expect("session");
    session.upsert(&1, &2).expect("upsert");
    assert_eq!(session.read_blocking(&1).expect("read"), Some(2));
}

/// Found by the kill -9 long run: a snapshot taken while sessions append
/// fast could start (at the flushed address, read after waiting for the
/// epoch) past its own final address (the tail, read before), leaving
/// metadata that recovery rejects as inconsistent.
#[test]
fn snapshots_under_heavy_appends_are_consistent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Store<u64, u64> = Store::<u64, u64>::builder()
        .dir(dir.path())
        .page_size_bits(9)
        .log_memory_size_bytes(8 << 10)
        .table_size(1 << 12)
        .open()
        .expect("open");
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for thread in 0..2u64 {
            let (store, stop) = (&store, &stop);
            scope.spawn(move || {
                let mut session = store.start_session().expect("session");
                // New keys all the time, so the index grows while the
                // snapshots run (a snapshot once waited for a growth's
                // device reads, and the writers outran the snapshots until
                // memory ran out); the range wraps at 4 M keys a writer
                // so that the store stays bounded on any machine.
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = (thread << 40) | (i % (1 << 22));
                    session.upsert(&key, &i).expect("upsert");
                    i += 1;
                }
            });
        }
        // The writers stop even if a checkpoint panics.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        let mut tokens = Vec::new();
        for _ in 0..40 {
            tokens
                .push(store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("snapshot").token);
        }
        stop.store(true, Ordering::Relaxed);
        for token in tokens {
            checkpoint::verify(dir.path(), token.as_str())
                .unwrap_or_else(|e| panic!("checkpoint {token}: {e}"));
        }
    });
}

#[test]
fn scan_log_walks_the_records_without_their_types() {
    use oxifaster::device::{DEFAULT_SEGMENT_SIZE_BITS, FileDevice};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::<String, Vec<u8>>::builder()
        .dir(dir.path())
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 10)
        .for_types::<String, Vec<u8>>()
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    for k in 0..2000u64 {
        session.upsert(&format!("key-{k}"), &vec![k as u8; (k % 50) as usize]).expect("upsert");
    }
    session.delete(&"key-5".to_string()).expect("delete");
    let info = store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("snapshot");
    drop(session);
    drop(store);
    assert_eq!(info.key_size, None);
    assert_eq!(info.value_size, None);
    assert!(info.key_type.contains("String"), "{}", info.key_type);
    let device = FileDevice::open(dir.path(), DEFAULT_SEGMENT_SIZE_BITS).expect("device");
    let mut seen = Vec::new();
    checkpoint::scan_log(dir.path(), info.token.as_str(), &device, |r| {
        seen.push(r);
        true
    })
    .expect("scan");
    assert_eq!(seen.len(), 2001, "every record, on the device and in the snapshot file");
    for (k, record) in seen.iter().take(2000).enumerate() {
        // A String key is its length (u64) and bytes; a Vec<u8> value too.
        let key = format!("key-{k}");
        assert!(record.key.ends_with(key.as_bytes()), "record {k}: {:?}", record.key);
        assert!(record.value.len() >= k % 50);
        assert!(!record.tombstone);
    }
    assert!(seen[2000].tombstone);
    assert!(seen.windows(2).all(|w| w[0].address < w[1].address));
    // Stopping early.
    let mut n = 0;
    checkpoint::scan_log(dir.path(), info.token.as_str(), &device, |_| {
        n += 1;
        n < 10
    })
    .expect("scan");
    assert_eq!(n, 10);
}

#[test]
fn a_snapshot_of_a_recovered_snapshot_recovers_everything() {
    // A snapshot from page 0, recovered, brings page 0's reserved start
    // into the new incarnation's first page; a checkpoint of that
    // incarnation must recover with every record after that gap.
    let kinds = [
        (CheckpointKind::Snapshot, CheckpointKind::Snapshot),
        (CheckpointKind::Snapshot, CheckpointKind::IncrementalSnapshot),
        (CheckpointKind::Snapshot, CheckpointKind::FoldOver),
        (CheckpointKind::FoldOver, CheckpointKind::Snapshot),
    ];
    for (first, second) in kinds {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
        store.checkpoint_and_wait(first).expect("first");
        drop(store);
        let store: Store<u64, u64> = builder(dir.path()).recover_latest().expect("recover");
        let mut session = store.start_session().expect("session");
        for k in 0..50u64 {
            session.upsert(&k, &(k + 5)).expect("upsert");
        }
        drop(session);
        let info = store.checkpoint_and_wait(second).expect("second");
        drop(store);
        let store: Store<u64, u64> = builder(dir.path()).recover_latest().expect("recover");
        assert_eq!(store.skipped_checkpoints(), Vec::new(), "{first:?} then {second:?}");
        assert_eq!(store.recovered().expect("recovered").token, info.token);
        let mut session = store.start_session().expect("session");
        for k in 0..50u64 {
            assert_eq!(
                session.read_blocking(&k).expect("read"),
                Some(k + 5),
                "{first:?} then {second:?}"
            );
        }
    }
}
