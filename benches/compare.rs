//! The peer comparison (BENCHMARKS.md): the same YCSB workloads, keys,
//! threads and key traces on oxifaster 0.2 and on the embedded stores a
//! Rust user would otherwise pick, in one process and one run, store by
//! store for every point: `dashmap` (an in-memory hash map: the upper
//! bound), oxifaster's F2 store (`f2`: hot and cold tiers, the cache as
//! its memory budget), oxifaster 0.1.3 (crates.io), RocksDB (the system's librocksdb,
//! WAL off, a merge operator for RMW), `redb` (durability none, one write
//! transaction per batch of 256 operations), `fjall` (its optimistic
//! transactional keyspace, `fetch_update` for RMW) and `sled`
//! (`update_and_fetch` for RMW). After the RMW runs each store's counters
//! are summed and compared with the increments issued; a difference is
//! reported as LOST UPDATES, and a read of a loaded key that finds nothing
//! as WRONG NOT-FOUND.
//!
//! ```sh
//! scripts/compare.sh                                  # installs librocksdb-dev, runs 1 M and 10 M keys
//! OXIFASTER_COMPARE_KEYS=50000000 scripts/compare.sh  # one key count
//! OXIFASTER_COMPARE_LTM=1 scripts/compare.sh          # larger than memory: 1/10 of the data cached
//! ```
//!
//! Knobs: `OXIFASTER_COMPARE_SECS` (per point, default 3),
//! `OXIFASTER_COMPARE_KEYGEN` (`trace`, the default: keys from a trace made
//! before the run, as FASTER's benchmark; `inline`: every key computed in
//! the loop, as a YCSB client does; or `trace,inline`),
//! `OXIFASTER_COMPARE_WORKLOADS` (default `c,rmw,a`, in that order),
//! `OXIFASTER_COMPARE_CACHE_MIB` (each store's cache or memory budget,
//! instead of the default for the key count),
//! `OXIFASTER_COMPARE_DIRECT=1` (direct I/O for oxifaster, F2 and
//! RocksDB: no page cache beside each store's own memory),
//! `OXIFASTER_COMPARE_STORES` (comma-separated names), `OXIFASTER_COMPARE_THREADS`
//! (default `1,2`), `OXIFASTER_COMPARE_ROUNDS` (default 1: each store
//! alone, store after store; N > 1: the chosen stores loaded side by side
//! and every point run N times in turns, alternating the order, the median
//! reported with every round's figure in the notes: on a machine whose
//! speed drifts, the fair way to compare two stores), `OXIFASTER_COMPARE_CHART`
//! (write a PNG chart of the results there).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use oxifaster_cli::workload::{Distribution, KeyChooser, Op, Rng, Workload, fnv64, key_trace};

/// One session of a store under test. `settle` ends a batch of 256
/// operations (completes pending I/O, commits a transaction).
trait Worker {
    fn read(&mut self, key: u64) -> bool;
    fn upsert(&mut self, key: u64, value: u64);
    fn rmw(&mut self, key: u64);
    /// Returns the reads it completed that found nothing (for a store whose
    /// reads may finish here rather than in `read`).
    fn settle(&mut self) -> u64;
    fn get(&mut self, key: u64) -> Option<u64>;
    /// The sum of every stored counter in one ordered scan, where the
    /// store has one (far faster than a point read per key when the data
    /// is larger than the cache); `None` to sum by point reads. Only the
    /// loaded keys are ever written, so both sums are the same check.
    fn scan_sum(&mut self) -> Option<u64> {
        None
    }
}

/// A store under test.
trait System: Send + Sync {
    fn name(&self) -> String;
    fn worker(&self) -> Box<dyn Worker + '_>;
    /// Runs after the load, before the first timed point, for a store that
    /// has background work to finish first (RocksDB's flush and
    /// compactions, so that its reads are not measured behind them).
    fn after_load(&self) {}
}

/// How much of the data a store may cache: all of it, or (larger than
/// memory) a tenth.
#[derive(Clone, Copy)]
struct Sizing {
    keys: u64,
    cache_bytes: u64,
    larger_than_memory: bool,
    /// Direct I/O for the stores that read from files
    /// (`OXIFASTER_COMPARE_DIRECT`): no page cache beside the run's
    /// memory.
    direct: bool,
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("oxifaster-compare-{name}-"))
        .tempdir()
        .expect("tempdir")
}

fn be(key: u64) -> [u8; 8] {
    key.to_be_bytes()
}

fn le_value(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

// ---- oxifaster 0.2 (this crate) ----

struct Ours<D: oxifaster::device::Device>(oxifaster::Store<u64, u64, D>, &'static str);
struct OursWorker<D: oxifaster::device::Device>(oxifaster::Session<u64, u64, D>);

impl<D: oxifaster::device::Device> Worker for OursWorker<D> {
    fn read(&mut self, key: u64) -> bool {
        use oxifaster::store::ReadStatus;
        match self.0.read(&key).expect("read") {
            ReadStatus::Found(_) => true,
            ReadStatus::NotFound => false,
            ReadStatus::Pending { .. } => self.get(key).is_some(),
            other => panic!("read: {other:?}"),
        }
    }
    fn upsert(&mut self, key: u64, value: u64) {
        self.0.upsert(&key, &value).expect("upsert");
    }
    fn rmw(&mut self, key: u64) {
        self.0.rmw(&key, &1).expect("rmw");
    }
    fn settle(&mut self) -> u64 {
        if self.0.pending_count() > 0 {
            self.0.complete_pending().expect("complete_pending");
        }
        0
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.read_blocking(&key).expect("read")
    }
}

impl<D: oxifaster::device::Device> System for Ours<D> {
    fn name(&self) -> String {
        self.1.into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(OursWorker(self.0.start_session().expect("session")))
    }
}

fn ours(s: Sizing) -> Box<dyn System> {
    let builder = oxifaster::Store::<u64, u64>::builder()
        .table_size((s.keys / 2).next_power_of_two())
        // Smaller pages when larger than memory, so that the ring holds
        // enough of them.
        .page_size_bits(if s.larger_than_memory { 20 } else { 22 })
        .max_sessions(8);
    if s.larger_than_memory {
        let dir = Box::leak(Box::new(temp_dir("oxifaster")));
        let store = builder
            .dir(dir.path())
            .log_memory_size_bytes(s.cache_bytes.next_power_of_two() / 2)
            .direct_io(s.direct)
            .open()
            .expect("store");
        Box::new(Ours(store, "oxifaster 0.2"))
    } else {
        let store = builder
            .log_memory_size_bytes((s.keys * 24 * 8).next_power_of_two().max(64 << 20))
            .open_with_device(oxifaster::device::NullDevice)
            .expect("store");
        Box::new(Ours(store, "oxifaster 0.2"))
    }
}

// ---- oxifaster's F2 store (hot and cold tiers) ----

// The directory lives as long as the store.
#[allow(dead_code)]
struct F2(oxifaster::f2::F2Store<u64, u64>, tempfile::TempDir);
struct F2Worker(oxifaster::f2::F2Session<u64, u64>);

impl Worker for F2Worker {
    fn read(&mut self, key: u64) -> bool {
        use oxifaster::store::ReadStatus;
        // A pending read (a hot device read or a cold lookup) finishes in
        // `settle`, with the others of its round, which counts it there.
        !matches!(self.0.read(&key).expect("read"), ReadStatus::NotFound)
    }
    fn upsert(&mut self, key: u64, value: u64) {
        self.0.upsert(&key, &value).expect("upsert");
    }
    fn rmw(&mut self, key: u64) {
        self.0.rmw(&key, &1).expect("rmw");
    }
    fn settle(&mut self) -> u64 {
        use oxifaster::store::CompletedOp;
        let mut not_found = 0;
        for done in self.0.complete_pending().expect("complete_pending") {
            match done.op {
                CompletedOp::Read(None) => not_found += 1,
                CompletedOp::Failed(e) => panic!("a pending read failed: {e}"),
                _ => {}
            }
        }
        not_found
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.read_blocking(&key).expect("read")
    }
}

impl System for F2 {
    fn name(&self) -> String {
        "oxifaster F2".into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(F2Worker(self.0.start_session().expect("session")))
    }
    /// The migrations the load left due run out (the hot log back within
    /// its size), as RocksDB's compactions do in its `after_load`.
    fn after_load(&self) {
        self.0.settle(std::time::Duration::from_secs(3_600));
    }
}

/// The F2 store with the run's cache as its whole memory budget (hot log,
/// hot index and the cold index's memory together), as `bench --store f2`
/// configures it.
fn f2_store(s: Sizing) -> Box<dyn System> {
    let dir = temp_dir("f2");
    let store = oxifaster::f2::F2Store::<u64, u64>::builder()
        .dir(dir.path())
        .page_size_bits(20)
        .memory_budget(s.cache_bytes)
        .cold_index_chunks((s.keys / 16).max(1))
        .cold_log_size_bytes(Some((s.keys * 96).max(64 << 20)))
        .max_sessions(8)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
        .direct_io(s.direct)
        .open()
        .expect("f2");
    Box::new(F2(store, dir))
}

// ---- dashmap: the in-memory upper bound ----

struct Dash(dashmap::DashMap<u64, u64>);
struct DashWorker<'a>(&'a dashmap::DashMap<u64, u64>);

impl Worker for DashWorker<'_> {
    fn read(&mut self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn upsert(&mut self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
    fn rmw(&mut self, key: u64) {
        *self.0.entry(key).or_insert(0) += 1;
    }
    fn settle(&mut self) -> u64 {
        0
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|v| *v)
    }
}

impl System for Dash {
    fn name(&self) -> String {
        "dashmap".into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(DashWorker(&self.0))
    }
}

// ---- oxifaster 0.1.3 ----

type Old = oxifaster_0_1::store::FasterKv<u64, u64, oxifaster_0_1::device::NullDisk>;
struct Previous(Arc<Old>);
/// The session, and whether an operation went pending since the last settle
/// (its `complete_pending(true)` is only called when one did).
struct PreviousWorker(
    oxifaster_0_1::store::Session<u64, u64, oxifaster_0_1::device::NullDisk>,
    bool,
);

impl Worker for PreviousWorker {
    fn read(&mut self, key: u64) -> bool {
        match self.0.read(&key) {
            Ok(found) => found.is_some(),
            Err(_) => self.get(key).is_some(),
        }
    }
    fn upsert(&mut self, key: u64, value: u64) {
        if self.0.upsert(key, value) == oxifaster_0_1::status::Status::Pending {
            self.1 = true;
        }
    }
    fn rmw(&mut self, key: u64) {
        let status = self.0.rmw(key, |v| {
            *v += 1;
            true
        });
        if status == oxifaster_0_1::status::Status::Pending {
            self.1 = true;
        }
    }
    fn settle(&mut self) -> u64 {
        if std::mem::take(&mut self.1) {
            self.0.complete_pending(true);
        }
        0
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        for _ in 0..1000 {
            match self.0.read(&key) {
                Ok(found) => return found,
                Err(_) => {
                    self.0.complete_pending(true);
                }
            }
        }
        None
    }
}

impl System for Previous {
    fn name(&self) -> String {
        "oxifaster 0.1.3".into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(PreviousWorker(self.0.start_session().expect("session"), false))
    }
}

fn previous(s: Sizing) -> Box<dyn System> {
    let config = oxifaster_0_1::store::FasterKvConfig {
        table_size: (s.keys / 2).next_power_of_two(),
        log_memory_size: (s.keys * 64 * 4).next_power_of_two().max(64 << 20),
        page_size_bits: 22,
        mutable_fraction: 0.9,
    };
    Box::new(Previous(Arc::new(Old::new(config, oxifaster_0_1::device::NullDisk::new()))))
}

// ---- RocksDB (the system library) ----

// The directory (and the database handle) live as long as the store.
#[allow(dead_code)]
struct Rocks(rocksdb::DB, rocksdb::WriteOptions, tempfile::TempDir);
struct RocksWorker<'a>(&'a Rocks);

fn add_operator(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut sum = existing.map_or(0, le_value);
    for op in operands {
        sum = sum.wrapping_add(le_value(op));
    }
    Some(sum.to_le_bytes().to_vec())
}

impl Worker for RocksWorker<'_> {
    fn read(&mut self, key: u64) -> bool {
        self.0.0.get_pinned(be(key)).expect("get").is_some()
    }
    fn upsert(&mut self, key: u64, value: u64) {
        self.0.0.put_opt(be(key), value.to_le_bytes(), &self.0.1).expect("put");
    }
    fn rmw(&mut self, key: u64) {
        self.0.0.merge_opt(be(key), 1u64.to_le_bytes(), &self.0.1).expect("merge");
    }
    fn settle(&mut self) -> u64 {
        0
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.0.get_pinned(be(key)).expect("get").map(|v| le_value(&v))
    }
    fn scan_sum(&mut self) -> Option<u64> {
        let mut total = 0u64;
        for item in self.0.0.iterator(rocksdb::IteratorMode::Start) {
            total = total.wrapping_add(le_value(&item.expect("scan").1));
        }
        Some(total)
    }
}

impl System for Rocks {
    fn name(&self) -> String {
        "RocksDB".into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(RocksWorker(self))
    }
    /// The memtable flushed and every level compacted into the last one:
    /// the reads that follow meet one sorted run per key range, with no
    /// compaction in flight (the layout RocksDB reads best).
    fn after_load(&self) {
        self.0.flush().expect("flush");
        self.0.compact_range::<&[u8], &[u8]>(None, None);
    }
}

fn rocks(s: Sizing) -> Box<dyn System> {
    let dir = temp_dir("rocksdb");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.set_merge_operator_associative("add", add_operator);
    options.increase_parallelism(2);
    // Tuned for point lookups as RocksDB's guide suggests: bloom filters
    // (also on the memtable), a block cache of the run's size.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(s.cache_bytes as usize).expect("cache"));
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    // Index and filter blocks partitioned, their top level pinned: with
    // the data larger than the cache, a monolithic filter block of a large
    // file (megabytes) is evicted and read back whole by the next lookup
    // (each Get then took milliseconds at 50 M keys).
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_pin_top_level_index_and_filter(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    options.set_block_based_table_factory(&table);
    options.set_memtable_prefix_bloom_ratio(0.1);
    options.set_memtable_whole_key_filtering(true);
    if s.direct {
        options.set_use_direct_reads(true);
        options.set_use_direct_io_for_flush_and_compaction(true);
    }
    let db = rocksdb::DB::open(&options, dir.path()).expect("rocksdb");
    let mut write = rocksdb::WriteOptions::default();
    write.disable_wal(true);
    Box::new(Rocks(db, write, dir))
}

// ---- redb ----

const REDB_TABLE: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("kv");

// The directory (and the database handle) live as long as the store.
#[allow(dead_code)]
struct Redb(redb::Database, tempfile::TempDir);
/// Reads go through a read transaction per batch; writes through one write
/// transaction per batch (redb has one writer at a time), committed with
/// durability none at `settle`.
struct RedbWorker<'a> {
    db: &'a redb::Database,
    read: Option<redb::ReadTransaction>,
    write: Option<redb::WriteTransaction>,
}

impl RedbWorker<'_> {
    fn write_tx(&mut self) -> &redb::WriteTransaction {
        if self.write.is_none() {
            self.read = None;
            let mut tx = self.db.begin_write().expect("begin_write");
            let _ = tx.set_durability(redb::Durability::None);
            self.write = Some(tx);
        }
        self.write.as_ref().expect("write transaction")
    }
}

impl Worker for RedbWorker<'_> {
    fn read(&mut self, key: u64) -> bool {
        self.get(key).is_some()
    }
    fn upsert(&mut self, key: u64, value: u64) {
        let tx = self.write_tx();
        tx.open_table(REDB_TABLE).expect("table").insert(key, value).expect("insert");
    }
    fn rmw(&mut self, key: u64) {
        use redb::ReadableTable;
        let tx = self.write_tx();
        let mut table = tx.open_table(REDB_TABLE).expect("table");
        let old = table.get(key).expect("get").map_or(0, |v| v.value());
        table.insert(key, old + 1).expect("insert");
    }
    fn settle(&mut self) -> u64 {
        self.read = None;
        if let Some(tx) = self.write.take() {
            tx.commit().expect("commit");
        }
        0
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        use redb::{ReadableDatabase, ReadableTable};
        if let Some(tx) = &self.write {
            return tx
                .open_table(REDB_TABLE)
                .expect("table")
                .get(key)
                .expect("get")
                .map(|v| v.value());
        }
        if self.read.is_none() {
            self.read = Some(self.db.begin_read().expect("begin_read"));
        }
        let tx = self.read.as_ref().expect("read transaction");
        tx.open_table(REDB_TABLE).expect("table").get(key).expect("get").map(|v| v.value())
    }
    fn scan_sum(&mut self) -> Option<u64> {
        use redb::{ReadableDatabase, ReadableTable};
        self.settle();
        let tx = self.db.begin_read().expect("begin_read");
        let table = tx.open_table(REDB_TABLE).expect("table");
        let mut total = 0u64;
        for item in table.iter().expect("scan") {
            total = total.wrapping_add(item.expect("scan").1.value());
        }
        Some(total)
    }
}

impl System for Redb {
    fn name(&self) -> String {
        "redb".into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(RedbWorker { db: &self.0, read: None, write: None })
    }
}

fn redb_store(s: Sizing) -> Box<dyn System> {
    let dir = temp_dir("redb");
    let db = redb::Database::builder()
        .set_cache_size(s.cache_bytes as usize)
        .create(dir.path().join("db.redb"))
        .expect("redb");
    Box::new(Redb(db, dir))
}

// ---- fjall ----

// The directory (and the database handle) live as long as the store.
#[allow(dead_code)]
struct Fjall(fjall::OptimisticTxDatabase, fjall::OptimisticTxKeyspace, tempfile::TempDir);
struct FjallWorker<'a>(&'a fjall::OptimisticTxKeyspace);

impl Worker for FjallWorker<'_> {
    fn read(&mut self, key: u64) -> bool {
        self.0.get(be(key)).expect("get").is_some()
    }
    fn upsert(&mut self, key: u64, value: u64) {
        self.0.insert(be(key), value.to_le_bytes()).expect("insert");
    }
    fn rmw(&mut self, key: u64) {
        self.0
            .fetch_update(be(key), |old| {
                Some((old.map_or(0, |v| le_value(v)) + 1).to_le_bytes().to_vec().into())
            })
            .expect("fetch_update");
    }
    fn settle(&mut self) -> u64 {
        0
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.get(be(key)).expect("get").map(|v| le_value(&v))
    }
}

impl System for Fjall {
    fn name(&self) -> String {
        "fjall".into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(FjallWorker(&self.1))
    }
}

fn fjall_store(s: Sizing) -> Box<dyn System> {
    let dir = temp_dir("fjall");
    let db = fjall::OptimisticTxDatabase::builder(dir.path())
        .cache_size(s.cache_bytes)
        .open()
        .expect("fjall");
    let keyspace = db.keyspace("kv", fjall::KeyspaceCreateOptions::default).expect("keyspace");
    Box::new(Fjall(db, keyspace, dir))
}

// ---- sled ----

// The directory (and the database handle) live as long as the store.
#[allow(dead_code)]
struct Sled(sled::Db, tempfile::TempDir);
struct SledWorker<'a>(&'a sled::Db);

impl Worker for SledWorker<'_> {
    fn read(&mut self, key: u64) -> bool {
        self.0.get(be(key)).expect("get").is_some()
    }
    fn upsert(&mut self, key: u64, value: u64) {
        self.0.insert(be(key), &value.to_le_bytes()).expect("insert");
    }
    fn rmw(&mut self, key: u64) {
        self.0
            .update_and_fetch(be(key), |old| {
                Some((old.map_or(0, le_value) + 1).to_le_bytes().to_vec())
            })
            .expect("update");
    }
    fn settle(&mut self) -> u64 {
        0
    }
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.get(be(key)).expect("get").map(|v| le_value(&v))
    }
    fn scan_sum(&mut self) -> Option<u64> {
        let mut total = 0u64;
        for item in self.0.iter() {
            total = total.wrapping_add(le_value(&item.expect("scan").1));
        }
        Some(total)
    }
}

impl System for Sled {
    fn name(&self) -> String {
        "sled".into()
    }
    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(SledWorker(&self.0))
    }
}

fn sled_store(s: Sizing) -> Box<dyn System> {
    let dir = temp_dir("sled");
    let db =
        sled::Config::new().path(dir.path()).cache_capacity(s.cache_bytes).open().expect("sled");
    Box::new(Sled(db, dir))
}

// ---- the harness ----

type Maker = fn(Sizing) -> Box<dyn System>;

/// Every store, by name, with whether it can run larger than memory.
/// oxifaster 0.1.3 runs last: if it hangs, its threads keep spinning, and
/// nothing else may be measured beside them.
const STORES: [(&str, Maker, bool); 8] = [
    ("oxifaster", ours, true),
    ("f2", f2_store, true),
    ("dashmap", |_| Box::new(Dash(dashmap::DashMap::new())), false),
    ("rocksdb", rocks, true),
    ("redb", redb_store, true),
    ("fjall", fjall_store, true),
    ("sled", sled_store, true),
    ("oxifaster-0.1.3", previous, false),
];

fn load(system: &dyn System, keys: u64) -> f64 {
    let start = Instant::now();
    let mut w = system.worker();
    for i in 0..keys {
        w.upsert(fnv64(i), 0);
        if i % 256 == 255 {
            w.settle();
        }
    }
    w.settle();
    keys as f64 / start.elapsed().as_secs_f64() / 1e6
}

struct Outcome {
    mops: f64,
    not_found: u64,
    rmws: u64,
    latency: Histogram<u64>,
}

/// One worker's run: replays `trace` with `workload`'s mix until `stop`,
/// or with `inline`, computes each key with that chooser in the loop;
/// times one operation in 64.
fn drive(
    mut w: Box<dyn Worker + '_>,
    workload: Workload,
    trace: &[u64],
    inline: Option<&KeyChooser>,
    thread: usize,
    stop: &AtomicBool,
    ready: &Barrier,
) -> (u64, u64, u64, Histogram<u64>) {
    let mut rng = Rng::new(thread as u64 + 1);
    let mut key_rng = Rng::new(100 + thread as u64);
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let (mut ops, mut not_found, mut rmws, mut next) = (0u64, 0u64, 0u64, 0usize);
    ready.wait();
    while !stop.load(Ordering::Relaxed) {
        let sampled = (ops / 256 * 37 % 64) as usize;
        for i in 0..256usize {
            let key = match inline {
                Some(chooser) => fnv64(chooser.next(&mut key_rng)),
                None => {
                    let key = trace[next];
                    next = (next + 1) % trace.len();
                    key
                }
            };
            let timed = (i % 64 == sampled).then(Instant::now);
            match workload.next_op(&mut rng) {
                Op::Read => not_found += u64::from(!w.read(key)),
                Op::Upsert => w.upsert(key, ops),
                Op::Rmw => {
                    w.rmw(key);
                    rmws += 1;
                }
                // The peers have no conditional operations; this
                // comparison runs C, RMW and A only.
                Op::Cas | Op::Insert => unreachable!("{workload:?} is not compared"),
            }
            if let Some(at) = timed {
                let _ = latency.record(at.elapsed().as_nanos() as u64);
            }
            ops += 1;
        }
        not_found += w.settle();
    }
    (ops, not_found, rmws, latency)
}

/// Runs a point on detached threads under a watchdog: `None` if the workers
/// have not stopped `grace` after the run's end (oxifaster 0.1.3 can hang);
/// their threads are then left behind and the store is not measured
/// further.
fn run(
    system: &Arc<dyn System>,
    workload: Workload,
    traces: &[Arc<Vec<u64>>],
    inline: Option<&Arc<KeyChooser>>,
    secs: f64,
    grace: Duration,
) -> Option<Outcome> {
    let threads = traces.len();
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(threads + 1));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (t, trace) in traces.iter().enumerate() {
        let (system, stop, ready, done_tx, trace) =
            (system.clone(), stop.clone(), ready.clone(), done_tx.clone(), trace.clone());
        let inline = inline.cloned();
        std::thread::spawn(move || {
            let counts =
                drive(system.worker(), workload, &trace, inline.as_deref(), t, &stop, &ready);
            let _ = done_tx.send(counts);
        });
    }
    drop(done_tx);
    ready.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + grace;
    let mut counts = Vec::new();
    while counts.len() < threads {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(c) => counts.push(c),
            Err(_) => return None,
        }
    }
    let elapsed = start.elapsed();
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    for c in &counts {
        let _ = latency.add(&c.3);
    }
    Some(Outcome {
        mops: counts.iter().map(|c| c.0).sum::<u64>() as f64 / elapsed.as_secs_f64() / 1e6,
        not_found: counts.iter().map(|c| c.1).sum(),
        rmws: counts.iter().map(|c| c.2).sum(),
        latency,
    })
}

/// A store in a run, with what is known of it so far.
struct Contender {
    system: Arc<dyn System>,
    load_mops: f64,
    /// RMW increments issued to it (checked against its counters).
    increments: u64,
    /// A run that did not stop: its threads are left behind and the store
    /// is not measured further.
    hung: bool,
}

fn sum(system: &dyn System, keys: u64) -> u64 {
    let mut w = system.worker();
    let total = match w.scan_sum() {
        Some(total) => total,
        None => (0..keys).map(|i| w.get(fnv64(i)).unwrap_or(0)).sum(),
    };
    w.settle();
    total
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// One row of the results.
struct Row {
    keys: u64,
    workload: &'static str,
    dist: &'static str,
    keygen: &'static str,
    threads: usize,
    store: String,
    mops: Option<f64>,
    p99_us: f64,
    notes: String,
}

impl Row {
    /// A row back from a child's table line.
    fn parse(line: &str) -> Option<Row> {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 10 {
            return None;
        }
        let workload = match cells[1] {
            "C" => "C",
            "RMW" => "RMW",
            "A" => "A",
            _ => return None,
        };
        Some(Row {
            keys: cells[0].parse().ok()?,
            workload,
            dist: if cells[2] == "zipf" { "zipf" } else { "uniform" },
            keygen: if cells[3] == "inline" { "inline" } else { "trace" },
            threads: cells[4].parse().ok()?,
            store: cells[5].to_string(),
            mops: cells[6].parse().ok(),
            p99_us: cells[7].parse().unwrap_or(0.0),
            notes: cells[9].to_string(),
        })
    }
}

fn main() {
    let key_counts: Vec<u64> = match env("OXIFASTER_COMPARE_KEYS") {
        Some(k) => k.split(',').filter_map(|k| k.trim().parse().ok()).collect(),
        None => vec![1_000_000, 10_000_000],
    };
    let secs: f64 = env("OXIFASTER_COMPARE_SECS").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let ltm = env("OXIFASTER_COMPARE_LTM").is_some_and(|v| v != "0");
    let direct = env("OXIFASTER_COMPARE_DIRECT").is_some_and(|v| v != "0");
    let wanted: Option<Vec<String>> = env("OXIFASTER_COMPARE_STORES")
        .map(|s| s.split(',').map(|n| n.trim().to_string()).collect());
    let thread_counts: Vec<usize> = env("OXIFASTER_COMPARE_THREADS")
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let keygens: Vec<bool> = match env("OXIFASTER_COMPARE_KEYGEN") {
        Some(k) => k.split(',').map(|k| k.trim() == "inline").collect(),
        None => vec![false],
    };
    let rounds: usize =
        env("OXIFASTER_COMPARE_ROUNDS").and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
    let workloads: Vec<Workload> = env("OXIFASTER_COMPARE_WORKLOADS")
        .map(|w| {
            w.split(',')
                .map(|name| match name.trim() {
                    "c" | "C" => Workload::C,
                    "rmw" | "RMW" => Workload::Rmw,
                    "a" | "A" => Workload::A,
                    other => panic!("OXIFASTER_COMPARE_WORKLOADS: unknown workload {other:?}"),
                })
                .collect()
        })
        .unwrap_or_else(|| vec![Workload::C, Workload::Rmw, Workload::A]);
    let child = env("OXIFASTER_COMPARE_CHILD").is_some();
    if !child {
        println!(
            "| keys | workload | dist | keygen | threads | store | Mops/s | p99 µs | load Mops/s | notes |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
    }
    if key_counts.len() > 1 && !child {
        // One process per key count: a store that hangs (0.1.3) leaves
        // threads spinning that would skew every later measurement.
        let mut rows = Vec::new();
        for keys in &key_counts {
            let exe = std::env::current_exe().expect("own path");
            let out = std::process::Command::new(exe)
                .env("OXIFASTER_COMPARE_KEYS", keys.to_string())
                .env("OXIFASTER_COMPARE_CHILD", "1")
                .env_remove("OXIFASTER_COMPARE_CHART")
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("run a child");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                println!("{line}");
                if let Some(row) = Row::parse(line) {
                    rows.push(row);
                }
            }
        }
        if let Some(path) = env("OXIFASTER_COMPARE_CHART") {
            match chart(&rows, &path) {
                Ok(()) => println!("chart: {path}"),
                Err(e) => eprintln!("chart: {e}"),
            }
        }
        return;
    }
    let cache_override = env("OXIFASTER_COMPARE_CACHE_MIB")
        .map(|mib| mib.parse::<u64>().expect("OXIFASTER_COMPARE_CACHE_MIB: a number of MiB") << 20);
    let mut rows = Vec::new();
    for &keys in &key_counts {
        let sizing = Sizing {
            keys,
            // 16 bytes of key and value per record; a tenth of that when
            // larger than memory, else room for all of it and then some.
            cache_bytes: if let Some(bytes) = cache_override {
                bytes
            } else if ltm {
                (keys * 16 / 10).max(1 << 20)
            } else {
                (keys * 64).max(64 << 20)
            },
            larger_than_memory: ltm,
            direct,
        };
        let mut points = Vec::new();
        for dist in [Distribution::Uniform, Distribution::Zipf] {
            let chooser = Arc::new(KeyChooser::new(keys, dist));
            for &inline in &keygens {
                for &threads in &thread_counts {
                    let traces: Vec<Arc<Vec<u64>>> = (0..threads)
                        .map(|t| match inline {
                            // Only its length (the thread count) is used.
                            true => Arc::new(Vec::new()),
                            false => Arc::new(key_trace(
                                &chooser,
                                &mut Rng::new(100 + t as u64),
                                1 << 22,
                            )),
                        })
                        .collect();
                    points.push((dist, threads, traces, inline.then(|| chooser.clone())));
                }
            }
        }
        let chosen: Vec<&(&str, Maker, bool)> = STORES
            .iter()
            .filter(|(name, _, can_ltm)| {
                !(wanted.as_ref().is_some_and(|w| !w.iter().any(|n| n == name))
                    || (ltm && !can_ltm))
            })
            .collect();
        // One round: store by store, one in memory at a time. More: every
        // chosen store loaded at once and each point run in turns,
        // alternating the order, so that drift of the machine's speed
        // meets every store alike.
        let groups: Vec<Vec<&(&str, Maker, bool)>> =
            if rounds == 1 { chosen.iter().map(|s| vec![*s]).collect() } else { vec![chosen] };
        for group in groups {
            let mut contenders: Vec<Contender> = group
                .iter()
                .map(|(_, make, _)| {
                    let system: Arc<dyn System> = Arc::from(make(sizing));
                    let load_mops = load(&*system, keys);
                    let settled = Instant::now();
                    system.after_load();
                    eprintln!(
                        "{}: loaded at {load_mops:.3} Mops/s, settled after the load in {:.1} s",
                        system.name(),
                        settled.elapsed().as_secs_f64()
                    );
                    Contender { system, load_mops, increments: 0, hung: false }
                })
                .collect();
            // A (with upserts) runs last, so that the counters of the RMW
            // runs can be checked.
            for &workload in &workloads {
                for (p, (dist, threads, traces, inline)) in points.iter().enumerate() {
                    let mut outcomes: Vec<Vec<Outcome>> =
                        contenders.iter().map(|_| Vec::new()).collect();
                    for round in 0..rounds {
                        for k in 0..contenders.len() {
                            let i = if round % 2 == 0 { k } else { contenders.len() - 1 - k };
                            let c = &mut contenders[i];
                            if c.hung {
                                continue;
                            }
                            let grace = Duration::from_secs(30);
                            match run(&c.system, workload, traces, inline.as_ref(), secs, grace) {
                                Some(o) => outcomes[i].push(o),
                                None => c.hung = true,
                            }
                        }
                    }
                    for (c, mut outcomes) in contenders.iter_mut().zip(outcomes) {
                        let mut row = Row {
                            keys,
                            workload: workload.name(),
                            dist: if *dist == Distribution::Uniform { "uniform" } else { "zipf" },
                            keygen: if inline.is_some() { "inline" } else { "trace" },
                            threads: *threads,
                            store: c.system.name(),
                            mops: None,
                            p99_us: 0.0,
                            notes: String::new(),
                        };
                        c.increments += outcomes.iter().map(|o| o.rmws).sum::<u64>();
                        let not_found: u64 = outcomes.iter().map(|o| o.not_found).sum();
                        if not_found > 0 {
                            row.notes += &format!("{not_found} WRONG NOT-FOUND; ");
                        }
                        // The median round (its throughput and its p99).
                        outcomes.sort_by(|a, b| a.mops.total_cmp(&b.mops));
                        if let Some(o) = outcomes.get(outcomes.len() / 2) {
                            row.mops = Some(o.mops);
                            row.p99_us = o.latency.value_at_quantile(0.99) as f64 / 1000.0;
                            if outcomes.len() > 1 {
                                let spread: Vec<String> =
                                    outcomes.iter().map(|o| format!("{:.2}", o.mops)).collect();
                                row.notes += &format!("rounds {}; ", spread.join(" "));
                            }
                        }
                        if c.hung {
                            row.notes += "HUNG: no progress 30 s after a run; ";
                        }
                        let last_rmw = workload == Workload::Rmw && p == points.len() - 1;
                        if last_rmw && !c.hung {
                            let total = sum(&*c.system, keys);
                            if total != c.increments {
                                row.notes += &format!(
                                    "LOST UPDATES ({total} of {} increments); ",
                                    c.increments
                                );
                            } else {
                                row.notes +=
                                    &format!("counters checked ({} increments); ", c.increments);
                            }
                        }
                        println!(
                            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
                            row.keys,
                            row.workload,
                            row.dist,
                            row.keygen,
                            row.threads,
                            row.store,
                            row.mops.map_or("—".into(), |m| format!("{m:.2}")),
                            row.p99_us,
                            c.load_mops,
                            row.notes
                        );
                        rows.push(row);
                    }
                }
            }
            for c in contenders {
                if c.hung {
                    // Its threads are still spinning: leak the store rather
                    // than drop it under them.
                    std::mem::forget(c.system);
                }
            }
        }
    }
    if let Some(path) = env("OXIFASTER_COMPARE_CHART") {
        match chart(&rows, &path) {
            Ok(()) => println!("chart: {path}"),
            Err(e) => eprintln!("chart: {e}"),
        }
    }
}

/// A grouped bar chart of the results (Mops/s per store, one group per
/// workload × dist × threads), for each key count, stacked vertically.
fn chart(rows: &[Row], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    // The font (ab_glyph draws text from a TrueType file; Debian's DejaVu).
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| format!("DejaVuSans.ttf (apt-get install fonts-dejavu-core): {e}"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| "the font does not load")?;
    let mut keys: Vec<u64> = rows.iter().map(|r| r.keys).collect();
    keys.dedup();
    let mut stores: Vec<String> = Vec::new();
    for r in rows {
        if !stores.contains(&r.store) {
            stores.push(r.store.clone());
        }
    }
    let root = BitMapBackend::new(path, (1600, 520 * keys.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((keys.len(), 1));
    for (panel, &k) in panels.iter().zip(&keys) {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.keys == k).collect();
        let mut groups: Vec<String> = Vec::new();
        for r in &mine {
            let g = group_name(r);
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let high = mine.iter().filter_map(|r| r.mops).fold(1.0f64, f64::max);
        // Headroom above the bars for the group names and the legend.
        let top = high * 40.0;
        let bottom = 0.01;
        let n = stores.len() as f64 + 1.0;
        let mut c = ChartBuilder::on(panel)
            .caption(
                format!("{k} keys, 8-byte keys and values: Mops/s (log scale)"),
                ("sans-serif", 24),
            )
            .margin(12)
            .x_label_area_size(10)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..groups.len() as f64, (bottom..top).log_scale())?;
        c.configure_mesh().disable_x_mesh().disable_x_axis().y_desc("Mops/s").draw()?;
        // The group names, under each group's bars.
        c.draw_series(groups.iter().enumerate().map(|(i, g)| {
            Text::new(g.clone(), (i as f64 + 0.1, high * 1.6), ("sans-serif", 15).into_font())
        }))?;
        for (si, store) in stores.iter().enumerate() {
            let color = Palette99::pick(si).mix(0.9);
            let bars = mine.iter().filter(|r| &r.store == store).filter_map(|r| {
                let g = groups.iter().position(|g| *g == group_name(r))?;
                let x0 = g as f64 + (si as f64 + 0.5) / n;
                Some(Rectangle::new([(x0, bottom), (x0 + 1.0 / n, r.mops?)], color.filled()))
            });
            c.draw_series(bars)?.label(store.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], Palette99::pick(si).filled())
            });
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// A chart group: workload, distribution, key generation (when inline) and
/// threads.
fn group_name(r: &Row) -> String {
    let keygen = if r.keygen == "inline" { " inline" } else { "" };
    format!("{} {}{keygen} {}t", r.workload, r.dist, r.threads)
}
