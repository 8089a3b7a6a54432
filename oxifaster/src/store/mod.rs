//! `Store<K, V>`: the typed concurrent key-value store.
//!
//! A store is a hash index in front of a hybrid log. Each key's
//! records form a chain through their previous addresses, newest first; the
//! index entry of the key's (bucket, tag) points at the newest record of the
//! chain. Operations run in a [`Session`], one thread at a time, under epoch
//! protection:
//!
//! - **read**: walk the chain; in memory it finishes, below `head` it goes
//!   pending (an I/O completed by `complete_pending`).
//! - **upsert**: update in place at or above `read_only`; else append a
//!   record and CAS the index entry (never reads the device).
//! - **rmw**: in place at or above `read_only`; in the fuzzy region
//!   `[safe_read_only, read_only)` retry after a refresh (another thread may
//!   still be updating the record in place, and copying it now could lose that
//!   update); from `[head, safe_read_only)` copy-update to the tail; below
//!   `head` go pending and copy-update from the record read back; a key that
//!   has no record gets `Merge::initial`.
//! - **delete**: mark the record a tombstone in place in the mutable region,
//!   else append a tombstone.
//!
//! Every append publishes its record with a CAS of the index entry from the
//! address the operation started from; a failed CAS marks the new record
//! invalid and retries the operation, so concurrent updates are never lost.

pub(crate) mod disk;
pub(crate) mod grow;
pub(crate) mod record;
mod session;

pub use crate::cpr::CommitPoint;

pub(crate) use session::CopyOutcome;
pub(crate) use session::ParkedFn;
pub(crate) use session::Settle;
pub use session::{
    Completed, CompletedOp, Decision, KeyVersion, OpError, Outcome, ReadStatus, RmwStatus, Session,
    UpdateStatus,
};

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cpr;
use crate::device::{Device, FileDevice};
use crate::epoch::{DEFAULT_MAX_PARTICIPANTS, Epoch};
use crate::hlog::{HybridLog, LogGeometry};
use crate::index::HashIndex;
use crate::lock::LockFile;
use crate::record::{Key, Value};
use crate::{Error, Result};

use record::RecordFormat;

/// The default interval of the automatic checkpoint policy.
pub const DEFAULT_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The configuration of a store. Every field has a default; see the setters
/// of [`StoreBuilder`](crate::StoreBuilder) for units and defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Hash buckets (a power of two). Default 2^20 (64 MiB of index).
    pub table_size: u64,
    /// Bytes of log kept in memory, rounded down to a power of two of pages.
    /// Default 256 MiB.
    pub log_memory_size_bytes: u64,
    /// log2 of the log page size in bytes. Default 22 (4 MiB).
    pub page_size_bits: u32,
    /// The fraction of the in-memory log that is updated in place. Default 0.9.
    pub mutable_fraction: f64,
    /// The directory of the log files; `None` for a temporary directory that
    /// is removed when the store is dropped.
    pub dir: Option<PathBuf>,
    /// The most sessions open at once. Default 128.
    pub max_sessions: usize,
    /// Called with the progress of checkpoints and recovery.
    pub progress: Option<cpr::ProgressFn>,
    /// How checkpoint files are written (default: the real file system).
    pub checkpoint_io: Option<cpr::IoHandle>,
    /// Called when a checkpoint is durable (the persistence callback).
    pub on_checkpoint: Option<cpr::CheckpointFn>,
    /// The automatic checkpoint interval (`None`: off). Default 5 s.
    pub checkpoint_every: Option<std::time::Duration>,
    /// Whether closing takes a final checkpoint. Default true.
    pub checkpoint_on_close: bool,
    /// Automatic checkpoints kept. Default 2.
    pub keep_checkpoints: usize,
    /// The most operations one session may hold parked (pending) at once.
    /// Default 65,536.
    pub max_pending: usize,
    /// log2 of the log's segment file size, for a new store (an existing
    /// one keeps the size it recorded). Default 30 (1 GiB); with a disk
    /// budget and this left at its default, a size that gives about 32
    /// segments in the budget.
    pub segment_size_bits: u32,
    /// The bytes the store directory (log segments and checkpoints) may
    /// take; `None`: no bound. Default `None`.
    pub disk_budget: Option<u64>,
    /// Whether the log's segment files are read and written with
    /// `O_DIRECT` (Linux), around the page cache. Default false.
    pub direct_io: bool,
    /// Whether the hash index doubles by itself when its entries pass four
    /// per main bucket. Default true.
    pub auto_grow_index: bool,
    /// Bytes of memory for the read cache (records read back from the
    /// device, kept in memory for the next reads), in whole log pages and
    /// at least two; 0 turns it off. Default 0.
    pub read_cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            table_size: 1 << 20,
            log_memory_size_bytes: 256 << 20,
            page_size_bits: 22,
            mutable_fraction: 0.9,
            dir: None,
            max_sessions: DEFAULT_MAX_PARTICIPANTS,
            progress: None,
            checkpoint_io: None,
            on_checkpoint: None,
            checkpoint_every: Some(DEFAULT_CHECKPOINT_INTERVAL),
            checkpoint_on_close: true,
            keep_checkpoints: 2,
            max_pending: 1 << 16,
            segment_size_bits: crate::device::DEFAULT_SEGMENT_SIZE_BITS,
            disk_budget: None,
            direct_io: false,
            auto_grow_index: true,
            read_cache_bytes: 0,
        }
    }
}

impl StoreConfig {
    /// The log geometry, checked.
    pub fn geometry(&self) -> Result<LogGeometry> {
        if !(0.0..=1.0).contains(&self.mutable_fraction) {
            return Err(Error::InvalidConfig {
                what: "mutable_fraction",
                why: format!("{} is outside 0.0..=1.0", self.mutable_fraction),
            });
        }
        use crate::hlog::{MAX_PAGE_BITS, MIN_PAGE_BITS};
        if !(MIN_PAGE_BITS..=MAX_PAGE_BITS).contains(&self.page_size_bits) {
            return Err(Error::InvalidConfig {
                what: "page_size_bits",
                why: format!(
                    "{} is outside {MIN_PAGE_BITS}..={MAX_PAGE_BITS}",
                    self.page_size_bits
                ),
            });
        }
        let page_size = 1u64 << self.page_size_bits;
        // The ring holds a power of two of pages: round down.
        let pages = self.log_memory_size_bytes.checked_div(page_size).unwrap_or(0);
        if pages < 4 {
            return Err(Error::InvalidConfig {
                what: "log_memory_size_bytes",
                why: format!(
                    "{} bytes hold {pages} pages of {page_size} bytes; at least 4 are needed: \
                     raise log_memory_size_bytes or lower page_size_bits",
                    self.log_memory_size_bytes
                ),
            });
        }
        let frames = if pages == 0 { 0 } else { 1u64 << pages.ilog2() };
        let mutable_pages = ((frames as f64 * self.mutable_fraction) as u64)
            .clamp(1, frames.saturating_sub(2).max(1));
        let geometry =
            LogGeometry { page_bits: self.page_size_bits, frames, mutable_pages, sealed: true };
        geometry.validate()?;
        Ok(geometry)
    }

    /// The segment size (log2) a new store gets: `segment_size_bits`, or,
    /// with a disk budget and `segment_size_bits` at its default, about a
    /// 32nd of the budget (at least 64 KiB and a page, at most 1 GiB).
    pub fn effective_segment_bits(&self) -> u32 {
        match self.disk_budget {
            Some(budget) if self.segment_size_bits == crate::device::DEFAULT_SEGMENT_SIZE_BITS => {
                (budget / 32).max(1).ilog2().clamp(16.max(self.page_size_bits), 30)
            }
            _ => self.segment_size_bits,
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        self.geometry()?;
        if !self.table_size.is_power_of_two() {
            return Err(Error::InvalidConfig {
                what: "table_size",
                why: format!("{} is not a power of two", self.table_size),
            });
        }
        if self.max_sessions == 0 {
            return Err(Error::InvalidConfig {
                what: "max_sessions",
                why: "must be at least 1".into(),
            });
        }
        if !(12..=40).contains(&self.segment_size_bits)
            || self.segment_size_bits < self.page_size_bits
        {
            return Err(Error::InvalidConfig {
                what: "segment_size_bits",
                why: format!(
                    "{} is outside 12..=40 or below page_size_bits ({}): a segment holds whole pages",
                    self.segment_size_bits, self.page_size_bits
                ),
            });
        }
        if let Some(budget) = self.disk_budget {
            let index = self.table_size.saturating_mul(64);
            let segment = 1u64 << self.effective_segment_bits();
            let least = self
                .log_memory_size_bytes
                .saturating_add(index)
                .saturating_add(segment.saturating_mul(4));
            if budget < least {
                return Err(Error::InvalidConfig {
                    what: "disk_budget",
                    why: format!(
                        "{budget} bytes cannot hold the log memory ({} bytes) written out, one \
                         checkpoint's index ({index} bytes) and four log segments ({segment} \
                         bytes each): at least {least} bytes",
                        self.log_memory_size_bytes
                    ),
                });
            }
        }
        if self.read_cache_bytes != 0 {
            let page = 1u64 << self.page_size_bits;
            if !self.read_cache_bytes.is_multiple_of(page) || self.read_cache_bytes < 2 * page {
                return Err(Error::InvalidConfig {
                    what: "read_cache_bytes",
                    why: format!(
                        "{} is not 0 or a whole number of at least two pages of {page} bytes",
                        self.read_cache_bytes
                    ),
                });
            }
            if let Some(total) = crate::mem::physical_memory()
                && self.read_cache_bytes.saturating_add(self.log_memory_size_bytes) > total
            {
                return Err(Error::InvalidConfig {
                    what: "read_cache_bytes",
                    why: format!(
                        "{} bytes of read cache and {} of log memory exceed this machine's {total} bytes of memory",
                        self.read_cache_bytes, self.log_memory_size_bytes
                    ),
                });
            }
        }
        if self.max_pending == 0 {
            return Err(Error::InvalidConfig {
                what: "max_pending",
                why: "must be at least 1".into(),
            });
        }
        if self.keep_checkpoints == 0 {
            return Err(Error::InvalidConfig {
                what: "keep_checkpoints",
                why: "must be at least 1: the newest checkpoint is what a reopen recovers".into(),
            });
        }
        if self.checkpoint_every.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidConfig {
                what: "checkpoint_every",
                why: "an interval of zero; use None to turn the policy off".into(),
            });
        }
        Ok(())
    }
}

/// The shared state of a store: what sessions and a running checkpoint
/// reach.
pub(crate) struct StoreInner<K, V, D> {
    pub(crate) index: HashIndex,
    pub(crate) log: HybridLog<D>,
    /// The read cache, if `config.read_cache_bytes` asks for one.
    pub(crate) read_cache: Option<crate::readcache::ReadCache>,
    pub(crate) epoch: Epoch,
    pub(crate) format: RecordFormat<K, V>,
    pub(crate) config: StoreConfig,
    pub(crate) dir: Option<PathBuf>,
    /// The version and checkpoint phase.
    pub(crate) cpr: cpr::CprState,
    /// Every session's commit-point bookkeeping.
    pub(crate) sessions: cpr::Registry,
    /// Checkpoint bookkeeping (the running one, the last index checkpoint).
    pub(crate) checkpoints: cpr::Control,
    /// Sessions open now (at most `config.max_sessions`).
    pub(crate) open_sessions: std::sync::atomic::AtomicUsize,
    /// Held by a maintenance task (compaction) while it runs: one at a
    /// time.
    pub(crate) maintenance: std::sync::Mutex<()>,
    /// Scans running now: compaction waits for none (see `scan`).
    pub(crate) scans: crate::scan::ScanGate,
    /// What compactions did, summed (the compaction layer adds to it).
    pub(crate) compaction_totals: std::sync::Mutex<CompactionTotals>,
    /// Held by a growth of the index from its start to the end of its
    /// copies' resolution (see `grow`): one at a time.
    pub(crate) growing: std::sync::Mutex<()>,
    /// Held by a growth while it changes the table's size (its split, up
    /// to forgetting the last index) and by a checkpoint for its whole
    /// run: the two never overlap. The resolution of a growth's copies,
    /// which reads the device, runs outside it, so a checkpoint never
    /// waits for device reads of a growth.
    pub(crate) resizing: std::sync::Mutex<()>,
    /// Checkpoints and recovery, counted for `stats`.
    pub(crate) checkpoint_counters: crate::stats::CheckpointCounters,
    types: PhantomData<fn(K, V)>,
}

impl<K: Key, V: Value, D: Device> StoreInner<K, V, D> {
    /// A new, empty store. On a device that already holds a log (a store
    /// directory opened instead of recovered), the new log starts past
    /// everything on it; `version` is past every checkpoint in the
    /// directory, so opening never overwrites what a checkpoint needs.
    pub(crate) fn new(config: StoreConfig, device: D, version: u32) -> Result<Self> {
        config.validate()?;
        let geometry = config.geometry()?;
        let index = HashIndex::new(config.table_size)?;
        let end = device
            .end_offset()
            .map_err(|source| Error::Io { context: "sizing the log device".into(), source })?;
        let log = if end == 0 {
            HybridLog::new(geometry, device)?
        } else {
            let start = end.next_multiple_of(1u64 << geometry.page_bits);
            HybridLog::recovered(geometry, device, start, start)?
        };
        let mut inner = Self::with_parts(config, index, log, version)?;
        inner.dir = inner.config.dir.clone();
        Ok(inner)
    }

    /// The store's write count and tail address now.
    pub(crate) fn change_mark(&self) -> (u64, u64) {
        (self.sessions.writes(), self.log.tail_address().raw())
    }

    /// Whether any write ran since the last checkpoint of this
    /// incarnation started (or, before the first, since the store opened:
    /// `Store::from_inner` records the mark then).
    pub(crate) fn changed_since_checkpoint(&self) -> bool {
        let started = *self.checkpoints.started_at.lock().unwrap_or_else(|p| p.into_inner());
        started != Some(self.change_mark())
    }

    /// Makes the whole log durable on the device: read-only up to the
    /// tail, written, synced.
    pub(crate) fn flush_log(&self) -> Result<()> {
        let handle = self.epoch.register()?;
        let tail = self.log.tail_address();
        let flushed = self.log.flush_durable(tail, &handle);
        handle.unprotect();
        flushed
    }

    /// A store over an index and a log (new or recovered) at `version`.
    pub(crate) fn with_parts(
        config: StoreConfig,
        index: HashIndex,
        log: HybridLog<D>,
        version: u32,
    ) -> Result<Self> {
        config.validate()?;
        // A fixed-size record must fit in a page: records are read with the
        // fixed sizes, so a type whose `FIXED_SIZE` is larger than a page
        // is refused here rather than read past a frame.
        // The automatic growth counts entries from what the index holds
        // (a recovered one is loaded and replayed by now).
        index.recount_entries();
        let format = RecordFormat::<K, V>::new();
        let fixed = (K::FIXED_KEY_SIZE, V::FIXED_SIZE);
        if fixed.0.is_some() || fixed.1.is_some() {
            let record = format.record_size(
                fixed.0.unwrap_or(0).min(u32::MAX as usize),
                fixed.1.unwrap_or(0).min(u32::MAX as usize),
            ) as u64;
            let max = log.page_body();
            if record > max {
                return Err(Error::RecordTooLarge { size: record, max });
            }
        }
        let read_cache = match config.read_cache_bytes {
            0 => None,
            bytes => Some(crate::readcache::ReadCache::new(
                bytes,
                config.page_size_bits,
                RecordFormat::<K, V>::shape(),
            )?),
        };
        Ok(Self {
            index,
            log,
            read_cache,
            // Four more entries than sessions: the running checkpoint's,
            // compaction's, an index growth's and the store's own (flush
            // at close).
            epoch: Epoch::new(config.max_sessions + 4),
            format: RecordFormat::new(),
            config,
            dir: None,
            cpr: cpr::CprState::new(version),
            sessions: cpr::Registry::new(),
            checkpoints: cpr::Control::default(),
            open_sessions: std::sync::atomic::AtomicUsize::new(0),
            maintenance: std::sync::Mutex::new(()),
            scans: crate::scan::ScanGate::default(),
            compaction_totals: std::sync::Mutex::new(CompactionTotals::default()),
            growing: std::sync::Mutex::new(()),
            resizing: std::sync::Mutex::new(()),
            checkpoint_counters: Default::default(),
            types: PhantomData,
        })
    }
}

/// A typed, concurrent key-value store over a device `D`.
///
/// `Store` is a cheap handle: clones share one store, and so do the
/// sessions started from them ([`Session`] owns a handle too, so it can move
/// into a spawned thread or task). The store closes when the last handle
/// and the last session are gone — or explicitly with [`Store::close`].
///
/// ```
/// use oxifaster::store::{ReadStatus, Store};
///
/// let store = Store::<u64, u64>::builder().log_memory_size_bytes(1 << 24).open()?;
/// let mut session = store.start_session()?;
/// session.upsert(&1, &10)?;
/// session.rmw(&1, &5)?;
/// assert_eq!(session.read(&1)?, ReadStatus::Found(15));
/// session.delete(&1)?;
/// assert_eq!(session.read_blocking(&1)?, None);
/// # Ok::<(), oxifaster::Error>(())
/// ```
pub struct Store<K: Key, V: Value, D: Device = FileDevice> {
    pub(crate) inner: Arc<StoreInner<K, V, D>>,
    pub(crate) open: Arc<OpenStore<K, V, D>>,
}

/// FASTER's name for the store.
pub type FasterKv<K, V, D = FileDevice> = Store<K, V, D>;

impl<K: Key, V: Value, D: Device> Clone for Store<K, V, D> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), open: self.open.clone() }
    }
}

impl<K: Key, V: Value, D: Device> std::fmt::Debug for Store<K, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("index", &self.inner.index)
            .field("log", &self.inner.log)
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// What [`Store::close`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// The final checkpoint, if one was taken (nothing had changed, or the
    /// store has no directory, or the policy is off: `None`).
    pub checkpoint: Option<cpr::CheckpointToken>,
    /// The log's tail address when it closed.
    pub tail_address: u64,
    /// How far the log was on the device when it closed.
    pub flushed_until_address: u64,
}

/// What closing a store does before its log is flushed, installed by the
/// layer that opened it (the builder: stop the checkpoint policy, take the
/// final checkpoint). It returns the final checkpoint's token, if any.
pub(crate) type CloseHook = Box<dyn Fn() -> Result<Option<cpr::CheckpointToken>> + Send + Sync>;

/// The open store: held by every [`Store`] handle and every [`Session`].
/// Dropping the last one runs the close hook, waits for background
/// checkpoints and flushes the log, then releases the directory's lock and
/// removes a temporary directory (fields drop in order).
pub(crate) struct OpenStore<K: Key, V: Value, D: Device> {
    pub(crate) inner: Arc<StoreInner<K, V, D>>,
    on_close: Option<CloseHook>,
    /// Set by `close`, which did the final work itself.
    closed: AtomicBool,
    /// The log's page writer: page flushes run here, never on a session's
    /// thread.
    _flusher: Option<crate::hlog::Flusher>,
    _lock: Option<LockFile>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl<K: Key, V: Value, D: Device> OpenStore<K, V, D> {
    /// Runs the close hook, waits for background checkpoints and flushes
    /// the log.
    fn shut_down(&self) -> Result<Option<cpr::CheckpointToken>> {
        let token = match &self.on_close {
            Some(hook) => hook()?,
            None => None,
        };
        self.inner.checkpoints.join_running();
        self.inner.flush_log()?;
        Ok(token)
    }
}

impl<K: Key, V: Value, D: Device> Drop for OpenStore<K, V, D> {
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.shut_down() {
            tracing::error!(error = %e, "closing the store failed; it recovers from its last checkpoint");
        }
    }
}

impl<K: Key, V: Value, D: Device> Store<K, V, D> {
    /// The store over `inner`, holding its directory's lock (a second open
    /// or recovery of the directory, in this process or another, fails
    /// with [`Error::Locked`] while the store is open).
    ///
    /// `on_close` is called once with the shared state, after the page
    /// writer started; the hook it returns runs when the store closes.
    pub(crate) fn from_inner(
        inner: StoreInner<K, V, D>,
        lock: Option<LockFile>,
        temp_dir: Option<tempfile::TempDir>,
        on_close: impl FnOnce(&Arc<StoreInner<K, V, D>>) -> Result<Option<CloseHook>>,
    ) -> Result<Self> {
        *inner.checkpoints.started_at.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(inner.change_mark());
        let inner = Arc::new(inner);
        // Loom models run without the flusher thread (an OS thread outside
        // the model); they stay within the log memory.
        let flusher = if cfg!(oxifaster_loom) { None } else { Some(inner.log.start_flusher()?) };
        let on_close = on_close(&inner)?;
        let open = Arc::new(OpenStore {
            inner: inner.clone(),
            on_close,
            closed: AtomicBool::new(false),
            _flusher: flusher,
            _lock: lock,
            _temp_dir: temp_dir,
        });
        Ok(Self { inner, open })
    }

    /// Starts a session: the handle through which one thread (or task) at
    /// a time operates on the store. A session owns a handle to the store,
    /// so it can be moved into `std::thread::spawn` or `tokio::spawn`.
    /// Each session has an id (see [`Session::id`]) under which
    /// checkpoints record its commit point.
    ///
    /// At most [`StoreConfig::max_sessions`] are open at once; one more is
    /// [`Error::TooManySessions`].
    pub fn start_session(&self) -> Result<Session<K, V, D>> {
        let (version, _) = self.inner.cpr.load();
        let slot = self.inner.sessions.open_new(version);
        Session::new(self.open.clone(), slot, 0)
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The store directory (a temporary one if none was configured).
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// The log's region addresses now (for statistics and tests).
    pub fn log_regions(&self) -> LogRegions {
        let log = &self.inner.log;
        LogRegions {
            begin_address: log.begin_address().raw(),
            head_address: log.head_address().raw(),
            safe_read_only_address: log.safe_read_only_address().raw(),
            read_only_address: log.read_only_address().raw(),
            tail_address: log.tail_address().raw(),
            flushed_until_address: log.flushed_until_address().raw(),
            page_size_bytes: 1u64 << log.geometry().page_bits,
        }
    }

    /// The hash index's size and fill now (it walks the table: not for a
    /// hot path).
    pub fn index_stats(&self) -> IndexStats {
        self.inner.index.stats()
    }

    /// Doubles the hash index's table online: sessions that begin an
    /// operation meanwhile help split the buckets, and operations already
    /// running finish first (so this must not be called from inside an
    /// operation's closure). With a growth already running, waits for it
    /// and then doubles the table again. Returns the new number of
    /// buckets.
    ///
    /// Entries whose records are on the device are put in both halves by
    /// the split (their keys' hashes are not in memory); this call then
    /// reads those chains back, in batches, and points each copy at its
    /// own bucket's records or frees it — one device read per such entry,
    /// while sessions run on.
    ///
    /// Checkpoints taken after it record (and recovery restores) the grown
    /// table. The store also grows by itself when the index's entries pass
    /// four per bucket (see
    /// [`StoreBuilder::auto_grow_index`](crate::StoreBuilder::auto_grow_index)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] past 2^40 buckets, [`Error::OutOfMemory`]
    /// without the memory for the new table, [`Error::TooManySessions`]
    /// if the store's epoch table has no entry free for the call.
    pub fn grow_index(&self) -> Result<u64> {
        let handle = self.inner.epoch.register()?;
        let grown = grow::grow(&self.inner, &handle, true)?;
        Ok(grown.map_or_else(|| self.inner.index.table_size(), |g| g.buckets))
    }

    /// A snapshot of the store's statistics: operations by kind and
    /// outcome (every session's, summed), pending completions and their
    /// latency, the index, the log, checkpoints and recovery, compaction
    /// and the read cache. Cheap: no walk of the index or the log.
    ///
    /// ```
    /// # use oxifaster::Store;
    /// let store = Store::<u64, u64>::builder().open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&1, &10)?;
    /// session.read(&1)?;
    /// let stats = store.stats();
    /// assert_eq!(stats.operations.upserts(), 1);
    /// assert_eq!(stats.operations.reads_found, 1);
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn stats(&self) -> crate::Stats {
        let inner = &self.inner;
        let mut stats = crate::Stats::default();
        inner.sessions.sum_counters(&mut stats.operations, &mut stats.pending);
        stats.sessions_open = inner.open_sessions.load(Ordering::Relaxed) as u64;
        stats.index = crate::stats::IndexCounts {
            buckets: inner.index.table_size(),
            overflow_buckets: inner.index.overflow_buckets() as u64,
            growths: inner.index.growths(),
        };
        let log = &inner.log;
        let geometry = log.geometry();
        let (begin, head, tail) =
            (log.begin_address().raw(), log.head_address().raw(), log.tail_address().raw());
        let flushed = log.flushed_until_address().raw();
        stats.log = crate::stats::LogStats {
            begin_address: begin,
            head_address: head,
            read_only_address: log.read_only_address().raw(),
            tail_address: tail,
            flushed_until: flushed,
            memory_bytes: geometry.frames << geometry.page_bits,
            in_memory_bytes: tail.saturating_sub(head),
            on_device_bytes: flushed.saturating_sub(begin),
        };
        stats.checkpoints = inner.checkpoint_counters.snapshot();
        stats.compaction = *inner.compaction_totals.lock().unwrap_or_else(|p| p.into_inner());
        stats.read_cache = inner.read_cache.as_ref().map(|c| c.stats());
        stats
    }

    /// How many times the hash index has doubled since the store opened.
    pub fn index_growths(&self) -> u64 {
        self.inner.index.growths()
    }

    /// The device the log lives on.
    pub fn device(&self) -> &D {
        self.inner.log.device()
    }

    /// The store's current version: the version of the next checkpoint.
    pub fn version(&self) -> u32 {
        self.inner.cpr.load().0
    }

    /// Checkpoints that [`StoreBuilder::recover_latest`](crate::StoreBuilder::recover_latest) (or `open`)
    /// skipped because they were damaged, newest first, with the reason.
    pub fn skipped_checkpoints(&self) -> Vec<(String, String)> {
        self.inner.checkpoints.skipped.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes every page of the log up to its tail to the device and syncs
    /// it. This does not make the writes recoverable by itself — only a
    /// checkpoint does (see [`Store::checkpoint_and_wait`]) — but it puts
    /// the bytes on the device, e.g. before copying the directory.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_log()
    }

    /// Closes the store: stops the automatic checkpoint policy, waits for
    /// background checkpoints, takes a final fold-over checkpoint if
    /// anything changed since the last one (and the policy asks for it),
    /// flushes the log and releases the directory's lock. Every session
    /// and every other handle must be gone first: otherwise this is
    /// [`Error::StillInUse`] and the store stays open. Dropping the last
    /// handle does the same, logging instead of returning an error.
    pub fn close(self) -> Result<CloseReport> {
        let handles = Arc::strong_count(&self.open);
        if handles > 1 {
            return Err(Error::StillInUse { handles: handles - 1 });
        }
        let checkpoint = self.open.shut_down()?;
        self.open.closed.store(true, Ordering::Release);
        let regions = self.log_regions();
        Ok(CloseReport {
            checkpoint,
            tail_address: regions.tail_address,
            flushed_until_address: regions.flushed_until_address,
        })
    }
}

/// What compactions did since the store opened, summed (see
/// `Store::compact`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionTotals {
    /// Compactions that ran.
    pub compactions: u64,
    /// Bytes of log they read back.
    pub scanned_bytes: u64,
    /// Bytes of live records they copied to the tail.
    pub copied_bytes: u64,
    /// Bytes of log segments deleted.
    pub reclaimed_bytes: u64,
    /// Time spent compacting.
    pub duration: std::time::Duration,
}

/// The log's region addresses at one moment (see `docs/FORMAT.md` and the
/// design's "Addresses and regions"): `begin <= head <= safe_read_only <=
/// read_only <= tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRegions {
    /// The oldest address still in the log.
    pub begin_address: u64,
    /// Below this, records are on the device only.
    pub head_address: u64,
    /// Below this, no session still updates records in place.
    pub safe_read_only_address: u64,
    /// Below this, records are immutable (updates copy to the tail).
    pub read_only_address: u64,
    /// The next address to be allocated.
    pub tail_address: u64,
    /// Everything below this is on the device.
    pub flushed_until_address: u64,
    /// The log page size.
    pub page_size_bytes: u64,
}

pub use crate::index::IndexStats;
