//! The FASTER-style recovery test: sessions on several threads run RMWs on
//! shared counters (with I/O parked across version changes) while a
//! checkpoint is taken every few milliseconds; then *every* checkpoint is
//! recovered in turn, and each counter must equal exactly the sum of the
//! increments that the sessions' commit points include.
//!
//! Knobs: `OXIFASTER_CPR_OPS` (RMWs per session, default 40 000),
//! `OXIFASTER_CPR_SEED`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oxifaster::checkpoint::{CheckpointInfo, CheckpointKind, CommitPoint};
use oxifaster::store::RmwStatus;
use oxifaster::{Store, StoreBuilder};
use oxifaster_cli::workload::Rng;

const THREADS: u64 = 4;
const KEYS: u64 = 20_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn builder(dir: &std::path::Path) -> StoreBuilder<u64, u64> {
    // 64 KiB of log memory for ~500 KiB of records: most RMWs on cold keys
    // go pending.
    Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 12)
}

/// Session `thread`'s operation `i` (serial `i + 1`): (key, increment).
fn op(seed: u64, thread: u64, i: u64) -> (u64, u64) {
    let mut rng = Rng::new(seed ^ (thread << 40) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (rng.below(KEYS), 1 + rng.below(7))
}

#[test]
fn every_checkpoint_recovers_exactly_its_commit_points() {
    let ops = env("OXIFASTER_CPR_OPS", 40_000);
    let seed = env("OXIFASTER_CPR_SEED", 0x5eed);
    eprintln!("OXIFASTER_CPR_SEED={seed} OXIFASTER_CPR_OPS={ops}");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Store<u64, u64> = builder(dir.path()).open().expect("open");
    let done = AtomicBool::new(false);
    let (ids, mut checkpoints) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = &store;
                scope.spawn(move || {
                    let mut session = store.start_session().expect("session");
                    for i in 0..ops {
                        let (key, input) = op(seed, thread, i);
                        let status = session.rmw(&key, &input).expect("rmw");
                        assert_eq!(session.serial(), i + 1);
                        // Leave operations parked for a while, so that many
                        // are waiting for I/O when the version changes.
                        if matches!(status, RmwStatus::Pending { .. }) && i % 16 == 0 {
                            session.complete_pending().expect("complete");
                        }
                    }
                    session.complete_pending().expect("complete");
                    session.id()
                })
            })
            .collect();
        let checkpointer = scope.spawn(|| {
            let kinds = [
                CheckpointKind::FoldOver,
                CheckpointKind::Snapshot,
                CheckpointKind::IncrementalSnapshot,
                CheckpointKind::LogOnly,
                CheckpointKind::IncrementalSnapshot,
            ];
            let mut taken = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(15));
                taken.push(store.checkpoint_and_wait(kinds[n % kinds.len()]).expect("checkpoint"));
                n += 1;
            }
            taken
        });
        let ids: Vec<u64> = workers.into_iter().map(|w| w.join().expect("worker")).collect();
        done.store(true, Ordering::Release);
        (ids, checkpointer.join().expect("checkpointer"))
    });
    // And one when everything has finished: it holds every operation.
    checkpoints.push(store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint"));
    drop(store);
    assert!(checkpoints.len() >= 3, "only {} checkpoints", checkpoints.len());
    let excluded: usize =
        checkpoints.iter().flat_map(|c| c.sessions.iter()).map(|(_, p)| p.excluded.len()).sum();
    eprintln!("{} checkpoints; {excluded} parked operations excluded in all", checkpoints.len());

    // A checkpoint lists every session open at it. A session closed
    // before it (it had finished all its operations: every worker completes
    // its pending ones first) is no longer listed: all of it is in.
    let mut seen: std::collections::BTreeSet<u64> = Default::default();
    for info in &checkpoints {
        let listed: BTreeMap<u64, CommitPoint> = info.sessions.iter().cloned().collect();
        let current: Vec<CommitPoint> = ids
            .iter()
            .map(|id| match listed.get(id) {
                Some(point) => point.clone(),
                None if seen.contains(id) => CommitPoint { until: ops, excluded: Vec::new() },
                None => CommitPoint::default(),
            })
            .collect();
        seen.extend(listed.keys().copied());
        verify(dir.path(), info, &current, seed, ops);
    }
    assert!(ids.iter().all(|id| seen.contains(id)), "every session was listed while it ran");
}

fn verify(
    dir: &std::path::Path,
    info: &CheckpointInfo,
    points: &[CommitPoint],
    seed: u64,
    ops: u64,
) {
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for (thread, point) in points.iter().enumerate() {
        assert!(point.until <= ops);
        for i in 0..point.until {
            if point.includes(i + 1) {
                let (key, input) = op(seed, thread as u64, i);
                *expected.entry(key).or_insert(0) += input;
            }
        }
    }
    let store: Store<u64, u64> = builder(dir).recover(info.token.as_str()).expect("recover");
    let mut session = store.start_session().expect("session");
    for key in 0..KEYS {
        assert_eq!(
            session.read_blocking(&key).expect("read"),
            expected.get(&key).copied(),
            "checkpoint {} ({:?}, version {}): key {key}",
            info.token,
            info.kind,
            info.version
        );
    }
}
