//! FasterLog durability: kill -9 of a writer process, power loss at every
//! device operation (three crash modes), I/O errors at every operation,
//! and bit flips in entries and commit records.
//!
//! Knobs: `OXIFASTER_LOG_KILL9_CYCLES` (default 20), `OXIFASTER_LOG_KILL9_SEED`,
//! `OXIFASTER_LOG_POWER_SEEDS` (default 3).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxifaster::Error;
use oxifaster::device::{CrashClock, CrashMode, FaultDevice};
use oxifaster::log::{FasterLog, LogAddress, LogConfig};
use oxifaster_cli::kill9::run_and_kill;
use oxifaster_cli::workload::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn tiny(dir: &Path) -> LogConfig {
    LogConfig::new(dir).page_size_bits(12).log_memory_size_bytes(16 << 10).segment_size_bits(16)
}

/// Entry `seq` of writer `thread`: names itself; its length varies.
fn tagged(thread: u64, seq: u64) -> Vec<u8> {
    let len = 12 + (seq.wrapping_mul(2_654_435_761) ^ thread) as usize % 1500;
    let mut data: Vec<u8> =
        (0..len).map(|i| (seq as u8).wrapping_mul(31) ^ (i as u8) ^ thread as u8).collect();
    data[..4].copy_from_slice(&(thread as u32).to_le_bytes());
    data[4..12].copy_from_slice(&seq.to_le_bytes());
    data
}

fn untag(data: &[u8]) -> (u64, u64) {
    let thread = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as u64;
    let seq = u64::from_le_bytes(data[4..12].try_into().expect("8 bytes"));
    (thread, seq)
}

const WRITERS: u64 = 3;

/// The child: continues the log and appends from `WRITERS` threads, each
/// waiting for its entries' commit and then recording the acknowledgement;
/// a committer commits every millisecond with a cookie. Runs until killed.
#[test]
#[ignore = "run by log_kill9_cycles in a child process"]
fn log_kill9_child() {
    let Ok(dir) = std::env::var("OXIFASTER_LOG_KILL9_DIR") else { return };
    let dir = Path::new(&dir);
    let log = FasterLog::open(tiny(&dir.join("log"))).expect("child open");
    // Continue each writer's sequence after its last durable entry.
    let mut next = [0u64; WRITERS as usize];
    for entry in log.scan_all() {
        let (thread, seq) = untag(&entry.expect("child scan").data);
        next[thread as usize] = seq + 1;
    }
    let cookie_base: u64 =
        String::from_utf8_lossy(&log.cookie()).parse::<u64>().map(|c| c + 1).unwrap_or(0);
    let acked = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("acked"))
            .expect("acked file"),
    ));
    std::thread::scope(|scope| {
        for thread in 0..WRITERS {
            let (log, acked, start) = (&log, acked.clone(), next[thread as usize]);
            scope.spawn(move || {
                let mut rng = Rng::new(thread ^ start);
                let mut seq = start;
                loop {
                    let n = 1 + rng.below(16);
                    let mut last = LogAddress::FIRST;
                    for _ in 0..n {
                        let data = tagged(thread, seq);
                        last = if rng.below(4) == 0 {
                            log.enqueue_batch(&[data]).expect("batch")[0]
                        } else {
                            log.enqueue(&data).expect("enqueue")
                        };
                        seq += 1;
                    }
                    log.wait_for_commit(last).expect("wait");
                    let mut file = acked.lock().expect("lock");
                    writeln!(file, "T {thread} {}", seq - 1).expect("ack");
                }
            });
        }
        for n in cookie_base.. {
            std::thread::sleep(Duration::from_millis(1));
            log.commit_with_cookie(n.to_string().as_bytes()).expect("commit");
            writeln!(acked.lock().expect("lock"), "C {n}").expect("ack");
        }
    });
}

#[test]
fn log_kill9_cycles() {
    let cycles = env("OXIFASTER_LOG_KILL9_CYCLES", 20);
    let seed = env("OXIFASTER_LOG_KILL9_SEED", 0x5eed);
    eprintln!("OXIFASTER_LOG_KILL9_SEED={seed} OXIFASTER_LOG_KILL9_CYCLES={cycles}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(seed);
    let mut entries_checked = 0u64;
    for cycle in 0..cycles {
        eprintln!("cycle {cycle}");
        run_and_kill(
            "log_kill9_child",
            &[("OXIFASTER_LOG_KILL9_DIR", dir.path().as_os_str())],
            Duration::from_millis(60 + rng.below(240)),
        );

        // What the child was told is durable.
        let text = std::fs::read_to_string(dir.path().join("acked")).unwrap_or_default();
        let mut acked_seq: BTreeMap<u64, u64> = BTreeMap::new();
        let mut acked_cookie: Option<u64> = None;
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["T", t, s] => {
                    if let (Ok(t), Ok(s)) = (t.parse(), s.parse()) {
                        let e = acked_seq.entry(t).or_insert(s);
                        *e = (*e).max(s);
                    }
                }
                ["C", c] => {
                    if let Ok(c) = c.parse::<u64>() {
                        acked_cookie = Some(acked_cookie.map_or(c, |a| a.max(c)));
                    }
                }
                _ => {} // a line cut by the kill
            }
        }
        let log = FasterLog::open(tiny(&dir.path().join("log"))).expect("recover");
        // Every writer's entries form a gap-free prefix with exactly the
        // bytes written.
        let mut next = [0u64; WRITERS as usize];
        for entry in log.scan_all() {
            let entry = entry.unwrap_or_else(|e| panic!("cycle {cycle}: scan: {e}"));
            let (thread, seq) = untag(&entry.data);
            assert!(thread < WRITERS, "cycle {cycle}: entry of unknown writer {thread}");
            assert_eq!(seq, next[thread as usize], "cycle {cycle}: writer {thread} has a gap");
            assert_eq!(entry.data, tagged(thread, seq), "cycle {cycle}: bytes differ");
            next[thread as usize] += 1;
            entries_checked += 1;
        }
        for (thread, seq) in &acked_seq {
            assert!(
                next[*thread as usize] > *seq,
                "cycle {cycle}: writer {thread}'s entry {seq} was acknowledged but is lost \
                 (recovered up to {})",
                next[*thread as usize]
            );
        }
        let cookie = String::from_utf8_lossy(&log.cookie()).parse::<u64>().ok();
        assert!(
            cookie >= acked_cookie,
            "cycle {cycle}: recovered cookie {cookie:?}, acknowledged {acked_cookie:?}"
        );
        log.verify().unwrap_or_else(|e| panic!("cycle {cycle}: verify: {e}"));
        eprintln!(
            "cycle {cycle}: recovered {:?}, cut {:?} bytes, writers at {next:?}, cookie {cookie:?}",
            log.recovered().map(|r| r.committed_until),
            log.recovered().map(|r| r.cut_bytes)
        );
    }
    assert!(entries_checked > 0, "no cycle got an entry committed");
}

// ---- power loss and I/O errors on fault-injecting devices ----

/// A durable state of the deterministic workload: its cookie, the index of
/// the first live entry, and how many entries it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct State {
    cookie: Option<u64>,
    begin: usize,
    entries: usize,
}

#[derive(Debug, Default)]
struct Outcome {
    /// Every entry enqueued, in order.
    data: Vec<Vec<u8>>,
    /// The states of the commits that returned Ok, in order.
    acked: Vec<State>,
    /// The state of the commit that failed, if one did.
    in_flight: Option<State>,
    /// Whether a call failed (the workload stops at the first failure).
    failed: bool,
}

fn fault_config() -> LogConfig {
    LogConfig::default().page_size_bits(12).log_memory_size_bytes(16 << 10)
}

/// The data device claims 512-byte direct writes (and refuses unaligned
/// ones), so the log's block-rounded flushes are what crash.
fn fault_log(clock: &Arc<CrashClock>) -> FasterLog<FaultDevice> {
    FasterLog::with_devices(
        fault_config(),
        FaultDevice::new(clock.clone()).with_write_alignment(512),
        FaultDevice::new(clock.clone()),
    )
    .expect("open")
}

/// Enqueues 80 entries of 0..1500 bytes (crossing many 4 KiB pages),
/// commits with a cookie every 6 entries, and once truncates the prefix;
/// stops at the first error.
fn workload(log: &FasterLog<FaultDevice>) -> Outcome {
    let mut out = Outcome::default();
    let mut addresses = Vec::new();
    let mut state = State { cookie: None, begin: 0, entries: 0 };
    for i in 0..80u64 {
        let data = tagged(0, i);
        let data = data[..(i as usize * 37) % data.len()].to_vec();
        match log.enqueue(&data) {
            Ok(a) => addresses.push(a),
            Err(_) => {
                out.failed = true;
                return out;
            }
        }
        out.data.push(data);
        if i % 6 == 5 || i == 79 {
            state = State { cookie: Some(i), begin: state.begin, entries: out.data.len() };
            out.in_flight = Some(state);
            if log.commit_with_cookie(&i.to_le_bytes()).is_err() {
                out.failed = true;
                return out;
            }
            out.acked.push(state);
        }
        if i == 41 {
            state.begin = 20;
            out.in_flight = Some(state);
            if log.truncate_until(addresses[20]).is_err() {
                out.failed = true;
                return out;
            }
            out.acked.push(state);
        }
        out.in_flight = None;
    }
    out
}

/// Reopens on the given images: the log must hold exactly the last
/// acknowledged state or the one in flight, and verify clean.
fn check_recovery(data: Vec<u8>, commits: Vec<u8>, outcome: &Outcome, what: &str) {
    let clock = CrashClock::new();
    let log = FasterLog::with_devices(
        fault_config(),
        FaultDevice::from_image(data, clock.clone()).with_write_alignment(512),
        FaultDevice::from_image(commits, clock),
    )
    .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
    let cookie = log.cookie();
    let cookie = (!cookie.is_empty())
        .then(|| u64::from_le_bytes(cookie.try_into().expect("an 8-byte cookie")));
    let scanned: Vec<Vec<u8>> = log
        .scan_all()
        .map(|e| e.map(|e| e.data))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{what}: scan: {e}"));
    let empty = State { cookie: None, begin: 0, entries: 0 };
    let last = outcome.acked.last().copied().unwrap_or(empty);
    let allowed = std::iter::once(last).chain(outcome.in_flight);
    let matched = allowed
        .clone()
        .any(|s| s.cookie == cookie && scanned.as_slice() == &outcome.data[s.begin..s.entries]);
    assert!(
        matched,
        "{what}: recovered cookie {cookie:?} with {} entries; allowed: {:?}",
        scanned.len(),
        allowed.collect::<Vec<_>>()
    );
    log.verify().unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    // The recovered log keeps working.
    let a = log.enqueue(b"after recovery").unwrap_or_else(|e| panic!("{what}: enqueue: {e}"));
    log.commit().unwrap_or_else(|e| panic!("{what}: commit: {e}"));
    assert_eq!(log.read(a).expect("read"), b"after recovery");
}

#[test]
fn power_loss_at_every_operation_recovers_a_committed_state() {
    let seeds = env("OXIFASTER_LOG_POWER_SEEDS", 3);
    // A full run counts the operations.
    let clock = CrashClock::new();
    let log = fault_log(&clock);
    let full = workload(&log);
    assert_eq!(full.acked.len(), 15, "the workload commits 14 times and truncates once");
    let total = clock.ops();
    drop(log);
    let mut points = 0;
    for crash_at in 0..=total {
        for mode in [CrashMode::Drop, CrashMode::KeepSome, CrashMode::Tear] {
            for seed in 0..seeds {
                let clock = CrashClock::new();
                let log = fault_log(&clock);
                clock.arm(crash_at);
                let outcome = workload(&log);
                let data = log.data_device().power_loss(mode, seed);
                let commits = log.commit_device().power_loss(mode, seed ^ 0xabc);
                drop(log);
                let what = format!("crash at op {crash_at} of {total}, {mode:?}, seed {seed}");
                check_recovery(data, commits, &outcome, &what);
                points += 1;
                if mode == CrashMode::Drop {
                    break; // deterministic: one seed is enough
                }
            }
        }
    }
    eprintln!("{points} crash points over {total} operations");
    assert!(total > 40, "the workload did too little I/O ({total} operations)");
}

#[test]
fn an_io_error_fails_the_commit_for_every_waiter_and_poisons_the_log() {
    let clock = CrashClock::new();
    let log = fault_log(&clock);
    let total = {
        let c = CrashClock::new();
        let l = fault_log(&c);
        workload(&l);
        c.ops()
    };
    drop(log);
    for fail_at in 0..total {
        let clock = CrashClock::new();
        let log = fault_log(&clock);
        clock.fail_once(fail_at);
        let outcome = workload(&log);
        let what = format!("EIO at op {fail_at} of {total}");
        assert!(outcome.failed, "{what}: the error was not reported");
        // Nothing is acknowledged after the failure.
        let a = log.enqueue(b"x");
        assert!(
            a.is_err() || log.commit().is_err(),
            "{what}: a commit succeeded after the failure"
        );
        assert!(matches!(log.commit(), Err(Error::Poisoned { .. })), "{what}: not poisoned");
        let data = log.data_device().power_loss(CrashMode::Drop, 0);
        let commits = log.commit_device().power_loss(CrashMode::Drop, 0);
        drop(log);
        check_recovery(data, commits, &outcome, &what);
    }
}

#[test]
fn a_failed_sync_fails_every_waiter() {
    let clock = CrashClock::new();
    let log = Arc::new(fault_log(&clock));
    log.enqueue(b"committed").expect("enqueue");
    log.commit().expect("commit");
    let pending: Vec<LogAddress> =
        (0..4).map(|i| log.enqueue(&[i as u8; 100]).expect("enqueue")).collect();
    let waiters: Vec<_> = pending
        .iter()
        .map(|a| {
            let (log, a) = (log.clone(), *a);
            std::thread::spawn(move || log.wait_for_commit(a))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    // The data write and sync of the next commit: fail the sync.
    clock.fail_once(1);
    assert!(log.commit().is_err(), "the commit reported success");
    for waiter in waiters {
        assert!(waiter.join().expect("join").is_err(), "a waiter was told its entry is durable");
    }
    assert!(log.committed_until() <= pending[0]);
    assert!(matches!(log.enqueue(b"later"), Err(Error::Poisoned { .. })));
}

/// A log on fault devices with `n` committed entries; returns the durable
/// images and the entries.
fn committed_images(n: u64) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>, u64) {
    let clock = CrashClock::new();
    let log = fault_log(&clock);
    let data: Vec<Vec<u8>> = (0..n).map(|i| tagged(1, i)).collect();
    for (i, d) in data.iter().enumerate() {
        log.enqueue(d).expect("enqueue");
        if i % 10 == 9 {
            log.commit_with_cookie(&(i as u64).to_le_bytes()).expect("commit");
        }
    }
    let committed = log.commit_with_cookie(b"final").expect("commit").raw();
    (
        log.data_device().power_loss(CrashMode::Drop, 0),
        log.commit_device().power_loss(CrashMode::Drop, 0),
        data,
        committed,
    )
}

#[test]
fn bit_flips_in_entries_are_detected() {
    let (image, commits, data, committed) = committed_images(60);
    let total: usize = data.iter().map(|d| d.len()).sum();
    assert!(committed as usize > total, "the committed range holds the entries");
    let mut rng = Rng::new(7);
    let mut detected = 0;
    for round in 0..400 {
        // Flip a bit anywhere in the committed range: entries (headers,
        // payloads, padding) and pages' unused ends (verify's zero check).
        // Bytes past the commit point are not part of the log.
        let at = 64 + rng.below(committed - 64) as usize;
        let mut bad = image.clone();
        bad[at] ^= 1 << rng.below(8);
        let clock = CrashClock::new();
        let opened = FasterLog::with_devices(
            fault_config(),
            FaultDevice::from_image(bad, clock.clone()).with_write_alignment(512),
            FaultDevice::from_image(commits.clone(), clock),
        );
        let log = match opened {
            Err(Error::Corruption { .. }) => {
                detected += 1;
                continue;
            }
            Err(e) => panic!("round {round}: unexpected error {e}"),
            Ok(log) => log,
        };
        match log.verify() {
            Err(Error::Corruption { address, .. }) => {
                assert!(address <= at as u64 + 8, "round {round}: reported past the flip");
                detected += 1;
                // A scan reports it too, never returning altered bytes.
                let scanned: Result<Vec<_>, _> =
                    log.scan_all().map(|e| e.map(|e| e.data)).collect();
                match scanned {
                    Err(Error::Corruption { .. }) => {}
                    Ok(entries) => {
                        // The flip was in a page's unused end: the entries
                        // themselves are intact.
                        assert_eq!(entries, data, "round {round}: a scan returned altered data");
                    }
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            Err(e) => panic!("round {round}: unexpected error {e}"),
            Ok(_) => panic!("round {round}: a flip at byte {at} went undetected"),
        }
    }
    assert_eq!(detected, 400);
}

#[test]
fn damaged_commit_records_fall_back_or_fail_loudly() {
    let (image, commits, data, _) = committed_images(35);
    // The newest slot damaged: recovery falls back to the older commit;
    // both damaged: an error, never a silently empty log.
    let newest_slot = {
        let clock = CrashClock::new();
        let log = FasterLog::with_devices(
            fault_config(),
            FaultDevice::from_image(image.clone(), clock.clone()),
            FaultDevice::from_image(commits.clone(), clock),
        )
        .expect("open");
        let seq = log.recovered().expect("recovered").commit_number;
        (seq % 2) as usize * 64 * 1024
    };
    let older_slot = 64 * 1024 - newest_slot;
    let open = |commits: Vec<u8>| {
        let clock = CrashClock::new();
        FasterLog::with_devices(
            fault_config(),
            FaultDevice::from_image(image.clone(), clock.clone()),
            FaultDevice::from_image(commits, clock),
        )
    };
    let mut rng = Rng::new(3);
    for _ in 0..64 {
        let mut bad = commits.clone();
        let at = newest_slot + rng.below(40) as usize;
        bad[at] ^= 1 << rng.below(8);
        let log = open(bad.clone()).expect("falls back to the older commit");
        let cookie = log.cookie();
        assert_eq!(cookie, 29u64.to_le_bytes(), "the older commit's cookie");
        let entries: Vec<Vec<u8>> = log.scan_all().map(|e| e.expect("entry").data).collect();
        assert_eq!(entries, data[..30]);
        drop(log);
        bad[older_slot + 30] ^= 0x10;
        assert!(matches!(open(bad), Err(Error::Corruption { .. })), "both slots damaged");
    }
}

#[test]
fn one_damaged_slot_after_the_first_commit_is_survived() {
    let clock = CrashClock::new();
    let log = fault_log(&clock);
    log.enqueue(b"only").expect("enqueue");
    log.commit_with_cookie(b"one").expect("the first commit");
    let image = log.data_device().power_loss(CrashMode::Drop, 0);
    let commits = log.commit_device().power_loss(CrashMode::Drop, 0);
    drop(log);
    for slot in [0usize, 1] {
        let mut bad = commits.clone();
        bad[slot * 64 * 1024 + 40] ^= 4;
        let clock = CrashClock::new();
        let log = FasterLog::with_devices(
            fault_config(),
            FaultDevice::from_image(image.clone(), clock.clone()).with_write_alignment(512),
            FaultDevice::from_image(bad, clock),
        )
        .expect("one good slot is enough");
        assert_eq!(log.cookie(), b"one");
        assert_eq!(log.scan_all().next().expect("entry").expect("ok").data, b"only");
    }
}

/// L3: three writers append and commit while device operations fail at a
/// seeded random rate (EIO, ENOSPC, short transfers). Every error reaches
/// the caller; once a commit has failed, none succeeds; no thread hangs;
/// and after a power loss every acknowledged entry is there, exactly.
#[test]
fn random_io_errors_under_concurrency_lose_nothing_acknowledged() {
    use oxifaster::device::FaultKind;
    for (seed, kind) in [
        (1u64, FaultKind::Eio),
        (2, FaultKind::NoSpace),
        (3, FaultKind::Short),
        (4, FaultKind::Eio),
        (5, FaultKind::Short),
    ] {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let clock = CrashClock::new();
            let log = fault_log(&clock);
            // 1.5% of operations fail, or 0.2% (a longer run first).
            clock.inject_rate(None, kind, if seed <= 3 { 15_000 } else { 2_000 }, seed);
            let acked: Vec<u64> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..3u64)
                    .map(|thread| {
                        let log = &log;
                        scope.spawn(move || {
                            let mut acked = 0u64;
                            let mut failed = false;
                            for seq in 0..3000u64 {
                                let full = tagged(thread, seq);
                                let data = &full[..full.len().min(12 + seq as usize % 200)];
                                match log.enqueue(data) {
                                    Ok(_) if seq % 5 != 4 => continue,
                                    Ok(_) => {}
                                    Err(_) => failed = true,
                                }
                                if failed {
                                    // After a failure nothing is acknowledged.
                                    assert!(
                                        log.commit().is_err(),
                                        "a commit succeeded after an error"
                                    );
                                    break;
                                }
                                match log.commit() {
                                    Ok(_) => acked = seq + 1,
                                    Err(_) => failed = true,
                                }
                            }
                            acked
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().expect("worker")).collect()
            });
            let data = log.data_device().power_loss(CrashMode::Drop, seed);
            let commits = log.commit_device().power_loss(CrashMode::Drop, seed);
            drop(log);
            done.send((acked, data, commits)).expect("send");
        });
        let (acked, data, commits) = finished
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("seed {seed} ({kind:?}): a thread hung"));
        let clock = CrashClock::new();
        let log = FasterLog::with_devices(
            fault_config(),
            FaultDevice::from_image(data, clock.clone()).with_write_alignment(512),
            FaultDevice::from_image(commits, clock),
        )
        .unwrap_or_else(|e| panic!("seed {seed} ({kind:?}): recovery failed: {e}"));
        let mut next = [0u64; 3];
        for entry in log.scan_all() {
            let entry = entry.unwrap_or_else(|e| panic!("seed {seed}: scan: {e}"));
            let (thread, seq) = untag(&entry.data);
            assert_eq!(seq, next[thread as usize], "seed {seed}: a gap");
            assert_eq!(entry.data, tagged(thread, seq)[..entry.data.len()]);
            next[thread as usize] += 1;
        }
        for (thread, acked) in acked.iter().enumerate() {
            assert!(
                next[thread] >= *acked,
                "seed {seed} ({kind:?}): writer {thread} had {acked} entries acknowledged, {} recovered",
                next[thread]
            );
        }
        eprintln!("seed {seed} ({kind:?}): acknowledged {acked:?}, recovered {next:?}");
    }
}

/// L4: directories of random files where a store's or a log's files
/// belong: every open, recovery, listing and verification returns (a named
/// error or a working handle); none panics.
#[test]
fn directories_of_random_files_are_named_errors() {
    use oxifaster::Store;
    use oxifaster::checkpoint;
    let mut rng = Rng::new(0xd1e);
    let mut random = |len: u64| -> Vec<u8> {
        let len = rng.below(len + 1) as usize;
        (0..len).map(|_| rng.next_u64() as u8).collect()
    };
    for round in 0..40 {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("log")).expect("mkdir");
        std::fs::create_dir_all(d.join("commit")).expect("mkdir");
        std::fs::create_dir_all(d.join("checkpoints/0000000001-0001")).expect("mkdir");
        std::fs::write(d.join("log/log.0"), random(20_000)).expect("write");
        std::fs::write(d.join("commit/log.0"), random(200_000)).expect("write");
        std::fs::write(d.join("log.0"), random(20_000)).expect("write");
        for name in ["meta", "index", "snapshot", "delta"] {
            std::fs::write(d.join("checkpoints/0000000001-0001").join(name), random(5_000))
                .expect("write");
        }
        if round % 2 == 0 {
            // A plausible metadata header on random bytes.
            let mut meta = b"OXFMETA\0".to_vec();
            meta.extend(random(300));
            std::fs::write(d.join("checkpoints/0000000001-0001/meta"), meta).expect("write");
        }
        // The log: a named error, or (no valid commit) a fresh log.
        match FasterLog::open(tiny(d)) {
            Ok(log) => {
                log.enqueue(b"works").expect("enqueue");
                log.commit().expect("commit");
            }
            Err(Error::Corruption { .. } | Error::InvalidConfig { .. } | Error::Io { .. }) => {}
            Err(e) => panic!("round {round}: log: unexpected {e}"),
        }
        // The store: listing and verifying report, recovery refuses.
        let _ = checkpoint::list(d);
        let _ = checkpoint::verify(d, "0000000001-0001");
        match Store::<u64, u64>::recover_latest(d) {
            Err(_) => {}
            Ok(_) => panic!("round {round}: a store recovered from random files"),
        }
        // Opening refuses a directory that does not hold a store.
        match Store::<u64, u64>::open(d) {
            Err(Error::NotAStore { path, .. }) => assert_eq!(path, d),
            Err(e) => panic!("round {round}: open: unexpected {e}"),
            Ok(_) => panic!("round {round}: a store opened over random files"),
        }
    }
}

/// Entries kept and dropped, rounds of conflict truncation, and a purge,
/// over a log whose dropped-range list has spilled to the commit device's
/// region (more than 1,024 ranges): a power loss at any operation of the
/// rounds recovers a state the log was in — the last acknowledged one or
/// one of those the operation in flight passes through — with its ranges
/// intact. Each call returns the states in order; `None` marks the first
/// failure (the crash).
#[test]
fn power_loss_while_dropped_ranges_spill_recovers_a_committed_state() {
    // The base: 1,100 conflict truncations, committed.
    let clock = CrashClock::new();
    let log = fault_log(&clock);
    let mut base: Vec<(LogAddress, Vec<u8>)> = Vec::new();
    for i in 0..1_100u32 {
        let kept = i.to_le_bytes().to_vec();
        base.push((log.enqueue(&kept).expect("enqueue"), kept));
        let conflict = log.enqueue(b"conflict").expect("enqueue");
        log.truncate_after(conflict).expect("truncate_after");
    }
    log.commit().expect("commit");
    let data = log.data_device().power_loss(CrashMode::Drop, 0);
    let commits = log.commit_device().power_loss(CrashMode::Drop, 0);
    drop(log);

    let reopen = |data: Vec<u8>, commits: Vec<u8>, clock: &Arc<CrashClock>| {
        FasterLog::with_devices(
            fault_config(),
            FaultDevice::from_image(data, clock.clone()).with_write_alignment(512),
            FaultDevice::from_image(commits, clock.clone()),
        )
    };
    // Six rounds; each state the log can be in after a crash is listed.
    let rounds = |log: &FasterLog<FaultDevice>| -> (Vec<Vec<Vec<u8>>>, bool) {
        let mut live: Vec<(LogAddress, Vec<u8>)> = base.clone();
        let values = |live: &[(LogAddress, Vec<u8>)]| live.iter().map(|e| e.1.clone()).collect();
        let mut states = vec![values(&live)];
        for round in 0..6u32 {
            let kept = format!("round {round}").into_bytes();
            let Ok(keep) = log.enqueue(&kept) else { return (states, false) };
            let Ok(conflict) = log.enqueue(b"conflict") else { return (states, false) };
            // truncate_after commits both entries, then drops the second.
            let mut both = values(&live);
            both.push(kept.clone());
            both.push(b"conflict".to_vec());
            states.push(both);
            live.push((keep, kept));
            states.push(values(&live));
            if log.truncate_after(conflict).is_err() {
                return (states, false);
            }
            if round == 3 {
                // A purge brings the list back under the slot's limit.
                let until = live[600].0;
                live.drain(..600);
                states.push(values(&live));
                if log.truncate_until(until).is_err() {
                    return (states, false);
                }
            }
        }
        (states, true)
    };
    // A full run counts the operations.
    let clock = CrashClock::new();
    let log = reopen(data.clone(), commits.clone(), &clock).expect("reopen");
    let start = clock.ops();
    let (_, finished) = rounds(&log);
    assert!(finished, "the rounds run without a crash");
    let total = clock.ops() - start;
    drop(log);
    let mut points = 0;
    for crash_at in 0..=total {
        for mode in [CrashMode::Drop, CrashMode::KeepSome, CrashMode::Tear] {
            let clock = CrashClock::new();
            let log = reopen(data.clone(), commits.clone(), &clock).expect("reopen");
            clock.arm(crash_at);
            let (states, _) = rounds(&log);
            let (d, c) = (
                log.data_device().power_loss(mode, crash_at),
                log.commit_device().power_loss(mode, crash_at ^ 0xabc),
            );
            drop(log);
            let what = format!("crash at op {crash_at} of {total}, {mode:?}");
            let log = reopen(d, c, &CrashClock::new())
                .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
            let scanned: Vec<Vec<u8>> = log
                .scan_all()
                .map(|e| e.map(|e| e.data))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{what}: scan: {e}"));
            assert!(
                states.contains(&scanned),
                "{what}: recovered {} entries, not a state the log was in",
                scanned.len()
            );
            log.verify().unwrap_or_else(|e| panic!("{what}: verify: {e}"));
            points += 1;
        }
    }
    eprintln!("{points} crash points over {total} operations");
    assert!(total > 20, "the rounds did too little I/O ({total} operations)");
}
