//! `Store<K, V>`: the typed concurrent key-value store.
//!
//! A store is a [`HashIndex`] in front of a [`HybridLog`]. Each key's
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

pub(crate) mod cpr;
pub(crate) mod disk;
pub(crate) mod record;
mod session;

pub use cpr::CommitPoint;
pub use session::{Completed, CompletedOp, ReadStatus, RmwStatus, Session};

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::device::{DEFAULT_SEGMENT_SIZE_BITS, Device, FileDevice};
use crate::epoch::{DEFAULT_MAX_PARTICIPANTS, Epoch};
use crate::hlog::{HybridLog, LogGeometry};
use crate::index::HashIndex;
use crate::record::{Key, Value};
use crate::{Error, Result};

use record::RecordFormat;

/// The configuration of a store. Every field has a default; see the setters
/// of [`StoreBuilder`] for units and defaults.
#[derive(Debug, Clone)]
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
    pub progress: Option<crate::checkpoint::ProgressFn>,
    /// How checkpoint files are written (default: the real file system).
    pub checkpoint_io: Option<crate::checkpoint::IoHandle>,
    /// Called when a checkpoint is durable (the persistence callback).
    pub on_checkpoint: Option<crate::checkpoint::CheckpointFn>,
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
        Ok(())
    }
}

/// Builds a [`Store`].
#[derive(Debug, Clone, Default)]
pub struct StoreBuilder {
    config: StoreConfig,
}

impl StoreBuilder {
    /// Hash buckets, a power of two (default 2^20). Aim for one bucket per
    /// 4–8 keys.
    pub fn table_size(mut self, buckets: u64) -> Self {
        self.config.table_size = buckets;
        self
    }
    /// Bytes of log memory (default 256 MiB), rounded down to a power of two
    /// of pages; at least 4 pages.
    pub fn log_memory_size_bytes(mut self, bytes: u64) -> Self {
        self.config.log_memory_size_bytes = bytes;
        self
    }
    /// log2 of the page size in bytes, 9..=30 (default 22, 4 MiB). A record
    /// must fit in a page.
    pub fn page_size_bits(mut self, bits: u32) -> Self {
        self.config.page_size_bits = bits;
        self
    }
    /// The fraction of log memory updated in place, 0.0..=1.0 (default 0.9);
    /// at least one page is mutable and two are not.
    pub fn mutable_fraction(mut self, fraction: f64) -> Self {
        self.config.mutable_fraction = fraction;
        self
    }
    /// The directory for the log files (default: a temporary directory
    /// removed on drop).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.dir = Some(dir.into());
        self
    }
    /// The most sessions open at once (default 128).
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.config.max_sessions = sessions;
        self
    }
    /// Calls `f` with the progress (bytes done of bytes in the phase) of
    /// every checkpoint and recovery phase.
    pub fn on_progress(
        mut self,
        f: impl Fn(crate::checkpoint::Progress) + Send + Sync + 'static,
    ) -> Self {
        self.config.progress = Some(crate::checkpoint::ProgressFn(Arc::new(f)));
        self
    }
    /// Calls `f` with every checkpoint once it is durable — FASTER's
    /// persistence callback: each session's commit point is in it (see
    /// [`crate::checkpoint::CheckpointInfo::commit_point`]). It runs on the
    /// thread that ran the checkpoint; keep it short.
    pub fn on_checkpoint(
        mut self,
        f: impl Fn(&crate::checkpoint::CheckpointInfo) + Send + Sync + 'static,
    ) -> Self {
        self.config.on_checkpoint = Some(crate::checkpoint::CheckpointFn(Arc::new(f)));
        self
    }
    /// Writes checkpoint files through `io` (for fault injection in
    /// tests: [`crate::checkpoint::FaultIo`]).
    pub fn checkpoint_io(mut self, io: impl crate::checkpoint::CheckpointIo + 'static) -> Self {
        self.config.checkpoint_io = Some(crate::checkpoint::IoHandle(Arc::new(io)));
        self
    }
    /// The configuration so far.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn require_dir(&self) -> Result<PathBuf> {
        self.config.dir.clone().ok_or(Error::InvalidConfig {
            what: "dir",
            why: "recovery needs the store directory".into(),
        })
    }

    /// Recovers the store in the configured directory from checkpoint
    /// `token`. Settings the checkpoint fixes (page size, table size) come
    /// from it; the others (log memory, sessions) from this builder.
    pub fn recover<K: Key, V: Value>(self, token: &str) -> Result<Store<K, V>> {
        let dir = self.require_dir()?;
        let device = FileDevice::open(&dir, DEFAULT_SEGMENT_SIZE_BITS).map_err(|source| {
            Error::Io { context: format!("opening the log in {}", dir.display()), source }
        })?;
        self.recover_with_device(device, token)
    }

    /// Recovers from the newest complete checkpoint in the configured
    /// directory.
    pub fn recover_latest<K: Key, V: Value>(self) -> Result<Store<K, V>> {
        let token = crate::checkpoint::latest_token(&self.require_dir()?)?;
        self.recover(&token)
    }

    /// Recovers from the newest complete checkpoint, with the log on
    /// `device`.
    pub fn recover_latest_with_device<K: Key, V: Value, D: Device>(
        self,
        device: D,
    ) -> Result<Store<K, V, D>> {
        let token = crate::checkpoint::latest_token(&self.require_dir()?)?;
        self.recover_with_device(device, &token)
    }

    /// Recovers with the log on `device` (checkpoint files in the
    /// configured directory).
    pub fn recover_with_device<K: Key, V: Value, D: Device>(
        self,
        device: D,
        token: &str,
    ) -> Result<Store<K, V, D>> {
        let dir = self.require_dir()?;
        let inner = crate::checkpoint::recover_store(self.config, device, &dir, token)?;
        Store::from_inner(inner, None)
    }

    /// Opens a store on a [`FileDevice`] in the configured directory.
    pub fn open<K: Key, V: Value>(self) -> Result<Store<K, V>> {
        self.config.validate()?;
        let (dir, temp) = match &self.config.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp =
                    tempfile::Builder::new().prefix("oxifaster-").tempdir().map_err(|source| {
                        Error::Io { context: "creating a temporary store directory".into(), source }
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let device = FileDevice::open(&dir, DEFAULT_SEGMENT_SIZE_BITS).map_err(|source| {
            Error::Io { context: format!("opening the log in {}", dir.display()), source }
        })?;
        let mut inner = StoreInner::new(self.config, device)?;
        inner.dir = Some(dir);
        Store::from_inner(inner, temp)
    }

    /// Opens a store on the given device.
    pub fn open_with_device<K: Key, V: Value, D: Device>(
        self,
        device: D,
    ) -> Result<Store<K, V, D>> {
        Store::from_inner(StoreInner::new(self.config, device)?, None)
    }
}

/// The shared state of a store: what sessions and a running checkpoint
/// reach.
pub(crate) struct StoreInner<K, V, D> {
    pub(crate) index: HashIndex,
    pub(crate) log: HybridLog<D>,
    pub(crate) epoch: Epoch,
    pub(crate) format: RecordFormat<K, V>,
    pub(crate) config: StoreConfig,
    pub(crate) dir: Option<PathBuf>,
    /// The version and checkpoint phase.
    pub(crate) cpr: cpr::CprState,
    /// Every session's commit-point bookkeeping.
    pub(crate) sessions: cpr::Registry,
    /// Checkpoint bookkeeping (the running one, the last index checkpoint).
    pub(crate) checkpoints: crate::checkpoint::Control,
    types: PhantomData<fn(K, V)>,
}

impl<K: Key, V: Value, D: Device> StoreInner<K, V, D> {
    /// A new, empty store. On a device that already holds a log (a store
    /// directory opened instead of recovered), the new log starts past
    /// everything on it and the version past every checkpoint in the
    /// directory, so opening never overwrites what a checkpoint needs.
    pub(crate) fn new(config: StoreConfig, device: D) -> Result<Self> {
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
        let version = match &config.dir {
            Some(dir) => crate::checkpoint::list(dir)?.iter().map(|c| c.version + 1).max(),
            None => None,
        };
        let mut inner = Self::with_parts(config, index, log, version.unwrap_or(1))?;
        inner.dir = inner.config.dir.clone();
        Ok(inner)
    }

    /// A store over an index and a log (new or recovered) at `version`.
    pub(crate) fn with_parts(
        config: StoreConfig,
        index: HashIndex,
        log: HybridLog<D>,
        version: u32,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            index,
            log,
            // One more entry than sessions: the checkpoint's own.
            epoch: Epoch::new(config.max_sessions + 1),
            format: RecordFormat::new(),
            config,
            dir: None,
            cpr: cpr::CprState::new(version),
            sessions: cpr::Registry::new(),
            checkpoints: crate::checkpoint::Control::default(),
            types: PhantomData,
        })
    }
}

/// A typed, concurrent key-value store over a device `D`.
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
pub struct Store<K, V, D = FileDevice> {
    pub(crate) inner: Arc<StoreInner<K, V, D>>,
    /// The directory's lock, held while the store is open.
    _lock: Option<crate::lock::LockFile>,
    /// Removed after `inner` is gone (fields drop in order).
    _temp_dir: Option<tempfile::TempDir>,
}

/// FASTER's name for the store.
pub type FasterKv<K, V, D = FileDevice> = Store<K, V, D>;

impl<K, V, D> std::fmt::Debug for Store<K, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("index", &self.inner.index)
            .field("log", &self.inner.log)
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl<K: Key, V: Value> Store<K, V> {
    /// A builder with every default.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// Opens a store in `dir` with the default configuration.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::builder().dir(dir.as_ref()).open()
    }

    /// Recovers the store in `dir` from checkpoint `token`, with the
    /// default configuration (see [`StoreBuilder::recover`]).
    pub fn recover(dir: impl AsRef<Path>, token: &str) -> Result<Self> {
        Self::builder().dir(dir.as_ref()).recover(token)
    }

    /// Recovers the store in `dir` from its newest complete checkpoint.
    pub fn recover_latest(dir: impl AsRef<Path>) -> Result<Self> {
        Self::builder().dir(dir.as_ref()).recover_latest()
    }

    /// Every complete checkpoint in `dir`, oldest first.
    pub fn checkpoints(dir: impl AsRef<Path>) -> Result<Vec<crate::checkpoint::CheckpointInfo>> {
        crate::checkpoint::list(dir)
    }
}

impl<K: Key, V: Value, D: Device> Store<K, V, D> {
    /// The store over `inner`, locking its directory (if it has one): a
    /// second open or recovery of the directory, in this process or
    /// another, fails with [`Error::Locked`] while this store lives.
    pub(crate) fn from_inner(
        inner: StoreInner<K, V, D>,
        temp_dir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let lock = match &inner.dir {
            Some(dir) => Some(crate::lock::LockFile::acquire(&dir.join("LOCK"))?),
            None => None,
        };
        Ok(Self { inner: Arc::new(inner), _lock: lock, _temp_dir: temp_dir })
    }

    /// Starts a session: the handle through which one thread at a time
    /// operates on the store. Each session has an id (see
    /// [`Session::id`]) under which checkpoints record its commit point.
    pub fn start_session(&self) -> Result<Session<'_, K, V, D>> {
        let (version, _) = self.inner.cpr.load();
        let slot = self.inner.sessions.open_new(version);
        Session::new(&self.inner, slot, 0)
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The directory of the log files, if the store is on a file device.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// The hybrid log (its region addresses, for statistics and tests).
    pub fn log(&self) -> &HybridLog<D> {
        &self.inner.log
    }

    /// The hash index.
    pub fn index(&self) -> &HashIndex {
        &self.inner.index
    }

    /// The store's current version: the version of the next checkpoint.
    pub fn version(&self) -> u32 {
        self.inner.cpr.load().0
    }
}

impl<K, V, D> Drop for Store<K, V, D> {
    fn drop(&mut self) {
        // A running checkpoint holds the shared state; let it finish before
        // the temporary directory (if any) goes.
        self.inner.checkpoints.join_running();
    }
}
