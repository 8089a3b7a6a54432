//! L6 (TESTING.md): a proptest model of the store with checkpoints,
//! recovery and reopening. Operation sequences (upsert, RMW, delete, read,
//! a checkpoint of every kind, recover-latest, reopen) run on one session
//! against a `BTreeMap`, with tiny pages and memory so that most records
//! are on disk; proptest shrinks a failure to a minimal sequence.
//!
//! Knob: `PROPTEST_CASES` (default 24 per configuration).

use std::collections::BTreeMap;
use std::path::Path;

use oxifaster::checkpoint::CheckpointKind;
use oxifaster::{Store, StoreBuilder};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Upsert(u64, u64),
    Rmw(u64, u64),
    Delete(u64),
    Read(u64),
    Checkpoint(CheckpointKind),
    /// Drop the store (a crash) and recover the newest checkpoint.
    Recover,
    /// Drop the store and open the directory afresh: an empty store.
    Reopen,
}

fn op(keys: u64) -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        Just(CheckpointKind::FoldOver),
        Just(CheckpointKind::Snapshot),
        Just(CheckpointKind::IncrementalSnapshot),
        Just(CheckpointKind::IndexOnly),
        Just(CheckpointKind::LogOnly),
    ];
    prop_oneof![
        30 => (0..keys, any::<u64>()).prop_map(|(k, v)| Op::Upsert(k, v)),
        25 => (0..keys, 1..1000u64).prop_map(|(k, d)| Op::Rmw(k, d)),
        8 => (0..keys).prop_map(Op::Delete),
        20 => (0..keys).prop_map(Op::Read),
        6 => kind.prop_map(Op::Checkpoint),
        4 => Just(Op::Recover),
        1 => Just(Op::Reopen),
    ]
}

fn builder(dir: &Path, page_bits: u32, memory: u64) -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(page_bits)
        .log_memory_size_bytes(memory)
        .table_size(1 << 8)
        // Checkpoints here are taken by hand, and a drop is a crash.
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

fn run(ops: &[Op], page_bits: u32, memory: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || builder(dir.path(), page_bits, memory).open().expect("open");
    let mut store = Some(open());
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    // The model at the newest recoverable checkpoint, if any.
    let mut checkpointed: Option<BTreeMap<u64, u64>> = None;
    for (step, op) in ops.iter().enumerate() {
        let s = store.as_ref().expect("open store");
        let mut session = s.start_session().expect("session");
        match op {
            Op::Upsert(k, v) => {
                session.upsert(k, v).expect("upsert");
                model.insert(*k, *v);
            }
            Op::Rmw(k, d) => {
                session.rmw(k, d).expect("rmw");
                session.complete_pending().expect("complete");
                *model.entry(*k).or_insert(0) += d;
            }
            Op::Delete(k) => {
                session.delete(k).expect("delete");
                model.remove(k);
            }
            Op::Read(k) => {
                let got = session.read_blocking(k).expect("read");
                prop_assert_eq!(got, model.get(k).copied(), "step {}: read {}", step, k);
            }
            Op::Checkpoint(kind) => {
                drop(session);
                s.checkpoint_and_wait(*kind).expect("checkpoint");
                if *kind != CheckpointKind::IndexOnly {
                    checkpointed = Some(model.clone());
                }
                continue;
            }
            Op::Recover | Op::Reopen => {
                drop(session);
                // The old store goes first: it holds the directory's lock.
                drop(store.take());
                let recover = matches!(op, Op::Recover) && checkpointed.is_some();
                store = Some(if recover {
                    model = checkpointed.clone().unwrap_or_default();
                    builder(dir.path(), page_bits, memory).recover_latest().expect("recover")
                } else {
                    // Opening reopens: the newest checkpoint's state, or an
                    // empty store where none was taken (a drop here is a
                    // crash: the policy is off).
                    model = checkpointed.clone().unwrap_or_default();
                    open()
                });
                continue;
            }
        }
        drop(session);
    }
    // Everything the model holds is in the store, and nothing else.
    let s = store.as_ref().expect("open store");
    let mut session = s.start_session().expect("session");
    for k in 0..64 {
        prop_assert_eq!(
            session.read_blocking(&k).expect("read"),
            model.get(&k).copied(),
            "key {}",
            k
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// 512-byte pages, 2 KiB of memory: nearly everything on disk.
    #[test]
    fn tiny_pages_and_memory(ops in proptest::collection::vec(op(64), 1..120)) {
        run(&ops, 9, 2 << 10)?;
    }

    /// 4 KiB pages, 64 KiB of memory: the working set fits.
    #[test]
    fn working_set_in_memory(ops in proptest::collection::vec(op(64), 1..120)) {
        run(&ops, 12, 64 << 10)?;
    }

    /// Few keys, many updates: hot records updated in place across checkpoints.
    #[test]
    fn hot_keys(ops in proptest::collection::vec(op(4), 1..160)) {
        run(&ops, 10, 8 << 10)?;
    }
}
