//! A store's life as an application sees it: owned sessions that move into
//! threads and tasks, `open` that reopens, durability by default (the
//! checkpoint policy, the final checkpoint of `close` and of a clean drop),
//! directories that are not stores, recovery that falls back past damaged
//! checkpoints, retention that cannot destroy a store, and checkpoints
//! that fail or panic reporting to their waiters.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oxifaster::checkpoint::{self, CheckpointFile, CheckpointIo, CheckpointKind};
use oxifaster::{Error, Store, StoreBuilder};

/// A store that spills to disk: 64 KiB of log memory, 4 KiB pages.
fn small(dir: &Path) -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 10)
}

fn read_all(store: &Store<u64, u64>, keys: impl Iterator<Item = u64>) -> BTreeMap<u64, u64> {
    let mut session = store.start_session().expect("session");
    keys.filter_map(|k| session.read_blocking(&k).expect("read").map(|v| (k, v))).collect()
}

#[test]
fn sessions_move_into_spawned_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small(dir.path()).checkpoint_every(None).open().expect("open");
    const THREADS: u64 = 2;
    const KEYS: u64 = 6_000;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            // Each thread owns its session (and through it the store).
            let mut session = store.start_session().expect("session");
            std::thread::spawn(move || {
                let mut model = BTreeMap::new();
                for round in 0..3u64 {
                    for k in (t..KEYS).step_by(THREADS as usize) {
                        let v = k * 10 + round;
                        session.upsert(&k, &v).expect("upsert");
                        model.insert(k, v);
                    }
                    for k in (t..KEYS).step_by(THREADS as usize * 7) {
                        let got = session.read_blocking(&k).expect("read");
                        assert_eq!(got, model.get(&k).copied(), "thread {t} key {k}");
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
    let regions = store.log_regions();
    assert!(regions.head_address > regions.begin_address, "the store did not spill to disk");
    assert_eq!(read_all(&store, 0..KEYS), model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_move_into_tokio_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small(dir.path()).checkpoint_every(None).open().expect("open");
    const TASKS: u64 = 4;
    const KEYS: u64 = 8_000;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let mut session = store.start_session().expect("session");
            tokio::spawn(async move {
                let mut model = BTreeMap::new();
                for k in (t..KEYS).step_by(TASKS as usize) {
                    session.upsert_async(&k, &(k + 1)).await.expect("upsert");
                    model.insert(k, k + 1);
                }
                for k in (t..KEYS).step_by(TASKS as usize * 3) {
                    session.rmw_async(&k, &5).await.expect("rmw");
                    *model.get_mut(&k).expect("present") += 5;
                }
                for k in (t..KEYS).step_by(TASKS as usize) {
                    let got = session.read_async(&k).await.expect("read");
                    assert_eq!(got, model.get(&k).copied(), "task {t} key {k}");
                }
                model
            })
        })
        .collect();
    let mut model = BTreeMap::new();
    for task in tasks {
        model.extend(task.await.expect("task"));
    }
    let regions = store.log_regions();
    assert!(regions.head_address > regions.begin_address, "the store did not spill to disk");
    assert_eq!(read_all(&store, 0..KEYS), model);
}

#[test]
fn a_store_handle_outlives_nothing_it_needs() {
    // The last handle may be a session: the store stays open for it.
    let store = Store::<u64, u64>::builder().log_memory_size_bytes(1 << 24).open().expect("open");
    let dir = store.dir().expect("a temporary directory").to_path_buf();
    let mut session = store.start_session().expect("session");
    let clone = store.clone();
    drop(store);
    session.upsert(&1, &2).expect("upsert");
    drop(clone);
    assert_eq!(session.read_blocking(&1).expect("read"), Some(2));
    assert!(dir.exists(), "a session keeps the temporary directory");
    drop(session);
    assert!(!dir.exists(), "the temporary directory goes with the last handle");
}

#[test]
fn open_reopens_after_a_checkpoint_a_clean_drop_and_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1. A checkpoint taken by hand.
    {
        let store = small(dir.path()).checkpoint_on_close(false).open().expect("open");
        let mut session = store.start_session().expect("session");
        session.upsert(&1, &10).expect("upsert");
        store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    }
    // 2. A clean drop: its final checkpoint.
    {
        let store = small(dir.path()).open().expect("reopen");
        assert!(store.recovered().is_some(), "open recovered the store");
        let mut session = store.start_session().expect("session");
        assert_eq!(session.read_blocking(&1).expect("read"), Some(10));
        session.upsert(&2, &20).expect("upsert");
    }
    // 3. close(): with a session alive it refuses; then it checkpoints.
    {
        let store = small(dir.path()).open().expect("reopen");
        let mut session = store.start_session().expect("session");
        assert_eq!(session.read_blocking(&2).expect("read"), Some(20), "the drop was durable");
        session.upsert(&3, &30).expect("upsert");
        let store = match store.clone().close() {
            Err(Error::StillInUse { handles }) => {
                assert_eq!(handles, 2, "the original handle and the session");
                store
            }
            other => panic!("close with a live session: {other:?}"),
        };
        drop(session);
        let report = store.close().expect("close");
        assert!(report.checkpoint.is_some(), "a changed store checkpoints on close");
        assert_eq!(report.flushed_until_address, report.tail_address);
    }
    // 4. Nothing changed: close takes no checkpoint; every write is there.
    let store = small(dir.path()).open().expect("reopen");
    assert_eq!(read_all(&store, 0..10), BTreeMap::from([(1, 10), (2, 20), (3, 30)]));
    let before = checkpoint::list(dir.path()).expect("list").len();
    let report = store.close().expect("close");
    assert_eq!(report.checkpoint, None, "reads alone change nothing");
    assert_eq!(checkpoint::list(dir.path()).expect("list").len(), before);
}

#[test]
fn the_policy_makes_writes_durable_in_the_background_and_prunes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small(dir.path())
        .checkpoint_every(Some(Duration::from_millis(20)))
        .keep_checkpoints(2)
        .checkpoint_on_close(false)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut written = 0u64;
    // Write until the policy has taken several checkpoints.
    loop {
        for _ in 0..200 {
            written += 1;
            session.upsert(&written, &(written * 3)).expect("upsert");
        }
        std::thread::sleep(Duration::from_millis(5));
        let recoverable = checkpoint::list(dir.path())
            .expect("list")
            .iter()
            .filter(|c| c.commit_point(session.id()).is_some_and(|p| p.until >= 2_000))
            .count();
        if recoverable >= 1 && written >= 4_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the policy took no checkpoint");
    }
    // Quiet: the policy catches up, then stops checkpointing.
    let settle = Instant::now() + Duration::from_secs(10);
    let until = loop {
        std::thread::sleep(Duration::from_millis(100));
        let newest = checkpoint::list(dir.path()).expect("list");
        let until = newest.last().and_then(|c| c.commit_point(session.id())).map(|p| p.until);
        if until == Some(session.serial()) {
            break until;
        }
        assert!(Instant::now() < settle, "the policy never caught up: {until:?}");
    };
    let listed = checkpoint::list(dir.path()).expect("list");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(checkpoint::list(dir.path()).expect("list"), listed, "an idle store checkpoints");
    // Pruned: the two newest, plus at most the index checkpoint they use.
    let log_checkpoints = listed.iter().filter(|c| c.kind != CheckpointKind::IndexOnly).count();
    assert!(listed.len() <= 3 && log_checkpoints >= 1, "{:#?}", listed);
    drop(session);
    drop(store);
    // A crash now (the policy is the only durability): everything is there.
    let store = small(dir.path()).open().expect("reopen");
    assert_eq!(until, Some(written));
    let mut session = store.start_session().expect("session");
    for k in (1..=written).step_by(97) {
        assert_eq!(session.read_blocking(&k).expect("read"), Some(k * 3), "key {k}");
    }
}

#[test]
fn open_refuses_what_is_not_its_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A FasterLog's directory.
    let log_dir = dir.path().join("log");
    drop(
        oxifaster::log::FasterLog::open(
            oxifaster::log::LogConfig::new(&log_dir).page_size_bits(12),
        )
        .expect("log"),
    );
    assert!(matches!(Store::<u64, u64>::open(&log_dir), Err(Error::NotAStore { .. })));
    // Someone's files.
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("notes.txt"), b"hello").expect("write");
    match Store::<u64, u64>::open(&files) {
        Err(Error::NotAStore { path, why }) => {
            assert_eq!(path, files);
            assert!(why.contains("notes.txt"), "{why}");
        }
        other => panic!("open over files: {other:?}"),
    }
    // A file.
    let file = files.join("notes.txt");
    assert!(matches!(Store::<u64, u64>::open(&file), Err(Error::NotAStore { .. })));
    // A store of other types.
    let store_dir = dir.path().join("store");
    {
        let store = small(&store_dir).open().expect("open");
        let mut session = store.start_session().expect("session");
        session.upsert(&1, &1).expect("upsert");
    }
    match Store::<u64, String>::open(&store_dir) {
        Err(Error::LayoutMismatch { what: "value", .. }) => {}
        other => panic!("open with other types: {other:?}"),
    }
    // Nothing was harmed.
    let store = small(&store_dir).open().expect("reopen");
    assert_eq!(read_all(&store, 0..4), BTreeMap::from([(1, 1)]));
}

/// Flips one bit in the middle of a checkpoint file.
fn damage_file(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).expect("write");
}

/// Three checkpoints with known contents (keys 0..1000 hold `k + round`):
/// the first intact, the second (log-only on the first's index, so its
/// recovery replays round 1's pages) with one of those pages damaged, the
/// third with a damaged index file.
fn three_checkpoints(dir: &Path) -> [checkpoint::CheckpointInfo; 3] {
    let store = small(dir).checkpoint_every(None).checkpoint_on_close(false).open().expect("open");
    let mut session = store.start_session().expect("session");
    let mut infos = Vec::new();
    let kinds = [CheckpointKind::FoldOver, CheckpointKind::LogOnly, CheckpointKind::FoldOver];
    for (round, kind) in kinds.into_iter().enumerate() {
        for k in 0..1_000u64 {
            session.upsert(&k, &(k + round as u64)).expect("upsert");
        }
        infos.push(store.checkpoint_and_wait(kind).expect("checkpoint"));
    }
    drop(session);
    drop(store);
    let [first, second, third]: [checkpoint::CheckpointInfo; 3] = infos.try_into().expect("three");
    // A page of round 1: the second checkpoint replays it, the first not.
    let device =
        oxifaster::device::FileDevice::open(dir, oxifaster::device::DEFAULT_SEGMENT_SIZE_BITS)
            .expect("device");
    let page = 1u64 << 12;
    let inside = (first.final_address.div_ceil(page) * page + 200).min(second.final_address - 8);
    assert!(inside > first.final_address && inside < second.final_address);
    common::flip_bit(&device, inside, 3);
    damage_file(&dir.join("checkpoints").join(third.token.as_str()).join("index"));
    [first, second, third]
}

#[test]
fn recovery_falls_back_past_damaged_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [first, second, third] = three_checkpoints(dir.path());
    let store = small(dir.path()).checkpoint_on_close(false).open().expect("open falls back");
    assert_eq!(store.recovered().expect("recovered").token, first.token);
    let skipped: Vec<String> = store.skipped_checkpoints().into_iter().map(|(t, _)| t).collect();
    assert_eq!(skipped, vec![third.token.to_string(), second.token.to_string()]);
    assert_eq!(read_all(&store, 0..1_000), (0..1_000).map(|k| (k, k)).collect());
}

#[test]
fn retention_keeps_the_newest_intact_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [first, second, third] = three_checkpoints(dir.path());
    let deleted = checkpoint::retain(dir.path(), 1).expect("retain");
    assert!(deleted.is_empty(), "nothing is older than the newest intact one: {deleted:?}");
    let tokens: Vec<_> =
        checkpoint::list(dir.path()).expect("list").into_iter().map(|c| c.token).collect();
    assert_eq!(tokens, vec![first.token.clone(), second.token, third.token]);
    let store = small(dir.path()).checkpoint_on_close(false).recover_latest().expect("recover");
    assert_eq!(store.recovered().expect("recovered").token, first.token);
}

#[test]
fn retention_never_deletes_a_checkpoint_being_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small(dir.path()).checkpoint_every(None).open().expect("open");
    let mut session = store.start_session().expect("session");
    for k in 0..2_000u64 {
        session.upsert(&k, &k).expect("upsert");
    }
    let older = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    session.upsert(&1, &2).expect("upsert");
    // A checkpoint in progress: its directory exists, its metadata not yet.
    let running = dir.path().join("checkpoints").join(format!("{:010}-00000000000000ff", u32::MAX));
    std::fs::create_dir_all(&running).expect("mkdir");
    std::fs::write(running.join("index"), b"partial").expect("write");
    let deleted = checkpoint::retain(dir.path(), 1).expect("retain");
    assert!(deleted.is_empty(), "{deleted:?}");
    assert!(running.exists(), "the newer, incomplete checkpoint survives");
    // And retention runs beside a live store and its policy.
    let newer = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    std::fs::remove_dir_all(&running).expect("rm");
    let deleted = checkpoint::retain(dir.path(), 1).expect("retain");
    assert_eq!(deleted, vec![older.token.to_string()]);
    assert_eq!(checkpoint::list(dir.path()).expect("list")[0].token, newer.token);
}

/// Checkpoint file I/O whose file creation always fails, as a full disk
/// would.
#[derive(Debug)]
struct FullDisk;

impl CheckpointIo for FullDisk {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn create(&self, _: &Path) -> std::io::Result<Box<dyn CheckpointFile>> {
        Err(std::io::Error::from_raw_os_error(libc_enospc()))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

/// ENOSPC on Linux.
fn libc_enospc() -> i32 {
    28
}

#[test]
fn failed_and_panicking_checkpoints_report_to_their_waiters() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A full disk: the waiter gets the I/O error as the source.
    {
        let store = small(dir.path())
            .checkpoint_every(None)
            .checkpoint_on_close(false)
            .checkpoint_io(FullDisk)
            .open()
            .expect("open");
        let mut session = store.start_session().expect("session");
        session.upsert(&1, &1).expect("upsert");
        let token = store.checkpoint(CheckpointKind::FoldOver).expect("start");
        match store.wait_for_checkpoint(&token) {
            Err(Error::CheckpointFailed { source: Some(source), .. }) => {
                let io = std::error::Error::source(&*source)
                    .and_then(|e| e.downcast_ref::<std::io::Error>())
                    .expect("an io::Error");
                assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
            }
            other => panic!("a failed checkpoint: {other:?}"),
        }
    }
    // A persistence callback that panics: every waiter gets an error, and
    // the next checkpoint can start.
    let store = small(dir.path())
        .checkpoint_every(None)
        .checkpoint_on_close(false)
        .on_checkpoint(|_| panic!("the callback broke"))
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    session.upsert(&1, &1).expect("upsert");
    let token = store.checkpoint(CheckpointKind::FoldOver).expect("start");
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            let token = token.clone();
            std::thread::spawn(move || store.wait_for_checkpoint(&token))
        })
        .collect();
    for waiter in waiters {
        match waiter.join().expect("waiter") {
            Err(Error::CheckpointFailed { message, .. }) => {
                assert!(message.contains("the callback broke"), "{message}");
            }
            other => panic!("a panicking checkpoint: {other:?}"),
        }
    }
    let token = store.checkpoint(CheckpointKind::FoldOver).expect("the next one starts");
    assert!(store.wait_for_checkpoint(&token).is_err());
}

#[test]
fn max_sessions_counts_user_sessions_and_leaves_checkpoints_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small(dir.path()).max_sessions(1).checkpoint_every(None).open().expect("open");
    let mut session = store.start_session().expect("session");
    match store.start_session() {
        Err(Error::TooManySessions { max }) => assert_eq!(max, 1),
        other => panic!("a second session with max_sessions(1): {other:?}"),
    }
    session.upsert(&1, &1).expect("upsert");
    store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    drop(session);
    let mut again = store.start_session().expect("a dropped session frees its place");
    assert_eq!(again.read_blocking(&1).expect("read"), Some(1));
}

/// Bytes a directory tree takes on disk (allocated blocks, not lengths).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(path).expect("ls").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() { disk_usage(&entry.path()) } else { meta.blocks() * 512 };
    }
    total
}

#[test]
fn a_small_store_stays_small_on_disk() {
    // Default settings: a 2^20-bucket table (64 MiB in memory), whose
    // checkpoint file is written sparse: its empty buckets take no disk.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::<u64, u64>::open(dir.path()).expect("open");
    let mut session = store.start_session().expect("session");
    session.upsert(&1, &1).expect("upsert");
    for _ in 0..3 {
        store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    }
    drop(session);
    drop(store);
    let used = disk_usage(dir.path());
    eprintln!("a 1-key store after three checkpoints: {used} bytes on disk");
    assert!(used < 256 << 10, "{used} bytes on disk for one key");
    let store = Store::<u64, u64>::open(dir.path()).expect("reopen");
    let mut session = store.start_session().expect("session");
    assert_eq!(session.read_blocking(&1).expect("read"), Some(1));
}

#[test]
fn a_missing_directory_and_an_oversized_value_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    match Store::<u64, u64>::recover_latest(&missing) {
        Err(Error::NotAStore { path, why }) => {
            assert_eq!(path, missing);
            assert!(why.contains("does not exist"), "{why}");
        }
        other => panic!("recovering a missing directory: {:?}", other.map(|_| ())),
    }
    assert!(!missing.exists(), "recovery created nothing");
    let store = Store::<u64, Vec<u8>>::builder()
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    let err = session.upsert(&1, &vec![7u8; 8192]).expect_err("larger than a page");
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("page_size_bits"), "the message names the setting: {err}");
    session.upsert(&1, &vec![7u8; 1024]).expect("a value that fits");
}
