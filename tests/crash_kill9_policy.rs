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

/// The child: upserts keys 1, 2, 3, … (key = serial number) until killed;
/// the policy checkpoints every 20 ms and the callback acknowledges.
#[test]
#[ignore = "run by policy_kill9_cycles in a child process"]
fn policy_kill9_child() {
    let Ok(dir) = std::env::var("OXIFASTER_POLICY_DIR") else { return };
    let dir = Path::new(&dir);
    let id = Arc::new(AtomicU64::new(u64::MAX));
    let acked = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("acked"))
            .expect("acked file"),
    );
    let callback_id = id.clone();
    let store = Store::<u64, u64>::builder()
        .dir(dir.join("store"))
        .page_size_bits(14)
        .log_memory_size_bytes(1 << 20)
        .table_size(1 << 12)
        .checkpoint_every(Some(Duration::from_millis(20)))
        .on_checkpoint(move |info| {
            if let Some(point) = info.commit_point(callback_id.load(Ordering::Acquire)) {
                let mut file = acked.lock().expect("acked");
                writeln!(file, "{}", point.until).expect("ack");
                file.sync_data().expect("sync ack");
            }
        })
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
        let acked = std::fs::read_to_string(dir.path().join("acked"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse::<u64>().ok())
            .max();
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
