//! [`StoreBuilder`]: opening, reopening and recovering a store, and
//! starting what runs beside an open store (the checkpoint policy and the
//! final checkpoint at close).

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::auto::AutoCheckpoint;
use crate::checkpoint::{self, CheckpointKind, recover_store};
use crate::compaction::BudgetTask;
use crate::cpr;
use crate::device::{Device, FileDevice};
use crate::lock::LockFile;
use crate::record::{Key, Value};
use crate::store::{CloseHook, Store, StoreConfig, StoreInner};
use crate::{Error, Result};

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
    /// log2 of the size of the log's segment files, 12..=40 (default 30, 1
    /// GiB): the unit in which compaction gives disk space back. Fixed
    /// when the store is created (recorded in its `SEGMENTS` file); an
    /// existing store keeps its own.
    pub fn segment_size_bits(mut self, bits: u32) -> Self {
        self.config.segment_size_bits = bits;
        self
    }
    /// Whether the hash index doubles by itself (default on): when the
    /// entries inserts created pass four per main bucket
    /// ([`index::grow::GROW_AT`](crate::index::grow::GROW_AT)), the session
    /// whose write crossed that line grows the table between its
    /// operations (sessions that begin an operation meanwhile help; see
    /// [`Store::grow_index`](crate::Store::grow_index)). Off: the table
    /// keeps its size unless grown by hand.
    pub fn auto_grow_index(mut self, on: bool) -> Self {
        self.config.auto_grow_index = on;
        self
    }
    /// Bytes of memory for the read cache (default 0: off): records read
    /// back from the device are copied into an in-memory ring of this
    /// size, so that the next reads of a hot key whose record left the
    /// log's memory do not go to the device again. A whole number of log
    /// pages, at least two; with the log memory, no more than the
    /// machine's memory. Writes of a cached key never let a later read see
    /// the cached value; checkpoints and recovery ignore the cache.
    pub fn read_cache_bytes(mut self, bytes: u64) -> Self {
        self.config.read_cache_bytes = bytes;
        self
    }
    /// Applies the TOML configuration file at `path`, then the
    /// `OXIFASTER_<KEY>` environment variables, over what this builder was
    /// given so far (feature `serde`; precedence: code < file <
    /// environment). Setters called afterwards win again. The keys:
    /// `oxifaster config --print-default`, or
    /// [`StoreConfig::default_file`].
    ///
    /// # Errors
    ///
    /// [`Error::ConfigFile`](crate::Error::ConfigFile) naming the file and
    /// line (or the variable), the key and what is allowed;
    /// [`Error::Io`](crate::Error::Io) if the file cannot be read.
    #[cfg(feature = "serde")]
    pub fn config_file(mut self, path: impl AsRef<std::path::Path>) -> crate::Result<Self> {
        self.config.apply_file(path)?;
        self.config.apply_env()?;
        Ok(self)
    }

    /// Applies the `OXIFASTER_<KEY>` environment variables over what this
    /// builder was given so far (feature `serde`); see
    /// [`Self::config_file`].
    ///
    /// # Errors
    ///
    /// [`Error::ConfigFile`](crate::Error::ConfigFile) naming the variable.
    #[cfg(feature = "serde")]
    pub fn env_overrides(mut self) -> crate::Result<Self> {
        self.config.apply_env()?;
        Ok(self)
    }
    /// Reads and writes the log's segment files with `O_DIRECT` (Linux;
    /// default off): the log's pages go to the disk around the page
    /// cache, and records come back from the disk itself, so a store
    /// larger than memory neither depends on nor fills the page cache
    /// (and its cold reads cost what the disk costs). Where the file
    /// system refuses `O_DIRECT` (tmpfs, for one) I/O stays buffered. See
    /// the README's section on larger-than-memory stores for when to turn
    /// it on.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.config.direct_io = on;
        self
    }
    /// Keeps the store directory (log segments and checkpoints together)
    /// under `bytes` (default: no bound). A background task compacts the
    /// log's older half whenever the log outgrows its share of the budget
    /// (85%, less the checkpoints) or the directory — counting the log
    /// memory not yet written and one more checkpoint index — passes 70%;
    /// then it takes `keep_checkpoints` checkpoints at the new begin
    /// address (the first with a fresh index), prunes older checkpoints
    /// (those taken by hand too) and deletes the log segments none of the
    /// kept ones needs. Appends may not take the directory past 95% (as
    /// measured every 50 ms): there they wait for the running round to
    /// make room (in-place updates never wait), and up to a second at a
    /// time when no round runs.
    /// The budget must hold the log memory, one index checkpoint and four
    /// segments (`segment_size_bits`, chosen from the budget unless set),
    /// and the live data must fit well inside it: with live data near the
    /// budget, appends wait and the bound can be passed (see the README's
    /// section on compaction).
    pub fn disk_budget(mut self, bytes: Option<u64>) -> Self {
        self.config.disk_budget = bytes;
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
    pub fn on_progress(mut self, f: impl Fn(cpr::Progress) + Send + Sync + 'static) -> Self {
        self.config.progress = Some(cpr::ProgressFn(Arc::new(f)));
        self
    }
    /// Calls `f` with every checkpoint once it is durable — FASTER's
    /// persistence callback: each session's commit point is in it (see
    /// [`crate::checkpoint::CheckpointInfo::commit_point`]). It runs on the
    /// thread that ran the checkpoint; keep it short.
    pub fn on_checkpoint(
        mut self,
        f: impl Fn(&cpr::CheckpointInfo) + Send + Sync + 'static,
    ) -> Self {
        self.config.on_checkpoint = Some(cpr::CheckpointFn(Arc::new(f)));
        self
    }
    /// Writes checkpoint files through `io` (for fault injection in tests).
    pub fn checkpoint_io(mut self, io: impl cpr::CheckpointIo + 'static) -> Self {
        self.config.checkpoint_io = Some(cpr::IoHandle(Arc::new(io)));
        self
    }

    /// [`Self::checkpoint_io`] with a handle to share (an F2 store's two
    /// stores and its manifest write through one).
    pub(crate) fn checkpoint_io_handle(mut self, io: cpr::IoHandle) -> Self {
        self.config.checkpoint_io = Some(io);
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
    /// `token` (a [`CheckpointToken`](cpr::CheckpointToken)
    /// or its string). Settings the checkpoint fixes (page size, table
    /// size) come from it; the others (log memory, sessions) from this
    /// builder.
    pub fn recover(self, token: impl AsRef<str>) -> Result<Store<K, V>> {
        let dir = self.require_dir()?;
        let lock = lock_store_dir(&dir)?;
        let device =
            open_file_device(&dir, self.config.effective_segment_bits(), self.config.direct_io)?;
        let inner = recover_store(self.config, device, &dir, token.as_ref())?;
        start(inner, Some(lock), None)
    }

    /// Recovers from the newest intact checkpoint in the configured
    /// directory: a checkpoint whose files or log pages turn out damaged
    /// is skipped (logged, and listed by [`Store::skipped_checkpoints`])
    /// and the next older one is tried.
    pub fn recover_latest(self) -> Result<Store<K, V>> {
        let dir = self.require_dir()?;
        let lock = lock_store_dir(&dir)?;
        let (bits, direct) = (self.config.effective_segment_bits(), self.config.direct_io);
        self.recover_latest_locked(dir, lock, move |dir| open_file_device(dir, bits, direct))
    }

    /// Recovers the newest intact checkpoint of `dir` (locked), opening
    /// the log's device once per checkpoint tried.
    fn recover_latest_locked<D: Device>(
        self,
        dir: PathBuf,
        lock: LockFile,
        mut device: impl FnMut(&Path) -> Result<D>,
    ) -> Result<Store<K, V, D>> {
        let inner = recover_newest_intact(&dir, |token| {
            recover_store(self.config.clone(), device(&dir)?, &dir, token)
        })?;
        start(inner, Some(lock), None)
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
        self.recover_latest_locked(dir, lock, |_| Ok(device()))
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
        let inner = recover_store(self.config, device, &dir, token.as_ref())?;
        start(inner, Some(lock), None)
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
            let device = open_file_device(&dir, config.effective_segment_bits(), config.direct_io)?;
            let mut inner = StoreInner::new(config, device, 1)?;
            inner.dir = Some(dir);
            return start(inner, Some(lock), Some(temp));
        };
        match classify_dir(&dir)? {
            DirContents::Checkpointed => {
                let lock = lock_store_dir(&dir)?;
                let (bits, direct) = (self.config.effective_segment_bits(), self.config.direct_io);
                self.recover_latest_locked(dir, lock, move |dir| {
                    open_file_device(dir, bits, direct)
                })
            }
            DirContents::Empty | DirContents::UncheckpointedStore => {
                let lock = lock_store_dir(&dir)?;
                let version = next_version(&dir)?;
                let device = open_file_device(
                    &dir,
                    self.config.effective_segment_bits(),
                    self.config.direct_io,
                )?;
                let inner = StoreInner::new(self.config, device, version)?;
                start(inner, Some(lock), None)
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
        let version = match &self.config.dir {
            Some(dir) => next_version(dir)?,
            None => 1,
        };
        let inner = StoreInner::new(self.config, device, version)?;
        start(inner, lock, None)
    }
}

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
            "LOCK" | "SEGMENTS" => {}
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
    let any_checkpoint = checkpoint::list(dir)?.iter().any(|c| c.kind != CheckpointKind::IndexOnly);
    Ok(if any_checkpoint { DirContents::Checkpointed } else { DirContents::UncheckpointedStore })
}

fn lock_store_dir(dir: &Path) -> Result<LockFile> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        context: format!("creating the store directory {}", dir.display()),
        source,
    })?;
    LockFile::acquire(&dir.join("LOCK"))
}

/// The log's segment files in `dir`, at the size the directory records
/// (`bits` for a new store), with `O_DIRECT` I/O if `direct`.
fn open_file_device(dir: &Path, bits: u32, direct: bool) -> Result<FileDevice> {
    let device = FileDevice::open_recorded(dir, bits).map_err(|source| Error::Io {
        context: format!("opening the log in {}", dir.display()),
        source,
    })?;
    Ok(if direct { device.with_direct_io() } else { device })
}

/// Recovers the newest checkpoint of `dir` that `recover` accepts, skipping
/// (and reporting) damaged ones; any other error ends the search.
fn recover_newest_intact<K: Key, V: Value, D: Device>(
    dir: &Path,
    mut recover: impl FnMut(&str) -> Result<StoreInner<K, V, D>>,
) -> Result<StoreInner<K, V, D>> {
    let candidates: Vec<String> = checkpoint::list(dir)?
        .into_iter()
        .rev()
        .filter(|c| c.kind != CheckpointKind::IndexOnly)
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
}

/// The version a new incarnation in `dir` starts at: past every
/// checkpoint there, so it never overwrites what a checkpoint needs.
fn next_version(dir: &Path) -> Result<u32> {
    Ok(checkpoint::list(dir)?.iter().map(|c| c.version + 1).max().unwrap_or(1))
}

/// The store over `inner`, with its durability policy: the automatic
/// checkpoint thread (for a store in a directory of its own, if
/// configured) and the close hook that stops it and takes the final
/// checkpoint.
fn start<K: Key, V: Value, D: Device>(
    inner: StoreInner<K, V, D>,
    lock: Option<LockFile>,
    temp_dir: Option<tempfile::TempDir>,
) -> Result<Store<K, V, D>> {
    let temporary = temp_dir.is_some();
    Store::from_inner(inner, lock, temp_dir, |inner| {
        let auto = match (inner.config.checkpoint_every, &inner.dir) {
            (Some(interval), Some(_)) if !temporary => {
                Some(AutoCheckpoint::start(inner.clone(), interval)?)
            }
            _ => None,
        };
        let budget = match inner.config.disk_budget {
            Some(bytes) => Some(BudgetTask::start(inner.clone(), bytes)?),
            None => None,
        };
        let auto = Mutex::new(auto);
        let budget = Mutex::new(budget);
        let inner = inner.clone();
        let hook: CloseHook = Box::new(move || {
            if let Some(budget) = budget.lock().unwrap_or_else(|p| p.into_inner()).take() {
                budget.stop();
            }
            if let Some(auto) = auto.lock().unwrap_or_else(|p| p.into_inner()).take() {
                auto.stop();
            }
            inner.checkpoints.join_running();
            if inner.config.checkpoint_on_close
                && inner.dir.is_some()
                && inner.log.check_poisoned().is_ok()
                && inner.changed_since_checkpoint()
            {
                return Ok(Some(inner.checkpoint_now(CheckpointKind::FoldOver)?.token));
            }
            Ok(None)
        });
        Ok(Some(hook))
    })
}
