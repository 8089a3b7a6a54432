//! Durable by default, across a real crash: a child process writes with
//! nothing but the store's automatic checkpoint policy for durability, and
//! records (from the persistence callback) each commit point the policy
//! made durable; it is SIGKILLed mid-write. `Store::open` on its directory
//! must give back every write up to the last acknowledged commit point.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oxifaster::Store;
use oxifaster_cli::kill9::run_and_kill;
use oxifaster_cli::workload::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn value(k: u64) -> u64 {
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// The persistence callback of a child: appends (durably) to `dir/acked`
/// the commit point each checkpoint made durable for session `id`.
fn acknowledger(
    dir: &Path,
    id: Arc<AtomicU64>,
) -> impl Fn(&oxifaster::checkpoint::CheckpointInfo) + Send + Sync + 'static {
    let acked = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("acked"))
            .expect("acked file"),
    );
    move |info| {
        if let Some(point) = info.commit_point(id.load(Ordering::Acquire)) {
            let mut file = acked.lock().expect("acked");
            writeln!(file, "{}", point.until).expect("ack");
            file.sync_data().expect("sync ack");
        }
    }
}

/// The last commit point a killed child acknowledged, if any.
fn last_acknowledged(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("acked"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse::<u64>().ok())
        .max()
}

/// The child: upserts keys 1, 2, 3, … (key = serial number) until killed;
/// the policy checkpoints every 20 ms and the callback acknowledges.
#[test]
#[ignore = "run by policy_kill9_cycles in a child process"]
fn policy_kill9_child() {
    let Ok(dir) = std::env::var("OXIFASTER_POLICY_DIR") else { return };
    let dir = Path::new(&dir);
    let id = Arc::new(AtomicU64::new(u64::MAX));
    let acknowledge = acknowledger(dir, id.clone());
    let store = Store::<u64, u64>::builder()
        .dir(dir.join("store"))
        .page_size_bits(14)
        .log_memory_size_bytes(1 << 20)
        .table_size(1 << 12)
        .checkpoint_every(Some(Duration::from_millis(20)))
        .on_checkpoint(acknowledge)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    id.store(session.id(), Ordering::Release);
    loop {
        let k = session.serial() + 1;
        session.upsert(&k, &value(k)).expect("upsert");
    }
}

#[test]
fn policy_kill9_cycles() {
    let cycles = env("OXIFASTER_POLICY_KILL9_CYCLES", 8);
    let seed = env("OXIFASTER_POLICY_KILL9_SEED", 0x90_1c);
    eprintln!("OXIFASTER_POLICY_KILL9_SEED={seed} OXIFASTER_POLICY_KILL9_CYCLES={cycles}");
    let mut rng = Rng::new(seed);
    let mut verified = 0;
    for cycle in 0..cycles {
        let dir = tempfile::tempdir().expect("tempdir");
        run_and_kill(
            "policy_kill9_child",
            &[("OXIFASTER_POLICY_DIR", dir.path().as_os_str())],
            Duration::from_millis(150 + rng.below(350)),
        );
        let acked = last_acknowledged(dir.path());
        let Some(acked) = acked else {
            eprintln!("cycle {cycle}: killed before the first checkpoint");
            continue;
        };
        let store = Store::<u64, u64>::builder()
            .dir(dir.path().join("store"))
            .page_size_bits(14)
            .log_memory_size_bytes(1 << 20)
            .table_size(1 << 12)
            .open()
            .expect("reopen");
        let info = store.recovered().expect("open recovered the store");
        let until = info.sessions.first().map_or(0, |(_, p)| p.until);
        assert!(until >= acked, "cycle {cycle}: recovered {until}, acknowledged {acked}");
        let mut session = store.start_session().expect("session");
        for k in 1..=until {
            assert_eq!(
                session.read_blocking(&k).expect("read"),
                Some(value(k)),
                "cycle {cycle}: key {k}"
            );
        }
        assert_eq!(
            session.read_blocking(&(until + 1)).expect("read"),
            None,
            "past the commit point"
        );
        eprintln!("cycle {cycle}: acknowledged {acked}, recovered {until}: all there");
        verified += 1;
    }
    assert!(verified >= cycles / 2, "only {verified} of {cycles} cycles reached a checkpoint");
}

/// The keys the budget child overwrites.
const BUDGET_KEYS: u64 = 2_000;

fn budget_value(serial: u64) -> String {
    // Each pass over the keys writes another length, so every update
    // appends: the log keeps growing and the disk budget keeps compacting.
    format!("{serial}:{}", "v".repeat(((serial / BUDGET_KEYS) % 5) as usize))
}

fn budget_store(dir: &Path) -> oxifaster::StoreBuilder<u64, String> {
    Store::<u64, String>::builder()
        .dir(dir.join("store"))
        .page_size_bits(14)
        .log_memory_size_bytes(1 << 20)
        .table_size(1 << 12)
        .segment_size_bits(16)
        .disk_budget(Some(8 << 20))
}

/// The child of the budget cycles: overwrites 2,000 keys (serial `s`
/// writes key `s % 2000`) with the checkpoint policy every 20 ms and a
/// disk budget of 8 MiB, until killed.
#[test]
#[ignore = "run by budget_kill9_cycles in a child process"]
fn budget_kill9_child() {
    let Ok(dir) = std::env::var("OXIFASTER_BUDGET_DIR") else { return };
    let dir = Path::new(&dir);
    let id = Arc::new(AtomicU64::new(u64::MAX));
    let acknowledge = acknowledger(dir, id.clone());
    let store = budget_store(dir)
        .checkpoint_every(Some(Duration::from_millis(20)))
        .on_checkpoint(acknowledge)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    id.store(session.id(), Ordering::Release);
    loop {
        let serial = session.serial() + 1;
        session.upsert(&(serial % BUDGET_KEYS), budget_value(serial).as_str()).expect("upsert");
    }
}

/// Kill -9 with the disk budget on (compaction, its checkpoints, pruning
/// and segment deletion running when the kill comes): reopening gives
/// every key the value of its last write up to a commit point at or past
/// the last acknowledged one.
#[test]
fn budget_kill9_cycles() {
    let cycles = env("OXIFASTER_BUDGET_KILL9_CYCLES", 6);
    let seed = env("OXIFASTER_BUDGET_KILL9_SEED", 0xb0d9);
    eprintln!("OXIFASTER_BUDGET_KILL9_SEED={seed} OXIFASTER_BUDGET_KILL9_CYCLES={cycles}");
    let mut rng = Rng::new(seed);
    let mut verified = 0;
    for cycle in 0..cycles {
        let dir = tempfile::tempdir().expect("tempdir");
        run_and_kill(
            "budget_kill9_child",
            &[("OXIFASTER_BUDGET_DIR", dir.path().as_os_str())],
            Duration::from_millis(400 + rng.below(600)),
        );
        let acked = last_acknowledged(dir.path());
        let Some(acked) = acked else {
            eprintln!("cycle {cycle}: killed before the first checkpoint");
            continue;
        };
        // The budget was at work when the kill came: the child wrote far
        // more than the budget (about 30 bytes a serial). The directory
        // stays near it (a kill in a round leaves its checkpoints and
        // the ones they were to replace side by side).
        let size = oxifaster::compaction::directory_bytes(&dir.path().join("store"));
        assert!(size <= 2 * (8 << 20), "cycle {cycle}: {size} bytes after {acked} writes");
        let store = budget_store(dir.path()).open().expect("reopen");
        let info = store.recovered().expect("open recovered the store");
        let until = info.sessions.first().map_or(0, |(_, p)| p.until);
        assert!(until >= acked, "cycle {cycle}: recovered {until}, acknowledged {acked}");
        let mut session = store.start_session().expect("session");
        for key in 0..BUDGET_KEYS {
            // The last serial at or below `until` that wrote `key`.
            let last = until - (until + BUDGET_KEYS - key) % BUDGET_KEYS;
            let expected = (last >= 1 && last <= until).then(|| budget_value(last));
            assert_eq!(
                session.read_blocking(&key).expect("read"),
                expected,
                "cycle {cycle}: key {key} (recovered up to {until})"
            );
        }
        eprintln!(
            "cycle {cycle}: acknowledged {acked}, recovered {until}, {size} bytes: all there"
        );
        verified += 1;
    }
    assert!(verified >= cycles / 2, "only {verified} of {cycles} cycles reached a checkpoint");
}
