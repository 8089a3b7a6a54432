//! FasterLog: model tests against a `Vec` of entries, concurrency, named
//! iterators, tailing, truncation, bad input.
//!
//! Knob: `OXIFASTER_LOG_MODEL_CASES` (default 24 random sequences).

use std::sync::Arc;
use std::time::Duration;

use oxifaster::Error;
use oxifaster::log::{FasterLog, LogAddress, LogConfig};
use oxifaster_cli::workload::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Tiny pages, four of them in memory and small segments, so that most of
/// the log is on disk and scans cross pages and segments.
fn tiny(dir: &std::path::Path) -> LogConfig {
    LogConfig::new(dir).page_size_bits(12).log_memory_size_bytes(16 << 10).segment_size_bits(14)
}

fn payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    let seed = rng.next_u64();
    (0..len).map(|i| (seed.rotate_left(i as u32 % 64) as u8) ^ i as u8).collect()
}

/// What the log should hold.
#[derive(Debug, Default)]
struct Model {
    /// Every live entry enqueued, in address order.
    entries: Vec<(LogAddress, Vec<u8>)>,
    /// How many of `entries` are committed.
    committed: usize,
    cookie: Vec<u8>,
}

impl Model {
    fn check(&self, log: &FasterLog, rng: &mut Rng, step: usize) {
        let scanned: Vec<(LogAddress, Vec<u8>)> = log
            .scan_all()
            .map(|e| e.map(|e| (e.address, e.data)))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("step {step}: scan failed: {e}"));
        assert_eq!(
            scanned.len(),
            self.committed,
            "step {step}: entry count: scanned {:?}, model {:?}, begin {}, committed {}",
            scanned.iter().map(|e| (e.0, e.1.len())).collect::<Vec<_>>(),
            self.entries.iter().map(|e| (e.0, e.1.len())).collect::<Vec<_>>(),
            log.begin_address(),
            log.committed_until()
        );
        assert!(scanned == self.entries[..self.committed], "step {step}: scan differs");
        assert_eq!(log.cookie(), self.cookie, "step {step}: cookie");
        for _ in 0..4.min(self.committed) {
            let (address, data) = &self.entries[rng.below(self.committed as u64) as usize];
            assert_eq!(&log.read(*address).expect("read"), data, "step {step}: read {address}");
        }
    }
}

fn run_model(seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(seed);
    let mut log = FasterLog::open(tiny(dir.path())).expect("open");
    let max = log.max_entry_size();
    let mut model = Model::default();
    let trace = std::env::var("OXIFASTER_LOG_TRACE").is_ok();
    for step in 0..400 {
        let choice = rng.below(100);
        if trace {
            eprintln!(
                "step {step}: {choice} ({} entries, {} committed)",
                model.entries.len(),
                model.committed
            );
        }
        match choice {
            0..=49 => {
                let len = match rng.below(20) {
                    0 => 0,
                    1 => max,
                    2 => max + 1 + rng.below(100) as usize,
                    3..=5 => rng.below(max as u64) as usize,
                    _ => rng.below(200) as usize,
                };
                let data = payload(&mut rng, len);
                match log.enqueue(&data) {
                    Ok(address) => {
                        assert!(len <= max, "step {step}: an oversized entry was accepted");
                        model.entries.push((address, data));
                    }
                    Err(Error::RecordTooLarge { .. }) if len > max => {}
                    Err(e) => panic!("step {step}: enqueue of {len} bytes: {e}"),
                }
            }
            50..=59 => {
                let batch: Vec<Vec<u8>> = (0..1 + rng.below(6))
                    .map(|_| {
                        let len = rng.below(300) as usize;
                        payload(&mut rng, len)
                    })
                    .collect();
                let addresses = log.enqueue_batch(&batch).expect("batch");
                model.entries.extend(addresses.into_iter().zip(batch));
            }
            60..=69 => {
                log.commit().expect("commit");
                model.committed = model.entries.len();
            }
            70..=74 => {
                let len = rng.below(64) as usize;
                let cookie = payload(&mut rng, len);
                log.commit_with_cookie(&cookie).expect("commit");
                model.committed = model.entries.len();
                model.cookie = cookie;
            }
            75..=79 if model.committed > 0 => {
                let keep = rng.below(model.committed as u64 + 1) as usize;
                let until = model
                    .entries
                    .get(keep)
                    .map(|e| e.0)
                    .filter(|_| keep < model.committed)
                    .unwrap_or(log.committed_until());
                log.truncate_until(until).expect("truncate_until");
                model.entries.drain(..keep);
                // It commits: what was enqueued before it is durable too.
                model.committed = model.entries.len();
                let first = log.begin_address();
                if let Some((address, _)) = model.entries.first() {
                    assert!(first <= *address);
                }
            }
            80..=83 if !model.entries.is_empty() => {
                let cut = rng.below(model.entries.len() as u64) as usize;
                log.truncate_after(model.entries[cut].0).expect("truncate_after");
                model.entries.truncate(cut);
                model.committed = model.entries.len();
            }
            84..=89 => {
                // A crash: nothing since the last commit survives.
                drop(log);
                log = FasterLog::open(tiny(dir.path())).expect("reopen");
                model.entries.truncate(model.committed);
                let info = log.recovered();
                assert_eq!(
                    info.map(|i| i.committed_until),
                    info.map(|_| log.committed_until()),
                    "step {step}"
                );
            }
            _ => model.check(&log, &mut rng, step),
        }
    }
    model.check(&log, &mut rng, usize::MAX);
    assert_eq!(log.verify().expect("verify"), log.verify().expect("verify twice"));
}

#[test]
fn model_sequences_match_a_vec() {
    let cases = env("OXIFASTER_LOG_MODEL_CASES", 24);
    for case in 0..cases {
        run_model(0x10c_0000 + case);
    }
}

/// Entry `seq` of thread `thread`: identifies itself, with a length that
/// varies.
fn tagged(thread: u64, seq: u64) -> Vec<u8> {
    let len = 8 + (seq * 7 + thread * 13) as usize % 300;
    let mut data = vec![(seq as u8) ^ (thread as u8 * 31); len];
    data[..4].copy_from_slice(&(thread as u32).to_le_bytes());
    data[4..8].copy_from_slice(&(seq as u32).to_le_bytes());
    data
}

#[test]
fn concurrent_enqueues_commit_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 20_000;
    {
        let log = FasterLog::open(tiny(dir.path()).log_memory_size_bytes(64 << 10)).expect("open");
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let log = &log;
                scope.spawn(move || {
                    let mut last = LogAddress::from_raw(0);
                    for seq in 0..PER_THREAD {
                        let address = match seq % 3 {
                            0 => loop {
                                if let Some(a) = log.try_enqueue(&tagged(thread, seq)).expect("try")
                                {
                                    break a;
                                }
                                std::thread::yield_now();
                            },
                            _ => log.enqueue(&tagged(thread, seq)).expect("enqueue"),
                        };
                        assert!(address > last, "addresses go backwards within a thread");
                        last = address;
                        if seq % 1000 == 999 {
                            log.commit().expect("commit");
                            assert!(log.committed_until() > address);
                        }
                    }
                });
            }
        });
        log.commit().expect("final commit");
    }
    let log = FasterLog::open(tiny(dir.path())).expect("reopen");
    let mut next = [0u64; THREADS as usize];
    for entry in log.scan_all() {
        let entry = entry.expect("entry");
        let thread = u32::from_le_bytes(entry.data[..4].try_into().expect("4")) as u64;
        let seq = u32::from_le_bytes(entry.data[4..8].try_into().expect("4")) as u64;
        assert_eq!(seq, next[thread as usize], "thread {thread}: entries out of order or missing");
        assert_eq!(entry.data, tagged(thread, seq));
        next[thread as usize] += 1;
    }
    assert_eq!(next, [PER_THREAD; THREADS as usize]);
    assert_eq!(log.verify().expect("verify"), THREADS * PER_THREAD);
}

#[test]
fn group_commit_and_waiters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(FasterLog::open(LogConfig::new(dir.path())).expect("open"));
    let address = log.enqueue(b"waited for").expect("enqueue");
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || log.wait_for_commit(address))
    };
    std::thread::sleep(Duration::from_millis(20));
    assert!(!waiter.is_finished(), "the waiter returned before any commit");
    let point = log.commit().expect("commit");
    assert!(point > address);
    waiter.join().expect("join").expect("wait");
    // A commit with nothing new is a no-op that still reports the point.
    assert_eq!(log.commit().expect("empty commit"), point);
    // Async waiting, on a runtime.
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let address = log.enqueue(b"async").expect("enqueue");
    let future = log.wait_for_commit_async(address);
    let log2 = log.clone();
    let committer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        log2.commit().expect("commit")
    });
    rt.block_on(future).expect("async wait");
    committer.join().expect("join");
}

#[test]
fn auto_commit_by_time_and_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log =
        FasterLog::open(LogConfig::new(dir.path()).auto_commit_every(Duration::from_millis(5)))
            .expect("open");
    let address = log.enqueue(b"tick").expect("enqueue");
    log.wait_for_commit(address).expect("auto-committed by time");
    drop(log);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FasterLog::open(LogConfig::new(dir.path()).auto_commit_bytes(4096)).expect("open");
    let first = log.enqueue(&[1u8; 100]).expect("enqueue");
    std::thread::sleep(Duration::from_millis(30));
    assert!(log.committed_until() <= first, "committed before the threshold");
    for _ in 0..50 {
        log.enqueue(&[2u8; 100]).expect("enqueue");
    }
    log.wait_for_commit(first).expect("auto-committed by size");
}

#[test]
fn named_iterators_persist_their_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = FasterLog::open(tiny(dir.path())).expect("open");
        for i in 0..100u32 {
            log.enqueue(&i.to_le_bytes()).expect("enqueue");
        }
        log.commit().expect("commit");
        let mut it = log.named_iterator("apply").expect("iterator");
        for expected in 0..40u32 {
            let e = it.next().expect("entry").expect("ok");
            assert_eq!(e.data, expected.to_le_bytes());
            it.complete_until(e.next_address).expect("complete_until");
        }
        // Positions are saved by the next commit, even with nothing new.
        log.commit().expect("commit");
        let mut other = log.named_iterator("ship").expect("iterator");
        other.next().expect("entry").expect("ok");
        other.complete_until(other.next_address()).expect("complete_until");
        // Not committed: lost at the crash below.
    }
    let log = FasterLog::open(tiny(dir.path())).expect("reopen");
    let mut it = log.named_iterator("apply").expect("iterator");
    assert_eq!(it.next().expect("entry").expect("ok").data, 40u32.to_le_bytes());
    let mut ship = log.named_iterator("ship").expect("iterator");
    assert_eq!(ship.next().expect("entry").expect("ok").data, 0u32.to_le_bytes());
    assert!(matches!(log.named_iterator(""), Err(Error::InvalidConfig { .. })));
    assert!(matches!(log.named_iterator(&"x".repeat(256)), Err(Error::InvalidConfig { .. })));
    log.remove_iterator("apply");
    log.commit().expect("commit");
    drop(it);
    drop(log);
    let log = FasterLog::open(tiny(dir.path())).expect("reopen");
    assert_eq!(log.iterator_position("apply"), None);
}

#[test]
fn tailing_iterators_wait_for_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(FasterLog::open(tiny(dir.path())).expect("open"));
    let reader = {
        let mut it = log.scan(LogAddress::FIRST, LogAddress::MAX);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 500 {
                let e = it.next_blocking().expect("next").expect("entry");
                seen.push(u32::from_le_bytes(e.data.try_into().expect("4 bytes")));
            }
            seen
        })
    };
    let async_reader = {
        let mut it = log.scan(LogAddress::FIRST, LogAddress::MAX);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let mut seen = Vec::new();
                while seen.len() < 500 {
                    let e = it.next_async().await.expect("next").expect("entry");
                    seen.push(u32::from_le_bytes(e.data.try_into().expect("4 bytes")));
                }
                seen
            })
        })
    };
    for i in 0..500u32 {
        log.enqueue(&i.to_le_bytes()).expect("enqueue");
        if i % 50 == 49 {
            log.commit().expect("commit");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let expected: Vec<u32> = (0..500).collect();
    assert_eq!(reader.join().expect("reader"), expected);
    assert_eq!(async_reader.join().expect("async reader"), expected);
    // A tailing iterator ends when the log is dropped.
    let mut it = log.scan(log.committed_until(), LogAddress::MAX);
    let waiter = std::thread::spawn(move || it.next_blocking());
    std::thread::sleep(Duration::from_millis(10));
    drop(Arc::try_unwrap(log).expect("sole owner"));
    assert!(waiter.join().expect("join").expect("no error").is_none());
}

#[test]
fn truncate_until_deletes_segments_and_truncate_after_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segments = |dir: &std::path::Path| std::fs::read_dir(dir.join("log")).expect("ls").count();
    let mut addresses = Vec::new();
    {
        let log = FasterLog::open(tiny(dir.path())).expect("open");
        for i in 0..2000u32 {
            addresses.push(log.enqueue(&[i as u8; 100]).expect("enqueue"));
        }
        log.commit().expect("commit");
        let before = segments(dir.path());
        log.truncate_until(addresses[1500]).expect("truncate");
        assert!(segments(dir.path()) < before, "no segment file was deleted");
        assert!(matches!(log.read(addresses[10]), Err(Error::InvalidAddress { .. })));
        assert_eq!(log.read(addresses[1500]).expect("read"), vec![(1500u32 % 256) as u8; 100]);
        // Drop committed entries 1800.. (say a superseded Raft suffix), then
        // append a new suffix after them.
        log.truncate_after(addresses[1800]).expect("truncate_after");
        assert!(matches!(log.read(addresses[1900]), Err(Error::InvalidAddress { .. })));
        log.enqueue(b"new suffix").expect("enqueue");
        log.commit().expect("commit");
        // Uncommitted addresses and junk are refused, not misread.
        let tail = log.tail_address();
        assert!(matches!(log.read(tail), Err(Error::InvalidAddress { .. })));
        assert!(matches!(
            log.read(LogAddress::from_raw(addresses[1500].raw() + 3)),
            Err(Error::InvalidAddress { .. })
        ));
        // Inside an entry: a wrong address, not damage.
        assert!(matches!(
            log.read(LogAddress::from_raw(addresses[1500].raw() + 8)),
            Err(Error::InvalidAddress { .. })
        ));
        assert!(matches!(
            log.truncate_until(LogAddress::from_raw(tail.raw() + 4096)),
            Err(Error::InvalidAddress { .. })
        ));
    }
    let log = FasterLog::open(tiny(dir.path())).expect("reopen");
    let data: Vec<Vec<u8>> = log.scan_all().map(|e| e.expect("entry").data).collect();
    assert_eq!(data.len(), 300 + 1);
    assert_eq!(data[0], vec![(1500u32 % 256) as u8; 100]);
    assert_eq!(data[299], vec![(1799u32 % 256) as u8; 100]);
    assert_eq!(data[300], b"new suffix");
}

/// A purge into the page the log ends in (as a Raft log does when a
/// snapshot covers everything it holds) punches out the blocks below the
/// new begin; the reopen reads that page from the begin, not from its
/// start.
#[test]
fn truncate_until_inside_the_tail_page_reopens() {
    for whole in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = || LogConfig::new(dir.path()).page_size_bits(20);
        let cut;
        {
            let log = FasterLog::open(config()).expect("open");
            let addresses: Vec<_> =
                (0..200u32).map(|i| log.enqueue(&[i as u8; 100]).expect("enqueue")).collect();
            log.commit().expect("commit");
            // Past the first 4 KiB blocks of the page, still inside it.
            cut = if whole { log.committed_until() } else { addresses[150] };
            log.truncate_until(cut).expect("truncate");
        }
        let log = FasterLog::open(config()).expect("reopen after a purge inside the tail page");
        let data: Vec<Vec<u8>> = log.scan_all().map(|e| e.expect("entry").data).collect();
        assert_eq!(data.len(), if whole { 0 } else { 50 });
        assert_eq!(log.begin_address(), cut);
        log.enqueue(b"after").expect("enqueue");
        log.commit().expect("commit");
        drop(log);
        let log = FasterLog::open(config()).expect("reopen");
        let data: Vec<Vec<u8>> = log.scan_all().map(|e| e.expect("entry").data).collect();
        assert_eq!(data.last().map(Vec::as_slice), Some(&b"after"[..]));
    }
}

#[test]
fn a_second_open_of_the_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FasterLog::open(LogConfig::new(dir.path())).expect("open");
    assert!(matches!(FasterLog::open(LogConfig::new(dir.path())), Err(Error::Locked { .. })));
    drop(log);
    FasterLog::open(LogConfig::new(dir.path())).expect("open after the first closed");
}

#[test]
fn bad_configuration_and_input_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = [
        LogConfig::new(dir.path()).page_size_bits(40),
        LogConfig::new(dir.path()).log_memory_size_bytes(3 << 22),
        LogConfig::new(dir.path()).page_size_bits(20).segment_size_bits(16),
    ];
    for config in bad {
        assert!(matches!(FasterLog::open(config), Err(Error::InvalidConfig { .. })));
    }
    let log = FasterLog::open(LogConfig::default()).expect("temporary log");
    assert!(matches!(log.commit_with_cookie(&vec![0; 20_000]), Err(Error::InvalidConfig { .. })));
    assert!(matches!(
        log.enqueue(&vec![0; log.max_entry_size() + 1]),
        Err(Error::RecordTooLarge { .. })
    ));
    let tail = log.tail_address();
    let batch = [vec![1u8; 10], vec![0; log.max_entry_size() + 1]];
    assert!(matches!(log.enqueue_batch(&batch), Err(Error::RecordTooLarge { .. })));
    assert_eq!(log.tail_address(), tail, "a refused batch placed nothing");
    assert!(matches!(log.read(LogAddress::from_raw(1 << 40)), Err(Error::InvalidAddress { .. })));
    assert!(matches!(
        log.truncate_after(LogAddress::from_raw(3)),
        Err(Error::InvalidAddress { .. })
    ));
}

#[test]
fn reopening_with_other_page_or_segment_sizes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = FasterLog::open(tiny(dir.path())).expect("open");
        log.enqueue(b"x").expect("enqueue");
        log.commit().expect("commit");
    }
    let other_pages = tiny(dir.path()).page_size_bits(13).log_memory_size_bytes(32 << 10);
    assert!(matches!(FasterLog::open(other_pages), Err(Error::InvalidConfig { .. })));
    let other_segments = tiny(dir.path()).segment_size_bits(15);
    assert!(matches!(FasterLog::open(other_segments), Err(Error::InvalidConfig { .. })));
    let log = FasterLog::open(tiny(dir.path())).expect("the right sizes open");
    assert_eq!(log.scan_all().count(), 1);
}

#[test]
fn truncation_addresses_must_be_entry_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FasterLog::open(tiny(dir.path())).expect("open");
    let addresses: Vec<LogAddress> =
        (0..200u32).map(|i| log.enqueue(&[i as u8; 40]).expect("enqueue")).collect();
    log.commit().expect("commit");
    let inside = LogAddress::from_raw(addresses[50].raw() + 16);
    assert!(matches!(log.truncate_until(inside), Err(Error::InvalidAddress { .. })));
    assert!(matches!(log.truncate_after(inside), Err(Error::InvalidAddress { .. })));
    // Nothing changed, and proper boundaries work.
    assert_eq!(log.scan_all().count(), 200);
    log.truncate_until(addresses[50]).expect("truncate_until");
    log.truncate_after(addresses[150]).expect("truncate_after");
    let data: Vec<Vec<u8>> = log.scan_all().map(|e| e.expect("entry").data).collect();
    assert_eq!(data.len(), 100);
    assert_eq!(data[0], [50u8; 40]);
    // The commit point is a boundary too.
    log.truncate_until(log.committed_until()).expect("truncate everything");
    assert_eq!(log.scan_all().count(), 0);
}

#[test]
fn limits_on_iterators_are_errors_not_failed_commits() {
    use oxifaster::device::MemoryDevice;
    let log = FasterLog::with_devices(
        LogConfig::default().page_size_bits(12).log_memory_size_bytes(16 << 10),
        MemoryDevice::new(),
        MemoryDevice::new(),
    )
    .expect("open");
    let iterators: Vec<_> =
        (0..256).map(|i| log.named_iterator(&format!("it{i}")).expect("iterator")).collect();
    assert!(matches!(log.named_iterator("one too many"), Err(Error::InvalidConfig { .. })));
    log.remove_iterator("it0");
    log.named_iterator("now there is room").expect("iterator");
    drop(iterators);
    // The log still commits and reads.
    log.enqueue(b"entry").expect("enqueue");
    log.commit().expect("commit");
    assert_eq!(log.verify().expect("verify"), 1);
}

/// Raft's conflict resolution, over and over without a purge: each round
/// appends two entries, drops the second with `truncate_after` and appends
/// again, leaving one more dropped range each time. 2,000 rounds (past the
/// 1,024 ranges a commit slot holds: the list spills to the commit
/// device's region) keep working, read back exactly the live entries, and
/// survive reopening and a later purge.
#[test]
fn two_thousand_conflict_truncations_without_a_purge_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || LogConfig::new(dir.path()).page_size_bits(12).log_memory_size_bytes(16 << 10);
    let mut live: Vec<(LogAddress, Vec<u8>)> = Vec::new();
    let mut dropped_at = Vec::new();
    {
        let log = FasterLog::open(config()).expect("open");
        for round in 0..2_000u32 {
            let kept = format!("kept {round}").into_bytes();
            let keep = log.enqueue(&kept).expect("enqueue");
            let conflict = log.enqueue(b"conflicting entry").expect("enqueue");
            log.truncate_after(conflict).expect("truncate_after");
            live.push((keep, kept));
            dropped_at.push(conflict);
            let next = format!("next {round}").into_bytes();
            live.push((log.enqueue(&next).expect("enqueue"), next));
        }
        log.commit().expect("commit");
        check_live(&log, &live, &dropped_at);
    }
    // Reopened: the same entries, the same dropped ranges.
    let log = FasterLog::open(config()).expect("reopen");
    check_live(&log, &live, &dropped_at);
    // More truncations after the reopen, then a purge of the first half:
    // the ranges below the new begin are forgotten.
    let keep = log.enqueue(b"after reopen").expect("enqueue");
    let conflict = log.enqueue(b"conflict after reopen").expect("enqueue");
    log.truncate_after(conflict).expect("truncate_after");
    live.push((keep, b"after reopen".to_vec()));
    dropped_at.push(conflict);
    let half = live.len() / 2;
    log.truncate_until(live[half].0).expect("truncate_until");
    let live = live.split_off(half);
    let dropped_at: Vec<LogAddress> = dropped_at.into_iter().filter(|a| *a > live[0].0).collect();
    check_live(&log, &live, &dropped_at);
    drop(log);
    let log = FasterLog::open(config()).expect("reopen");
    check_live(&log, &live, &dropped_at);
}

fn check_live(log: &FasterLog, live: &[(LogAddress, Vec<u8>)], dropped_at: &[LogAddress]) {
    let scanned: Vec<(LogAddress, Vec<u8>)> =
        log.scan_all().map(|e| e.map(|e| (e.address, e.data)).expect("scan")).collect();
    assert_eq!(scanned.len(), live.len());
    assert!(scanned == live, "the scan returns exactly the live entries");
    for (address, data) in live.iter().step_by(97) {
        assert_eq!(&log.read(*address).expect("read"), data);
    }
    for address in dropped_at.iter().step_by(97) {
        assert!(
            matches!(log.read(*address), Err(Error::InvalidAddress { .. })),
            "a dropped entry at {address} was read"
        );
    }
    assert_eq!(log.verify().expect("verify") as usize, live.len() + dropped_at.len());
}

#[test]
fn a_scan_survives_a_truncation_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FasterLog::open(tiny(dir.path())).expect("open");
    let addresses: Vec<LogAddress> =
        (0..3000u32).map(|i| log.enqueue(&i.to_le_bytes()).expect("enqueue")).collect();
    log.commit().expect("commit");
    let mut scan = log.scan_all();
    assert_eq!(scan.next().expect("first").expect("ok").data, 0u32.to_le_bytes());
    log.truncate_until(addresses[2500]).expect("truncate");
    let rest: Vec<u32> = scan
        .map(|e| {
            u32::from_le_bytes(
                e.expect("no error after the truncation").data.try_into().expect("4"),
            )
        })
        .collect();
    assert_eq!(rest.first(), Some(&2500), "the scan resumes at the new begin");
    assert_eq!(rest.len(), 500);
}

#[test]
fn auto_commit_saves_iterator_positions_while_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || LogConfig::new(dir.path()).auto_commit_every(Duration::from_millis(5));
    {
        let log = FasterLog::open(config()).expect("open");
        for i in 0..10u32 {
            log.enqueue(&i.to_le_bytes()).expect("enqueue");
        }
        log.commit().expect("commit");
        let mut it = log.named_iterator("reader").expect("iterator");
        let e = it.nth(4).expect("fifth").expect("ok");
        it.complete_until(e.next_address).expect("complete_until");
        std::thread::sleep(Duration::from_millis(60));
    }
    let log = FasterLog::open(config()).expect("reopen");
    let mut it = log.named_iterator("reader").expect("iterator");
    assert_eq!(it.next().expect("sixth").expect("ok").data, 5u32.to_le_bytes());
}

#[test]
fn an_entry_planted_inside_another_entrys_payload_is_never_returned() {
    use oxifaster::log::entry;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FasterLog::open(LogConfig::new(dir.path()).page_size_bits(16)).expect("open");
    log.enqueue(b"first").expect("enqueue");
    // A payload that holds, 16 bytes in, a valid encoding of an entry at
    // exactly the address where those bytes will lie.
    let at = log.tail_address().raw();
    let planted_at = at + entry::HEADER + 16;
    let forged = b"forged";
    let mut planted = vec![0u8; entry::entry_size(forged.len()) as usize];
    entry::encode(planted_at, forged, &mut planted);
    let mut payload = vec![7u8; 16];
    payload.extend_from_slice(&planted);
    payload.extend_from_slice(&[9u8; 24]);
    let carrier = log.enqueue(&payload).expect("enqueue");
    assert_eq!(carrier.raw(), at, "the carrier landed where planned");
    log.enqueue(b"after").expect("enqueue");
    log.commit().expect("commit");

    let planted = LogAddress::from_raw(planted_at);
    match log.read(planted) {
        Err(Error::InvalidAddress { .. }) => {}
        other => panic!("read of a planted entry: {other:?}"),
    }
    let mut scan = log.scan(planted, LogAddress::MAX);
    assert!(matches!(scan.next(), Some(Err(Error::InvalidAddress { .. }))));
    assert!(scan.next().is_none(), "a refused scan ends");
    let it = log.named_iterator("apply").expect("iterator");
    assert!(matches!(it.complete_until(planted), Err(Error::InvalidAddress { .. })));
    assert!(matches!(it.complete_until(LogAddress::MAX), Err(Error::InvalidAddress { .. })));
    // The real entries read as always.
    assert_eq!(log.read(carrier).expect("read"), payload);
    let all: Vec<Vec<u8>> = log.scan_all().map(|e| e.expect("entry").data).collect();
    assert_eq!(all, vec![b"first".to_vec(), payload, b"after".to_vec()]);
}

#[test]
fn sizes_are_payload_bytes_and_a_store_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log =
        FasterLog::open(LogConfig::new(dir.path().join("log")).page_size_bits(12)).expect("open");
    let max = log.max_entry_size();
    log.enqueue(&vec![1u8; max]).expect("the largest entry fits");
    match log.enqueue(&vec![1u8; max + 1]) {
        Err(Error::RecordTooLarge { size, max: limit }) => {
            assert_eq!((size, limit), ((max + 1) as u64, max as u64), "payload bytes");
        }
        other => panic!("an entry one byte too large: {other:?}"),
    }
    drop(log);
    // A store's directory is not a log's.
    let store_dir = dir.path().join("store");
    drop(oxifaster::Store::<u64, u64>::open(&store_dir).expect("store"));
    std::fs::write(store_dir.join("log.0"), b"").ok();
    assert!(matches!(
        FasterLog::open(LogConfig::new(&store_dir)),
        Err(Error::InvalidConfig { what: "dir", .. })
    ));
}
