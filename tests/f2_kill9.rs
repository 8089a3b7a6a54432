//! An F2 store across real crashes: a child process writes keys 1, 2, 3, …
//! while background migrations move the hot log's older half to the cold
//! tier and cold compactions rewrite the cold log, checkpoints both tiers
//! every 2,000 writes and records (durably) each commit point a checkpoint
//! returned; it is SIGKILLed mid-write. Reopening must give back every key
//! up to the recovered commit point (at or past the last acknowledged
//! one), wherever it lives, and nothing after it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use oxifaster::f2::{F2Builder, F2Store};
use oxifaster_cli::kill9::run_and_kill;
use oxifaster_cli::workload::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn value(k: u64) -> u64 {
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// Tiny tiers: the hot log migrates past 256 KiB, the cold log compacts
/// past 2 MiB; checkpoints only when the child asks.
fn builder(dir: &Path) -> F2Builder {
    F2Store::<u64, u64>::builder()
        .dir(dir.join("store"))
        .page_size_bits(14)
        .segment_size_bits(18)
        .hot_log_memory_bytes(256 << 10)
        .hot_log_size_bytes(Some(256 << 10))
        .hot_table_size(1 << 10)
        .cold_index_chunks(256)
        .cold_index_memory_bytes(256 << 10)
        .cold_log_size_bytes(Some(2 << 20))
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

#[test]
#[ignore = "run by f2_kill9_cycles in a child process"]
fn f2_kill9_child() {
    let Ok(dir) = std::env::var("OXIFASTER_F2_KILL9_DIR") else { return };
    let dir = Path::new(&dir);
    let store: F2Store<u64, u64> = builder(dir).open().expect("open");
    let mut acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acked"))
        .expect("acked");
    let mut session = store.start_session().expect("session");
    loop {
        for _ in 0..2_000 {
            let k = session.serial() + 1;
            session.upsert(&k, &value(k)).expect("upsert");
        }
        let checkpoint = store.checkpoint().expect("checkpoint");
        if let Some(point) = checkpoint.hot.commit_point(session.id()) {
            writeln!(acked, "{}", point.until).expect("ack");
            acked.sync_data().expect("sync ack");
        }
    }
}

#[test]
fn f2_kill9_cycles() {
    let cycles = env("OXIFASTER_F2_KILL9_CYCLES", 6);
    let seed = env("OXIFASTER_F2_KILL9_SEED", 0xf2);
    eprintln!("OXIFASTER_F2_KILL9_SEED={seed} OXIFASTER_F2_KILL9_CYCLES={cycles}");
    let mut rng = Rng::new(seed);
    let mut verified = 0;
    for cycle in 0..cycles {
        let dir = tempfile::tempdir().expect("tempdir");
        run_and_kill(
            "f2_kill9_child",
            &[("OXIFASTER_F2_KILL9_DIR", dir.path().as_os_str())],
            Duration::from_millis(300 + rng.below(700)),
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
        let store: F2Store<u64, u64> = builder(dir.path()).open().expect("reopen");
        let info = store.recovered().expect("reopened from a checkpoint");
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
        let (begin, tail) = store.cold_log_range();
        eprintln!(
            "cycle {cycle}: acknowledged {acked}, recovered {until}, cold log {} KiB: all there",
            (tail - begin) >> 10
        );
        verified += 1;
    }
    assert!(verified >= cycles / 2, "only {verified} of {cycles} cycles reached a checkpoint");
}
