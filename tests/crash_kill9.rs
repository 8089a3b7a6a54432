//! Kill -9 (TESTING.md, L1): a child process runs sessions of upserts, RMWs
//! and deletes on two threads, taking a checkpoint every few milliseconds,
//! and is killed with SIGKILL at a random moment. The parent recovers the
//! newest checkpoint and checks every key against a model replayed to each
//! session's recovered commit point; the next child continues the sessions
//! from there. Nothing acknowledged (a checkpoint that returned) may be
//! lost, and no key may hold a value that was never written.
//!
//! `kill9_cycles_with_a_read_cache` runs the same with reads among the
//! operations and a read cache, so that index entries point into the cache
//! when checkpoints dump the index and when the process dies.
//!
//! Knobs: `OXIFASTER_KILL9_CYCLES` (default 20), `OXIFASTER_KILL9_SEED`,
//! `OXIFASTER_KILL9_RESET_EVERY` (start a fresh store every N cycles; 0:
//! never).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use oxifaster::checkpoint::{CheckpointInfo, CheckpointKind};
use oxifaster::store::RmwStatus;
use oxifaster::{Store, StoreBuilder};
use oxifaster_cli::kill9::run_and_kill;
use oxifaster_cli::workload::Rng;

const THREADS: u64 = 2;
/// Keys each session owns (upserts and deletes).
const OWNED: u64 = 4_000;
/// Counters every session increments.
const SHARED: u64 = 2_000;
const SHARED_BASE: u64 = 1 << 40;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The store lives in `dir/store`; the child's `acked` file beside it.
/// With `cache`, a read cache of eight 4 KiB pages.
fn builder(dir: &Path, cache: bool) -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder()
        .dir(dir.join("store"))
        .page_size_bits(12)
        .log_memory_size_bytes(128 << 10)
        .read_cache_bytes(if cache { 8 << 12 } else { 0 })
        .table_size(1 << 12)
        // Checkpoints here are taken by hand, and a drop is a crash.
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Upsert(u64, u64),
    Delete(u64),
    Add(u64, u64),
    Read(u64),
}

/// Session `thread`'s operation with serial number `serial`; with
/// `reads`, every third is a read (a serial number too, nothing in the
/// model).
fn op(seed: u64, thread: u64, serial: u64, reads: bool) -> Op {
    let mut rng = Rng::new(seed ^ (thread << 48) ^ serial.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let owned = thread * OWNED + rng.below(OWNED);
    if reads && rng.below(3) == 0 {
        return Op::Read(if rng.below(2) == 0 { owned } else { SHARED_BASE + rng.below(SHARED) });
    }
    match rng.below(10) {
        0..=3 => Op::Upsert(owned, rng.next_u64() | 1),
        4 => Op::Delete(owned),
        _ => Op::Add(SHARED_BASE + rng.below(SHARED), 1 + rng.below(9)),
    }
}

/// The child: continue (or start) the sessions and run until killed.
#[test]
#[ignore = "run by kill9_cycles in a child process"]
fn kill9_child() {
    let Ok(dir) = std::env::var("OXIFASTER_KILL9_DIR") else { return };
    let dir = Path::new(&dir);
    let seed = env("OXIFASTER_KILL9_SEED", 0);
    let cache = env("OXIFASTER_KILL9_READ_CACHE", 0) == 1;
    // `open` reopens the store (its newest intact checkpoint), or starts
    // one in the new directory.
    let store: Store<u64, u64> = builder(dir, cache).open().expect("child open");
    let mut recovered = store.recovered_sessions();
    recovered.sort_by_key(|(id, _)| *id);
    let mut sessions: Vec<_> = if recovered.is_empty() {
        (0..THREADS).map(|_| store.start_session().expect("session")).collect()
    } else {
        assert_eq!(recovered.len() as u64, THREADS);
        recovered.iter().map(|(id, _)| store.continue_session(*id).expect("continue").0).collect()
    };
    let mut acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acked"))
        .expect("acked file");
    let mut ack = |info: &CheckpointInfo| {
        writeln!(acked, "{} {}", info.version, info.token).expect("ack");
    };
    if recovered.is_empty() {
        ack(&store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("first checkpoint"));
    }
    std::thread::scope(|scope| {
        for (thread, mut session) in sessions.drain(..).enumerate() {
            scope.spawn(move || {
                loop {
                    let serial = session.serial() + 1;
                    match op(seed, thread as u64, serial, cache) {
                        Op::Read(k) => {
                            // Parked reads finish (and fill the cache) in
                            // the `complete_pending` below.
                            session.read(&k).expect("read");
                        }
                        Op::Upsert(k, v) => session.upsert(&k, &v).expect("upsert"),
                        Op::Delete(k) => session.delete(&k).expect("delete"),
                        Op::Add(k, v) => {
                            if let RmwStatus::Pending { .. } = session.rmw(&k, &v).expect("rmw")
                                && serial % 8 == 0
                            {
                                session.complete_pending().expect("complete");
                            }
                        }
                    }
                    if serial % 64 == 0 {
                        session.complete_pending().expect("complete");
                    }
                }
            });
        }
        let kinds = [
            CheckpointKind::FoldOver,
            CheckpointKind::Snapshot,
            CheckpointKind::IncrementalSnapshot,
            CheckpointKind::LogOnly,
        ];
        for n in 0.. {
            std::thread::sleep(Duration::from_millis(10));
            ack(&store.checkpoint_and_wait(kinds[n % kinds.len()]).expect("checkpoint"));
        }
    });
}

fn last_acked(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("acked")).ok()?;
    text.lines().filter_map(|l| l.split(' ').next()?.parse().ok()).max()
}

#[test]
fn kill9_cycles() {
    cycles(false, env("OXIFASTER_KILL9_CYCLES", 20));
}

#[test]
fn kill9_cycles_with_a_read_cache() {
    cycles(true, env("OXIFASTER_KILL9_CYCLES", 20) / 2);
}

fn cycles(cache: bool, cycles: u64) {
    let seed = env("OXIFASTER_KILL9_SEED", 0x9e37_79b9);
    eprintln!("OXIFASTER_KILL9_SEED={seed} OXIFASTER_KILL9_CYCLES={cycles}");
    // Long runs start a fresh store every `reset` cycles, so that a cycle
    // stays as short as the first ones (the store grows across cycles).
    let reset = env("OXIFASTER_KILL9_RESET_EVERY", 0);
    let mut dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(seed);
    let mut verified = 0;
    let seed_text = seed.to_string();
    let cache_text = if cache { "1" } else { "0" };
    for cycle in 0..cycles {
        if reset > 0 && cycle > 0 && cycle % reset == 0 {
            dir = tempfile::tempdir().expect("tempdir");
        }
        eprintln!("cycle {cycle}");
        run_and_kill(
            "kill9_child",
            &[
                ("OXIFASTER_KILL9_DIR", dir.path().as_os_str()),
                ("OXIFASTER_KILL9_SEED", seed_text.as_ref()),
                ("OXIFASTER_KILL9_READ_CACHE", cache_text.as_ref()),
            ],
            Duration::from_millis(50 + rng.below(250)),
        );

        let Some(acked) = last_acked(dir.path()) else {
            // Killed before its first checkpoint: nothing was promised.
            continue;
        };
        let store: Store<u64, u64> = builder(dir.path(), cache).recover_latest().expect("recover");
        let info = store.recovered().expect("recovered");
        assert!(
            info.version >= acked,
            "cycle {cycle}: recovered version {} but version {acked} was acknowledged",
            info.version
        );
        check(&store, &info, seed, cycle, cache);
        verified += 1;
    }
    assert!(verified >= cycles / 2, "only {verified} of {cycles} cycles reached a checkpoint");
}

/// Every key equals the model replayed to the sessions' commit points.
fn check(store: &Store<u64, u64>, info: &CheckpointInfo, seed: u64, cycle: u64, reads: bool) {
    let mut sessions = info.sessions.clone();
    sessions.sort_by_key(|(id, _)| *id);
    assert_eq!(sessions.len() as u64, THREADS);
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    for (thread, (_, point)) in sessions.iter().enumerate() {
        for serial in 1..=point.until {
            if !point.includes(serial) {
                continue;
            }
            match op(seed, thread as u64, serial, reads) {
                Op::Read(_) => {}
                Op::Upsert(k, v) => {
                    model.insert(k, v);
                }
                Op::Delete(k) => {
                    model.remove(&k);
                }
                Op::Add(k, v) => *model.entry(k).or_insert(0) += v,
            }
        }
    }
    eprintln!(
        "cycle {cycle}: recovered {:?} version {}, commit points {:?}",
        info.kind,
        info.version,
        sessions.iter().map(|(_, p)| (p.until, p.excluded.len())).collect::<Vec<_>>()
    );
    let mut session = store.start_session().expect("session");
    let keys = (0..THREADS * OWNED).chain(SHARED_BASE..SHARED_BASE + SHARED);
    for key in keys {
        assert_eq!(
            session.read_blocking(&key).expect("read"),
            model.get(&key).copied(),
            "cycle {cycle}, checkpoint {} ({:?}): key {key}",
            info.token,
            info.kind
        );
    }
}
