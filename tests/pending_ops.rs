//! Pending operations and sessions: nothing lost, leaked or applied twice.
//! Cancelled async operations leave no trace; `complete_pending` reports
//! every operation exactly once even when some of its reads fail; the
//! parked set has a bound; a retried read leaves nothing parked; dropped
//! sessions are forgotten; and the ordering of a pending RMW against a
//! later write of its key is pinned.

use std::collections::BTreeMap;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Waker};

use oxifaster::checkpoint::CheckpointKind;
use oxifaster::device::{Device, MemoryDevice};
use oxifaster::store::{CompletedOp, ReadStatus, RmwStatus};
use oxifaster::{Error, Store, StoreBuilder};

/// A memory device that, while `flaky` is on, fails every other read.
#[derive(Default, Clone)]
struct EveryOtherRead {
    inner: Arc<MemoryDevice>,
    flaky: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
}

impl Device for EveryOtherRead {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        if self.flaky.load(Ordering::SeqCst) && n % 2 == 1 {
            return Err(io::Error::other("injected read failure"));
        }
        self.inner.read_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn truncate_before(&self, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn end_offset(&self) -> io::Result<u64> {
        Ok(0)
    }
}

fn small() -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder().table_size(256).page_size_bits(10).log_memory_size_bytes(4 << 10)
}

/// Loads `keys` keys (value `k * 3`); most end up on the device.
fn loaded<D: Device>(store: &Store<u64, u64, D>, keys: u64) {
    let mut session = store.start_session().expect("session");
    for k in 0..keys {
        session.upsert(&k, &(k * 3)).expect("upsert");
    }
}

#[test]
fn completions_are_reported_once_even_when_reads_fail() {
    let device = EveryOtherRead::default();
    let store = small().open_with_device(device.clone()).expect("store");
    loaded(&store, 4_000);
    let mut session = store.start_session().expect("session");
    // Ten pending reads and ten pending RMWs.
    let mut reads = BTreeMap::new();
    let mut rmws = BTreeMap::new();
    for k in 0..200u64 {
        if reads.len() < 10 {
            if let ReadStatus::Pending { serial } = session.read(&k).expect("read") {
                reads.insert(serial, k);
            }
        } else if rmws.len() < 10
            && let RmwStatus::Pending { serial } = session.rmw(&k, &1).expect("rmw")
        {
            rmws.insert(serial, k);
        }
    }
    assert_eq!((reads.len(), rmws.len()), (10, 10), "not enough went pending");
    device.flaky.store(true, Ordering::SeqCst);
    let done = session.complete_pending().expect("complete");
    device.flaky.store(false, Ordering::SeqCst);
    // Every serial exactly once.
    let mut seen: Vec<u64> = done.iter().map(|c| c.serial).collect();
    seen.sort_unstable();
    let mut expected: Vec<u64> = reads.keys().chain(rmws.keys()).copied().collect();
    expected.sort_unstable();
    assert_eq!(seen, expected);
    assert_eq!(session.pending_count(), 0);
    assert!(session.complete_pending().expect("again").is_empty(), "nothing is reported twice");
    let failed = done.iter().filter(|c| matches!(c.op, CompletedOp::Failed(_))).count();
    assert!(failed > 0 && failed < done.len(), "{failed} of {} failed", done.len());
    // Every RMW applied exactly as reported.
    for c in &done {
        if let Some(&k) = rmws.get(&c.serial) {
            let value = session.read_blocking(&k).expect("read").expect("present");
            match c.op {
                CompletedOp::Rmw => assert_eq!(value, k * 3 + 1, "key {k}: reported applied"),
                CompletedOp::Failed(_) => assert_eq!(value, k * 3, "key {k}: reported failed"),
                ref other => panic!("an RMW completed as {other:?}"),
            }
        }
        if let (Some(&k), CompletedOp::Read(value)) = (reads.get(&c.serial), &c.op) {
            assert_eq!(*value, Some(k * 3));
        }
    }
    // Failed RMWs are not excluded from later checkpoints for ever.
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_async_operations_leave_no_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small().dir(dir.path()).checkpoint_every(None).open().expect("store");
    loaded(&store, 4_000);
    let mut session = store.start_session().expect("session");
    let mut cx = Context::from_waker(Waker::noop());
    let mut cancelled = 0;
    for k in 0..1_000u64 {
        // Poll once (the read of the old value starts), then drop.
        {
            let mut rmw = pin!(session.rmw_async(&k, &1));
            if rmw.as_mut().poll(&mut cx).is_pending() {
                cancelled += 1;
            }
        }
        {
            let mut read = pin!(session.read_async(&k));
            let _ = read.as_mut().poll(&mut cx);
        }
    }
    assert!(cancelled > 500, "only {cancelled} RMWs were cancelled mid-flight");
    assert_eq!(session.pending_count(), 0, "nothing stays parked");
    let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    let point = info.commit_point(session.id()).expect("the session is listed");
    assert!(point.excluded.is_empty(), "{} operations excluded", point.excluded.len());
    // Each cancelled RMW was applied zero or one times; the store works on.
    for k in 0..1_000u64 {
        let value = session.read_async(&k).await.expect("read").expect("present");
        assert!(value == k * 3 || value == k * 3 + 1, "key {k}: {value}");
        session.rmw_async(&k, &10).await.expect("rmw");
        assert_eq!(session.read_async(&k).await.expect("read"), Some(value + 10));
    }
    let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    assert!(info.commit_point(session.id()).expect("listed").excluded.is_empty());
}

#[test]
fn the_parked_set_is_bounded_and_a_retried_read_leaves_nothing() {
    let store = small().open_with_device(MemoryDevice::new()).expect("store");
    loaded(&store, 4_000);
    let mut session = store.start_session().expect("session");
    // The caller that retries a pending read with read_blocking.
    let mut retried = 0;
    for round in 0..10_000u64 {
        let k = round % 100;
        if let ReadStatus::Pending { .. } = session.read(&k).expect("read") {
            assert_eq!(session.read_blocking(&k).expect("read"), Some(k * 3));
            retried += 1;
        }
        assert!(session.pending_count() == 0, "round {round}: a read stayed parked");
    }
    // Their results are still reported, once (and count against the
    // bound until then).
    let done = session.complete_pending().expect("complete");
    assert_eq!(done.len(), retried);
    assert!(done.iter().all(|c| matches!(c.op, CompletedOp::Read(Some(v)) if v % 3 == 0)));
    assert!(session.complete_pending().expect("again").is_empty());
    // The bound: the ninth parked operation is refused by name.
    let store = small().max_pending(8).open_with_device(MemoryDevice::new()).expect("store");
    loaded(&store, 4_000);
    let mut session = store.start_session().expect("session");
    let mut parked = 0;
    let mut refused = None;
    let mut on_device = None;
    for k in 0..4_000u64 {
        match session.read(&k) {
            Ok(ReadStatus::Pending { .. }) => {
                parked += 1;
                on_device.get_or_insert(k);
            }
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(parked, 8);
    assert!(matches!(refused, Some(Error::TooManyPending { limit: 8 })), "{refused:?}");
    assert_eq!(session.complete_pending().expect("complete").len(), 8);
    let k = on_device.expect("a key on the device");
    assert!(matches!(session.read(&k), Ok(ReadStatus::Pending { .. })), "room again");
}

#[test]
fn sessions_opened_and_dropped_for_ever_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small().dir(dir.path()).checkpoint_every(None).open().expect("store");
    let live = store.start_session().expect("session");
    let rss = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        status.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0) * 4096
    };
    let cycles = std::env::var("OXIFASTER_SESSION_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000u64);
    let mut session = store.start_session().expect("session");
    session.upsert(&1, &1).expect("upsert");
    drop(session);
    let before = rss();
    for i in 0..cycles {
        let mut session = store.start_session().expect("session");
        if i % 1_000 == 0 {
            session.upsert(&i, &i).expect("upsert");
        }
    }
    let grown = rss().saturating_sub(before);
    eprintln!("{cycles} session cycles: RSS grew by {grown} bytes");
    assert!(grown < 16 << 20, "{cycles} start/drop cycles grew RSS by {grown} bytes");
    let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    let listed: Vec<u64> = info.sessions.iter().map(|(id, _)| *id).collect();
    assert_eq!(listed, vec![live.id()], "only the live session is listed");
}

#[test]
fn a_pending_rmw_applies_after_a_later_delete_of_its_key() {
    // The documented ordering rule: a pending RMW is applied when it
    // completes, after what the session did to the key in between.
    let store = small().open_with_device(MemoryDevice::new()).expect("store");
    loaded(&store, 4_000);
    let mut session = store.start_session().expect("session");
    let key = (0..4_000u64)
        .find(|k| matches!(session.read(k), Ok(ReadStatus::Pending { .. })))
        .expect("a key on the device");
    session.complete_pending().expect("complete");
    let RmwStatus::Pending { serial } = session.rmw(&key, &6).expect("rmw") else {
        panic!("the RMW should go pending");
    };
    session.delete(&key).expect("delete");
    let done = session.complete_pending().expect("complete");
    assert!(done.iter().any(|c| c.serial == serial && c.op == CompletedOp::Rmw));
    assert_eq!(session.read_blocking(&key).expect("read"), Some(6), "the RMW's initial value");
}

/// A model of one session against a `BTreeMap`, with the steps that go
/// wrong in a server: async RMWs and reads cancelled after one poll, and
/// a device whose reads fail at times. A cancelled RMW (dropped at its
/// first await, before it could publish) is applied zero times; a pending
/// RMW reported `Failed` is not applied; everything else is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_cancellations_and_device_errors() {
    use oxifaster_cli::workload::Rng;
    let seed: u64 =
        std::env::var("OXIFASTER_PENDING_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let steps: u64 = std::env::var("OXIFASTER_PENDING_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    eprintln!("OXIFASTER_PENDING_SEED={seed} OXIFASTER_PENDING_STEPS={steps}");
    let device = EveryOtherRead::default();
    let store = small().max_pending(64).open_with_device(device.clone()).expect("store");
    let mut session = store.start_session().expect("session");
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    // Pending RMWs by serial: (key, increment).
    let mut parked: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    // Pending reads by serial: (key, the value when the read was issued,
    // unless an RMW of the key was pending then). A parked read returns
    // the record it was parked on: the value at its issue.
    let mut parked_reads: BTreeMap<u64, (u64, Option<Option<u64>>)> = BTreeMap::new();
    let mut rng = Rng::new(seed);
    let mut cx = Context::from_waker(Waker::noop());
    const KEYS: u64 = 3_000;
    let (mut cancelled, mut failed) = (0u64, 0u64);
    let apply = |model: &mut BTreeMap<u64, u64>, k: u64, d: u64| {
        *model.entry(k).or_insert(0) += d;
    };
    for step in 0..steps {
        let k = rng.below(KEYS);
        match rng.below(100) {
            0..=29 => {
                let v = rng.next_u64() >> 8;
                session.upsert(&k, &v).expect("upsert");
                // An upsert after a pending RMW of the key: the RMW applies
                // when it completes (the documented order), so complete
                // first to keep the model exact.
                model.insert(k, v);
            }
            30..=49 => {
                if parked.values().any(|(pk, _)| *pk == k) {
                    continue;
                }
                let d = 1 + rng.below(9);
                match session.rmw(&k, &d) {
                    Ok(RmwStatus::Done) => apply(&mut model, k, d),
                    Ok(RmwStatus::Pending { serial }) => {
                        parked.insert(serial, (k, d));
                    }
                    Ok(other) => panic!("step {step}: rmw: {other:?}"),
                    Err(Error::TooManyPending { .. }) => {}
                    Err(e) => panic!("step {step}: rmw: {e}"),
                }
            }
            50..=64 => match session.read(&k) {
                Ok(ReadStatus::Found(v)) => {
                    let pending_rmw = parked.values().any(|(pk, _)| *pk == k);
                    if !pending_rmw {
                        assert_eq!(Some(v), model.get(&k).copied(), "step {step}: read {k}");
                    }
                }
                Ok(ReadStatus::NotFound) => {
                    if !parked.values().any(|(pk, _)| *pk == k) {
                        assert_eq!(model.get(&k), None, "step {step}: read {k}");
                    }
                }
                Ok(ReadStatus::Pending { serial }) => {
                    let known = !parked.values().any(|(pk, _)| *pk == k);
                    parked_reads.insert(serial, (k, known.then(|| model.get(&k).copied())));
                }
                Ok(other) => panic!("step {step}: read: {other:?}"),
                Err(Error::TooManyPending { .. }) => {}
                Err(e) => panic!("step {step}: read: {e}"),
            },
            65..=72 if !parked.values().any(|(pk, _)| *pk == k) => {
                // An async RMW cancelled after one poll.
                let d = 1 + rng.below(9);
                let mut rmw = pin!(session.rmw_async(&k, &d));
                match rmw.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(Ok(())) => apply(&mut model, k, d),
                    // Its read of the old value failed: not applied.
                    std::task::Poll::Ready(Err(Error::Io { .. })) => failed += 1,
                    std::task::Poll::Ready(Err(e)) => panic!("step {step}: rmw_async: {e}"),
                    std::task::Poll::Pending => cancelled += 1,
                }
            }
            73..=76 => {
                let mut read = pin!(session.read_async(&k));
                let _ = read.as_mut().poll(&mut cx);
            }
            77..=79 => {
                device.flaky.store(rng.below(2) == 0, Ordering::SeqCst);
            }
            _ => {
                for done in session.complete_pending().expect("complete") {
                    match (parked.remove(&done.serial), done.op) {
                        (Some((k, d)), CompletedOp::Rmw) => apply(&mut model, k, d),
                        (Some(_), CompletedOp::Failed(_)) => failed += 1,
                        (None, CompletedOp::Read(v)) => {
                            let (k, expected) =
                                parked_reads.remove(&done.serial).expect("a parked read");
                            if let Some(expected) = expected {
                                assert_eq!(v, expected, "step {step}: read {k}");
                            }
                        }
                        (None, CompletedOp::Failed(_)) => {
                            parked_reads.remove(&done.serial).expect("a parked read");
                        }
                        (parked_rmw, op) => {
                            panic!("step {step}: serial {} as {op:?} ({parked_rmw:?})", done.serial)
                        }
                    }
                }
                assert!(parked.is_empty() && parked_reads.is_empty(), "step {step}: unreported");
            }
        }
    }
    device.flaky.store(false, Ordering::SeqCst);
    for done in session.complete_pending().expect("complete") {
        if let (Some((k, d)), CompletedOp::Rmw) = (parked.remove(&done.serial), done.op) {
            apply(&mut model, k, d);
        }
    }
    for k in 0..KEYS {
        assert_eq!(session.read_blocking(&k).expect("read"), model.get(&k).copied(), "key {k}");
    }
    eprintln!("{steps} steps: {cancelled} cancelled async RMWs, {failed} failed pending RMWs");
    assert!(cancelled > 0 && failed > 0, "the model never cancelled or failed anything");
}
