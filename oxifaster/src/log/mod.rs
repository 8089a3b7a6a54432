//! FasterLog: a durable, concurrent append-only log over the hybrid log.
//!
//! ```
//! use oxifaster::log::{FasterLog, LogConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let log = FasterLog::open(LogConfig::new(dir.path()))?;
//! let first = log.enqueue(b"hello")?;
//! log.enqueue(b"world")?;
//! log.commit_with_cookie(b"applied=2")?; // durable, with the user's bytes
//! assert_eq!(log.read(first)?, b"hello");
//! let all: Vec<Vec<u8>> = log.scan_all().map(|e| e.map(|e| e.data)).collect::<Result<_, _>>()?;
//! assert_eq!(all, [b"hello".to_vec(), b"world".to_vec()]);
//! drop(log);
//!
//! let log = FasterLog::open(LogConfig::new(dir.path()))?; // recovers
//! assert_eq!(log.cookie(), b"applied=2");
//! assert_eq!(log.scan_all().count(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Design
//!
//! - **Enqueue** allocates the entry at the hybrid log's tail (one
//!   `fetch_add`, no lock) under epoch protection and writes it in place:
//!   [`entry`] gives the format (length, CRC-32C over address, length and
//!   payload, 8-byte alignment). Full pages become read-only and are
//!   written to the device as the tail moves on, by the epoch action of the
//!   hybrid log.
//! - **Commit** (group commit): under the commit lock, takes the tail as the
//!   commit point, makes the log durable up to it (`flush_durable`: its epoch
//!   action runs only once every thread that allocated below the point has
//!   left its enqueue, so every entry below it is complete; then the device
//!   is synced), then writes a [`commit`] record (commit point, begin,
//!   cookie, named iterators, dropped ranges) into the older of two slots of
//!   the commit device and syncs it. A commit is acknowledged only after
//!   both syncs. Callers that arrive while a commit runs wait for the lock
//!   and return at once if their entries were covered.
//! - **Invariant**: `committed_until` only grows, is published (Release)
//!   only after the record holding it is durable, and always falls on an
//!   entry boundary; everything below it is immutable (below the hybrid
//!   log's safe read-only address), so readers copy it without locks.
//! - **Recovery** reads both slots, takes the newer valid record, loads the
//!   partial page holding the commit point back into memory (checking every
//!   entry in it), and resumes appending at the commit point: whatever was
//!   written after it (a torn or uncommitted tail) is cut. Entries are
//!   checked against their checksums whenever they are read, so corruption
//!   inside the committed range is reported as [`Error::Corruption`] with
//!   its address, never skipped; [`FasterLog::verify`] checks all of them.
//! - **Failure**: a failed device write or sync fails the commit for every
//!   waiter and poisons the log: nothing is reported durable after it, and
//!   every later call returns [`Error::Poisoned`] until the log is reopened.
//!
//! Dropping a `FasterLog` does not commit: entries enqueued since the last
//! commit are lost, as after a crash. Call [`FasterLog::commit`] first.
//!
//! Things to know:
//!
//! - After a crash the log resumes at the commit point, so the addresses of
//!   lost (never committed) entries are given to new entries: keep an
//!   address elsewhere only once its entry is committed.
//! - Full pages are written in the background by a flush thread, with
//!   `O_DIRECT` where the file system allows (see [`LogConfig::direct_io`]).
//! - The page and segment sizes are part of the log: reopening with others
//!   is [`Error::InvalidConfig`].

pub mod commit;
pub mod entry;
mod iter;
mod wait;

pub use iter::{LogEntry, LogIter};
pub use wait::CommitFuture;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::device::{Device, FileDevice};
use crate::epoch::{Epoch, EpochHandle};
use crate::hlog::{FIRST_ADDRESS, HybridLog, LogGeometry};
use crate::{Error, Result};

use commit::{CommitRecord, SLOT_SIZE};
use entry::{HEADER, Header, decode_header, entry_size};

/// The address of an entry in a [`FasterLog`]: a byte position, growing
/// with every enqueue (not dense: entries are 8-byte aligned and a page's
/// unused end is skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogAddress(u64);

impl LogAddress {
    /// The largest address: as the end of a scan, "no end" (follow the
    /// tail).
    pub const MAX: LogAddress = LogAddress(u64::MAX);
    /// The address of the first entry of a new log.
    pub const FIRST: LogAddress = LogAddress(FIRST_ADDRESS);

    /// The address as a number (for storing it elsewhere).
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// An address from [`Self::raw`].
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl std::fmt::Display for LogAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// How to open a [`FasterLog`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    dir: Option<PathBuf>,
    page_size_bits: u32,
    log_memory_size_bytes: u64,
    segment_size_bits: u32,
    auto_commit_interval: Option<Duration>,
    auto_commit_bytes: Option<u64>,
    max_threads: usize,
    direct_io: bool,
}

impl Default for LogConfig {
    /// A log in a new temporary directory (deleted when the log is
    /// dropped): the embedded default for trying things out.
    fn default() -> Self {
        Self {
            dir: None,
            page_size_bits: 22,
            log_memory_size_bytes: 64 << 20,
            segment_size_bits: crate::device::DEFAULT_SEGMENT_SIZE_BITS,
            auto_commit_interval: None,
            auto_commit_bytes: None,
            max_threads: crate::epoch::DEFAULT_MAX_PARTICIPANTS,
            direct_io: true,
        }
    }
}

impl LogConfig {
    /// A log in `dir` (created if missing; reopened if it holds a log).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self { dir: Some(dir.as_ref().to_path_buf()), ..Self::default() }
    }

    /// log2 of the page size (default 22: 4 MiB). An entry must fit in a
    /// page: see [`FasterLog::max_entry_size`].
    pub fn page_size_bits(mut self, bits: u32) -> Self {
        self.page_size_bits = bits;
        self
    }

    /// The memory for the page ring (default 64 MiB): a power-of-two
    /// multiple of the page size, at least four pages. Recent entries are
    /// read from it; older ones from the files.
    pub fn log_memory_size_bytes(mut self, bytes: u64) -> Self {
        self.log_memory_size_bytes = bytes;
        self
    }

    /// log2 of the segment file size (default 30: 1 GiB); `truncate_until`
    /// deletes whole segments. At least the page size.
    pub fn segment_size_bits(mut self, bits: u32) -> Self {
        self.segment_size_bits = bits;
        self
    }

    /// Commits in the background every `interval` (when something was
    /// enqueued since the last commit).
    pub fn auto_commit_every(mut self, interval: Duration) -> Self {
        self.auto_commit_interval = Some(interval);
        self
    }

    /// Commits in the background once `bytes` have been enqueued since the
    /// last commit.
    pub fn auto_commit_bytes(mut self, bytes: u64) -> Self {
        self.auto_commit_bytes = Some(bytes.max(1));
        self
    }

    /// Whether full blocks are written with `O_DIRECT`, skipping the page
    /// cache (default on; Linux; file systems that refuse it fall back to
    /// buffered writes). Flushes are rounded out to 4 KiB blocks.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// How many threads may be inside a log call at once (default 128).
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n.max(1);
        self
    }

    fn geometry(&self) -> Result<LogGeometry> {
        let bits = self.page_size_bits;
        if !(crate::hlog::MIN_PAGE_BITS..=crate::hlog::MAX_PAGE_BITS).contains(&bits) {
            return Err(Error::InvalidConfig {
                what: "page_size_bits",
                why: format!(
                    "{bits} is outside {}..={}",
                    crate::hlog::MIN_PAGE_BITS,
                    crate::hlog::MAX_PAGE_BITS
                ),
            });
        }
        if self.segment_size_bits < bits {
            return Err(Error::InvalidConfig {
                what: "segment_size_bits",
                why: format!("segments (2^{}) must hold a page (2^{bits})", self.segment_size_bits),
            });
        }
        let geometry = LogGeometry {
            page_bits: bits,
            frames: self.log_memory_size_bytes >> bits,
            mutable_pages: 1,
            sealed: false,
        };
        geometry.validate()?;
        if geometry.frames << bits != self.log_memory_size_bytes {
            return Err(Error::InvalidConfig {
                what: "log_memory_size_bytes",
                why: format!("{} is not a multiple of the page size", self.log_memory_size_bytes),
            });
        }
        Ok(geometry)
    }
}

/// What the last durable commit held when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryInfo {
    /// The commit's number.
    pub commit_number: u64,
    /// Every entry below this address survived; nothing at or after it.
    pub committed_until: LogAddress,
    /// The first readable address.
    pub begin: LogAddress,
    /// Bytes found on the device past the commit point (an uncommitted or
    /// torn tail, or the rest of a block a flush rounded out): cut, and
    /// overwritten by later appends.
    pub cut_bytes: u64,
}

/// A durable, concurrent append-only log (see the [module
/// documentation](self)).
///
/// Share it between threads by reference or in an `Arc`: every method takes
/// `&self`.
pub struct FasterLog<D: Device = FileDevice> {
    inner: Arc<Inner<D>>,
    auto_commit: Option<JoinHandle<()>>,
    /// Writes full pages in the background while appenders fill the next.
    _flusher: Option<crate::hlog::Flusher>,
    /// Held while this handle lives (iterators may outlive it: they keep
    /// reading, but nothing can be appended or committed through them).
    _lock: Option<crate::lock::LockFile>,
}

impl<D: Device> std::fmt::Debug for FasterLog<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FasterLog")
            .field("begin", &self.begin_address())
            .field("committed_until", &self.committed_until())
            .field("tail", &self.tail_address())
            .finish_non_exhaustive()
    }
}

/// The state a commit changes, under the commit lock.
#[derive(Debug, Default)]
struct CommitState {
    /// The last durable record.
    record: CommitRecord,
}

pub(crate) struct Inner<D> {
    epoch: Epoch,
    hlog: HybridLog<D>,
    commits: D,
    state: Mutex<CommitState>,
    /// The first readable address (after `truncate_until`).
    begin: AtomicU64,
    /// Every entry below it is durable (see the module invariant).
    committed: AtomicU64,
    /// Ranges dropped by `truncate_after`, as readers see them.
    dropped: RwLock<Arc<[(u64, u64)]>>,
    /// Named iterators' positions, saved at the next commit.
    iterators: Mutex<BTreeMap<String, u64>>,
    iterators_dirty: AtomicBool,
    /// Why the log refuses work (a commit failed).
    failed: OnceLock<String>,
    /// Set when the `FasterLog` is dropped: tail-following waits end.
    closed: AtomicBool,
    signal: wait::Signal,
    /// Auto-commit by size: the threshold (0: off), and whether the
    /// background thread was already asked.
    auto_bytes: u64,
    commit_requested: AtomicBool,
    auto_thread: OnceLock<std::thread::Thread>,
    recovery: Option<RecoveryInfo>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl FasterLog<FileDevice> {
    /// Opens the log in `config`'s directory (a new temporary one by
    /// default), recovering it to its last durable commit if it holds one.
    /// The directory is locked: a second open, from this process or
    /// another, fails with [`Error::Locked`] until this log is dropped.
    pub fn open(config: LogConfig) -> Result<Self> {
        let (dir, temp) = match &config.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new().prefix("oxifaster-log-").tempdir().map_err(
                    |source| Error::Io { context: "creating a temporary directory".into(), source },
                )?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        refuse_a_store(&dir)?;
        let lock = crate::lock::LockFile::acquire(&dir.join("LOCK"))?;
        let device = |sub: &str, bits: u32, direct: bool| {
            let path = dir.join(sub);
            let device = if direct {
                FileDevice::open_direct(&path, bits)
            } else {
                FileDevice::open(&path, bits)
            };
            device.map_err(|source| Error::Io {
                context: format!("opening {}", path.display()),
                source,
            })
        };
        let data = device("log", config.segment_size_bits, config.direct_io)?;
        let commits = device("commit", 20, false)?;
        Self::build(config, data, commits, Some(lock), temp)
    }
}

/// A store's directory (its `checkpoints/` or `log.N` segment files) is not
/// a log's: opening one as a log would mix the two formats.
fn refuse_a_store(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let segment = name
            .strip_prefix("log.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if name == "checkpoints" || segment {
            return Err(Error::InvalidConfig {
                what: "dir",
                why: format!(
                    "{} holds a Store (`{name}`); a FasterLog needs a directory of its own",
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

impl<D: Device> FasterLog<D> {
    /// Opens a log whose entries live on `data` and whose commit records
    /// live on `commits` (two devices, e.g. [`crate::device::FaultDevice`]s
    /// in tests); `config`'s directory is not used.
    pub fn with_devices(config: LogConfig, data: D, commits: D) -> Result<Self> {
        Self::build(config, data, commits, None, None)
    }

    fn build(
        config: LogConfig,
        data: D,
        commits: D,
        lock: Option<crate::lock::LockFile>,
        temp_dir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let geometry = config.geometry()?;
        let record = read_commit_record(&commits)?;
        if let Some(r) = &record
            && (r.page_bits != config.page_size_bits || r.segment_bits != config.segment_size_bits)
        {
            return Err(Error::InvalidConfig {
                what: "page_size_bits / segment_size_bits",
                why: format!(
                    "the log was written with 2^{} pages and 2^{} segments, not 2^{} and 2^{}",
                    r.page_bits, r.segment_bits, config.page_size_bits, config.segment_size_bits
                ),
            });
        }
        let (hlog, recovery) = match &record {
            None => (HybridLog::new(geometry, data)?, None),
            Some(r) => {
                let hlog = HybridLog::resumed(geometry, data, r.begin, r.committed)?;
                load_tail_page(&hlog, r.committed)?;
                let end = hlog.device().end_offset().map_err(|source| Error::Io {
                    context: "reading the log's length".into(),
                    source,
                })?;
                let info = RecoveryInfo {
                    commit_number: r.seq,
                    committed_until: LogAddress(r.committed),
                    begin: LogAddress(r.begin),
                    cut_bytes: end.saturating_sub(r.committed),
                };
                (hlog, Some(info))
            }
        };
        let record = record.unwrap_or(CommitRecord {
            begin: FIRST_ADDRESS,
            committed: FIRST_ADDRESS,
            page_bits: config.page_size_bits,
            segment_bits: config.segment_size_bits,
            ..CommitRecord::default()
        });
        // (Loom models run the flushes in the epoch action: a background
        // thread would be outside the model.)
        let flusher = if cfg!(oxifaster_loom) { None } else { Some(hlog.start_flusher()?) };
        let inner = Arc::new(Inner {
            epoch: Epoch::new(config.max_threads),
            hlog,
            commits,
            begin: AtomicU64::new(record.begin),
            committed: AtomicU64::new(record.committed),
            dropped: RwLock::new(record.dropped.clone().into()),
            iterators: Mutex::new(record.iterators.clone()),
            iterators_dirty: AtomicBool::new(false),
            state: Mutex::new(CommitState { record }),
            failed: OnceLock::new(),
            closed: AtomicBool::new(false),
            signal: wait::Signal::default(),
            auto_bytes: config.auto_commit_bytes.unwrap_or(0),
            commit_requested: AtomicBool::new(false),
            auto_thread: OnceLock::new(),
            recovery,
            _temp_dir: temp_dir,
        });
        let auto_commit =
            if config.auto_commit_interval.is_some() || config.auto_commit_bytes.is_some() {
                let inner2 = inner.clone();
                let interval = config.auto_commit_interval;
                let thread = std::thread::Builder::new()
                    .name("oxifaster-log-commit".into())
                    .spawn(move || auto_commit(inner2, interval))
                    .map_err(|source| Error::Io {
                        context: "starting the auto-commit thread".into(),
                        source,
                    })?;
                let _ = inner.auto_thread.set(thread.thread().clone());
                Some(thread)
            } else {
                None
            };
        Ok(Self { inner, auto_commit, _flusher: flusher, _lock: lock })
    }

    /// The device holding the entries.
    pub fn data_device(&self) -> &D {
        self.inner.hlog.device()
    }

    /// The device holding the commit records.
    pub fn commit_device(&self) -> &D {
        &self.inner.commits
    }

    /// The largest entry (payload bytes) a page holds; larger ones are
    /// refused with [`Error::RecordTooLarge`].
    pub fn max_entry_size(&self) -> usize {
        (self.inner.hlog.page_size() - FIRST_ADDRESS - HEADER) as usize
    }

    /// Appends `data` and returns its address. Many threads may enqueue at
    /// once; no lock is taken. The entry is durable after the next commit
    /// (see [`Self::commit`], [`Self::wait_for_commit`]). Waits only when
    /// the page ring is full until the oldest page is written out.
    pub fn enqueue(&self, data: &[u8]) -> Result<LogAddress> {
        self.inner.enqueue(data, false).map(|a| a.unwrap_or(LogAddress(0)))
    }

    /// [`Self::enqueue`] that never waits: `Ok(None)` when the entry cannot
    /// be placed right now (the page ring is full, waiting for a write, or
    /// another thread is opening the next page). Retry later.
    pub fn try_enqueue(&self, data: &[u8]) -> Result<Option<LogAddress>> {
        self.inner.enqueue(data, true)
    }

    /// Appends every entry of `entries`, in order and contiguously where
    /// they fit in one page (one tail allocation for many entries), and
    /// returns their addresses. An oversized entry is refused before any is
    /// placed; if the log fails part-way (a device error), a prefix of the
    /// batch may be in the log.
    pub fn enqueue_batch<T: AsRef<[u8]>>(&self, entries: &[T]) -> Result<Vec<LogAddress>> {
        self.inner.enqueue_batch(entries)
    }

    /// Makes every entry enqueued before the call durable and returns the
    /// new commit point (every entry below it is durable). Concurrent
    /// callers share one commit (group commit). Fails, for every caller
    /// waiting on it, if a device write or sync fails; the log is then
    /// poisoned.
    pub fn commit(&self) -> Result<LogAddress> {
        self.inner.commit(None)
    }

    /// [`Self::commit`], storing `cookie` (at most
    /// [`commit::MAX_COOKIE`] bytes; e.g. a Raft term and vote) atomically
    /// with it: after a crash, [`Self::cookie`] returns the cookie of the
    /// last durable commit. A commit without a cookie keeps the previous
    /// one.
    pub fn commit_with_cookie(&self, cookie: &[u8]) -> Result<LogAddress> {
        if cookie.len() > commit::MAX_COOKIE {
            return Err(Error::InvalidConfig {
                what: "commit cookie",
                why: format!("{} bytes; at most {} are stored", cookie.len(), commit::MAX_COOKIE),
            });
        }
        self.inner.commit(Some(cookie))
    }

    /// Blocks until the entry at `address` is durable (someone commits, or
    /// the auto-commit policy does). Fails if a commit fails, or if the log
    /// is dropped first. (An entry later dropped by `truncate_after` was
    /// durable: this returns `Ok` for it too.)
    pub fn wait_for_commit(&self, address: LogAddress) -> Result<()> {
        self.inner.wait_for_commit(address.0)
    }

    /// [`Self::wait_for_commit`] as a future (any executor; `Send`).
    pub fn wait_for_commit_async(&self, address: LogAddress) -> CommitFuture<D> {
        CommitFuture::new(self.inner.clone(), address.0)
    }

    /// The cookie of the last durable commit (empty if none was given).
    pub fn cookie(&self) -> Vec<u8> {
        self.inner.lock_state().record.cookie.clone()
    }

    /// What the log was recovered to when opened (`None` for a new log).
    pub fn recovered(&self) -> Option<&RecoveryInfo> {
        self.inner.recovery.as_ref()
    }

    /// The first readable address.
    pub fn begin_address(&self) -> LogAddress {
        LogAddress(self.inner.begin.load(Ordering::Acquire))
    }

    /// Every entry below this address is durable.
    pub fn committed_until(&self) -> LogAddress {
        LogAddress(self.inner.committed.load(Ordering::Acquire))
    }

    /// Where the next entry goes (or the next page's start).
    pub fn tail_address(&self) -> LogAddress {
        LogAddress(self.inner.hlog.tail_address().raw())
    }

    /// Reads the committed entry at `address` (from memory or the device),
    /// checking its checksum.
    pub fn read(&self, address: LogAddress) -> Result<Vec<u8>> {
        self.inner.check_readable(address.0)?;
        // Bytes inside another entry's payload can look like an entry (its
        // checksum is public): the address must be one the log's own walk
        // of its page reaches.
        let begin = self.inner.begin.load(Ordering::Acquire);
        if !self.inner.is_boundary(address.0, begin)? {
            return Err(Error::InvalidAddress { address: address.0, why: "no entry starts here" });
        }
        self.inner.read(address.0)
    }

    /// An iterator over the committed entries in `[from, to)`, from memory
    /// and the device. With `to == LogAddress::MAX` it follows the log:
    /// `next()` stops at the commit point, `next_blocking()` and
    /// `next_async()` wait for the next commit.
    pub fn scan(&self, from: LogAddress, to: LogAddress) -> LogIter<D> {
        LogIter::new(self.inner.clone(), from.0, to.0, None).checking_start()
    }

    /// An iterator over every committed entry.
    pub fn scan_all(&self) -> LogIter<D> {
        self.scan(self.begin_address(), self.committed_until())
    }

    /// A named, persistent iterator following the log: it starts where the
    /// last [`LogIter::complete_until`] of this name left off (as of the
    /// last commit, across reopens), or at the log's beginning. The name
    /// (1 to 64 bytes) is registered, and saved at the next commit, until
    /// [`Self::remove_iterator`]; at most 256 exist at once.
    pub fn named_iterator(&self, name: &str) -> Result<LogIter<D>> {
        if name.is_empty() || name.len() > commit::MAX_NAME {
            return Err(Error::InvalidConfig {
                what: "iterator name",
                why: format!("{name:?} must be 1..={} bytes", commit::MAX_NAME),
            });
        }
        let start = {
            let mut iterators = self.inner.lock_iterators();
            match iterators.get(name) {
                Some(position) => *position,
                None if iterators.len() >= commit::MAX_ITERATORS => {
                    return Err(Error::InvalidConfig {
                        what: "named iterators",
                        why: format!(
                            "at most {} exist at once; remove_iterator one first",
                            commit::MAX_ITERATORS
                        ),
                    });
                }
                None => {
                    let begin = self.begin_address().0;
                    iterators.insert(name.to_owned(), begin);
                    self.inner.iterators_dirty.store(true, Ordering::Release);
                    begin
                }
            }
        };
        Ok(LogIter::new(self.inner.clone(), start, u64::MAX, Some(name.to_owned())))
    }

    /// A named iterator's position, as recorded by its last
    /// `complete_until` (saved at the next commit).
    pub fn iterator_position(&self, name: &str) -> Option<LogAddress> {
        self.inner.lock_iterators().get(name).map(|a| LogAddress(*a))
    }

    /// Forgets a named iterator (at the next commit).
    pub fn remove_iterator(&self, name: &str) {
        if self.inner.lock_iterators().remove(name).is_some() {
            self.inner.iterators_dirty.store(true, Ordering::Release);
        }
    }

    /// Checks every committed entry's checksum (dropped ranges included)
    /// and that every page's unused end is zero; returns how many entries
    /// there are, or the first corruption with its address.
    pub fn verify(&self) -> Result<u64> {
        let mut count = 0;
        let mut it = LogIter::new(self.inner.clone(), 0, self.committed_until().0, None);
        it.verifying();
        while it.next_ref()?.is_some() {
            count += 1;
        }
        Ok(count)
    }

    /// Releases every entry below `address` (an entry's address, or the
    /// commit point) durably: reads below it fail, scans start at it, and
    /// segment files wholly below it are deleted. It commits: every entry
    /// enqueued before the call becomes durable too.
    pub fn truncate_until(&self, address: LogAddress) -> Result<()> {
        self.inner.truncate_until(address.0)
    }

    /// Drops every entry at or after `address` (an entry's address) that
    /// was enqueued before the call, committed or not, durably: scans and
    /// reads never return them again, also after a crash. Later entries
    /// are appended after them and are unaffected. Entries enqueued by
    /// other threads while this runs may fall on either side. It commits
    /// (which is what makes the drop durable).
    pub fn truncate_after(&self, address: LogAddress) -> Result<()> {
        self.inner.truncate_after(address.0)
    }
}

impl<D: Device> Drop for FasterLog<D> {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.signal.notify();
        if let Some(thread) = self.auto_commit.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The background committer: commits every `interval`, and when asked by
/// an enqueue that passed the size threshold.
fn auto_commit<D: Device>(inner: Arc<Inner<D>>, interval: Option<Duration>) {
    let mut last = Instant::now();
    loop {
        match interval {
            Some(every) => std::thread::park_timeout(every.saturating_sub(last.elapsed())),
            None => std::thread::park(),
        }
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let due = interval.is_some_and(|every| last.elapsed() >= every);
        let asked = inner.commit_requested.swap(false, Ordering::AcqRel);
        if !due && !asked {
            continue;
        }
        last = Instant::now();
        let pending = inner.hlog.tail_address().raw() > inner.committed.load(Ordering::Acquire)
            || inner.iterators_dirty.load(Ordering::Acquire);
        if pending && inner.commit(None).is_err() && inner.failed.get().is_some() {
            // The log is poisoned; waiters have the error. Other errors
            // (say, no free epoch entry for a moment) are retried.
            return;
        }
    }
}

/// Reads the commit device's two slots; the newest valid record, if any.
fn read_commit_record<D: Device>(commits: &D) -> Result<Option<CommitRecord>> {
    let io = |source| Error::Io { context: "reading the commit record".into(), source };
    let end = commits.end_offset().map_err(io)?;
    let slot = |at: u64| -> Result<Vec<u8>> {
        let len = end.saturating_sub(at).min(SLOT_SIZE) as usize;
        let mut buf = vec![0u8; len];
        if len > 0 {
            commits.read_at(at, &mut buf).map_err(io)?;
        }
        Ok(buf)
    };
    let (a, b) = (slot(0)?, slot(SLOT_SIZE)?);
    commit::newest(&a, &b).map_err(|what| Error::Corruption { address: 0, what })
}

/// Copies the committed part of the page holding `committed` back into
/// memory, checking that it is a chain of valid entries ending exactly
/// there.
fn load_tail_page<D: Device>(hlog: &HybridLog<D>, committed: u64) -> Result<()> {
    let bits = hlog.geometry().page_bits;
    let head = (committed >> bits << bits).max(FIRST_ADDRESS);
    if committed <= head {
        return Ok(());
    }
    let mut bytes = vec![0u8; (committed - head) as usize];
    hlog.device().read_at(head, &mut bytes).map_err(|source| Error::Corruption {
        address: head,
        what: format!("the committed page cannot be read back: {source}"),
    })?;
    let page_end = page_end(head, bits);
    let mut at = head;
    while at < committed {
        let rel = (at - head) as usize;
        match entry::decode(at, &bytes[rel..], page_end - at) {
            Ok(Some((_, size))) => at += size,
            Ok(None) => {
                return Err(Error::Corruption {
                    address: at,
                    what: "an empty header inside the committed range".into(),
                });
            }
            Err(invalid) => {
                return Err(Error::Corruption { address: at, what: invalid.describe().into() });
            }
        }
    }
    if at != committed {
        return Err(Error::Corruption {
            address: committed,
            what: "the commit point is not an entry boundary".into(),
        });
    }
    let address = Address::new(head).ok_or(Error::LogFull)?;
    // SAFETY: the log is not shared yet; `[head, committed)` lies in one page
    // inside the resumed log's in-memory range.
    unsafe { hlog.load(address, &bytes) };
    Ok(())
}

/// The end of the page holding `address`.
#[inline]
pub(crate) fn page_end(address: u64, page_bits: u32) -> u64 {
    ((address >> page_bits) + 1) << page_bits
}

thread_local! {
    /// This thread's starting point in the epoch table.
    static EPOCH_HINT: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize
    };
}

impl<D: Device> Inner<D> {
    fn lock_state(&self) -> MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_iterators(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.iterators.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An epoch entry for this call (released when dropped), protected.
    #[inline]
    fn protect(&self) -> Result<EpochHandle<'_>> {
        let hint = EPOCH_HINT.with(|h| *h);
        let mut spins = 0u32;
        loop {
            match self.epoch.register_near(hint) {
                Ok(handle) => {
                    handle.refresh();
                    return Ok(handle);
                }
                // More threads than entries: wait for one to leave.
                Err(Error::TooManySessions { .. }) if spins < 1_000_000 => {
                    spins += 1;
                    crate::sync::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An entry too large for a page, in payload bytes (what the caller
    /// gave, against `max_entry_size`).
    #[cold]
    fn too_large(&self, payload: usize) -> Error {
        let max = self.hlog.page_size() - FIRST_ADDRESS - HEADER;
        Error::RecordTooLarge { size: payload as u64, max }
    }

    #[inline]
    fn check_failed(&self) -> Result<()> {
        if let Some(message) = self.failed.get() {
            return Err(Error::Poisoned { message: message.clone() });
        }
        Ok(())
    }

    /// Records the first failure, wakes every waiter, and returns the error.
    fn fail(&self, error: Error) -> Error {
        // The first failure's own words, once (a poisoning error already
        // carries them).
        let message = match &error {
            Error::Poisoned { message } => message.clone(),
            other => other.to_string(),
        };
        let _ = self.failed.set(message);
        self.signal.notify();
        error
    }

    fn enqueue(&self, data: &[u8], try_only: bool) -> Result<Option<LogAddress>> {
        self.check_failed()?;
        self.hlog.check_poisoned()?;
        let size = entry_size(data.len());
        if size > self.hlog.page_size() - FIRST_ADDRESS {
            return Err(self.too_large(data.len()));
        }
        let handle = if try_only {
            // Never wait, not even for a free epoch entry.
            match self.epoch.register_near(EPOCH_HINT.with(|h| *h)) {
                Ok(handle) => {
                    handle.refresh();
                    handle
                }
                Err(Error::TooManySessions { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            self.protect()?
        };
        let address = if try_only {
            match self.hlog.try_allocate(size, &handle)? {
                Some(a) => a,
                None => return Ok(None),
            }
        } else {
            self.hlog.allocate(size, &handle)?
        };
        crate::sync::schedule_point();
        // SAFETY: `[address, address + size)` was just allocated to us, in
        // one page whose frame is live (the tail only enters a page after
        // its frame is cleared), and we are protected; nobody reads it
        // before it is below the safe read-only address, which needs this
        // thread to leave its protection first (module invariant).
        let out =
            unsafe { std::slice::from_raw_parts_mut(self.hlog.record_ptr(address), size as usize) };
        entry::encode(address.raw(), data, out);
        drop(handle);
        self.after_enqueue(address.raw() + size);
        Ok(Some(LogAddress(address.raw())))
    }

    fn enqueue_batch<T: AsRef<[u8]>>(&self, entries: &[T]) -> Result<Vec<LogAddress>> {
        self.check_failed()?;
        self.hlog.check_poisoned()?;
        let max = self.hlog.page_size() - FIRST_ADDRESS;
        // All or nothing: refuse an oversized entry before placing any.
        if let Some(e) = entries.iter().find(|e| entry_size(e.as_ref().len()) > max) {
            return Err(self.too_large(e.as_ref().len()));
        }
        let mut out = Vec::with_capacity(entries.len());
        let handle = self.protect()?;
        let mut i = 0;
        let mut end = 0;
        while i < entries.len() {
            // The longest run from `i` that fits in one allocation.
            let mut run = entry_size(entries[i].as_ref().len());
            let mut j = i + 1;
            while j < entries.len() {
                let next = entry_size(entries[j].as_ref().len());
                if run + next > max {
                    break;
                }
                run += next;
                j += 1;
            }
            let start = self.hlog.allocate(run, &handle)?;
            // SAFETY: as in `enqueue`: a fresh allocation in a live frame,
            // written before this thread leaves its protection.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(self.hlog.record_ptr(start), run as usize)
            };
            let mut at = 0usize;
            for e in &entries[i..j] {
                let e = e.as_ref();
                let size = entry_size(e.len()) as usize;
                let address = start.raw() + at as u64;
                entry::encode(address, e, &mut bytes[at..at + size]);
                out.push(LogAddress(address));
                at += size;
            }
            end = start.raw() + run;
            i = j;
        }
        drop(handle);
        self.after_enqueue(end);
        Ok(out)
    }

    /// Asks the auto-commit thread for a commit once enough is uncommitted.
    #[inline]
    fn after_enqueue(&self, end: u64) {
        if self.auto_bytes != 0
            && end.saturating_sub(self.committed.load(Ordering::Relaxed)) >= self.auto_bytes
            && !self.commit_requested.swap(true, Ordering::AcqRel)
            && let Some(thread) = self.auto_thread.get()
        {
            thread.unpark();
        }
    }

    fn commit(&self, cookie: Option<&[u8]>) -> Result<LogAddress> {
        self.check_failed()?;
        let wanted = self.hlog.tail_address().raw();
        let mut state = self.lock_state();
        let dirty = self.iterators_dirty.load(Ordering::Acquire);
        if cookie.is_none() && !dirty && self.committed.load(Ordering::Acquire) >= wanted {
            // A commit that ran while we waited for the lock covered us.
            self.check_failed()?;
            return Ok(LogAddress(self.committed.load(Ordering::Acquire)));
        }
        self.commit_locked(&mut state, |record| {
            if let Some(cookie) = cookie {
                record.cookie = cookie.to_vec();
            }
        })
    }

    /// One commit: flush and sync the entries up to the tail, then write and
    /// sync the next commit record (as changed by `change`).
    fn commit_locked(
        &self,
        state: &mut CommitState,
        change: impl FnOnce(&mut CommitRecord),
    ) -> Result<LogAddress> {
        self.check_failed()?;
        let target = self.hlog.tail_address();
        // The record first: a record that cannot be written changes nothing.
        let mut next = state.record.clone();
        next.seq += 1;
        next.committed = next.committed.max(target.raw());
        let iterators_dirty = self.iterators_dirty.swap(false, Ordering::AcqRel);
        if iterators_dirty {
            next.iterators = self.lock_iterators().clone();
        }
        change(&mut next);
        let bytes = next.encode().map_err(|why| {
            self.iterators_dirty.fetch_or(iterators_dirty, Ordering::AcqRel);
            Error::InvalidConfig { what: "commit record", why }
        })?;
        {
            let handle = self.protect()?;
            self.hlog.flush_written(target, &handle).map_err(|e| self.fail(e))?;
            // Leave the epoch before the sync: page flushes and head shifts
            // must not wait for it.
        }
        self.hlog.sync_device().map_err(|e| self.fail(e))?;
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| self.fail(Error::Io { context, source })
        };
        let slot = (next.seq % 2) * SLOT_SIZE;
        self.commits.write_at(slot, &bytes).map_err(io("writing the commit record"))?;
        self.commits.sync().map_err(io("syncing the commit record"))?;
        if next.seq == 1 {
            // The first commit goes to both slots (before it is
            // acknowledged), so that from now on one damaged slot always
            // leaves a valid one: an empty slot beside a damaged one then
            // means the first commit never completed.
            self.commits.write_at(0, &bytes).map_err(io("writing the commit record"))?;
            self.commits.sync().map_err(io("syncing the commit record"))?;
        }
        let committed = next.committed;
        state.record = next;
        self.committed.store(committed, Ordering::Release);
        self.signal.notify();
        Ok(LogAddress(committed))
    }

    fn wait_for_commit(&self, address: u64) -> Result<()> {
        self.signal.wait_until(|| self.commit_status(address).transpose())
    }

    /// `Some(Ok)` once `address` is committed, `Some(Err)` if it never will
    /// be (failed or closed), `None` while waiting makes sense.
    fn commit_status(&self, address: u64) -> Result<Option<()>> {
        if self.committed.load(Ordering::Acquire) > address {
            return Ok(Some(()));
        }
        self.check_failed()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                message: "the log was closed before the entry was committed".into(),
            });
        }
        Ok(None)
    }

    /// Checks that `address` names a committed, live entry position.
    fn check_readable(&self, address: u64) -> Result<()> {
        let why = if !address.is_multiple_of(8) || address < FIRST_ADDRESS {
            "not an entry address"
        } else if address < self.begin.load(Ordering::Acquire) {
            "released by truncate_until"
        } else if address >= self.committed.load(Ordering::Acquire) {
            "not committed"
        } else if self.dropped_ranges().iter().any(|(f, t)| (*f..*t).contains(&address)) {
            "dropped by truncate_after"
        } else {
            return Ok(());
        };
        Err(Error::InvalidAddress { address, why })
    }

    fn dropped_ranges(&self) -> Arc<[(u64, u64)]> {
        self.dropped.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn read(&self, address: u64) -> Result<Vec<u8>> {
        self.check_readable(address)?;
        let bits = self.hlog.geometry().page_bits;
        let page_end = page_end(address, bits);
        let room = page_end - address;
        // Never copy bytes at or past the commit point: other threads may be
        // writing them. One read usually holds the whole entry.
        let readable = self.committed.load(Ordering::Acquire).min(page_end) - address;
        let mut buf = vec![0u8; readable.min(4096) as usize];
        if buf.len() < HEADER as usize {
            return Err(Error::Corruption {
                address,
                what: "the commit point falls inside an entry header".into(),
            });
        }
        self.read_bytes(address, &mut buf)?;
        let mut header = [0u8; 8];
        header.copy_from_slice(&buf[..8]);
        let corrupt = |what: &str| Error::Corruption { address, what: what.into() };
        let len = match decode_header(header, room) {
            Ok(Header::Entry { len, .. }) => len as usize,
            Ok(Header::Empty) => {
                return Err(Error::InvalidAddress {
                    address,
                    why: "no entry starts here (page padding)",
                });
            }
            Err(invalid) => return Err(corrupt(invalid.describe())),
        };
        let whole = entry_size(len) as usize;
        if whole as u64 > readable {
            return Err(corrupt("the entry runs past the commit point"));
        }
        if whole > buf.len() {
            let have = buf.len();
            buf.resize(whole, 0);
            self.read_bytes(address + have as u64, &mut buf[have..])?;
        }
        match entry::decode(address, &buf[..whole], room) {
            Ok(Some((payload, _))) => Ok(payload.to_vec()),
            Ok(None) => Err(corrupt("the entry header changed while reading")),
            Err(invalid) => Err(corrupt(invalid.describe())),
        }
    }

    /// Copies committed bytes `[at, at + buf.len())` (within one page) from
    /// memory if the page is there, else from the device. Reads and scans
    /// both come through here.
    pub(crate) fn read_bytes(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        {
            let _handle = self.protect()?;
            let head = self.hlog.head_address();
            if at >= head.raw() {
                let address = Address::new(at).ok_or(Error::LogFull)?;
                // SAFETY: we are protected and saw `at >= head`, so the frame
                // stays live until we unprotect; the range is in one page and
                // below the commit point, hence immutable (module
                // invariant).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.hlog.record_ptr(address),
                        buf.as_mut_ptr(),
                        buf.len(),
                    );
                }
                return Ok(());
            }
        }
        let address = Address::new(at).ok_or(Error::LogFull)?;
        self.hlog.read_from_device(address, buf).map_err(|e| {
            if at < self.begin.load(Ordering::Acquire) {
                Error::InvalidAddress { address: at, why: "released by truncate_until" }
            } else {
                e
            }
        })
    }

    /// Whether `address` (at most the commit point) is where an entry
    /// starts, the commit point, or the log's begin: walks the entries of
    /// its page from the page start (or the begin, if later).
    pub(crate) fn is_boundary(self: &Arc<Self>, address: u64, begin: u64) -> Result<bool> {
        let committed = self.committed.load(Ordering::Acquire);
        if address == committed || address == begin {
            return Ok(true);
        }
        if !address.is_multiple_of(8) || address < FIRST_ADDRESS || address > committed {
            return Ok(false);
        }
        let bits = self.hlog.geometry().page_bits;
        let page_start = (address >> bits << bits).max(FIRST_ADDRESS).max(begin);
        let mut walk = LogIter::new(self.clone(), page_start, address + 1, None);
        walk.verifying();
        while let Some((at, _)) = walk.next_ref()? {
            if at.0 >= address {
                return Ok(at.0 == address);
            }
        }
        Ok(walk.next_address().0 == address)
    }

    fn truncate_until(self: &Arc<Self>, address: u64) -> Result<()> {
        let mut state = self.lock_state();
        let committed = self.committed.load(Ordering::Acquire);
        if address > committed {
            return Err(Error::InvalidAddress {
                address,
                why: "truncate_until takes an address at or below the commit point",
            });
        }
        let address = address.max(state.record.begin);
        if !self.is_boundary(address, state.record.begin)? {
            return Err(Error::InvalidAddress { address, why: "no entry starts here" });
        }
        self.commit_locked(&mut state, |record| {
            record.begin = address;
            record.dropped.retain(|(_, to)| *to > address);
        })?;
        *self.dropped.write().unwrap_or_else(|p| p.into_inner()) =
            state.record.dropped.clone().into();
        self.begin.store(address, Ordering::Release);
        // The new begin is durable: the files below it may go.
        self.hlog.device().truncate_before(address).map_err(|source| Error::Io {
            context: format!("deleting log segments below {address:#x}"),
            source,
        })
    }

    fn truncate_after(self: &Arc<Self>, address: u64) -> Result<()> {
        if !address.is_multiple_of(8) || address < FIRST_ADDRESS {
            return Err(Error::InvalidAddress { address, why: "not an entry address" });
        }
        let mut state = self.lock_state();
        // Commit first: the entries up to the cut become durable and can be
        // walked to check that the cut falls between two of them.
        self.commit_locked(&mut state, |_| {})?;
        let address = address.max(state.record.begin);
        let tail = self.committed.load(Ordering::Acquire);
        if address >= tail {
            return Ok(());
        }
        if !self.is_boundary(address, state.record.begin)? {
            return Err(Error::InvalidAddress { address, why: "no entry starts here" });
        }
        let mut dropped = state.record.dropped.clone();
        // Ranges inside the new one are absorbed; one overlapping its start
        // is extended.
        dropped.retain(|(from, _)| *from < address);
        match dropped.last_mut() {
            Some((_, to)) if *to >= address => *to = tail,
            _ => dropped.push((address, tail)),
        }
        if dropped.len() > commit::MAX_DROPPED {
            return Err(Error::InvalidConfig {
                what: "truncate_after",
                why: format!(
                    "{} dropped ranges are recorded already; truncate_until past some first",
                    commit::MAX_DROPPED
                ),
            });
        }
        let published: Arc<[(u64, u64)]> = dropped.clone().into();
        self.commit_locked(&mut state, |record| record.dropped = dropped)?;
        // Durable: readers stop seeing the range.
        *self.dropped.write().unwrap_or_else(|p| p.into_inner()) = published;
        Ok(())
    }
}
