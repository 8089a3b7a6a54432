//! The async API on tokio: futures are `Send` (they run on a multi-threaded
//! runtime via `tokio::spawn`), sessions move into spawned tasks (they own
//! a handle to the store), reads and RMWs of records on disk await the
//! device on the blocking pool, and concurrent async RMWs lose no update.

mod common;

use oxifaster::Store;
use oxifaster::device::FileDevice;

fn assert_send<F: std::future::Future + Send>(future: F) -> F {
    future
}

fn small_store(dir: &std::path::Path) -> Store<u64, u64, FileDevice> {
    let device = FileDevice::open(dir, 20).expect("device");
    Store::<u64, u64>::builder()
        .table_size(1 << 10)
        .page_size_bits(12)
        .log_memory_size_bytes(32 << 10)
        .open_with_device(device)
        .expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_operations_read_back_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let mut session = store.start_session().expect("session");
    for k in 0..20_000u64 {
        assert_send(session.upsert_async(&k, &(k + 1))).await.expect("upsert");
    }
    assert!(
        store.log_regions().head_address > store.log_regions().begin_address,
        "nothing on disk"
    );
    for k in (0..20_000u64).step_by(7) {
        let value = assert_send(session.read_async(&k)).await.expect("read");
        assert_eq!(value, Some(k + 1), "key {k}");
    }
    assert_eq!(session.read_async(&99_999).await.expect("read"), None);
    assert_send(session.rmw_async(&3, &10)).await.expect("rmw");
    assert_eq!(session.read_async(&3).await.expect("read"), Some(14));
    assert_send(session.delete_async(&3)).await.expect("delete");
    assert_eq!(session.read_async(&3).await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_async_rmws_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    const TASKS: u64 = 4;
    const INCREMENTS: u64 = 5_000;
    const KEYS: u64 = 3_000;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            // The session moves into the task: no borrow of the store.
            let mut session = store.start_session().expect("session");
            tokio::spawn(async move {
                for i in 0..INCREMENTS {
                    let key = (i * 7 + t * 13) % KEYS;
                    session.rmw_async(&key, &1).await.expect("rmw");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let mut session = store.start_session().expect("session");
    let mut total = 0;
    for key in 0..KEYS {
        total += session.read_async(&key).await.expect("read").unwrap_or(0);
    }
    assert_eq!(total, TASKS * INCREMENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_awaited_while_async_sessions_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Store<u64, u64> = Store::<u64, u64>::builder()
        .dir(dir.path())
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .checkpoint_every(None)
        .open()
        .expect("store");
    let mut session = store.start_session().expect("session");
    let writer = tokio::spawn(async move {
        for k in 0..20_000u64 {
            session.rmw_async(&(k % 500), &1).await.expect("rmw");
        }
        // The session stays open until the checkpoint is done: a writer
        // that finishes first is then still one of its sessions (with every
        // increment in its commit point), not one that left before it.
        session
    });
    let info = assert_send(store.checkpoint_async(oxifaster::checkpoint::CheckpointKind::Snapshot))
        .await
        .expect("checkpoint");
    let session = writer.await.expect("writer");
    let id = session.id();
    drop(session);
    // The checkpoint holds a prefix of the writer's increments: the counters
    // sum to exactly its commit point (no RMW was excluded: none was parked
    // when the version changed, or it is listed).
    let point = info.commit_point(id).cloned().unwrap_or_default();
    // The store keeps its directory locked while open: recover a copy.
    let copy = tempfile::tempdir().expect("tempdir");
    common::copy_dir(dir.path(), copy.path());
    let recovered: Store<u64, u64> =
        Store::recover(copy.path(), info.token.as_str()).expect("recover");
    let mut session = recovered.start_session().expect("session");
    let mut sum = 0;
    for k in 0..500u64 {
        sum += session.read_blocking(&k).expect("read").unwrap_or(0);
    }
    assert_eq!(sum, point.until - point.excluded.len() as u64);
}

/// The async conditional operations await the device for a value there,
/// and race correctly: compare-and-swap counters from tasks on two
/// threads, every increment exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_conditional_operations() {
    use oxifaster::store::{Decision, Outcome};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let mut session = store.start_session().expect("session");
    for k in 0..20_000u64 {
        session.upsert(&k, &(k + 1)).expect("upsert");
    }
    // Key 5 is on the device: each operation awaits it.
    let cas = assert_send(session.compare_and_swap_async(&5, &6, &60)).await.expect("cas");
    assert_eq!(cas, Outcome::Set);
    assert_eq!(session.compare_and_swap_async(&7, &0, &1).await.expect("cas"), Outcome::Aborted);
    let insert = assert_send(session.insert_if_absent_async(&9, &0)).await.expect("insert");
    assert_eq!(insert, Outcome::Aborted);
    assert_eq!(session.insert_if_absent_async(&99_999, &1).await.expect("insert"), Outcome::Set);
    let delete = assert_send(session.delete_if_async(&11, |v| *v == 12)).await.expect("delete_if");
    assert_eq!(delete, Outcome::Deleted);
    let keep = |old: Option<&u64>| match old {
        Some(v) if *v > 100 => Decision::Keep,
        Some(v) => Decision::Set(v + 1000),
        None => Decision::Abort,
    };
    assert_eq!(assert_send(session.update_async(&13, keep)).await.expect("update"), Outcome::Set);
    assert_eq!(session.update_async(&13, keep).await.expect("update"), Outcome::Kept);
    for (key, want) in [(5, Some(60)), (7, Some(8)), (9, Some(10)), (11, None), (13, Some(1014))] {
        assert_eq!(session.read_async(&key).await.expect("read"), want, "key {key}");
    }
    drop(session);

    const TASKS: u64 = 4;
    const INCREMENTS: u64 = 2_000;
    const KEYS: u64 = 3_000;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let mut session = store.start_session().expect("session");
            tokio::spawn(async move {
                for i in 0..INCREMENTS {
                    let key = (i * 7 + t * 13) % KEYS;
                    loop {
                        let done = match session.read_async(&key).await.expect("read") {
                            Some(old) => {
                                session.compare_and_swap_async(&key, &old, &(old + 1)).await
                            }
                            None => session.insert_if_absent_async(&key, &1).await,
                        };
                        if done.expect("cas") == Outcome::Set {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let mut session = store.start_session().expect("session");
    let mut total = 0;
    for key in 0..KEYS {
        total += session.read_async(&key).await.expect("read").unwrap_or(0);
    }
    // Each key started at key + 1 (keys below KEYS), 11 deleted, 5 and 13
    // changed above.
    let started: u64 = (0..KEYS).map(|k| k + 1).sum::<u64>() - 12 + (60 - 6) + (1014 - 14);
    assert_eq!(total, started + TASKS * INCREMENTS);
}
