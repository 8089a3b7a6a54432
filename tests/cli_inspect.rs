//! `oxifaster info`, `verify` and `checkpoints` on real store directories:
//! verify passes on a healthy store and finds a bit flipped in a log page
//! (naming the page) and in checkpoint metadata, exiting non-zero; info
//! describes a store of any types; checkpoints prunes; compact keeps only
//! the live records of a closed store; the bench runs variable-length
//! values and refuses sizes it cannot run.

mod common;

use common::{oxifaster, text};

use std::path::Path;

use oxifaster::Store;
use oxifaster::checkpoint::{self, CheckpointKind};
use oxifaster::device::{DEFAULT_SEGMENT_SIZE_BITS, FileDevice};

/// A store of `String` keys and `u64` values with three checkpoints.
fn make_store(dir: &Path) {
    let store = Store::<String, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 10)
        .for_types::<String, u64>()
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    for round in 0..3u64 {
        for k in 0..1500u64 {
            session.upsert(&format!("user:{k}"), &(k + round)).expect("upsert");
        }
        let kind = [CheckpointKind::FoldOver, CheckpointKind::Snapshot, CheckpointKind::LogOnly];
        store.checkpoint_and_wait(kind[round as usize]).expect("checkpoint");
    }
}

fn flip(dir: &Path, address: u64) {
    let device = FileDevice::open(dir, DEFAULT_SEGMENT_SIZE_BITS).expect("device");
    common::flip_bit(&device, address, 4);
}

#[test]
fn verify_passes_on_a_healthy_store_and_finds_a_flipped_log_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path());
    let d = dir.path().to_str().expect("utf-8");
    let healthy = oxifaster(&["verify", d]);
    assert!(healthy.status.success(), "{}", text(&healthy));
    assert_eq!(text(&healthy).matches("ok ").count(), 3, "{}", text(&healthy));

    // A bit in the middle of the second page of the log.
    flip(dir.path(), 4096 + 1000);
    let damaged = oxifaster(&["verify", d]);
    assert!(!damaged.status.success(), "{}", text(&damaged));
    let out = text(&damaged);
    assert!(out.contains("page at 0x1000"), "{out}");
    assert!(out.contains("checksum"), "{out}");
    flip(dir.path(), 4096 + 1000);
    assert!(oxifaster(&["verify", d]).status.success());
}

#[test]
fn verify_finds_a_flipped_bit_in_checkpoint_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path());
    let newest = checkpoint::list(dir.path()).expect("list").pop().expect("a checkpoint");
    let meta = dir.path().join("checkpoints").join(newest.token.as_str()).join("meta");
    let mut bytes = std::fs::read(&meta).expect("read meta");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&meta, bytes).expect("write meta");
    let out = oxifaster(&["verify", dir.path().to_str().expect("utf-8")]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = text(&out);
    assert!(out.contains(&format!("DAMAGED  {}", newest.token)), "{out}");
    assert!(out.contains("meta"), "{out}");
}

#[test]
fn info_describes_a_store_of_any_types_and_checkpoints_prunes() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path());
    let d = dir.path().to_str().expect("utf-8");
    let info = oxifaster(&["info", d, "--records", "2"]);
    assert!(info.status.success(), "{}", text(&info));
    let out = text(&info);
    assert!(out.contains("checkpoints  3"), "{out}");
    assert!(out.contains("alloc::string::String (variable length"), "{out}");
    assert!(out.contains("u64 (8 bytes"), "{out}");
    // The index the checkpoint recovers: 1,500 keys in 1,024 buckets (an
    // entry per bucket and tag: keys that share both share one).
    assert!(out.contains("  index      1024 buckets and 0 overflow buckets"), "{out}");
    let latest = checkpoint::latest_token(dir.path()).expect("latest");
    let stats = checkpoint::index_stats(dir.path(), &latest).expect("index stats");
    assert_eq!(stats.buckets, 1024);
    assert!((1490..=1500).contains(&stats.entries), "{stats:?}");
    assert!(out.contains(&format!("{} entries", stats.entries)), "{out}");
    assert!(checkpoint::index_stats(dir.path(), "no-such-token").is_err());
    // The first record: key "user:0" (length-prefixed), value 0.
    assert!(out.contains(&"user:0".bytes().map(|b| format!("{b:02x}")).collect::<String>()));
    assert!(out.contains("value 0000000000000000"), "{out}");
    // What checkpoints pin, and what a reclaim would delete.
    assert!(out.contains("pins         the lowest begin address a checkpoint needs"), "{out}");
    assert!(out.contains("reclaimable  0 segment files"), "{out}");

    let pruned = oxifaster(&["checkpoints", d, "--keep", "1"]);
    assert!(pruned.status.success(), "{}", text(&pruned));
    // The log-only checkpoint is kept with the fold-over whose index it uses.
    assert_eq!(text(&pruned).matches("deleted").count(), 1, "{}", text(&pruned));
    assert_eq!(checkpoint::list(dir.path()).expect("list").len(), 2);
    assert!(!oxifaster(&["checkpoints", d, "--keep", "0"]).status.success());
    assert!(!oxifaster(&["info", "/nonexistent/oxifaster"]).status.success());
}

#[test]
fn bench_reports_latencies_and_checkpoints_and_its_store_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    let out = oxifaster(&[
        "bench",
        "--keys",
        "20000",
        "--secs",
        "0.2",
        "--workload",
        "c,rmw",
        "--dist",
        "uniform,zipf",
        "--threads",
        "2",
        "--checkpoint-every",
        "0.05",
        "--json",
        "--dir",
        d,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The runs, and the index after the load (no growth: presized).
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("\"workload\":")).collect();
    assert_eq!(lines.len(), 5, "load and four runs: {stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("\"index_growths\":0,") && l.contains("\"index_entries\":")),
        "the index after the load: {stdout}"
    );
    for line in &lines {
        for field in ["\"mops\":", "\"p50_us\":", "\"p99_us\":", "\"p999_us\":", "\"rss_bytes\":"] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
        assert!(!line.contains("\"latency_samples\":0,"), "no latency samples: {line}");
    }
    assert!(lines[2].contains("\"workload\":\"RMW\""), "{}", lines[2]);
    assert!(!lines[2].contains("\"checkpoints\":0,"), "no checkpoint taken: {}", lines[2]);
    // The checkpoints the run took verify.
    let verify = oxifaster(&["verify", d]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("ok "), "{}", text(&verify));
}

#[test]
fn bench_runs_variable_length_values_and_refuses_bad_sizes() {
    // Payloads of sizes over a range, through a small log so that records
    // go to the device and pending reads and RMWs run: every read must find
    // its key and the counters must sum to the increments (the bench
    // checks both and fails otherwise).
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    let out = oxifaster(&[
        "bench",
        "--keys",
        "20000",
        "--ops",
        "20000",
        "--workload",
        "c,a,rmw,f",
        "--value-size",
        "16-600",
        "--log-memory",
        "1MiB",
        "--page-size-bits",
        "16",
        "--threads",
        "2",
        "--json",
        "--dir",
        d,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("\"workload\":")).collect();
    assert_eq!(lines.len(), 5, "load and four runs: {stdout}");
    assert!(lines.iter().all(|l| l.contains("\"value_size\":\"16-600\"")), "{stdout}");
    assert!(
        lines[1..].iter().any(|l| !l.contains("\"pending\":0,")),
        "no operation went to the device: {stdout}"
    );
    // One size, in memory.
    let out = oxifaster(&[
        "bench",
        "--keys",
        "5000",
        "--ops",
        "5000",
        "--workload",
        "rmw",
        "--value-size",
        "100",
        "--device",
        "null",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"value_size\":\"100\""));
    // Sizes the bench cannot run are refused with a reason, not a panic.
    for (size, says) in
        [("9", "at least"), ("600-16", "empty"), ("x", "not a size"), ("2000000", "larger than")]
    {
        let out = oxifaster(&["bench", "--keys", "100", "--value-size", size]);
        assert!(!out.status.success(), "--value-size {size} accepted");
        assert!(text(&out).contains(says), "--value-size {size}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
}

/// `oxifaster compact` on a closed store: only the live records remain
/// (every key exact afterwards, deleted keys stay deleted), the directory
/// shrinks, and its checkpoints verify. A store of types the tool does not
/// know, or a store open elsewhere, is refused with exit status 2.
#[test]
fn compact_keeps_only_the_live_records_of_a_closed_store() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = || {
        Store::<u64, String>::builder()
            .dir(dir.path())
            .page_size_bits(12)
            .log_memory_size_bytes(64 << 10)
            .table_size(1 << 10)
            .segment_size_bits(16)
    };
    let mut model = BTreeMap::new();
    {
        let store = builder().open().expect("open");
        let mut session = store.start_session().expect("session");
        for round in 0..20u64 {
            for k in 0..500u64 {
                let value = format!("{k}:{round}:{}", "x".repeat((k % 40) as usize));
                session.upsert(&k, value.as_str()).expect("upsert");
                model.insert(k, value);
            }
            store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
        }
        for k in (0..500u64).step_by(7) {
            session.delete(&k).expect("delete");
            model.remove(&k);
        }
        drop(session);
        store.close().expect("close");
    }
    let d = dir.path().to_str().expect("utf-8");
    let before = oxifaster::compaction::directory_bytes(dir.path());
    let out = oxifaster(&["compact", d]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("copied"), "{}", text(&out));
    let after = oxifaster::compaction::directory_bytes(dir.path());
    assert!(after * 3 < before, "the directory went from {before} to {after} bytes");
    let verified = oxifaster(&["verify", d]);
    assert!(verified.status.success(), "{}", text(&verified));
    {
        let store = builder().open().expect("reopen");
        let mut session = store.start_session().expect("session");
        for k in 0..500u64 {
            assert_eq!(session.read_blocking(&k).expect("read"), model.get(&k).cloned(), "key {k}");
        }
        // Open: the tool refuses it.
        let busy = oxifaster(&["compact", d]);
        assert_eq!(busy.status.code(), Some(2), "{}", text(&busy));
        assert!(text(&busy).contains("closed store"), "{}", text(&busy));
    }
    // A store of types the tool does not know.
    #[derive(Debug, Clone, Copy, PartialEq, oxifaster::FasterKey)]
    #[repr(C)]
    struct Sku(u32);
    let other = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::<Sku, u64>::builder().dir(other.path()).open().expect("open");
        let mut session = store.start_session().expect("session");
        session.upsert(&Sku(1), &1).expect("upsert");
        drop(session);
        store.close().expect("close");
    }
    let refused = oxifaster(&["compact", other.path().to_str().expect("utf-8")]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("Store::compact"), "{}", text(&refused));
}

/// The dump's lines, as a map (checking no key comes twice).
fn dumped(out: &std::process::Output) -> std::collections::BTreeMap<String, String> {
    assert!(out.status.success(), "{}", text(out));
    let mut map = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (key, value) = line.split_once('\t').expect("key<TAB>value");
        assert!(map.insert(key.to_string(), value.to_string()).is_none(), "{key} twice");
    }
    map
}

#[test]
fn dump_prints_the_live_records_of_each_checkpoint() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    let store = Store::<i64, String>::builder()
        .dir(dir.path())
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 10)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    let mut model = BTreeMap::new();
    let expect = |model: &BTreeMap<i64, String>| -> BTreeMap<String, String> {
        model.iter().map(|(k, v)| (k.to_string(), format!("{v:?}"))).collect()
    };
    let mut tokens = Vec::new();
    let kinds =
        [CheckpointKind::FoldOver, CheckpointKind::Snapshot, CheckpointKind::IncrementalSnapshot];
    for (round, kind) in kinds.into_iter().enumerate() {
        for k in -300..300i64 {
            if (k + round as i64) % 5 == 0 {
                session.delete(&k).expect("delete");
                model.remove(&k);
            } else {
                // The same length every round: hot records change in place.
                let value = format!("{k:+05}/{round}");
                session.upsert(&k, value.as_str()).expect("upsert");
                model.insert(k, value);
            }
        }
        let info = store.checkpoint_and_wait(kind).expect("checkpoint");
        tokens.push((info.token.to_string(), expect(&model)));
    }
    // The newest (an incremental snapshot), while the store is open.
    assert_eq!(dumped(&oxifaster(&["dump", d])), tokens[2].1);
    for (token, want) in &tokens {
        let out = oxifaster(&["dump", d, "--checkpoint", token]);
        assert_eq!(&dumped(&out), want, "checkpoint {token}");
        assert!(text(&out).contains("live records"), "{}", text(&out));
    }
    // Hex: -1 as eight little-endian bytes.
    let hex = dumped(&oxifaster(&["dump", d, "--hex"]));
    assert!(hex.contains_key("ffffffffffffffff"), "{hex:?}");
    let missing = oxifaster(&["dump", d, "--checkpoint", "ckpt-nope"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    let nowhere = oxifaster(&["dump", "/nonexistent/store"]);
    assert_eq!(nowhere.status.code(), Some(2), "{}", text(&nowhere));
}
