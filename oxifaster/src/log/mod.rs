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

mod append;
pub mod commit;
pub mod entry;
mod group_commit;
mod iter;
mod open;
mod read;
mod truncate;
mod wait;

pub use iter::{LogEntry, LogIter};
pub use wait::CommitFuture;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::device::{Device, FileDevice};
use crate::epoch::{Epoch, EpochHandle};
use crate::hlog::{FIRST_ADDRESS, HybridLog, LogGeometry};
use crate::{Error, Result};

use commit::CommitRecord;
use entry::HEADER;

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
    pub(crate) dir: Option<PathBuf>,
    pub(crate) page_size_bits: u32,
    pub(crate) log_memory_size_bytes: u64,
    pub(crate) segment_size_bits: u32,
    pub(crate) auto_commit_interval: Option<Duration>,
    pub(crate) auto_commit_bytes: Option<u64>,
    pub(crate) max_threads: usize,
    pub(crate) direct_io: bool,
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
    /// What each spill region holds now (length and CRC-32C of its bytes),
    /// if known: a commit rewrites its region only when it differs.
    regions: [Option<(usize, u32)>; 2],
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
    failed: OnceLock<(String, Option<std::io::ErrorKind>)>,
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

impl<D: Device> FasterLog<D> {
    /// Opens a log whose entries live on `data` and whose commit records
    /// live on `commits` (two devices, e.g. `FaultDevice`s
    /// in tests); `config`'s directory is not used.
    pub fn with_devices(config: LogConfig, data: D, commits: D) -> Result<Self> {
        Self::build(config, data, commits, None, None)
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

    /// [`Self::read`] for addresses the caller took from its own record of
    /// where it enqueued entries (the F2 cold index): without the walk of
    /// each page up to the address that proves an arbitrary address is an
    /// entry's start. An entry's checksum covers its address, so a wrong
    /// address still fails unless the bytes there were crafted to pass.
    /// The device reads among them are in flight together; returns how
    /// many there were, too.
    pub(crate) fn read_batch_known(&self, addresses: &[u64]) -> (Vec<Result<Vec<u8>>>, usize) {
        self.inner.read_batch(addresses)
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
        if let Some((message, kind)) = self.failed.get() {
            return Err(Error::Poisoned { message: message.clone(), kind: *kind });
        }
        Ok(())
    }

    /// Records the first failure, wakes every waiter, and returns the error.
    fn fail(&self, error: Error) -> Error {
        // The first failure's own words, once (a poisoning error already
        // carries them).
        let message = match &error {
            Error::Poisoned { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let _ = self.failed.set((message, error.io_kind()));
        self.signal.notify();
        error
    }
}
