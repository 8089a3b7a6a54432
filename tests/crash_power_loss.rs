//! Power loss (TESTING.md, L2): the power goes out at every device and file
//! operation of a checkpoint in turn, and unsynced writes are dropped, kept
//! at random, or torn at sector boundaries. Recovery must then return the
//! newest checkpoint that is complete on "disk" — the previous one, or the
//! interrupted one if it got as far as its metadata — with exactly its
//! state, never a panic, an error, or wrong data. A checkpoint whose call
//! returned must survive.
//!
//! Knob: `OXIFASTER_POWER_SEEDS` (workload seeds per kind, default 4).

use std::collections::BTreeMap;

use std::sync::Arc;

use oxifaster::checkpoint::{self, CheckpointInfo, CheckpointKind, FaultIo};
use oxifaster::device::{CrashClock, CrashMode, FaultDevice};
use oxifaster::{Store, StoreBuilder};
use oxifaster_cli::workload::Rng;

const KEYS: u64 = 800;

fn builder(dir: &std::path::Path, io: FaultIo) -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(32 << 10)
        .table_size(1 << 8)
        .checkpoint_io(io)
        // A drop here is a crash: no policy checkpoints behind its back.
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

fn ops(
    session: &mut oxifaster::Session<u64, u64, FaultDevice>,
    model: &mut BTreeMap<u64, u64>,
    rng: &mut Rng,
    n: usize,
) {
    for _ in 0..n {
        let key = rng.below(KEYS);
        match rng.below(8) {
            0..=2 => {
                let value = rng.next_u64();
                session.upsert(&key, &value).expect("upsert");
                model.insert(key, value);
            }
            3..=6 => {
                let input = 1 + rng.below(100);
                if let oxifaster::store::RmwStatus::Pending { .. } =
                    session.rmw(&key, &input).expect("rmw")
                {
                    session.complete_pending().expect("complete");
                }
                *model.entry(key).or_insert(0) += input;
            }
            _ => {
                session.delete(&key).expect("delete");
                model.remove(&key);
            }
        }
    }
}

/// A store whose log device and checkpoint files share one crash clock.
fn fault_store(dir: &std::path::Path) -> (Store<u64, u64, FaultDevice>, Arc<CrashClock>, FaultIo) {
    let clock = CrashClock::new();
    let io = FaultIo::new(clock.clone());
    let store =
        builder(dir, io.clone()).open_with_device(FaultDevice::new(clock.clone())).expect("open");
    (store, clock, io)
}

/// Operations, a complete checkpoint A (a snapshot when `kind` is
/// incremental: its base), more operations. Returns A and the models at A
/// and now.
fn checkpoint_then_more(
    store: &Store<u64, u64, FaultDevice>,
    kind: CheckpointKind,
    seed: u64,
) -> (CheckpointInfo, BTreeMap<u64, u64>, BTreeMap<u64, u64>) {
    let mut rng = Rng::new(seed);
    let mut model_a = BTreeMap::new();
    let mut session = store.start_session().expect("session");
    ops(&mut session, &mut model_a, &mut rng, 3_000);
    let first = match kind {
        CheckpointKind::IncrementalSnapshot => CheckpointKind::Snapshot,
        _ => CheckpointKind::FoldOver,
    };
    let a = store.checkpoint_and_wait(first).expect("checkpoint a");
    let mut model_b = model_a.clone();
    ops(&mut session, &mut model_b, &mut rng, 1_500);
    (a, model_a, model_b)
}

/// What one scenario did.
struct Outcome {
    /// Operations the interrupted checkpoint issued (when not interrupted).
    checkpoint_ops: u64,
}

/// Runs: ops, checkpoint A, ops, checkpoint B of `kind` with the power cut
/// at its `crash_at`-th operation (if any), power loss under `mode`, then
/// recovery and a full check.
fn scenario(kind: CheckpointKind, crash_at: Option<u64>, mode: CrashMode, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, clock, io) = fault_store(dir.path());
    let (a, model_a, model_b) = checkpoint_then_more(&store, kind, seed);

    let before = clock.ops();
    if let Some(k) = crash_at {
        clock.arm(k);
    }
    let b = store.checkpoint_and_wait(kind);
    let checkpoint_ops = clock.ops() - before;
    assert_eq!(b.is_err(), clock.crashed(), "a checkpoint fails exactly when the power is cut");
    // The power goes out (after the checkpoint, if it finished).
    let image = store.device().power_loss(mode, seed);
    io.power_loss(mode, seed).expect("simulate the file system's loss");
    drop(store);

    let recovered: Store<u64, u64, FaultDevice> =
        builder(dir.path(), FaultIo::new(CrashClock::new()))
            .recover_latest_with_device(|| {
                FaultDevice::from_image(image.clone(), CrashClock::new())
            })
            .unwrap_or_else(|e| {
                panic!(
                    "{kind:?}, crash at {crash_at:?}, {mode:?}, seed {seed}: recovery failed: {e}"
                )
            });
    let token = recovered.recovered().expect("recovered").token;
    let model = match &b {
        Ok(b) if token == b.token => &model_b,
        Ok(b) => panic!("checkpoint {} returned but {token} was recovered", b.token),
        Err(_) if token == a.token => &model_a,
        // The interrupted checkpoint got as far as its metadata.
        Err(_) => &model_b,
    };
    // Every page the recovered checkpoint needs is still sealed (a later,
    // interrupted flush of its last page never overwrote the durable seal).
    let report =
        checkpoint::verify_log(dir.path(), token.as_str(), recovered.device()).expect("verify");
    assert!(
        report.problems.is_empty(),
        "{kind:?}, crash at {crash_at:?}, {mode:?}, seed {seed}: {:?}",
        report.problems
    );
    let mut session = recovered.start_session().expect("session");
    for key in 0..KEYS {
        assert_eq!(
            session.read_blocking(&key).expect("read"),
            model.get(&key).copied(),
            "{kind:?}, crash at {crash_at:?}, {mode:?}, seed {seed}: key {key} (recovered {token})"
        );
    }
    Outcome { checkpoint_ops }
}

#[test]
fn power_loss_at_every_operation_of_a_checkpoint() {
    let seeds =
        std::env::var("OXIFASTER_POWER_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut points = 0u64;
    for kind in [
        CheckpointKind::FoldOver,
        CheckpointKind::Snapshot,
        CheckpointKind::LogOnly,
        CheckpointKind::IncrementalSnapshot,
    ] {
        for seed in 1..=seeds {
            // Without a crash, to count the checkpoint's operations (and to
            // check a power loss right after it finished).
            let total = scenario(kind, None, CrashMode::Tear, seed).checkpoint_ops;
            assert!(total > 5, "{kind:?}: only {total} operations");
            for crash_at in 0..=total {
                for mode in [CrashMode::Drop, CrashMode::KeepSome, CrashMode::Tear] {
                    scenario(kind, Some(crash_at), mode, seed * 1_000 + crash_at);
                    points += 1;
                }
            }
        }
    }
    eprintln!("{points} crash points survived");
    assert!(points >= 500, "{points}");
}

/// I/O errors (TESTING.md, L3): one operation of a checkpoint fails with
/// EIO. The checkpoint reports it; a failed log write or sync poisons the
/// store (nothing after it may be acknowledged) while a failed checkpoint
/// file leaves the store working; either way the next recovery (after a
/// power loss that drops everything unsynced) is the newest complete
/// checkpoint, exactly.
#[test]
fn an_io_error_at_any_operation_of_a_checkpoint_is_reported_and_contained() {
    let mut poisoned = 0;
    let mut survived = 0;
    for kind in [CheckpointKind::FoldOver, CheckpointKind::Snapshot] {
        let total = scenario(kind, None, CrashMode::Drop, 9).checkpoint_ops;
        for fail_at in 0..total {
            let dir = tempfile::tempdir().expect("tempdir");
            let (store, clock, io) = fault_store(dir.path());
            let (a, model_a, mut model_b) = checkpoint_then_more(&store, kind, 9);
            let mut session = store.start_session().expect("session");
            clock.fail_once(fail_at);
            let err = store.checkpoint_and_wait(kind).expect_err("the injected error surfaces");
            assert!(err.to_string().contains("injected I/O error"), "{kind:?} at {fail_at}: {err}");
            let mut latest = (a.token.clone(), model_a.clone());
            match session.upsert(&0, &1) {
                Err(oxifaster::Error::Poisoned { .. }) => poisoned += 1,
                Ok(()) => {
                    // The store works on, and its next checkpoint is good.
                    model_b.insert(0, 1);
                    let c = store.checkpoint_and_wait(kind).expect("the next checkpoint");
                    latest = (c.token, model_b.clone());
                    survived += 1;
                }
                Err(e) => panic!("{kind:?} at {fail_at}: {e}"),
            }
            let image = store.device().power_loss(CrashMode::Drop, 1);
            io.power_loss(CrashMode::Drop, 1).expect("power loss");
            drop(session);
            drop(store);
            let recovered: Store<u64, u64, FaultDevice> =
                builder(dir.path(), FaultIo::new(CrashClock::new()))
                    .recover_latest_with_device(|| {
                        FaultDevice::from_image(image.clone(), CrashClock::new())
                    })
                    .expect("recovery");
            assert_eq!(recovered.recovered().expect("recovered").token, latest.0);
            let mut session = recovered.start_session().expect("session");
            for key in 0..KEYS {
                assert_eq!(
                    session.read_blocking(&key).expect("read"),
                    latest.1.get(&key).copied(),
                    "{kind:?}, error at {fail_at}: key {key}"
                );
            }
        }
    }
    eprintln!("{poisoned} errors poisoned the store, {survived} left it working");
    assert!(poisoned > 0 && survived > 0);
}

/// Compaction under power loss: operations, checkpoint A, more operations,
/// then a compaction of everything compactable followed by checkpoint B,
/// with the power cut at every device and file operation of the two.
/// Compaction changes no key's value, so recovery must give A's state or
/// (if B's metadata made it) the state after the second batch — whatever
/// was copied, and wherever the begin address had got to.
fn compaction_scenario(crash_at: Option<u64>, mode: CrashMode, seed: u64) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, clock, io) = fault_store(dir.path());
    let (a, model_a, model_b) = checkpoint_then_more(&store, CheckpointKind::FoldOver, seed);
    let before = clock.ops();
    if let Some(k) = crash_at {
        clock.arm(k);
    }
    let regions = store.log_regions();
    let page = regions.page_size_bytes;
    let until = (regions.safe_read_only_address / page * page).max(regions.begin_address);
    let result = store
        .compact(until)
        .and_then(|_| store.checkpoint_and_wait(CheckpointKind::LogOnly).map(|b| b.token));
    let ops = clock.ops() - before;
    assert_eq!(result.is_err(), clock.crashed(), "it fails exactly when the power is cut");
    let image = store.device().power_loss(mode, seed);
    io.power_loss(mode, seed).expect("simulate the file system's loss");
    drop(store);
    let what = format!("compaction, crash at {crash_at:?}, {mode:?}, seed {seed}");
    let recovered: Store<u64, u64, FaultDevice> =
        builder(dir.path(), FaultIo::new(CrashClock::new()))
            .recover_latest_with_device(|| {
                FaultDevice::from_image(image.clone(), CrashClock::new())
            })
            .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
    let token = recovered.recovered().expect("recovered").token;
    let model = match &result {
        Ok(b) if token == *b => &model_b,
        Ok(b) => panic!("{what}: checkpoint {b} returned but {token} was recovered"),
        Err(_) if token == a.token => &model_a,
        Err(_) => &model_b,
    };
    let mut session = recovered.start_session().expect("session");
    for key in 0..KEYS {
        assert_eq!(
            session.read_blocking(&key).expect("read"),
            model.get(&key).copied(),
            "{what}: key {key} (recovered {token})"
        );
    }
    ops
}

#[test]
fn power_loss_at_every_operation_of_a_compaction() {
    let seeds =
        std::env::var("OXIFASTER_POWER_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut points = 0u64;
    for seed in 1..=seeds.min(2) {
        let total = compaction_scenario(None, CrashMode::Tear, seed);
        assert!(total > 5, "only {total} operations");
        for crash_at in 0..=total {
            for mode in [CrashMode::Drop, CrashMode::KeepSome, CrashMode::Tear] {
                compaction_scenario(Some(crash_at), mode, seed * 1_000 + crash_at);
                points += 1;
            }
        }
    }
    eprintln!("{points} crash points survived");
    assert!(points >= 60, "{points}");
}
