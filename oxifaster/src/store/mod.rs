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
pub use session::{Completed, CompletedOp, OpError, ReadStatus, RmwStatus, Session};

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::device::{DEFAULT_SEGMENT_SIZE_BITS, Device, FileDevice};
use crate::epoch::{DEFAULT_MAX_PARTICIPANTS, Epoch};
use crate::hlog::{HybridLog, LogGeometry};
use crate::index::HashIndex;
use crate::record::{Key, Value};
use crate::{Error, Result};

use record::RecordFormat;

/// The default interval of the automatic checkpoint policy.
pub const DEFAULT_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The configuration of a store. Every field has a default; see the setters
/// of [`StoreBuilder`] for units and defaults.
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
    pub progress: Option<crate::checkpoint::ProgressFn>,
    /// How checkpoint files are written (default: the real file system).
    pub checkpoint_io: Option<crate::checkpoint::IoHandle>,
    /// Called when a checkpoint is durable (the persistence callback).
    pub on_checkpoint: Option<crate::checkpoint::CheckpointFn>,
    /// The automatic checkpoint interval (`None`: off). Default 5 s.
    pub checkpoint_every: Option<std::time::Duration>,
    /// Whether closing takes a final checkpoint. Default true.
    pub checkpoint_on_close: bool,
    /// Automatic checkpoints kept. Default 2.
    pub keep_checkpoints: usize,
    /// The most operations one session may hold parked (pending) at once.
    /// Default 65,536.
    pub max_pending: usize,
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

/// Builds a [`Store<K, V>`]: `Store::<K, V>::builder()` returns one that
/// already knows the key and value types, so `open()` builds exactly that
/// store.
pub struct StoreBuilder<K, V> {
    config: StoreConfig,
    types: PhantomData<fn(K, V)>,
}

impl<K, V> std::fmt::Debug for StoreBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("key", &std::any::type_name::<K>())
            .field("value", &std::any::type_name::<V>())
            .field("config", &self.config)
            .finish()
    }
}

impl<K, V> Clone for StoreBuilder<K, V> {
    fn clone(&self) -> Self {
        Self { config: self.config.clone(), types: PhantomData }
    }
}

impl<K: Key, V: Value> Default for StoreBuilder<K, V> {
    fn default() -> Self {
        Self { config: StoreConfig::default(), types: PhantomData }
    }
}

impl<K: Key, V: Value> StoreBuilder<K, V> {
    /// A builder with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder over `config`.
    pub fn from_config(config: StoreConfig) -> Self {
        Self { config, types: PhantomData }
    }

    /// The same settings for a store of other key and value types (for
    /// code that prepares a configuration before it knows the types).
    pub fn for_types<K2: Key, V2: Value>(self) -> StoreBuilder<K2, V2> {
        StoreBuilder { config: self.config, types: PhantomData }
    }

    /// Hash buckets, a power of two (default 2^20, 64 MiB of index). Aim
    /// for one bucket per 4–8 keys.
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
    /// must fit in a page: this is the setting that raises the largest
    /// record.
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
    /// The store directory (default: a temporary directory removed when the
    /// store closes).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.dir = Some(dir.into());
        self
    }
    /// The most sessions open at once (default 128). Checkpoints have
    /// their own epoch entries on top of these.
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.config.max_sessions = sessions;
        self
    }
    /// Takes a checkpoint every `interval` while anything changed, in the
    /// background (default: every 5 s for a store in a directory of its
    /// own; never for a temporary store). `None` turns the policy off:
    /// then only [`Store::checkpoint`] and [`Store::close`] (and a clean
    /// drop) make writes durable. See the crate's durability model.
    pub fn checkpoint_every(mut self, interval: Option<std::time::Duration>) -> Self {
        self.config.checkpoint_every = interval;
        self
    }
    /// Whether [`Store::close`] and the drop of the last handle take a
    /// final checkpoint when anything changed since the last one (default
    /// true; only for a store in a directory).
    pub fn checkpoint_on_close(mut self, enabled: bool) -> Self {
        self.config.checkpoint_on_close = enabled;
        self
    }
    /// How many automatic checkpoints the background policy keeps (default
    /// 2, at least 1): after each one it deletes older checkpoints that no
    /// kept one needs. Checkpoints taken by hand are pruned only by
    /// [`crate::checkpoint::retain`].
    pub fn keep_checkpoints(mut self, keep: usize) -> Self {
        self.config.keep_checkpoints = keep;
        self
    }
    /// The most operations one session may hold parked at once (default
    /// 65,536): a `read` or `rmw` that would park one more returns
    /// [`Error::TooManyPending`]; `complete_pending` makes room. A parked
    /// operation holds its key, its input and about 80 bytes.
    pub fn max_pending(mut self, operations: usize) -> Self {
        self.config.max_pending = operations;
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
    /// Writes checkpoint files through `io` (for fault injection in tests).
    pub fn checkpoint_io(mut self, io: impl crate::checkpoint::CheckpointIo + 'static) -> Self {
        self.config.checkpoint_io = Some(crate::checkpoint::IoHandle(Arc::new(io)));
        self
    }
    /// The configuration so far.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The configured directory, which must exist (recovery never
    /// creates one).
    fn require_dir(&self) -> Result<PathBuf> {
        let dir = self.config.dir.clone().ok_or(Error::InvalidConfig {
            what: "dir",
            why: "recovery needs the store directory (set it with `dir`)".into(),
        })?;
        if !dir.exists() {
            return Err(Error::NotAStore { path: dir, why: "it does not exist".into() });
        }
        Ok(dir)
    }

    /// Recovers the store in the configured directory from checkpoint
    /// `token` (a [`CheckpointToken`](crate::checkpoint::CheckpointToken)
    /// or its string). Settings the checkpoint fixes (page size, table
    /// size) come from it; the others (log memory, sessions) from this
    /// builder.
    pub fn recover(self, token: impl AsRef<str>) -> Result<Store<K, V>> {
        let dir = self.require_dir()?;
        let lock = lock_store_dir(&dir)?;
        let device = open_file_device(&dir)?;
        let inner = crate::checkpoint::recover_store(self.config, device, &dir, token.as_ref())?;
        Store::from_inner(inner, Some(lock), None)
    }

    /// Recovers from the newest intact checkpoint in the configured
    /// directory: a checkpoint whose files or log pages turn out damaged
    /// is skipped (logged, and listed by [`Store::skipped_checkpoints`])
    /// and the next older one is tried.
    pub fn recover_latest(self) -> Result<Store<K, V>> {
        let dir = self.require_dir()?;
        let lock = lock_store_dir(&dir)?;
        self.recover_latest_locked(dir, lock)
    }

    fn recover_latest_locked(self, dir: PathBuf, lock: LockFile) -> Result<Store<K, V>> {
        let inner = recover_newest_intact(&dir, |token| {
            let device = open_file_device(&dir)?;
            crate::checkpoint::recover_store(self.config.clone(), device, &dir, token)
        })?;
        Store::from_inner(inner, Some(lock), None)
    }

    /// Recovers from the newest intact checkpoint, with the log on the
    /// device that `device` opens (called once per checkpoint tried; see
    /// [`StoreBuilder::recover_latest`]).
    pub fn recover_latest_with_device<D: Device>(
        self,
        mut device: impl FnMut() -> D,
    ) -> Result<Store<K, V, D>> {
        let dir = self.require_dir()?;
        let lock = lock_store_dir(&dir)?;
        let inner = recover_newest_intact(&dir, |token| {
            crate::checkpoint::recover_store(self.config.clone(), device(), &dir, token)
        })?;
        Store::from_inner(inner, Some(lock), None)
    }

    /// Recovers with the log on `device` (checkpoint files in the
    /// configured directory).
    pub fn recover_with_device<D: Device>(
        self,
        device: D,
        token: impl AsRef<str>,
    ) -> Result<Store<K, V, D>> {
        let dir = self.require_dir()?;
        let lock = lock_store_dir(&dir)?;
        let inner = crate::checkpoint::recover_store(self.config, device, &dir, token.as_ref())?;
        Store::from_inner(inner, Some(lock), None)
    }

    /// Opens the store: in the configured directory, it **reopens** the
    /// store there (recovering its newest intact checkpoint), starts a new
    /// one if the directory is empty, new or holds a store that never
    /// checkpointed, and refuses a directory that holds something else
    /// ([`Error::NotAStore`]) or a store of other types
    /// ([`Error::LayoutMismatch`]). Without a directory, the store lives
    /// in a temporary directory removed when it closes.
    pub fn open(self) -> Result<Store<K, V>> {
        self.config.validate()?;
        let Some(dir) = self.config.dir.clone() else {
            let temp =
                tempfile::Builder::new().prefix("oxifaster-").tempdir().map_err(|source| {
                    Error::Io { context: "creating a temporary store directory".into(), source }
                })?;
            let dir = temp.path().to_path_buf();
            let lock = lock_store_dir(&dir)?;
            let mut config = self.config;
            // Nothing outlives a temporary store: no durability policy.
            config.checkpoint_every = None;
            config.checkpoint_on_close = false;
            let mut inner = StoreInner::new(config, open_file_device(&dir)?)?;
            inner.dir = Some(dir);
            return Store::from_inner(inner, Some(lock), Some(temp));
        };
        match classify_dir(&dir)? {
            DirContents::Checkpointed => {
                let lock = lock_store_dir(&dir)?;
                self.recover_latest_locked(dir, lock)
            }
            DirContents::Empty | DirContents::UncheckpointedStore => {
                let lock = lock_store_dir(&dir)?;
                let inner = StoreInner::new(self.config, open_file_device(&dir)?)?;
                Store::from_inner(inner, Some(lock), None)
            }
        }
    }

    /// Opens a new store on the given device (for a device other than
    /// files in a directory: memory, null, fault-injecting). The
    /// configured directory, if any, holds its checkpoints.
    pub fn open_with_device<D: Device>(self, device: D) -> Result<Store<K, V, D>> {
        let lock = match &self.config.dir {
            Some(dir) => Some(lock_store_dir(dir)?),
            None => None,
        };
        let inner = StoreInner::new(self.config, device)?;
        Store::from_inner(inner, lock, None)
    }
}

use crate::lock::LockFile;

/// What a directory handed to `open` holds.
enum DirContents {
    /// Nothing (or it does not exist yet).
    Empty,
    /// A store's files, with at least one complete checkpoint.
    Checkpointed,
    /// A store's files without a checkpoint (it crashed or was dropped
    /// before its first one): a new incarnation starts past its log.
    UncheckpointedStore,
}

/// Whether `dir` holds nothing, a store, or something else (an error that
/// names it).
fn classify_dir(dir: &Path) -> Result<DirContents> {
    let not_a_store = |why: String| Error::NotAStore { path: dir.to_path_buf(), why };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirContents::Empty),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(not_a_store("it is a file, not a directory".into()));
        }
        Err(source) => {
            return Err(Error::Io { context: format!("listing {}", dir.display()), source });
        }
    };
    let mut store_files = false;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            context: format!("listing {}", dir.display()),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_segment = name
            .strip_prefix("log.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        match &*name {
            "LOCK" => {}
            "checkpoints" => store_files = true,
            "log" | "commit" => {
                return Err(not_a_store("it holds a FasterLog (open it with FasterLog)".into()));
            }
            _ if is_segment => store_files = true,
            other => {
                return Err(not_a_store(format!(
                    "it holds `{other}`, which is not a store file; use an empty directory"
                )));
            }
        }
    }
    if !store_files {
        return Ok(DirContents::Empty);
    }
    let any_checkpoint = crate::checkpoint::list(dir)?
        .iter()
        .any(|c| c.kind != crate::checkpoint::CheckpointKind::IndexOnly);
    Ok(if any_checkpoint { DirContents::Checkpointed } else { DirContents::UncheckpointedStore })
}

fn lock_store_dir(dir: &Path) -> Result<LockFile> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        context: format!("creating the store directory {}", dir.display()),
        source,
    })?;
    LockFile::acquire(&dir.join("LOCK"))
}

fn open_file_device(dir: &Path) -> Result<FileDevice> {
    FileDevice::open(dir, DEFAULT_SEGMENT_SIZE_BITS).map_err(|source| Error::Io {
        context: format!("opening the log in {}", dir.display()),
        source,
    })
}

/// Recovers the newest checkpoint of `dir` that `recover` accepts, skipping
/// (and reporting) damaged ones; any other error ends the search.
fn recover_newest_intact<K: Key, V: Value, D: Device>(
    dir: &Path,
    mut recover: impl FnMut(&str) -> Result<StoreInner<K, V, D>>,
) -> Result<StoreInner<K, V, D>> {
    let candidates: Vec<String> = crate::checkpoint::list(dir)?
        .into_iter()
        .rev()
        .filter(|c| c.kind != crate::checkpoint::CheckpointKind::IndexOnly)
        .map(|c| c.token.to_string())
        .collect();
    if candidates.is_empty() {
        return Err(Error::CheckpointNotFound { token: "(latest)".into(), dir: dir.to_path_buf() });
    }
    let mut skipped = Vec::new();
    let mut last_error = None;
    for token in candidates {
        match recover(&token) {
            Ok(inner) => {
                *inner.checkpoints.skipped.lock().unwrap_or_else(|p| p.into_inner()) = skipped;
                return Ok(inner);
            }
            Err(e) if e.is_damage() => {
                tracing::warn!(%token, error = %e, "skipping a damaged checkpoint");
                skipped.push((token, e.to_string()));
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error
        .unwrap_or(Error::CheckpointNotFound { token: "(latest)".into(), dir: dir.to_path_buf() }))
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
    /// Sessions open now (at most `config.max_sessions`).
    pub(crate) open_sessions: std::sync::atomic::AtomicUsize,
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
        // A fixed-size record must fit in a page: records are read with the
        // fixed sizes, so a type whose `FIXED_SIZE` is larger than a page
        // is refused here rather than read past a frame.
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
        Ok(Self {
            index,
            log,
            // Two more entries than sessions: the running checkpoint's and
            // the store's own (flush at close).
            epoch: Epoch::new(config.max_sessions + 2),
            format: RecordFormat::new(),
            config,
            dir: None,
            cpr: cpr::CprState::new(version),
            sessions: cpr::Registry::new(),
            checkpoints: crate::checkpoint::Control::default(),
            open_sessions: std::sync::atomic::AtomicUsize::new(0),
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
    pub checkpoint: Option<crate::checkpoint::CheckpointToken>,
    /// The log's tail address when it closed.
    pub tail_address: u64,
    /// How far the log was on the device when it closed.
    pub flushed_until_address: u64,
}

/// The open store: held by every [`Store`] handle and every [`Session`].
/// Dropping the last one stops the checkpoint policy, takes the final
/// checkpoint (if the store changed and the policy asks for it), waits for
/// background checkpoints, then releases the directory's lock and removes
/// a temporary directory (fields drop in order).
pub(crate) struct OpenStore<K: Key, V: Value, D: Device> {
    pub(crate) inner: Arc<StoreInner<K, V, D>>,
    auto: Mutex<Option<auto::AutoCheckpoint>>,
    /// Set by `close`, which did the final work itself.
    closed: AtomicBool,
    /// The log's page writer: page flushes run here, never on a session's
    /// thread.
    _flusher: Option<crate::hlog::Flusher>,
    _lock: Option<LockFile>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl<K: Key, V: Value, D: Device> OpenStore<K, V, D> {
    /// Stops the policy, takes the final checkpoint if due, and waits for
    /// background checkpoints.
    fn shut_down(&self) -> Result<Option<crate::checkpoint::CheckpointToken>> {
        if let Some(auto) = self.auto.lock().unwrap_or_else(|p| p.into_inner()).take() {
            auto.stop();
        }
        let inner = &self.inner;
        inner.checkpoints.join_running();
        let mut token = None;
        if inner.config.checkpoint_on_close
            && inner.dir.is_some()
            && inner.log.check_poisoned().is_ok()
            && inner.changed_since_checkpoint()
        {
            let info = inner.checkpoint_now(crate::checkpoint::CheckpointKind::FoldOver)?;
            token = Some(info.token);
        }
        inner.flush_log()?;
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

impl<K: Key, V: Value> Store<K, V> {
    /// A builder with every default, for this key and value type.
    ///
    /// ```
    /// use oxifaster::Store;
    ///
    /// // The builder carries the types: this is a Store<u64, u64>.
    /// let store = Store::<u64, u64>::builder().log_memory_size_bytes(1 << 24).open()?;
    /// let _: &Store<u64, u64> = &store;
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn builder() -> StoreBuilder<K, V> {
        StoreBuilder::default()
    }

    /// Opens the store in `dir` with the default configuration: reopens
    /// the store there (its newest intact checkpoint), or starts a new one
    /// in an empty or new directory (see [`StoreBuilder::open`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::builder().dir(dir.as_ref()).open()
    }

    /// Recovers the store in `dir` from checkpoint `token`, with the
    /// default configuration (see [`StoreBuilder::recover`]).
    pub fn recover(dir: impl AsRef<Path>, token: impl AsRef<str>) -> Result<Self> {
        Self::builder().dir(dir.as_ref()).recover(token)
    }

    /// Recovers the store in `dir` from its newest intact checkpoint.
    pub fn recover_latest(dir: impl AsRef<Path>) -> Result<Self> {
        Self::builder().dir(dir.as_ref()).recover_latest()
    }

    /// Every complete checkpoint in `dir`, oldest first.
    pub fn checkpoints(dir: impl AsRef<Path>) -> Result<Vec<crate::checkpoint::CheckpointInfo>> {
        crate::checkpoint::list(dir)
    }
}

impl<K: Key, V: Value, D: Device> Store<K, V, D> {
    /// The store over `inner`, holding its directory's lock (a second open
    /// or recovery of the directory, in this process or another, fails
    /// with [`Error::Locked`] while the store is open).
    pub(crate) fn from_inner(
        inner: StoreInner<K, V, D>,
        lock: Option<LockFile>,
        temp_dir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        *inner.checkpoints.started_at.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(inner.change_mark());
        let inner = Arc::new(inner);
        let flusher = inner.log.start_flusher()?;
        let auto = match (inner.config.checkpoint_every, &inner.dir) {
            (Some(interval), Some(_)) if temp_dir.is_none() => {
                Some(auto::AutoCheckpoint::start(inner.clone(), interval)?)
            }
            _ => None,
        };
        let open = Arc::new(OpenStore {
            inner: inner.clone(),
            auto: Mutex::new(auto),
            closed: AtomicBool::new(false),
            _flusher: Some(flusher),
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

    /// The device the log lives on.
    pub fn device(&self) -> &D {
        self.inner.log.device()
    }

    /// The store's current version: the version of the next checkpoint.
    pub fn version(&self) -> u32 {
        self.inner.cpr.load().0
    }

    /// Checkpoints that [`StoreBuilder::recover_latest`] (or `open`)
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

pub(crate) mod auto;
