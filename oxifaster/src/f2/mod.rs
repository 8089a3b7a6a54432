//! F2: hot–cold tiering with an on-disk cold index, for data sets whose
//! keys alone would not fit in memory (Kanellis et al., "F2: Designing a
//! Key-Value Store for Large Skewed Workloads", 2023).
//!
//! An [`F2Store`] is two tiers under one typed API:
//!
//! - the **hot tier**, a [`Store`] of `K` to [`Tiered<V>`] with its
//!   in-memory hash index, which takes every write;
//! - the **cold tier** (`cold`), a log of records whose index lives
//!   mostly on disk: hash chunks stored as the values of a small store of
//!   their own, so that a key that lives only in the cold tier costs
//!   about a byte of memory (the chunk store's index holds one entry per
//!   chunk of 32 slots).
//!
//! Reads go hot (its index, then its read cache) → cold; writes go hot.
//! A value the cold tier served is linked into the hot tier's read cache
//! only if the hot index entry the read missed under is unchanged and no
//! migration published since the read began (`Session::cache_value`): a
//! migration is the one way an entry returns to a value it held (emptied
//! after its keys left), and it moves the count before that. A delete is a hot
//! [`Tiered::Deleted`] value, which hides the key's cold versions. An RMW
//! whose key is not in the hot tier reads its cold value and inserts the
//! merged value in the hot tier *only if* the hot tier still has no record
//! of the key and no migration ran meanwhile (see [`F2Session::rmw`]).
//!
//! **Migration** (hot → cold) is a compaction of the hot log's oldest
//! range whose live records go to the cold tier instead of the hot tail
//! (`compaction::compact_to`): each record is kept only if it is still its
//! key's newest hot record (the same conditional check as compaction's
//! copy), the cold records are committed and indexed, the migration count
//! moves, and only then does the hot begin address move past the
//! originals; after an epoch drain the hot index frees the entries of the
//! keys that left, so it holds entries for hot keys only. A record a session writes in the hot tier afterwards
//! supersedes the migrated one, because reads look in the hot tier first.
//! **Cold compaction** copies the newest cold record of each key of the
//! cold log's oldest range to its tail (dropping deletions: nothing older
//! of their key can remain once the range is gone), publishes, and
//! truncates the range after the next checkpoint.
//!
//! **Checkpoints** cover both tiers: under the maintenance lock (no
//! migration or cold compaction runs), the cold log is committed, the
//! chunk store and then the hot store take fold-over checkpoints, and a
//! manifest naming the two checkpoints and the cold log's commit point is
//! written atomically (`F2` in the store directory; format in
//! docs/FORMAT.md). Recovery opens exactly the checkpoints the manifest
//! names. The cold tier at a manifest holds only records migrated from
//! hot records older than the hot checkpoint's cut, each still in the hot
//! checkpoint's log or superseded there, so the two agree.

#[cfg(feature = "tokio")]
mod asynk;
mod cold;
mod protocol;
mod tiered;

#[cfg(oxifaster_loom)]
#[doc(hidden)]
pub use protocol::loom_model;

pub use cold::{CHUNK_SLOTS, ColdProbe};
pub use tiered::{Tiered, TieredView};

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::CheckpointKind;
use crate::compaction::{CompactionReport, Migrate};
use crate::cpr::CheckpointIo;
use crate::log::{FasterLog, LogAddress, LogConfig};
use crate::record::{AlignedBytes, EncodedKey, Key, KeyArg, Merge, Value, ValueArg};
use crate::store::{Completed, CompletedOp, Decision, Outcome, ReadStatus, Session, UpdateStatus};
use crate::{Error, Result, Store};

use crate::device::{Device, FileDevice};
use cold::{Chunk, Cold, ColdWriter};
use tiered::LiveArg;

/// The manifest's file name in the store directory.
const MANIFEST: &str = "F2";
const MANIFEST_MAGIC: &[u8; 8] = b"OXF2MAN\0";
const MANIFEST_VERSION: u32 = 1;
/// Present while a new store is being created (until its first manifest).
const CREATING: &str = "F2.creating";

/// How an [`F2Store`] is opened: its directory, the hot tier's memory and
/// size, the cold index's geometry and memory, and the background work.
#[derive(Debug, Clone)]
pub struct F2Builder {
    dir: Option<PathBuf>,
    page_size_bits: u32,
    segment_size_bits: u32,
    hot_log_memory_bytes: u64,
    hot_table_size: u64,
    hot_log_size_bytes: Option<u64>,
    read_cache_bytes: Option<u64>,
    cold_index_chunks: u64,
    cold_index_memory_bytes: u64,
    cold_index_table_size: u64,
    cold_log_size_bytes: Option<u64>,
    checkpoint_every: Option<Duration>,
    checkpoint_on_close: bool,
    max_sessions: usize,
    direct_io: bool,
    promote_cold_reads: bool,
    checkpoint_io: Option<crate::cpr::IoHandle>,
    cold_log_memory_bytes: Option<u64>,
    memory_budget: Option<u64>,
}

impl Default for F2Builder {
    fn default() -> Self {
        Self {
            dir: None,
            page_size_bits: 22,
            segment_size_bits: crate::device::DEFAULT_SEGMENT_SIZE_BITS,
            hot_log_memory_bytes: 64 << 20,
            hot_table_size: 1 << 16,
            hot_log_size_bytes: Some(256 << 20),
            read_cache_bytes: None,
            cold_index_chunks: 1 << 16,
            cold_index_memory_bytes: 16 << 20,
            cold_index_table_size: 1 << 14,
            cold_log_size_bytes: None,
            checkpoint_every: Some(crate::store::DEFAULT_CHECKPOINT_INTERVAL),
            checkpoint_on_close: true,
            max_sessions: 64,
            direct_io: false,
            promote_cold_reads: false,
            checkpoint_io: None,
            cold_log_memory_bytes: None,
            memory_budget: None,
        }
    }
}

impl F2Builder {
    /// The store directory (created if missing; reopened if it holds an
    /// F2 store). Without one, a temporary directory deleted on drop.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// log2 of the page size of every log (default 22: 4 MiB). A record
    /// must fit in a page.
    pub fn page_size_bits(mut self, bits: u32) -> Self {
        self.page_size_bits = bits;
        self
    }

    /// log2 of the segment file size of every log.
    pub fn segment_size_bits(mut self, bits: u32) -> Self {
        self.segment_size_bits = bits;
        self
    }

    /// The hot log's memory (default 64 MiB).
    pub fn hot_log_memory_bytes(mut self, bytes: u64) -> Self {
        self.hot_log_memory_bytes = bytes;
        self
    }

    /// The hot index's buckets (a power of two; it grows by itself).
    pub fn hot_table_size(mut self, buckets: u64) -> Self {
        self.hot_table_size = buckets;
        self
    }

    /// Past this size (begin to tail, in memory or not) the hot log's
    /// oldest half migrates to the cold tier in the background (default
    /// 256 MiB; `None`: only [`F2Store::migrate`] moves records).
    pub fn hot_log_size_bytes(mut self, bytes: Option<u64>) -> Self {
        self.hot_log_size_bytes = bytes;
        self
    }

    /// The hot tier's read cache (default 16 MiB, at least two pages; 0:
    /// none), a whole number of pages: records that reads fetched from the
    /// cold tier (or from the hot log's part on disk) are kept there, so
    /// that a key read often is read from memory until writes or eviction
    /// replace it, without taking room in the hot log (FASTER's read
    /// cache, linked from the hot index; see [`F2Session::read`]).
    pub fn read_cache_bytes(mut self, bytes: u64) -> Self {
        self.read_cache_bytes = Some(bytes);
        self
    }

    /// The cold log's memory: the pages its appends fill before they are
    /// written (default and least: four pages, at least 1 MiB).
    pub fn cold_log_memory_bytes(mut self, bytes: u64) -> Self {
        self.cold_log_memory_bytes = Some(bytes);
        self
    }

    /// The cold log's memory: as set (at least four pages), or the default.
    fn cold_log_memory(&self) -> u64 {
        let least = 4u64 << self.page_size_bits;
        self.cold_log_memory_bytes.map_or(least.max(1 << 20), |bytes| bytes.max(least))
    }

    /// The read cache's size: as set, or the default.
    fn read_cache_size(&self) -> u64 {
        let page = 1u64 << self.page_size_bits;
        self.read_cache_bytes.unwrap_or_else(|| (16u64 << 20).max(2 * page))
    }

    /// Chunks of the cold index, fixed when the store is created (default
    /// 65,536, for about a million cold keys at half a slot per key; more
    /// keys make longer chains, not errors).
    pub fn cold_index_chunks(mut self, chunks: u64) -> Self {
        self.cold_index_chunks = chunks;
        self
    }

    /// The memory of the chunk store's log (default 16 MiB): the chunks
    /// that stay in memory.
    pub fn cold_index_memory_bytes(mut self, bytes: u64) -> Self {
        self.cold_index_memory_bytes = bytes;
        self
    }

    /// Past this size the cold log's oldest half is compacted in the
    /// background (default `None`: never).
    pub fn cold_log_size_bytes(mut self, bytes: Option<u64>) -> Self {
        self.cold_log_size_bytes = bytes;
        self
    }

    /// Splits a memory budget over the parts (each rounded down to a power
    /// of two, the read cache to whole pages): a quarter each for the hot
    /// log (which then migrates its older half once it outgrows its
    /// memory: `hot_log_size_bytes`, unless set after this), the read
    /// cache and the hot index's table; an eighth for the chunk store's
    /// table (fewer buckets when the chunks fill fewer at five a bucket:
    /// about a byte per cold key at 16 cold keys a chunk), a sixteenth
    /// each for the chunk store's log (the chunks kept in memory) and the
    /// cold log's memory. Under a budget neither index grows by itself: a
    /// hot tier holding more keys than its table has slots for takes
    /// overflow buckets (64 bytes for seven keys). Opening refuses a
    /// budget that these parts, at their least (every log keeps four
    /// pages), do not fit: choose smaller pages (`page_size_bits`) for a
    /// small budget. [`F2Store::memory`] reports what each part takes.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        let pow2 = pow2_floor;
        let page = 1u64 << self.page_size_bits;
        self.hot_log_memory_bytes = pow2(bytes / 4).max(4 * page);
        self.hot_log_size_bytes = Some(self.hot_log_memory_bytes);
        self.read_cache_bytes = Some((bytes / 4 / page * page).max(2 * page));
        self.hot_table_size = pow2(bytes / 4 / 64).max(16);
        self.cold_index_memory_bytes = pow2(bytes / 16).max(4 * page);
        self.cold_index_table_size = pow2(bytes / 8 / 64).max(16);
        self.cold_log_memory_bytes = Some(pow2(bytes / 16));
        self
    }

    /// Refuses a memory budget that the parts, as configured, exceed.
    fn check_budget(&self) -> Result<()> {
        let Some(budget) = self.memory_budget else { return Ok(()) };
        let parts = [
            ("hot log", self.hot_log_memory_bytes),
            ("read cache", self.read_cache_size()),
            ("hot index", self.hot_table_size * 64),
            ("chunk store's log", self.cold_index_memory_bytes),
            ("chunk store's table", self.cold_index_table_size * 64),
            ("cold log", self.cold_log_memory()),
        ];
        let total: u64 = parts.iter().map(|(_, bytes)| bytes).sum();
        if total <= budget {
            return Ok(());
        }
        let list: Vec<String> =
            parts.iter().map(|(what, bytes)| format!("{what} {} KiB", bytes >> 10)).collect();
        Err(Error::InvalidConfig {
            what: "memory_budget",
            why: format!(
                "a budget of {} KiB cannot hold the parts at their least with pages of {} KiB \
                 (every log keeps four pages): {} — {} KiB in all; use smaller pages \
                 (page_size_bits) or a larger budget",
                budget >> 10,
                (1u64 << self.page_size_bits) >> 10,
                list.join(", "),
                total >> 10
            ),
        })
    }

    /// How often the background checkpoints both tiers when anything
    /// changed (default 5 s; `None`: only [`F2Store::checkpoint`]).
    pub fn checkpoint_every(mut self, interval: Option<Duration>) -> Self {
        self.checkpoint_every = interval;
        self
    }

    /// Whether dropping the store checkpoints it (default true).
    pub fn checkpoint_on_close(mut self, on: bool) -> Self {
        self.checkpoint_on_close = on;
        self
    }

    /// Reads and writes every log (hot, cold, and the cold index's) with
    /// `O_DIRECT` (default off), as [`crate::StoreBuilder::direct_io`]:
    /// device reads then cost what the disk costs, not what the page
    /// cache does.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// Copies the value of every read that the cold tier served into the
    /// hot tier (default off), so that keys read often become hot: the
    /// next reads of the key cost what a hot read costs. The copy is a
    /// conditional insert, made only if the key still has no hot record
    /// and no migration published since the cold read began (as an RMW's,
    /// see [`F2Session::rmw`]); it never hides a newer write. It turns
    /// each such read into a hot-log append that a later migration moves
    /// back: for skewed reads, not for reads spread over more keys than
    /// the hot tier holds.
    pub fn promote_cold_reads(mut self, on: bool) -> Self {
        self.promote_cold_reads = on;
        self
    }

    /// Sessions that may be open at once (default 64).
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions;
        self
    }

    /// Opens the store: recovers the checkpoints its manifest names, or
    /// creates a new one.
    pub fn open<K: Key, V: Value>(self) -> Result<F2Store<K, V>> {
        F2Store::open_with(self, Files)
    }

    /// [`Self::open`] with each log on the device `device` gives for its
    /// part (the store directory still holds the checkpoints, the manifest
    /// and the devices' own metadata): for devices other than files, such
    /// as the fault-injecting one the power-loss tests put under all three
    /// logs.
    pub fn open_with_devices<K: Key, V: Value, D: Device>(
        self,
        device: impl FnMut(F2Part) -> D,
    ) -> Result<F2Store<K, V, D>> {
        F2Store::open_with(self, Given(device))
    }

    /// Checkpoint file I/O for both stores' checkpoints and the manifest
    /// (default: the real file system; tests simulate power loss with
    /// [`crate::checkpoint::FaultIo`]).
    pub fn checkpoint_io(mut self, io: impl CheckpointIo + 'static) -> Self {
        self.checkpoint_io = Some(crate::cpr::IoHandle(Arc::new(io)));
        self
    }

    /// The checkpoint file I/O in use.
    fn io(&self) -> &dyn CheckpointIo {
        match &self.checkpoint_io {
            Some(io) => &*io.0,
            None => &crate::checkpoint::RealIo,
        }
    }
}

/// The logs of an F2 store, each on a device of its own
/// ([`F2Builder::open_with_devices`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum F2Part {
    /// The hot store's log.
    Hot,
    /// The chunk store's log (the cold index).
    ColdIndex,
    /// The cold log's entries.
    ColdLog,
    /// The cold log's commit records.
    ColdCommits,
}

/// How the parts of an F2 store get their devices: files in the store
/// directory, or devices a caller gives.
trait PartDevices<D: Device> {
    /// The store of `part`, created, or recovered from checkpoint `token`.
    fn store<K: Key, V: Value>(
        &mut self,
        part: F2Part,
        builder: crate::StoreBuilder<K, V>,
        token: Option<&str>,
    ) -> Result<Store<K, V, D>>;

    /// The cold log, opened (and recovered) as `config` says.
    fn log(&mut self, config: LogConfig) -> Result<FasterLog<D>>;
}

/// Files in the store directory.
struct Files;

impl PartDevices<FileDevice> for Files {
    fn store<K: Key, V: Value>(
        &mut self,
        _part: F2Part,
        builder: crate::StoreBuilder<K, V>,
        token: Option<&str>,
    ) -> Result<Store<K, V>> {
        match token {
            Some(token) => builder.recover(token),
            None => builder.open(),
        }
    }

    fn log(&mut self, config: LogConfig) -> Result<FasterLog> {
        FasterLog::open(config)
    }
}

/// Devices from a caller's function.
struct Given<F>(F);

impl<D: Device, F: FnMut(F2Part) -> D> PartDevices<D> for Given<F> {
    fn store<K: Key, V: Value>(
        &mut self,
        part: F2Part,
        builder: crate::StoreBuilder<K, V>,
        token: Option<&str>,
    ) -> Result<Store<K, V, D>> {
        let device = (self.0)(part);
        match token {
            Some(token) => builder.recover_with_device(device, token),
            None => builder.open_with_device(device),
        }
    }

    fn log(&mut self, config: LogConfig) -> Result<FasterLog<D>> {
        FasterLog::with_devices(config, (self.0)(F2Part::ColdLog), (self.0)(F2Part::ColdCommits))
    }
}

/// What the parts of an [`F2Store`] take in memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct F2Memory {
    /// The hot log's pages.
    pub hot_log: u64,
    /// The hot index (table and overflow buckets).
    pub hot_index: u64,
    /// The hot tier's read cache.
    pub read_cache: u64,
    /// The chunk store's log pages (chunks in memory).
    pub cold_index_log: u64,
    /// The chunk store's own index (one entry per chunk).
    pub cold_index_table: u64,
    /// The cold log's pages.
    pub cold_log: u64,
}

impl F2Memory {
    /// All parts together.
    pub fn total(&self) -> u64 {
        self.hot_log
            + self.hot_index
            + self.read_cache
            + self.cold_index_log
            + self.cold_index_table
            + self.cold_log
    }
}

/// What an F2 checkpoint captured.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct F2Checkpoint {
    /// The hot store's checkpoint (its token, version, session points).
    pub hot: crate::checkpoint::CheckpointInfo,
    /// The chunk store's checkpoint token.
    pub cold_index_token: String,
    /// The cold log's commit point.
    pub cold_committed: u64,
}

/// What migrations, cold compactions and checkpoints did since the store
/// opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct F2Totals {
    /// Migrations run.
    pub migrations: u64,
    /// Records moved to the cold tier (deletions included).
    pub migrated_records: u64,
    /// Deletions dropped by migrations (nothing of their key was cold).
    pub deletions_dropped: u64,
    /// Hot index entries freed after migrations (their keys left the hot
    /// tier).
    pub hot_entries_freed: u64,
    /// Cold compactions run.
    pub cold_compactions: u64,
    /// Records cold compaction copied to the cold tail.
    pub cold_copied: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
}

/// The maintenance state: the cold tier's writer and a truncation waiting
/// for the next checkpoint.
struct Maintenance<D: Device> {
    writer: ColdWriter<D>,
    truncate_to: Option<u64>,
    /// The hot store's change mark (writes, tail) at the last checkpoint.
    checkpointed: (u64, u64),
}

struct F2Inner<K: Key, V: Value, D: Device> {
    hot: Store<K, Tiered<V>, D>,
    cold: Cold<D>,
    maintenance: Mutex<Maintenance<D>>,
    /// Moves after each migration's cold records are published and before
    /// the hot begin address moves (see `F2Session::rmw`).
    migrations: Arc<crate::sync::AtomicU64>,
    totals: Mutex<F2Totals>,
    dir: PathBuf,
    config: F2Builder,
    _temp: Option<tempfile::TempDir>,
}

/// A typed, two-tier store (see the module documentation).
///
/// ```
/// use oxifaster::f2::F2Store;
///
/// let store = F2Store::<u64, String>::builder().page_size_bits(12).open()?;
/// let mut session = store.start_session()?;
/// session.upsert(&1, "one")?;
/// store.migrate_all()?; // move everything to the cold tier
/// assert_eq!(session.read_blocking(&1)?.as_deref(), Some("one"));
/// session.delete(&1)?;
/// assert_eq!(session.read_blocking(&1)?, None);
/// # Ok::<(), oxifaster::Error>(())
/// ```
pub struct F2Store<K: Key, V: Value, D: Device = FileDevice> {
    inner: Arc<F2Inner<K, V, D>>,
    background: Option<Background>,
}

struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    fn stop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<K: Key, V: Value, D: Device> F2Store<K, V, D> {
    /// A builder with the defaults.
    pub fn builder() -> F2Builder {
        F2Builder::default()
    }

    fn open_with(config: F2Builder, mut devices: impl PartDevices<D>) -> Result<Self> {
        config.check_budget()?;
        let (dir, temp) = crate::lock::dir_or_temp(config.dir.as_deref(), "oxifaster-f2-")?;
        let io =
            |what: &str, source| Error::Io { context: format!("{what} {}", dir.display()), source };
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", e))?;
        let manifest = read_manifest(&dir)?;
        let creating = dir.join(CREATING);
        if manifest.is_none() {
            // A new store, or one whose first open crashed before its first
            // manifest (it left `CREATING`): nothing in its parts was ever
            // acknowledged durable, so they are cleared. Parts without
            // `CREATING` belong to a store whose manifest is gone: refused,
            // never cleared.
            let unfinished = creating.exists();
            for entry in std::fs::read_dir(&dir).map_err(|e| io("listing", e))?.flatten() {
                let name = entry.file_name();
                match name.to_str() {
                    Some("hot" | "cold") if unfinished => std::fs::remove_dir_all(entry.path())
                        .map_err(|e| io("clearing an unfinished store in", e))?,
                    Some("hot" | "cold") => {
                        return Err(Error::NotAStore {
                            path: dir.clone(),
                            why: format!(
                                "it holds an F2 store's `{name:?}` but no manifest `{MANIFEST}` \
                                 (restore the manifest; nothing was changed)"
                            ),
                        });
                    }
                    Some(n) if n == format!("{MANIFEST}.tmp") || n == CREATING => {}
                    _ => {
                        return Err(Error::NotAStore {
                            path: dir.clone(),
                            why: format!(
                                "it holds {name:?} but no F2 manifest (an F2 store keeps `hot/`, \
                                 `cold/` and `{MANIFEST}`)"
                            ),
                        });
                    }
                }
            }
        }
        if manifest.is_none() {
            crate::checkpoint::write_atomic(config.io(), &creating, b"")?;
        }
        let chunks = manifest.as_ref().map_or(config.cold_index_chunks, |m| m.chunks);
        if chunks == 0 {
            return Err(Error::InvalidConfig {
                what: "cold_index_chunks",
                why: "must be at least 1".into(),
            });
        }
        let hot_builder = Store::<K, Tiered<V>>::builder()
            .dir(dir.join("hot"))
            .page_size_bits(config.page_size_bits)
            .segment_size_bits(config.segment_size_bits)
            .log_memory_size_bytes(config.hot_log_memory_bytes)
            .table_size(config.hot_table_size)
            // Under a memory budget the hot index keeps its share: keys
            // past what its buckets hold go to overflow buckets.
            .auto_grow_index(config.memory_budget.is_none())
            .max_sessions(config.max_sessions + 2)
            .direct_io(config.direct_io)
            .read_cache_bytes(config.read_cache_size())
            // Both tiers checkpoint together, or not at all.
            .checkpoint_every(None)
            .checkpoint_on_close(false)
            .keep_checkpoints(2);
        let index_builder = Store::<u64, Chunk>::builder()
            .dir(dir.join("cold").join("index"))
            .page_size_bits(config.page_size_bits)
            .segment_size_bits(config.segment_size_bits)
            .log_memory_size_bytes(config.cold_index_memory_bytes)
            .table_size(chunk_table_size(config.cold_index_table_size, chunks))
            // The chunk store holds a fixed number of keys (its chunks):
            // its table is sized for them once.
            .auto_grow_index(false)
            .max_sessions(config.max_sessions + 2)
            .direct_io(config.direct_io)
            .checkpoint_every(None)
            .checkpoint_on_close(false)
            .keep_checkpoints(2);
        let (hot_builder, index_builder) = match &config.checkpoint_io {
            Some(io) => (
                hot_builder.checkpoint_io_handle(io.clone()),
                index_builder.checkpoint_io_handle(io.clone()),
            ),
            None => (hot_builder, index_builder),
        };
        let hot_token = manifest.as_ref().map(|m| m.hot_token.as_str());
        let index_token = manifest.as_ref().map(|m| m.index_token.as_str());
        let hot = devices.store(F2Part::Hot, hot_builder, hot_token)?;
        let index = devices.store(F2Part::ColdIndex, index_builder, index_token)?;
        let log = devices.log(
            LogConfig::new(dir.join("cold").join("log"))
                .page_size_bits(config.page_size_bits)
                .segment_size_bits(config.segment_size_bits)
                .log_memory_size_bytes(config.cold_log_memory())
                .max_threads(config.max_sessions + 4)
                .direct_io(config.direct_io),
        )?;
        if let Some(m) = &manifest
            && log.committed_until().raw() < m.cold_committed
        {
            return Err(Error::Corruption {
                address: log.committed_until().raw(),
                what: format!(
                    "the cold log ends before the commit point {:#x} its manifest names",
                    m.cold_committed
                ),
            });
        }
        let cold = Cold { log, index, chunks };
        let writer = ColdWriter::new(cold.index.start_session()?);
        let inner = Arc::new(F2Inner {
            hot,
            cold,
            maintenance: Mutex::new(Maintenance {
                writer,
                truncate_to: None,
                checkpointed: (0, 0),
            }),
            migrations: Arc::new(crate::sync::AtomicU64::new(0)),
            totals: Mutex::new(F2Totals::default()),
            dir,
            config,
            _temp: temp,
        });
        if manifest.is_none() {
            // A manifest from the start: a crash later always finds one.
            inner.checkpoint()?;
            std::fs::remove_file(&creating).map_err(|source| Error::Io {
                context: format!("finishing the creation of {}", inner.dir.display()),
                source,
            })?;
            crate::checkpoint::sync_dir(inner.config.io(), &inner.dir)?;
        }
        if let Some(limit) = inner.config.hot_log_size_bytes {
            // Admission from the start (see `step`).
            let log = &inner.hot.inner.log;
            log.throttle_at(crate::address::Address::new(log.begin_address().raw() + 2 * limit));
        }
        let background = Background::start(inner.clone())?;
        Ok(Self { inner, background: Some(background) })
    }

    /// Starts a session (one thread at a time; it may move between
    /// threads).
    pub fn start_session(&self) -> Result<F2Session<K, V, D>> {
        Ok(F2Session {
            hot: self.inner.hot.start_session()?,
            index: self.inner.cold.index.start_session()?,
            inner: self.inner.clone(),
            hot_parked: HashMap::new(),
            cold_parked: VecDeque::new(),
            stash: Vec::new(),
            promotions: std::collections::HashSet::new(),
            probe: ColdProbe::default(),
            #[cfg(feature = "tokio")]
            async_index: None,
            #[cfg(feature = "testing")]
            rmw_pause: None,
        })
    }

    /// Migrates the hot log below `until` to the cold tier now (`until` a
    /// record boundary at most the hot log's safe read-only address, as
    /// for [`Store::compact`]).
    pub fn migrate(&self, until: u64) -> Result<CompactionReport> {
        self.inner.migrate(until)
    }

    /// Migrates everything the hot log holds below its safe read-only
    /// address, first making the whole log read-only: afterwards every key
    /// is served by the cold tier until it is written again.
    pub fn migrate_all(&self) -> Result<CompactionReport> {
        self.inner.migrate_all()
    }

    /// Compacts the cold log's oldest entries below `until` (rounded down
    /// to an entry boundary); the range is truncated at the next
    /// checkpoint. Returns the records copied.
    pub fn compact_cold(&self, until: u64) -> Result<u64> {
        self.inner.compact_cold(until)
    }

    /// Checkpoints both tiers (see the module documentation).
    pub fn checkpoint(&self) -> Result<F2Checkpoint> {
        self.inner.checkpoint()
    }

    /// What each part takes in memory now.
    pub fn memory(&self) -> F2Memory {
        let index = |s: &crate::store::IndexStats| s.bytes;
        F2Memory {
            hot_log: self.inner.config.hot_log_memory_bytes,
            hot_index: index(&self.inner.hot.index_stats()),
            read_cache: self.inner.config.read_cache_size(),
            cold_index_log: self.inner.config.cold_index_memory_bytes,
            cold_index_table: index(&self.inner.cold.index.index_stats()),
            cold_log: self.inner.config.cold_log_memory(),
        }
    }

    /// What the background and explicit maintenance did so far.
    pub fn totals(&self) -> F2Totals {
        *self.inner.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hot store (for its statistics and log regions).
    pub fn hot(&self) -> &Store<K, Tiered<V>, D> {
        &self.inner.hot
    }

    /// Waits until the background has no migration or cold compaction due
    /// (the hot log back within `hot_log_size_bytes`, or nothing left
    /// that may migrate; the cold log within `cold_log_size_bytes` past
    /// where compaction left off), or for at most `timeout`. Returns
    /// whether it settled. A load leaves the hot log at its admission
    /// limit, twice its size: call this before measuring what follows a
    /// load, as one waits for an LSM tree's compactions.
    pub fn settle(&self, timeout: Duration) -> bool {
        let inner = &self.inner;
        let due = || {
            let hot = inner
                .config
                .hot_log_size_bytes
                .is_some_and(|limit| migration_due(&inner.hot.log_regions(), limit).is_some());
            let cold = inner.config.cold_log_size_bytes.is_some_and(|limit| {
                let from = inner.cold_cursor(&inner.lock());
                inner.cold.log.committed_until().raw().saturating_sub(from) > limit
            });
            hot || cold
        };
        let start = Instant::now();
        while due() {
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The device under `part`'s log.
    pub fn device(&self, part: F2Part) -> &D {
        match part {
            F2Part::Hot => self.inner.hot.device(),
            F2Part::ColdIndex => self.inner.cold.index.device(),
            F2Part::ColdLog => self.inner.cold.log.data_device(),
            F2Part::ColdCommits => self.inner.cold.log.commit_device(),
        }
    }

    /// The cold log's begin and tail addresses.
    pub fn cold_log_range(&self) -> (u64, u64) {
        (self.inner.cold.log.begin_address().raw(), self.inner.cold.log.tail_address().raw())
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The hot checkpoint this store was recovered from (its sessions'
    /// commit points), if it was reopened from one with sessions.
    pub fn recovered(&self) -> Option<crate::checkpoint::CheckpointInfo> {
        self.inner.hot.recovered()
    }
}

impl<K: Key, V: Value, D: Device> std::fmt::Debug for F2Store<K, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("F2Store").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

impl<K: Key, V: Value, D: Device> std::fmt::Debug for F2Session<K, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("F2Session").field("pending", &self.pending_count()).finish_non_exhaustive()
    }
}

impl<K: Key, V: Value, D: Device> Drop for F2Store<K, V, D> {
    fn drop(&mut self) {
        if let Some(mut background) = self.background.take() {
            background.stop();
        }
        if self.inner.config.checkpoint_on_close
            && self.inner.has_changes()
            && let Err(e) = self.inner.checkpoint()
        {
            tracing::error!(error = %e, "the F2 store's checkpoint on close failed");
        }
    }
}

impl<K: Key, V: Value, D: Device> F2Inner<K, V, D> {
    fn lock(&self) -> MutexGuard<'_, Maintenance<D>> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_changes(&self) -> bool {
        let m = self.lock();
        self.hot.inner.change_mark() != m.checkpointed || m.truncate_to.is_some()
    }

    fn migrate(&self, until: u64) -> Result<CompactionReport> {
        let mut m = self.lock();
        let mut sink = ToCold {
            cold: &self.cold,
            writer: &mut m.writer,
            migrations: &self.migrations,
            kept: 0,
            dropped: 0,
            _key: std::marker::PhantomData::<K>,
        };
        // The hot side, with the cold tier as the target; it moves the
        // count before the begin address (see `protocol`).
        let (report, freed) = protocol::migrate(&self.hot.inner, until, &mut sink)?;
        let (kept, dropped) = (sink.kept, sink.dropped);
        drop(m);
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        totals.migrations += 1;
        totals.migrated_records += kept;
        totals.deletions_dropped += dropped;
        totals.hot_entries_freed += freed;
        Ok(report)
    }

    fn migrate_all(&self) -> Result<CompactionReport> {
        let until = protocol::read_only_all(&self.hot.inner)?;
        self.migrate(until)
    }

    /// Compacts the cold log below `until`, slice by slice.
    fn compact_cold(&self, until: u64) -> Result<u64> {
        let mut copied = 0;
        loop {
            let (n, more) = self.compact_cold_slice(until)?;
            copied += n;
            if !more {
                break;
            }
        }
        self.totals.lock().unwrap_or_else(|p| p.into_inner()).cold_compactions += 1;
        Ok(copied)
    }

    /// Where the next slice of a cold compaction starts: the cold log's
    /// begin address, or past it the end of the slices already compacted
    /// (their range is truncated at the next checkpoint).
    fn cold_cursor(&self, m: &Maintenance<D>) -> u64 {
        let begin = self.cold.log.begin_address().raw();
        m.truncate_to.map_or(begin, |to| to.max(begin))
    }

    /// One slice of a cold compaction: up to [`COMPACTION_SLICE`] records
    /// from the cursor towards `until`, under the maintenance lock, which
    /// is released between slices so that a migration is never held up
    /// behind the compaction of a whole cold log (writers past the hot
    /// log's admission limit wait for migrations). Returns the records
    /// copied and whether records below `until` remain.
    ///
    /// Each key's newest record is copied to the tail; the others, and
    /// deletions that are their key's newest, are left behind. Slices run
    /// from the log's begin address without gaps, so every record older
    /// than one in this slice is in this slice or an earlier one: all of
    /// them are truncated together at the next checkpoint, which is what
    /// makes dropping a newest deletion safe. Migrations between slices
    /// append newer records at the tail; a later slice then finds its
    /// record superseded and leaves it.
    fn compact_cold_slice(&self, until: u64) -> Result<(u64, bool)> {
        let mut m = self.lock();
        let cold = &self.cold;
        let from = self.cold_cursor(&m);
        let committed = cold.log.committed_until().raw();
        if until.min(committed) <= from {
            return Ok((0, false));
        }
        // The slice ends at an entry boundary: the first entry at or past
        // `until` or past the slice's size, or the commit point.
        let mut to = committed;
        let mut more = false;
        let mut scanned = 0;
        let mut copied = 0;
        let mut probe = ColdProbe::default();
        let mut it = cold.log.scan(LogAddress::from_raw(from), LogAddress::from_raw(committed));
        // Records in groups, each group's lookups of their keys' newest
        // records done as one batch; a group's records are decoded once,
        // into one buffer.
        let mut bytes = Vec::new();
        let mut group: Vec<GroupRecord> = Vec::with_capacity(COMPACTION_GROUP);
        let mut finished = false;
        while !finished {
            group.clear();
            bytes.clear();
            while group.len() < COMPACTION_GROUP {
                let Some((address, entry)) = it.next_ref()? else {
                    finished = true;
                    break;
                };
                let address = address.raw();
                if address >= until || scanned == COMPACTION_SLICE {
                    to = address;
                    more = address < until;
                    finished = true;
                    break;
                }
                scanned += 1;
                let record = cold::decode_record(address, entry)?;
                let hash = <EncodedKey<'_> as KeyArg<K>>::key_arg_hash(&EncodedKey(record.key));
                let base = bytes.len();
                let at = |part: &[u8]| {
                    let start = base + (part.as_ptr() as usize - entry.as_ptr() as usize);
                    start..start + part.len()
                };
                group.push(GroupRecord {
                    address,
                    hash,
                    key: at(record.key),
                    value: at(record.value),
                });
                bytes.extend_from_slice(entry);
            }
            let lookups: Vec<cold::Lookup<'_>> =
                group.iter().map(|r| (&bytes[r.key.clone()], r.hash)).collect();
            let newest = cold.lookup_batch(&mut m.writer.index, &lookups, &mut probe);
            for (r, newest) in group.iter().zip(newest) {
                let newest = newest.map_err(cold::unshare)?;
                let value = &bytes[r.value.clone()];
                // Superseded records go; so do deletions that are their
                // key's newest (see above).
                if newest.map(|(at, _)| at) != Some(r.address) || tiered::is_deleted(value) {
                    continue;
                }
                m.writer.append(cold, &bytes[r.key.clone()], r.hash, value)?;
                copied += 1;
            }
        }
        drop(it);
        m.writer.publish(cold)?;
        // Truncated after the next checkpoint: until then the checkpoint
        // in the manifest still needs the range.
        m.truncate_to = Some(m.truncate_to.map_or(to, |t| t.max(to)));
        drop(m);
        self.totals.lock().unwrap_or_else(|p| p.into_inner()).cold_copied += copied;
        Ok((copied, more))
    }

    fn checkpoint(&self) -> Result<F2Checkpoint> {
        let mut m = self.lock();
        m.writer.publish(&self.cold)?;
        let mark = self.hot.inner.change_mark();
        // The chunk store's log grows with every publication: compact its
        // older half when it holds more than twice the chunks' bytes.
        let index = &self.cold.index;
        let regions = index.log_regions();
        let chunk_bytes = self.cold.chunks * (std::mem::size_of::<Chunk>() as u64 + 16);
        if regions.tail_address - regions.begin_address > 2 * chunk_bytes.max(1 << 20) {
            let page = regions.page_size_bytes;
            let half = regions.begin_address + (regions.tail_address - regions.begin_address) / 2;
            let until = half.min(regions.safe_read_only_address) / page * page;
            if until > regions.begin_address {
                crate::hlog::unthrottled(|| index.compact(until))?;
            }
        }
        self.cold.log.commit()?;
        let cold_committed = self.cold.log.committed_until().raw();
        let index_cp = index.checkpoint_and_wait(CheckpointKind::FoldOver)?;
        let hot_cp = self.hot.checkpoint_and_wait(CheckpointKind::FoldOver)?;
        let manifest = Manifest {
            chunks: self.cold.chunks,
            cold_committed,
            hot_token: hot_cp.token.to_string(),
            index_token: index_cp.token.to_string(),
        };
        write_manifest(self.config.io(), &self.dir, &manifest)?;
        if let Some(to) = m.truncate_to.take() {
            self.cold.log.truncate_until(LogAddress::from_raw(to))?;
        }
        // Older checkpoints than the two newest (the manifest's and the
        // one before) go, and the log segments only they needed.
        crate::checkpoint::retain_older(&self.dir.join("hot"), 2)?;
        self.hot.reclaim()?;
        crate::checkpoint::retain_older(&self.dir.join("cold").join("index"), 2)?;
        index.reclaim()?;
        m.checkpointed = mark;
        drop(m);
        self.totals.lock().unwrap_or_else(|p| p.into_inner()).checkpoints += 1;
        Ok(F2Checkpoint { hot: hot_cp, cold_index_token: manifest.index_token, cold_committed })
    }
}

/// Cold-log records a cold compaction looks up together.
const COMPACTION_GROUP: usize = 1_024;

/// Cold-log records one slice of a cold compaction scans (see
/// `F2Inner::compact_cold_slice`).
const COMPACTION_SLICE: usize = 8 * COMPACTION_GROUP;

/// A record of a cold compaction's group: its address, its key's hash,
/// and where its key and value are in the group's buffer.
struct GroupRecord {
    address: u64,
    hash: u64,
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// Migration's target: the cold tier.
struct ToCold<'a, K, D: Device> {
    cold: &'a Cold<D>,
    writer: &'a mut ColdWriter<D>,
    migrations: &'a crate::sync::AtomicU64,
    kept: u64,
    dropped: u64,
    _key: std::marker::PhantomData<K>,
}

impl<K: Key, D: Device> Migrate for ToCold<'_, K, D> {
    fn keep(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let hash = <EncodedKey<'_> as KeyArg<K>>::key_arg_hash(&EncodedKey(key));
        // A deletion hides older cold records of its key; with none (its
        // slot is empty) it has nothing to hide.
        if tiered::is_deleted(value) && self.cold.slot_empty(&mut self.writer.index, hash)? {
            self.dropped += 1;
            return Ok(());
        }
        self.writer.append(self.cold, key, hash, value)?;
        self.kept += 1;
        Ok(())
    }

    fn publish(&mut self) -> Result<()> {
        self.writer.publish(self.cold)?;
        // After the cold records are visible, before the hot begin address
        // moves (see `F2Session::rmw`).
        self.migrations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl Background {
    fn start<K: Key, V: Value, D: Device>(inner: Arc<F2Inner<K, V, D>>) -> Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("oxifaster-f2".into())
                .spawn(move || background(&inner, &stop))
                .map_err(|source| Error::Io {
                    context: "starting the F2 background task".into(),
                    source,
                })?
        };
        Ok(Self { stop, thread: Some(thread) })
    }
}

/// What the background task carries from one step to the next.
struct Chores {
    last_checkpoint: Instant,
    /// A cold compaction in progress: the address it compacts below.
    cold_until: Option<u64>,
}

/// Migrates, compacts the cold log and checkpoints as the configuration
/// asks, every 20 ms (at once while a cold compaction has slices left),
/// until stopped.
fn background<K: Key, V: Value, D: Device>(
    inner: &F2Inner<K, V, D>,
    stop: &(Mutex<bool>, Condvar),
) {
    let mut chores = Chores { last_checkpoint: Instant::now(), cold_until: None };
    let mut busy = false;
    loop {
        {
            let (flag, wake) = stop;
            let stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
            let pause = if busy { Duration::ZERO } else { Duration::from_millis(20) };
            let (stopped, _) =
                wake.wait_timeout_while(stopped, pause, |s| !*s).unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        busy = match step(inner, &mut chores) {
            Ok(busy) => busy,
            Err(e) => {
                tracing::error!(error = %e, "F2 background maintenance failed");
                chores.cold_until = None;
                false
            }
        };
    }
}

/// The chunk store's table: `configured` buckets, or fewer when the
/// chunks fill fewer at five or more per bucket (a bucket holds seven
/// entries; past that, overflow buckets).
fn chunk_table_size(configured: u64, chunks: u64) -> u64 {
    configured.min(pow2_floor((chunks / 5).max(16)))
}

/// The largest power of two at most `n` (1 for 0).
fn pow2_floor(n: u64) -> u64 {
    if n == 0 { 1 } else { 1 << n.ilog2() }
}

/// Where a migration of the hot log in `r` should end when the log holds
/// more than `limit` bytes: half of it, no further than the safe read-only
/// address, on a page boundary; `None` when the log is within its limit
/// or nothing below that point may migrate yet.
fn migration_due(r: &crate::store::LogRegions, limit: u64) -> Option<u64> {
    let held = r.tail_address - r.begin_address;
    let half = r.begin_address + held / 2;
    let until = half.min(r.safe_read_only_address) / r.page_size_bytes * r.page_size_bytes;
    (held > limit && until > r.begin_address).then_some(until)
}

/// One round of the background task: a migration if the hot log is past
/// its size, one slice of a cold compaction if one is due or in progress
/// (so that the next round's migration never waits for a whole cold
/// compaction), a checkpoint if one is due. Returns whether a cold
/// compaction has slices left.
fn step<K: Key, V: Value, D: Device>(
    inner: &F2Inner<K, V, D>,
    chores: &mut Chores,
) -> Result<bool> {
    if let Some(limit) = inner.config.hot_log_size_bytes {
        let log = &inner.hot.inner.log;
        if let Some(until) = migration_due(&inner.hot.log_regions(), limit) {
            // Writers that reach the admission limit wait for it.
            log.set_making_room(true);
            let migrated = inner.migrate(until);
            log.set_making_room(false);
            migrated?;
        }
        // Admission: the hot log (and with it the hot index, which holds
        // the hot keys only) may not grow past twice its size while
        // migrations catch up with the writers (the hot store's throttle:
        // writers past the limit wait while a migration runs, and up to a
        // second otherwise).
        let begin = log.begin_address().raw();
        log.throttle_at(crate::address::Address::new(begin + 2 * limit));
    }
    let mut busy = false;
    if let Some(limit) = inner.config.cold_log_size_bytes {
        if chores.cold_until.is_none() {
            // Measured from where compaction left off: the range below it
            // goes at the next checkpoint.
            let from = inner.cold_cursor(&inner.lock());
            let tail = inner.cold.log.committed_until().raw();
            if tail.saturating_sub(from) > limit {
                chores.cold_until = Some(from + (tail - from) / 2);
            }
        }
        if let Some(until) = chores.cold_until {
            let (_, more) = inner.compact_cold_slice(until)?;
            if more {
                busy = true;
            } else {
                chores.cold_until = None;
                inner.totals.lock().unwrap_or_else(|p| p.into_inner()).cold_compactions += 1;
            }
        }
    }
    if let Some(every) = inner.config.checkpoint_every
        && chores.last_checkpoint.elapsed() >= every
    {
        chores.last_checkpoint = Instant::now();
        if inner.has_changes() {
            inner.checkpoint()?;
        }
    }
    Ok(busy)
}

/// A session of an [`F2Store`]: the same operations as a [`Session`] of a
/// [`Store`], over both tiers.
///
/// Reads whose key is not in the hot tier's memory return
/// [`ReadStatus::Pending`] (the hot tier's device read, or the cold
/// lookup) and finish in [`F2Session::complete_pending`]; the `_blocking`
/// forms do the I/O at once. Read-modify-writes finish before they return.
pub struct F2Session<K: Key, V: Value, D: Device = FileDevice> {
    hot: Session<K, Tiered<V>, D>,
    index: cold::IndexSession<D>,
    inner: Arc<F2Inner<K, V, D>>,
    /// Hot reads gone to the device, by serial: their keys, for the cold
    /// lookup if the hot tier has no record.
    hot_parked: HashMap<u64, AlignedBytes>,
    /// Reads to finish in the cold tier.
    cold_parked: VecDeque<ColdRead>,
    /// Hot completions met while an RMW waited for its own.
    stash: Vec<Completed<Tiered<V>>>,
    /// Serials of promotions (see `promote`) that went pending: their
    /// completions are not the caller's.
    promotions: std::collections::HashSet<u64>,
    probe: ColdProbe,
    /// The chunk-store session the async cold lookups take to tokio's
    /// blocking pool and bring back (a future dropped meanwhile loses it;
    /// the next lookup starts another).
    #[cfg(feature = "tokio")]
    async_index: Option<cold::IndexSession<D>>,
    /// Runs between an RMW's (or update's) cold read and its hot insert,
    /// and between a read's cold lookup and its read-cache link (tests
    /// widen the race windows with it).
    #[cfg(feature = "testing")]
    rmw_pause: Option<Box<dyn FnMut() + Send>>,
}

impl<K: Key, V: Value, D: Device> F2Session<K, V, D> {
    /// The session's id (its commit points in checkpoints are listed
    /// under it: [`F2Checkpoint::hot`]).
    pub fn id(&self) -> u64 {
        self.hot.id()
    }

    /// The serial number of the last operation started in this session.
    pub fn serial(&self) -> u64 {
        self.hot.serial()
    }

    /// Reads `key`: the hot tier (its read cache included), then the cold
    /// tier.
    pub fn read<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<ReadStatus<V>> {
        let seen = self.inner.migrations.load(Ordering::SeqCst);
        match self.hot.read(key)? {
            ReadStatus::Found(Tiered::Live(v)) => Ok(ReadStatus::Found(v)),
            ReadStatus::Found(Tiered::Deleted) => Ok(ReadStatus::NotFound),
            ReadStatus::Pending { serial } => {
                self.hot_parked.insert(serial, key.key_arg_to_aligned_bytes());
                Ok(ReadStatus::Pending { serial })
            }
            ReadStatus::NotFound => {
                let serial = self.hot.serial();
                self.cold_parked.push_back(ColdRead {
                    serial,
                    key: key.key_arg_to_aligned_bytes(),
                    hash: key.key_arg_hash(),
                    miss: Some(HotMiss { entry: self.hot.last_miss_entry(), seen }),
                });
                Ok(ReadStatus::Pending { serial })
            }
        }
    }

    /// Reads `key`, doing any device I/O (hot or cold) right away.
    pub fn read_blocking<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<Option<V>> {
        let seen = self.inner.migrations.load(Ordering::SeqCst);
        match self.hot.read_blocking(key)? {
            Some(Tiered::Live(v)) => Ok(Some(v)),
            Some(Tiered::Deleted) => Ok(None),
            None => {
                let miss = HotMiss { entry: self.hot.last_miss_entry(), seen };
                let key_bytes = key.key_arg_to_aligned_bytes();
                let hash = key.key_arg_hash();
                match self.inner.cold.lookup(
                    &mut self.index,
                    key_bytes.as_slice(),
                    hash,
                    &mut self.probe,
                )? {
                    Some(bytes) => self.cold_value(key_bytes.as_slice(), hash, bytes, Some(miss)),
                    None => Ok(None),
                }
            }
        }
    }

    /// The value in `bytes`, what the cold tier holds for `key` (of hash
    /// `hash`), read after the hot tier missed it as `miss` says (`None`:
    /// a miss the read cannot vouch for, after a pending hot read): put in
    /// the hot tier's read cache, or, failing that, promoted if so
    /// configured.
    fn cold_value(
        &mut self,
        key: &[u8],
        hash: u64,
        bytes: AlignedBytes,
        miss: Option<HotMiss>,
    ) -> Result<Option<V>> {
        let Tiered::Live(value) = Tiered::<V>::decode(bytes.as_slice())? else { return Ok(None) };
        #[cfg(feature = "testing")]
        if let Some(pause) = self.rmw_pause.as_mut() {
            pause();
        }
        let cached = miss.is_some_and(|miss| {
            let migrations = &self.inner.migrations;
            let still = || migrations.load(Ordering::SeqCst) == miss.seen;
            self.hot.cache_value(key, hash, miss.entry, bytes.as_slice(), &still)
        });
        if !cached && self.inner.config.promote_cold_reads {
            let seen =
                miss.map_or_else(|| self.inner.migrations.load(Ordering::SeqCst), |m| m.seen);
            self.promote(key, bytes, seen);
        }
        Ok(Some(value))
    }

    /// Inserts `bytes` (a live `Tiered` encoding, read from the cold tier
    /// when the migration count was `seen`) as `key`'s hot value if the key
    /// still has no hot record and the count has not moved (the RMW's
    /// conditional insert). Best effort: a failure leaves the key cold.
    fn promote(&mut self, key: &[u8], bytes: AlignedBytes, seen: u64) {
        let migrations = self.inner.migrations.clone();
        // The cold encoding is the hot one: stored as it is, not decoded.
        let decide = move |old: Option<&[u8]>| {
            Ok(match old {
                None if migrations.load(Ordering::SeqCst) == seen => Decision::Set(bytes.clone()),
                _ => Decision::Abort,
            })
        };
        match self.hot.update_encoded(&EncodedKey(key), Box::new(decide)) {
            Ok(UpdateStatus::Done(Outcome::Set)) => self.probe.promoted += 1,
            Ok(UpdateStatus::Done(_)) => {}
            // The key got a hot record on the device meanwhile: the
            // decision (an abort) comes with the next completions, which
            // do not report it.
            Ok(UpdateStatus::Pending { serial }) => {
                self.promotions.insert(serial);
            }
            Err(e) => tracing::debug!(error = %e, "copying a cold read into the hot tier"),
        }
    }

    /// Writes `value` for `key` in the hot tier.
    pub fn upsert<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        key: &Q,
        value: &W,
    ) -> Result<()> {
        self.hot.upsert(key, &LiveArg(value))
    }

    /// Deletes `key` (a hot deletion, hiding its cold versions).
    pub fn delete<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<()> {
        self.hot.upsert(key, &Tiered::<V>::Deleted)
    }

    /// Merges `input` into `key`'s value (its `Merge`), wherever the value
    /// is: an [`Self::update`] whose decision is the merge (the initial
    /// value for a key with none).
    ///
    /// In the hot tier the merge is the hot store's conditional update. A
    /// key with no hot record is read from the cold tier and the merged
    /// value inserted in the hot tier by a second conditional update that
    /// inserts only if the key still has no hot record **and** no migration
    /// published since the cold read began; otherwise the RMW starts over.
    /// Why the migration count: a record written to the hot tier after the
    /// first look, then migrated and dropped from the hot tier before the
    /// insert, would leave the key without a hot record while the cold
    /// value read is older than it. The count moves after a migration's
    /// cold records are visible and before the hot begin address moves,
    /// so an insert that sees no hot record of such a key sees the count
    /// moved. A migration frees the hot index entries of the keys it moved
    /// only after an epoch drain that follows the count's move, so an
    /// insert whose CAS expects the key's entry to be empty cannot succeed
    /// across a record that was inserted and migrated in between (its
    /// operation, protected from its look at the entry to its CAS, holds
    /// the drain back, and the entry still points at the moved record).
    /// `tests/f2.rs` makes the race happen and fails with the check
    /// removed.
    pub fn rmw<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q, input: &V) -> Result<()>
    where
        V: Merge + Clone,
    {
        self.update(key, merging(input.clone()))?;
        Ok(())
    }

    /// A conditional update over both tiers: `decide` sees the key's value
    /// (hot, or else cold; `None` when it has none or is deleted) and its
    /// decision is written to the hot tier only if nothing changed the key
    /// since — the hot store's conditional update when the key has a hot
    /// record, else the RMW's conditional insert (no hot record and no
    /// migration published since the cold read; otherwise it starts over).
    /// A deletion is written as a hot deletion value. `decide` may run more
    /// than once; make it free of side effects. Finishes before it returns.
    ///
    /// ```
    /// use oxifaster::f2::F2Store;
    /// use oxifaster::store::{Decision, Outcome};
    ///
    /// let store = F2Store::<u64, u64>::builder().page_size_bits(12).open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&1, &10)?;
    /// store.migrate_all()?; // the value is cold now
    /// let double = |old: Option<&u64>| old.map_or(Decision::Abort, |v| Decision::Set(v * 2));
    /// assert_eq!(session.update(&1, double)?, Outcome::Set);
    /// assert_eq!(session.read_blocking(&1)?, Some(20));
    /// assert_eq!(session.insert_if_absent(&1, &5)?, Outcome::Aborted);
    /// assert_eq!(session.delete_if(&1, |v| *v == 20)?, Outcome::Deleted);
    /// assert_eq!(session.insert_if_absent(&1, &5)?, Outcome::Set);
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn update<Q, F>(&mut self, key: &Q, decide: F) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        F: FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static,
        V: Merge + Clone,
    {
        self.update_encoded(key, on_encodings(decide))
    }

    /// [`Self::update`] decided on the value's encoding (`None`: no value)
    /// and giving the new value as an encoding of `V`.
    fn update_encoded<Q, F>(&mut self, key: &Q, decide: F) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        F: FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send + 'static,
        V: Merge + Clone,
    {
        let key_bytes = key.key_arg_to_aligned_bytes();
        let hash = key.key_arg_hash();
        let (cold, index, probe) = (&self.inner.cold, &mut self.index, &mut self.probe);
        let mut lookup = || cold.lookup(index, key_bytes.as_slice(), hash, probe);
        #[cfg(feature = "testing")]
        let pause = self.rmw_pause.as_mut().map(|p| p as &mut dyn FnMut());
        #[cfg(not(feature = "testing"))]
        let pause = None;
        let mut hot = protocol::Hot { session: &mut self.hot, stash: &mut self.stash };
        protocol::update(&mut hot, &self.inner.migrations, &mut lookup, pause, key, decide)
    }

    /// Stores `value` if `key` has none in either tier: [`Outcome::Set`]
    /// if it did, [`Outcome::Aborted`] if the key has a value. As
    /// [`Self::update`].
    pub fn insert_if_absent<Q, W>(&mut self, key: &Q, value: &W) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        W: ValueArg<V> + ?Sized,
        V: Merge + Clone,
    {
        self.update_encoded(key, inserting(encoding::<V, W>(value)))
    }

    /// Stores `new` if `key`'s value (in either tier) is `expected` (the
    /// same encoding): [`Outcome::Set`] if it did, [`Outcome::Aborted`] if
    /// the key has another value or none. As [`Self::update`].
    ///
    /// ```
    /// use oxifaster::f2::F2Store;
    /// use oxifaster::store::Outcome;
    ///
    /// let store = F2Store::<u64, String>::builder().page_size_bits(12).open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&7, "draft")?;
    /// store.migrate_all()?; // the value is cold now
    /// assert_eq!(session.compare_and_swap(&7, "draft", "final")?, Outcome::Set);
    /// assert_eq!(session.compare_and_swap(&7, "draft", "other")?, Outcome::Aborted);
    /// assert_eq!(session.read_blocking(&7)?.as_deref(), Some("final"));
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn compare_and_swap<Q, E, N>(&mut self, key: &Q, expected: &E, new: &N) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        E: ValueArg<V> + ?Sized,
        N: ValueArg<V> + ?Sized,
        V: Merge + Clone,
    {
        self.update_encoded(key, swapping(encoding::<V, E>(expected), encoding::<V, N>(new)))
    }

    /// Deletes `key` if `predicate` holds for its value (in either tier):
    /// [`Outcome::Deleted`] if it did, [`Outcome::Aborted`] otherwise. As
    /// [`Self::update`].
    pub fn delete_if<Q, P>(&mut self, key: &Q, predicate: P) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        P: FnMut(V::View<'_>) -> bool + Send + 'static,
        V: Merge + Clone,
    {
        self.update(key, deleting_if::<V, P>(predicate))
    }

    /// Operations that returned `Pending` and have not been reported.
    pub fn pending_count(&self) -> usize {
        (self.hot.pending_count() + self.cold_parked.len() + self.stash.len())
            .saturating_sub(self.promotions.len())
    }

    /// Finishes what it can of the pending operations (hot device reads,
    /// then cold lookups) and reports them.
    pub fn complete_pending(&mut self) -> Result<Vec<Completed<V>>>
    where
        V: Merge + Clone,
    {
        let mut hot = std::mem::take(&mut self.stash);
        hot.extend(self.hot.complete_pending()?);
        let mut done = Vec::with_capacity(hot.len() + self.cold_parked.len());
        for Completed { serial, op } in hot {
            if self.promotions.remove(&serial) {
                continue;
            }
            let key = self.hot_parked.remove(&serial);
            let op = match op {
                CompletedOp::Read(Some(Tiered::Live(v))) => CompletedOp::Read(Some(v)),
                CompletedOp::Read(Some(Tiered::Deleted)) => CompletedOp::Read(None),
                CompletedOp::Read(None) => match key {
                    Some(key) => {
                        let hash = <EncodedKey<'_> as KeyArg<K>>::key_arg_hash(&EncodedKey(
                            key.as_slice(),
                        ));
                        self.cold_parked.push_back(ColdRead { serial, key, hash, miss: None });
                        continue;
                    }
                    None => CompletedOp::Read(None),
                },
                CompletedOp::Rmw => CompletedOp::Rmw,
                CompletedOp::Update(outcome) => CompletedOp::Update(outcome),
                CompletedOp::Failed(e) => CompletedOp::Failed(e),
            };
            done.push(Completed { serial, op });
        }
        // The cold lookups, as one batch (their device reads in flight
        // together).
        let parked: Vec<_> = self.cold_parked.drain(..).collect();
        let lookups: Vec<cold::Lookup<'_>> =
            parked.iter().map(|read| (read.key.as_slice(), read.hash)).collect();
        let found = self.inner.cold.lookup_batch(&mut self.index, &lookups, &mut self.probe);
        for (read, found) in parked.iter().zip(found) {
            let serial = &read.serial;
            let value = match found {
                Ok(Some((_, bytes))) => self
                    .cold_value(read.key.as_slice(), read.hash, bytes, read.miss)
                    .map_err(Arc::new),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            let op = match value {
                Ok(value) => CompletedOp::Read(value),
                Err(e) => CompletedOp::Failed(crate::store::OpError(e)),
            };
            done.push(Completed { serial: *serial, op });
        }
        Ok(done)
    }

    /// Sets a function an RMW or a conditional update runs between its
    /// cold read and its hot insert, and a read between its cold lookup and
    /// its read-cache link (tests widen the race windows with it).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn set_rmw_pause(&mut self, pause: Option<Box<dyn FnMut() + Send>>) {
        self.rmw_pause = pause;
    }

    /// What this session's cold lookups cost so far.
    pub fn cold_probe(&self) -> ColdProbe {
        self.probe
    }
}

/// A read the hot tier missed, to finish in the cold tier.
struct ColdRead {
    serial: u64,
    key: AlignedBytes,
    hash: u64,
    miss: Option<HotMiss>,
}

/// How the hot tier missed a key: the index entry it looked under and the
/// migration count loaded before it looked (what a cold read needs to be
/// linked into the hot tier's read cache, see `Session::cache_value`).
#[derive(Debug, Clone, Copy)]
struct HotMiss {
    entry: u64,
    seen: u64,
}

/// The decision of an RMW by `input`: the merge (the initial value for a
/// key with none).
fn merging<V: Merge + Clone>(input: V) -> impl FnMut(Option<V::View<'_>>) -> Decision<V> {
    move |old| {
        Decision::Set(match old {
            Some(old) => V::copy_update(old, &input),
            None => V::initial(&input),
        })
    }
}

/// `decide` (on views, giving a `V`) as a decision on encodings.
fn on_encodings<V: Value, F>(
    mut decide: F,
) -> impl FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send + 'static
where
    F: FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static,
{
    move |old| {
        Ok(match decide(old.map(V::view).transpose()?) {
            Decision::Set(value) => Decision::Set(value.to_aligned_bytes()),
            Decision::Keep => Decision::Keep,
            Decision::Delete => Decision::Delete,
            Decision::Abort => Decision::Abort,
        })
    }
}

/// The decision of `insert_if_absent`: `value` (an encoding) only where
/// there is none.
fn inserting(
    value: AlignedBytes,
) -> impl FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send + 'static {
    move |old| {
        Ok(match old {
            None => Decision::Set(value.clone()),
            Some(_) => Decision::Abort,
        })
    }
}

/// The decision of `compare_and_swap`: `new` where the stored encoding is
/// `expected`.
fn swapping(
    expected: AlignedBytes,
    new: AlignedBytes,
) -> impl FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send + 'static {
    move |old| {
        Ok(match old {
            Some(stored) if stored == expected.as_slice() => Decision::Set(new.clone()),
            _ => Decision::Abort,
        })
    }
}

/// The decision of `delete_if`: a deletion where `predicate` holds.
fn deleting_if<V: Value, P>(
    mut predicate: P,
) -> impl FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static
where
    P: FnMut(V::View<'_>) -> bool + Send + 'static,
{
    move |old| match old.map(&mut predicate) {
        Some(true) => Decision::Delete,
        _ => Decision::Abort,
    }
}

/// `value`'s encoding as a `V`, owned.
fn encoding<V: Value, W: ValueArg<V> + ?Sized>(value: &W) -> AlignedBytes {
    AlignedBytes::from_encoder(value.value_arg_size(), |s| value.encode_value_arg(s))
}

/// The F2 manifest (docs/FORMAT.md).
struct Manifest {
    chunks: u64,
    cold_committed: u64,
    hot_token: String,
    index_token: String,
}

fn write_manifest(io: &dyn CheckpointIo, dir: &Path, m: &Manifest) -> Result<()> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MANIFEST_MAGIC);
    bytes.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&m.chunks.to_le_bytes());
    bytes.extend_from_slice(&m.cold_committed.to_le_bytes());
    for token in [&m.hot_token, &m.index_token] {
        bytes.extend_from_slice(&(token.len() as u16).to_le_bytes());
        bytes.extend_from_slice(token.as_bytes());
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    crate::checkpoint::write_atomic(io, &dir.join(MANIFEST), &bytes)
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io { context: format!("reading {}", path.display()), source });
        }
    };
    let corrupt = |what: &str| Error::CheckpointCorrupt { path: path.clone(), what: what.into() };
    if bytes.len() < 36 || &bytes[..8] != MANIFEST_MAGIC {
        return Err(corrupt("not an F2 manifest (magic)"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let version = u32::from_le_bytes(body[8..12].try_into().unwrap_or_default());
    if version != MANIFEST_VERSION {
        return Err(Error::UnsupportedFormat { path, found: version, supported: MANIFEST_VERSION });
    }
    let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or_default());
    let (chunks, cold_committed) = (word(16), word(24));
    let mut at = 32;
    let mut token = || -> Result<String> {
        let len = body.get(at..at + 2).ok_or_else(|| corrupt("truncated token"))?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let text = body.get(at + 2..at + 2 + len).ok_or_else(|| corrupt("truncated token"))?;
        at += 2 + len;
        String::from_utf8(text.to_vec()).map_err(|_| corrupt("a token that is not UTF-8"))
    };
    let (hot_token, index_token) = (token()?, token()?);
    if at != body.len() {
        return Err(corrupt("bytes after the tokens"));
    }
    if chunks == 0 {
        return Err(corrupt("no chunks"));
    }
    Ok(Some(Manifest { chunks, cold_committed, hot_token, index_token }))
}
