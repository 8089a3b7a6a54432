//! Statistics (`Store::stats`) through the public API: a known number of
//! operations of each kind on a tiny store that spills to the device, and
//! the snapshot must count exactly those; the Prometheus text renders
//! them; `oxifaster bench --metrics-addr` serves them over loopback while
//! it runs, and a Prometheus text parser reads what it serves.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use oxifaster::checkpoint::CheckpointKind;
use oxifaster::store::{ReadStatus, RmwStatus};
use oxifaster::{Store, StoreBuilder};

fn builder(dir: &Path) -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 12)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

#[test]
fn every_counter_counts_exactly_the_operations_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = builder(dir.path()).read_cache_bytes(8 << 12).open().expect("open");
    let mut session = store.start_session().expect("session");
    // 4,000 new keys: each upsert appends (key 0 ends on the device).
    for key in 0..4_000u64 {
        session.upsert(&key, &key).expect("upsert");
    }
    // The newest key is in the mutable region: updated in place.
    for n in 0..10u64 {
        session.upsert(&3_999, &n).expect("upsert");
    }
    for _ in 0..7 {
        assert!(matches!(session.read(&3_999).expect("read"), ReadStatus::Found(_)));
    }
    for _ in 0..5 {
        assert!(matches!(session.read(&99_999).expect("read"), ReadStatus::NotFound));
    }
    // Key 0 is on the device: the read goes pending, then completes and
    // fills the read cache; the next read of it comes from the cache.
    assert!(matches!(session.read(&0).expect("read"), ReadStatus::Pending { .. }));
    assert_eq!(session.complete_pending().expect("complete").len(), 1);
    assert!(matches!(session.read(&0).expect("read"), ReadStatus::Found(0)));
    // RMWs: four in place, one initial (a new key), one pending that
    // completes as a copy-update of the value on the device.
    for _ in 0..4 {
        assert_eq!(session.rmw(&3_999, &1).expect("rmw"), RmwStatus::Done);
    }
    assert_eq!(session.rmw(&50_000, &1).expect("rmw"), RmwStatus::Done);
    assert!(matches!(session.rmw(&1, &1).expect("rmw"), RmwStatus::Pending { .. }));
    assert_eq!(session.complete_pending().expect("complete").len(), 1);
    session.delete(&2).expect("delete");
    session.delete(&3).expect("delete");
    session.insert_if_absent(&60_000, &6).expect("insert_if_absent");

    let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
    drop(session);
    // A closed session's counts stay in the store's.
    let stats = store.stats();
    let ops = stats.operations;
    assert_eq!(ops.upserts_appended, 4_000);
    assert_eq!(ops.upserts_in_place, 10);
    assert_eq!(ops.upserts(), 4_010);
    assert_eq!(ops.reads_found, 7 + 1, "seven in memory and one from the cache");
    assert_eq!(ops.reads_from_cache, 1);
    assert_eq!(ops.reads_not_found, 5);
    assert_eq!(ops.reads_pending, 1);
    assert_eq!(ops.reads(), 14);
    assert_eq!(ops.rmws_in_place, 4);
    assert_eq!(ops.rmws_initial, 1);
    assert_eq!(ops.rmws_pending, 1);
    assert_eq!(ops.rmws_copy_update, 1, "the pending RMW completed as a copy-update");
    assert_eq!(ops.deletes, 2);
    assert_eq!(ops.conditional, 1);
    assert_eq!(ops.retries, 0, "one session: no races");
    assert_eq!(stats.pending.completed, 2);
    assert_eq!(stats.pending.latency_micros_log2.iter().sum::<u64>(), 2);
    assert!(stats.pending.total_wait > Duration::ZERO);
    assert_eq!(stats.sessions_open, 0);
    assert_eq!(stats.index.buckets, 1 << 12);
    assert_eq!(stats.index.growths, 0);
    assert_eq!(stats.log.memory_bytes, 64 << 10);
    assert!(stats.log.tail_address > stats.log.head_address);
    assert!(stats.log.on_device_bytes > 0 && stats.log.in_memory_bytes > 0);
    assert_eq!(stats.checkpoints.taken, 1);
    assert_eq!(stats.checkpoints.failed, 0);
    assert!(stats.checkpoints.bytes_written > 0);
    assert!(stats.checkpoints.last_duration > Duration::ZERO);
    assert_eq!(stats.checkpoints.recoveries, 0);
    let cache = stats.read_cache.expect("a read cache");
    assert_eq!(cache.bytes, 8 << 12);
    assert_eq!(cache.inserted, 1);

    // A second session adds to the same totals.
    let mut session = store.start_session().expect("session");
    session.delete(&4).expect("delete");
    assert_eq!(store.stats().operations.deletes, 3);
    assert_eq!(store.stats().sessions_open, 1);
    drop(session);

    // The Prometheus text holds the same numbers.
    let text = store.stats().to_prometheus();
    for line in [
        "oxifaster_operations_total{op=\"upsert\",result=\"appended\"} 4000",
        "oxifaster_operations_total{op=\"read\",result=\"not_found\"} 5",
        "oxifaster_operations_total{op=\"rmw\",result=\"pending\"} 1",
        "oxifaster_operations_total{op=\"delete\",result=\"done\"} 3",
        "oxifaster_checkpoints_total{result=\"ok\"} 1",
        "oxifaster_pending_wait_seconds_count 2",
        "oxifaster_read_cache_hits_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    assert!(parsed.samples.len() > 30);

    // A recovery is counted by the store it opens.
    drop(store);
    let store = builder(dir.path()).recover(info.token.as_str()).expect("recover");
    let stats = store.stats();
    assert_eq!(stats.checkpoints.recoveries, 1);
    assert!(stats.checkpoints.recovery_duration > Duration::ZERO);
    assert_eq!(stats.operations.reads(), 0, "counters start at zero in a new process");
}

/// `oxifaster bench --metrics-addr` serves `/metrics` over loopback while it
/// runs; the scrape parses as Prometheus text and counts the bench's
/// operations.
#[test]
fn the_bench_serves_metrics_over_loopback() {
    // A free port: bound, then released for the bench.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut bench = std::process::Command::new(env!("CARGO_BIN_EXE_oxifaster"))
        .args(["bench", "--keys", "20000", "--workload", "c", "--secs", "3", "--threads", "1"])
        .args(["--device", "null", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("bench");
    let mut body = None;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(text) = scrape(port)
            && text.contains("op=\"read\",result=\"found\"")
            && !text.contains("op=\"read\",result=\"found\"} 0")
        {
            body = Some(text);
            break;
        }
    }
    let status = bench.wait().expect("bench ran");
    assert!(status.success(), "bench failed: {status}");
    let body = body.expect("no scrape saw the bench's reads");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let appended = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "oxifaster_operations_total"
                && s.labels.get("op") == Some("upsert")
                && s.labels.get("result") == Some("appended")
        })
        .expect("upserts appended");
    assert!(
        matches!(appended.value, prometheus_parse::Value::Counter(v) if v == 20_000.0),
        "the load's 20,000 upserts: {:?}",
        appended.value
    );
    assert_eq!(value("oxifaster_index_buckets", None), Some(16_384.0));
    assert_eq!(value("oxifaster_sessions_open", None).map(|v| v >= 0.0), Some(true));
}

/// One GET of `/metrics` on 127.0.0.1:`port`: the body, or `None` while
/// nothing listens yet.
fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the body comes whole, not in chunks, and the connection
    // closes after it.
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.split(' ').nth(1).filter(|&code| code == "200").map(|_| body.to_owned())
}

/// Every metric the Grafana dashboard in `docs/` queries is one the store
/// exports.
#[test]
fn the_dashboard_queries_exported_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = builder(dir.path()).read_cache_bytes(8 << 12).open().expect("open");
    let text = store.stats().to_prometheus();
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json"),
    )
    .expect("dashboard");
    let mut queried = 0;
    for (i, _) in dashboard.match_indices("oxifaster_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        if name == "oxifaster_" {
            continue;
        }
        queried += 1;
        assert!(exported.contains(name.as_str()), "the dashboard queries `{name}`, not exported");
    }
    assert!(queried >= 15, "only {queried} queries");
}
