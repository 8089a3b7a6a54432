//! Power loss on an F2 store (TESTING.md, L2): the hot log, the chunk
//! store's log and the cold log (entries and commit records) each sit on a
//! `FaultDevice`, and checkpoint files and the manifest go through a
//! `FaultIo`, all on one crash clock. After a complete checkpoint A and
//! more operations, the power is cut at every device and file operation of
//! a migration of the whole hot log, a cold compaction and checkpoint B in
//! turn; unsynced writes are dropped, kept at random, or torn at sector
//! boundaries. The store must then reopen at A or at B (B if its call
//! returned, or if it got as far as a durable manifest) with exactly that
//! state: never an error, a panic or a wrong value.
//!
//! Knob: `OXIFASTER_F2_POWER_SEEDS` (workload seeds, default 1).

use std::collections::BTreeMap;
use std::sync::Arc;

use oxifaster::checkpoint::FaultIo;
use oxifaster::device::{CrashClock, CrashMode, FaultDevice};
use oxifaster::f2::{F2Builder, F2Part, F2Session, F2Store};
use oxifaster_cli::workload::Rng;

const KEYS: u64 = 600;
const PARTS: [F2Part; 4] = [F2Part::Hot, F2Part::ColdIndex, F2Part::ColdLog, F2Part::ColdCommits];

/// Small pages and memory, a tiny cold index, no background work (the
/// test drives migrations, compactions and checkpoints, so that the
/// operations of a run are the same each time).
fn builder(dir: &std::path::Path, io: FaultIo) -> F2Builder {
    F2Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .hot_log_memory_bytes(32 << 10)
        .hot_table_size(64)
        .cold_index_chunks(8)
        .cold_index_memory_bytes(32 << 10)
        .read_cache_bytes(16 << 10)
        .hot_log_size_bytes(None)
        .cold_log_size_bytes(None)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
        .checkpoint_io(io)
}

type Store = F2Store<u64, u64, FaultDevice>;

fn ops(
    session: &mut F2Session<u64, u64, FaultDevice>,
    model: &mut BTreeMap<u64, u64>,
    rng: &mut Rng,
    n: usize,
) {
    for _ in 0..n {
        let key = rng.below(KEYS);
        match rng.below(10) {
            0..=3 => {
                let value = rng.next_u64() >> 1;
                session.upsert(&key, &value).expect("upsert");
                model.insert(key, value);
            }
            4..=6 => {
                let input = 1 + rng.below(100);
                session.rmw(&key, &input).expect("rmw");
                *model.entry(key).or_insert(0) += input;
            }
            7 => {
                session.delete(&key).expect("delete");
                model.remove(&key);
            }
            _ => {
                let got = session.read_blocking(&key).expect("read");
                assert_eq!(got, model.get(&key).copied(), "key {key} before the crash");
            }
        }
    }
}

/// What one scenario did.
struct Outcome {
    /// Operations the crash phase issued (when the power stayed on).
    phase_ops: u64,
}

/// Operations, migrations and checkpoint A; more operations; then the
/// crash phase (migrate everything, compact half the cold log, checkpoint
/// B) with the power cut at its `crash_at`-th operation (if any), a power
/// loss under `mode`, and a reopen checked key by key.
fn scenario(crash_at: Option<u64>, mode: CrashMode, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = CrashClock::new();
    let io = FaultIo::new(clock.clone());
    let store: Store = builder(dir.path(), io.clone())
        .open_with_devices(|_| FaultDevice::new(clock.clone()))
        .expect("open");
    let mut rng = Rng::new(seed);
    let mut model_a = BTreeMap::new();
    let mut session = store.start_session().expect("session");
    ops(&mut session, &mut model_a, &mut rng, 1_500);
    store.migrate_all().expect("migrate");
    ops(&mut session, &mut model_a, &mut rng, 800);
    let (begin, tail) = store.cold_log_range();
    store.compact_cold(begin + (tail - begin) / 2).expect("cold compaction");
    let a = store.checkpoint().expect("checkpoint a");
    let mut model_b = model_a.clone();
    ops(&mut session, &mut model_b, &mut rng, 800);
    drop(session);

    let before = clock.ops();
    if let Some(k) = crash_at {
        clock.arm(k);
    }
    let b = (|| {
        store.migrate_all()?;
        let (begin, tail) = store.cold_log_range();
        store.compact_cold(begin + (tail - begin) / 2)?;
        store.checkpoint()
    })();
    let phase_ops = clock.ops() - before;
    assert_eq!(b.is_err(), clock.crashed(), "the phase fails exactly when the power is cut: {b:?}");
    let images: Vec<(F2Part, Vec<u8>)> = PARTS
        .iter()
        .enumerate()
        .map(|(i, &part)| (part, store.device(part).power_loss(mode, seed ^ (i as u64) << 32)))
        .collect();
    io.power_loss(mode, seed).expect("simulate the file system's loss");
    drop(store);

    let what = format!("crash at {crash_at:?} of the phase, {mode:?}, seed {seed}");
    let images = Arc::new(images);
    let reopened: Store = builder(dir.path(), FaultIo::new(CrashClock::new()))
        .open_with_devices(|part| {
            let image = images.iter().find(|(p, _)| *p == part).expect("an image").1.clone();
            FaultDevice::from_image(image, CrashClock::new())
        })
        .unwrap_or_else(|e| panic!("{what}: reopening failed: {e}"));
    let token = reopened.recovered().map(|r| r.token.as_str().to_owned());
    let model = match &b {
        Ok(b) => {
            assert_eq!(token.as_deref(), Some(b.hot.token.as_str()), "{what}: B returned");
            &model_b
        }
        Err(_) if token.as_deref() == Some(a.hot.token.as_str()) => &model_a,
        // The interrupted checkpoint got as far as a durable manifest.
        Err(_) => &model_b,
    };
    let mut session = reopened.start_session().expect("session");
    for key in 0..KEYS {
        assert_eq!(
            session.read_blocking(&key).unwrap_or_else(|e| panic!("{what}: key {key}: {e}")),
            model.get(&key).copied(),
            "{what}: key {key} (recovered {token:?})"
        );
    }
    // The reopened store keeps working: a write, a migration, a checkpoint.
    session.upsert(&0, &1).expect("upsert after recovery");
    reopened.migrate_all().expect("migrate after recovery");
    reopened.checkpoint().expect("checkpoint after recovery");
    assert_eq!(session.read_blocking(&0).expect("read"), Some(1));
    Outcome { phase_ops }
}

#[test]
fn power_loss_at_every_operation_of_a_migration_compaction_and_checkpoint() {
    let seeds =
        std::env::var("OXIFASTER_F2_POWER_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut points = 0u64;
    for seed in 1..=seeds {
        let total = scenario(None, CrashMode::Tear, seed).phase_ops;
        assert!(total > 10, "only {total} operations in the crash phase");
        for crash_at in 0..=total {
            for mode in [CrashMode::Drop, CrashMode::KeepSome, CrashMode::Tear] {
                scenario(Some(crash_at), mode, seed * 1_000 + crash_at);
                points += 1;
            }
        }
    }
    eprintln!("{points} crash points recovered exactly");
    assert!(points >= 30, "{points}");
}
