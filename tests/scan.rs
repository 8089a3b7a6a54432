//! Scans: live records, log scans and key histories against a model (tiny
//! pages and memory, so scans read both memory and the device), scans
//! racing writers and a checkpoint, and a log scan of a recovered store.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oxifaster::checkpoint::CheckpointKind;
use oxifaster::device::{Device, MemoryDevice};
use oxifaster::record::{Key, Value};
use oxifaster::store::{RmwStatus, Store};
use oxifaster::{Error, StoreBuilder};
use oxifaster_cli::workload::Rng;

fn tiny<V: Value>() -> StoreBuilder<u64, V> {
    Store::<u64, V>::builder()
        .table_size(64)
        .page_size_bits(10)
        .log_memory_size_bytes(4 << 10)
        .mutable_fraction(0.5)
}

/// Values built from a number.
trait Num: Value + Clone + PartialEq + Debug {
    fn of(n: u64) -> Self;
}

impl Num for u64 {
    fn of(n: u64) -> Self {
        n
    }
}

impl Num for String {
    fn of(n: u64) -> Self {
        format!("{n:0width$}", width = (n % 13) as usize + 1)
    }
}

/// The live records as a map, checking that no key comes twice.
fn live<K: Key + Ord + Debug, V: Value, D: Device>(store: &Store<K, V, D>) -> BTreeMap<K, V> {
    let mut out = BTreeMap::new();
    for item in store.iter().expect("scan") {
        let (key, value) = item.expect("record");
        assert!(out.insert(key, value).is_none(), "a key returned twice");
    }
    out
}

/// What a log scan of the whole log says the store holds: each key's last
/// record, unless it is a tombstone.
fn replayed<V: Value + Clone, D: Device>(store: &Store<u64, V, D>) -> BTreeMap<u64, V> {
    let mut out = BTreeMap::new();
    let mut last = 0;
    for record in store.scan_log(None, None).expect("scan") {
        let record = record.expect("record");
        assert!(record.address > last, "address order");
        last = record.address;
        match record.value {
            Some(value) => out.insert(record.key, value),
            None => out.remove(&record.key),
        };
    }
    out
}

fn model_run<V: Num, D: Device>(store: Store<u64, V, D>, seed: u64) {
    let mut session = store.start_session().expect("session");
    let mut model: BTreeMap<u64, V> = BTreeMap::new();
    let mut writes: HashMap<u64, Vec<Option<V>>> = HashMap::new();
    let mut rng = Rng::new(seed);
    let keys = 300;
    for step in 0..6_000u64 {
        let key = rng.below(keys);
        if rng.below(10) == 0 {
            session.delete(&key).expect("delete");
            model.remove(&key);
            writes.entry(key).or_default().push(None);
        } else {
            let value = V::of(rng.below(1_000));
            session.upsert(&key, &value).expect("upsert");
            model.insert(key, value.clone());
            writes.entry(key).or_default().push(Some(value));
        }
        if step % 1_500 == 1_499 {
            assert_eq!(live(&store), model, "seed {seed} step {step}: live scan");
            assert_eq!(replayed(&store), model, "seed {seed} step {step}: log scan");
            for key in (0..keys).step_by(17) {
                check_history(&mut session, key, writes.get(&key), seed);
            }
        }
    }
    let regions = store.log_regions();
    assert!(regions.head_address > regions.begin_address + 4 * regions.page_size_bytes);
}

/// A key's history is its writes, newest first, less those made in place
/// (which changed a record rather than adding one): a subsequence of the
/// writes that starts with the newest.
fn check_history<V: Num, D: Device>(
    session: &mut oxifaster::Session<u64, V, D>,
    key: u64,
    writes: Option<&Vec<Option<V>>>,
    seed: u64,
) {
    // A delete of a key without a value may or may not write a
    // tombstone: drop such deletes from both sides.
    let normal = |oldest_first: Vec<Option<V>>| -> Vec<Option<V>> {
        let mut out: Vec<Option<V>> = Vec::new();
        for w in oldest_first {
            if w.is_some() || out.last().is_some_and(Option::is_some) {
                out.push(w);
            }
        }
        out.reverse();
        out
    };
    let mut history: Vec<Option<V>> =
        session.history(&key).expect("history").into_iter().map(|v| v.value).collect();
    history.reverse();
    let history = normal(history);
    let writes = normal(writes.cloned().unwrap_or_default());
    if writes.is_empty() {
        assert!(history.is_empty());
        return;
    }
    assert_eq!(history.first(), writes.first(), "seed {seed}: key {key}'s newest version");
    let mut rest = writes.iter();
    for version in &history {
        assert!(rest.any(|w| w == version), "seed {seed}: key {key}: {history:?} in {writes:?}");
    }
}

#[test]
fn scans_match_a_model_one_word_values() {
    for seed in [1, 2] {
        model_run(tiny::<u64>().open_with_device(MemoryDevice::new()).expect("open"), seed);
    }
}

#[test]
fn scans_match_a_model_text_values_on_files() {
    for seed in [3, 4] {
        let dir = tempfile::tempdir().expect("tempdir");
        model_run(tiny::<String>().dir(dir.path()).open().expect("open"), seed);
    }
}

/// Writes that always append (each value a new length) leave a history
/// equal to the writes, newest first, in memory and on the device.
#[test]
fn history_is_every_write_when_writes_append() {
    let store = tiny::<String>().open_with_device(MemoryDevice::new()).expect("open");
    let mut session = store.start_session().expect("session");
    let mut written = Vec::new();
    for round in 1..=60usize {
        for key in 0..20u64 {
            let value = "x".repeat(round) + &key.to_string();
            session.upsert(&key, value.as_str()).expect("upsert");
            if key == 3 {
                written.push(value);
            }
        }
    }
    assert!(store.log_regions().head_address > store.log_regions().begin_address);
    let history = session.history(&3).expect("history");
    let values: Vec<String> = history.iter().map(|v| v.value.clone().expect("a value")).collect();
    written.reverse();
    assert_eq!(values, written);
    assert!(history.windows(2).all(|w| w[0].address > w[1].address), "newest first");
    assert!(session.history(&99).expect("history").is_empty());
}

/// Writers update some keys, insert and delete others, while a live scan
/// runs over a log that spills to the device, and a checkpoint is taken
/// in the middle of it. Keys that exist for the whole scan are returned
/// exactly once, each with a value it held during the scan (their values
/// only grow: at least the value before the scan, at most the one after).
#[test]
fn a_live_scan_returns_each_stable_key_once_while_writers_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::<u64, u64>::builder()
        .table_size(1 << 10)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .dir(dir.path())
        .open()
        .expect("open");
    const STABLE: u64 = 5_000;
    const VOLATILE: u64 = 2_000;
    let mut session = store.start_session().expect("session");
    for key in 0..STABLE + VOLATILE {
        session.upsert(&key, &1).expect("upsert");
    }
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut session = store.start_session().expect("session");
                    let mut rng = Rng::new(t + 100 * round);
                    while !stop.load(Ordering::Relaxed) {
                        let key = rng.below(STABLE + VOLATILE);
                        if key < STABLE {
                            if session.rmw(&key, &1).expect("rmw") != RmwStatus::Done {
                                session.complete_pending().expect("complete");
                            }
                        } else if rng.below(2) == 0 {
                            session.delete(&key).expect("delete");
                        } else {
                            session.upsert(&key, &7).expect("upsert");
                        }
                    }
                })
            })
            .collect();
        let before: Vec<u64> = (0..STABLE)
            .map(|k| session.read_blocking(&k).expect("read").expect("stable"))
            .collect();
        let mut scan = store.iter().expect("scan");
        let mut seen = vec![0u32; (STABLE + VOLATILE) as usize];
        let mut values = vec![0u64; STABLE as usize];
        let mut n = 0;
        for item in scan.by_ref() {
            let (key, value) = item.expect("record");
            seen[key as usize] += 1;
            if key < STABLE {
                values[key as usize] = value;
            }
            n += 1;
            if n == 1_000 {
                // A checkpoint while the scan runs.
                store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
            }
        }
        assert!(scan.records_read() > STABLE);
        drop(scan);
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("writer");
        }
        for key in 0..STABLE {
            let after = session.read_blocking(&key).expect("read").expect("stable");
            assert_eq!(seen[key as usize], 1, "round {round}: stable key {key}");
            let got = values[key as usize];
            let held = before[key as usize]..=after;
            assert!(held.contains(&got), "round {round}: key {key}: {got} not in {held:?}");
        }
        assert!(seen.iter().all(|&n| n <= 1), "round {round}: a key returned twice");
    }
}

/// A log scan of a recovered store (its log has a dead range where the
/// old incarnation's tail was) replays to what the store holds.
#[test]
fn a_log_scan_of_a_recovered_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = || {
        Store::<u64, String>::builder()
            .page_size_bits(12)
            .log_memory_size_bytes(32 << 10)
            .dir(dir.path())
    };
    let mut model = BTreeMap::new();
    {
        let store = builder().open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..3_000u64 {
            let value = String::of(key);
            session.upsert(&key, value.as_str()).expect("upsert");
            model.insert(key, value);
        }
        for key in (0..3_000u64).step_by(3) {
            session.delete(&key).expect("delete");
            model.remove(&key);
        }
        drop(session);
        store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    }
    let store = builder().recover_latest().expect("recover");
    assert_eq!(replayed(&store), model);
    assert_eq!(live(&store), model);
    // Writes after recovery land past the dead range.
    let mut session = store.start_session().expect("session");
    session.upsert(&1, "again").expect("upsert");
    model.insert(1, "again".into());
    assert_eq!(replayed(&store), model);
    assert_eq!(live(&store), model);
}

#[test]
fn log_scan_ranges_are_checked() {
    let store = tiny::<u64>().open_with_device(MemoryDevice::new()).expect("open");
    let mut session = store.start_session().expect("session");
    for key in 0..2_000u64 {
        session.upsert(&key, &key).expect("upsert");
    }
    let regions = store.log_regions();
    let page = regions.page_size_bytes;
    store.compact(regions.safe_read_only_address / page * page).expect("compact");
    let begin = store.log_regions().begin_address;
    let invalid = |r: Result<_, Error>| matches!(r, Err(Error::InvalidAddress { .. }));
    assert!(invalid(store.scan_log(Some(begin - 8), None).map(drop)));
    assert!(invalid(store.scan_log(None, Some(store.log_regions().tail_address + 8)).map(drop)));
    // Inside a record: the first item is the error.
    let first = store.scan_log(Some(begin + 8), None).expect("scan").next().expect("item");
    assert!(matches!(first, Err(Error::InvalidAddress { .. })), "{first:?}");
    // A record's address is a boundary: the scan from it is the tail of
    // the whole scan.
    let all: Vec<_> = store.scan_log(None, None).expect("scan").map(|r| r.expect("r")).collect();
    let mid = &all[all.len() / 2];
    let rest: Vec<_> =
        store.scan_log(Some(mid.address), None).expect("scan").map(|r| r.expect("r")).collect();
    assert_eq!(rest, all[all.len() / 2..]);
    let part: Vec<_> = store
        .scan_log(Some(all[10].address), Some(all[20].address))
        .expect("scan")
        .map(|r| r.expect("r"))
        .collect();
    assert_eq!(part, all[10..20]);
}

/// Compaction waits for running scans; a scan started while another runs
/// (nested, on the same thread) does not wait for that compaction.
#[test]
fn compaction_waits_for_scans_and_nested_scans_do_not_deadlock() {
    let store = tiny::<u64>().open_with_device(MemoryDevice::new()).expect("open");
    let mut session = store.start_session().expect("session");
    for round in 0..3u64 {
        for key in 0..500u64 {
            session.upsert(&key, &(key + round)).expect("upsert");
        }
    }
    let outer = store.iter().expect("scan");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let compactor = {
        let store = store.clone();
        std::thread::spawn(move || {
            let regions = store.log_regions();
            let page = regions.page_size_bytes;
            let report = store.compact(regions.safe_read_only_address / page * page);
            done_tx.send(()).expect("send");
            report.expect("compact")
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(done_rx.try_recv().is_err(), "the compaction ran beside a scan");
    let inner = store.iter().expect("nested scan");
    let expected: BTreeMap<u64, u64> = (0..500).map(|k| (k, k + 2)).collect();
    let mut a = BTreeMap::new();
    for item in inner {
        let (k, v) = item.expect("record");
        a.insert(k, v);
    }
    assert_eq!(a, expected);
    let mut b = BTreeMap::new();
    for item in outer {
        let (k, v) = item.expect("record");
        b.insert(k, v);
    }
    assert_eq!(b, expected);
    done_rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the compaction finished");
    let report = compactor.join().expect("compactor");
    assert!(report.until > report.from);
    assert_eq!(live(&store), expected);
}
