//! Sessions: the operations of a store, with pending I/O.
//!
//! A session protects its epoch entry for the duration of each operation and
//! unprotects after it, so an idle session never holds back a page flush or
//! an eviction. Records below `head` are read back from the device: `read`
//! and `rmw` return `Pending` and park the operation in the session's queue,
//! and `complete_pending` finishes every parked operation, walking further
//! down the record chain on the device where the key differs.

#[cfg(feature = "tokio")]
mod asynk;
mod batch;
mod conditional;
mod copy;
mod scan;

pub(crate) use conditional::ParkedFn;
pub use conditional::{Decision, Outcome, UpdateStatus};
pub(crate) use copy::CopyOutcome;
pub use scan::KeyVersion;
pub(crate) use scan::Settle;
mod pending;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::record::{RecordInfo, RecordPtr};
use super::{StoreInner, record::RecordFormat};
use crate::Result;
use crate::address::Address;
use crate::cpr::{self, SessionSlot, is_newer, version_bits};
use crate::device::Device;
use crate::epoch::EpochHandle;
use crate::index::grow::GrowPhase;
use crate::index::{EntrySlot, HashBucketEntry};
use crate::readcache;
use crate::record::{AlignedBytes, Key, KeyArg, Merge, Value, ValueArg};
use crate::stats::Count;

/// Merges `input` into the stored bytes in place: `Merge::in_place`, or for
/// a fixed-size value whose `in_place` declines, its copy-update written back
/// (same size). False only when a variable-length value must change size.
#[inline(always)]
fn merge_in_place<V: Merge>(bytes: &mut [u8], input: &V) -> bool {
    if V::in_place(bytes, input) {
        return true;
    }
    if V::FIXED_SIZE.is_none() {
        return false;
    }
    let new_value = match V::view(bytes) {
        Ok(view) => V::copy_update(view, input),
        Err(_) => return false,
    };
    new_value.encode_into(bytes).is_ok()
}

/// How an RMW computes its new value.
trait RmwUpdate<V: Value> {
    /// The value of a key that has none.
    fn initial(&self) -> V;
    /// Updates the stored bytes in place; false if the size must change.
    fn in_place(&self, stored: &mut [u8]) -> bool;
    /// The new value from the old value's bytes (8-byte aligned).
    fn copy_update(&self, old: &[u8]) -> Result<V>;
    /// The input to park for a pending completion, or `None` to read the
    /// device right away.
    fn park(&self) -> Option<V>;
    /// Merges into a one-word value with one atomic read-modify-write, or
    /// returns false (see `Merge::in_place_atomic`).
    #[inline(always)]
    fn in_place_atomic(&self, word: &AtomicU64) -> bool {
        let _ = word;
        false
    }
}

/// `Merge<V>` with an input.
struct MergeUpdate<'a, V>(&'a V);

impl<V: Merge + Clone> RmwUpdate<V> for MergeUpdate<'_, V> {
    #[inline(always)]
    fn initial(&self) -> V {
        V::initial(self.0)
    }
    #[inline(always)]
    fn in_place(&self, stored: &mut [u8]) -> bool {
        merge_in_place::<V>(stored, self.0)
    }
    #[inline]
    fn copy_update(&self, old: &[u8]) -> Result<V> {
        Ok(V::copy_update(V::view(old)?, self.0))
    }
    fn park(&self) -> Option<V> {
        Some(self.0.clone())
    }
    #[inline(always)]
    fn in_place_atomic(&self, word: &AtomicU64) -> bool {
        V::in_place_atomic(word, self.0)
    }
}

/// A closure from the old value to the new one.
struct ClosureUpdate<F>(F);

impl<V: Value, F: Fn(Option<V>) -> V> RmwUpdate<V> for ClosureUpdate<F> {
    fn initial(&self) -> V {
        (self.0)(None)
    }
    fn in_place(&self, stored: &mut [u8]) -> bool {
        let Ok(old) = V::decode(stored) else { return false };
        let new_value = (self.0)(Some(old));
        new_value.encoded_size() == stored.len() && new_value.encode_into(stored).is_ok()
    }
    fn copy_update(&self, old: &[u8]) -> Result<V> {
        Ok((self.0)(Some(V::decode(old)?)))
    }
    fn park(&self) -> Option<V> {
        None
    }
}

/// The outcome of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadStatus<V> {
    /// The key's value.
    Found(V),
    /// The key has no value.
    NotFound,
    /// The record is on the device: `complete_pending` finishes the read and
    /// reports it under this serial number.
    Pending {
        /// The operation's serial number in this session.
        serial: u64,
    },
}

/// The outcome of a read-modify-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RmwStatus {
    /// The update is done.
    Done,
    /// The old value is on the device: `complete_pending` finishes the update.
    Pending {
        /// The operation's serial number in this session.
        serial: u64,
    },
}

/// An operation finished by `complete_pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed<V> {
    /// The serial number the operation returned with `Pending`.
    pub serial: u64,
    /// What finished.
    pub op: CompletedOp<V>,
}

/// What a completed pending operation was, with its result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompletedOp<V> {
    /// A read and the value it found, if any.
    Read(Option<V>),
    /// A read-modify-write, applied.
    Rmw,
    /// A conditional update ([`Session::update`], `insert_if_absent`,
    /// `compare_and_swap`, `delete_if`), and what it did.
    Update(Outcome),
    /// The operation could not finish (its record could not be read from
    /// the device, or its update could not be written): it was **not**
    /// applied, and is not retried. Reissue it if it still matters.
    Failed(OpError),
}

/// Why a pending operation failed (see [`CompletedOp::Failed`]); compares
/// by its message.
#[derive(Debug, Clone)]
pub struct OpError(pub std::sync::Arc<crate::Error>);

impl PartialEq for OpError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}
impl Eq for OpError {}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

enum PendingKind<V> {
    /// A read, with the raw index entry it started from (see
    /// `Session::entry_moved`).
    Read {
        entry: u64,
    },
    Rmw {
        input: V,
        expected_entry: u64,
    },
    /// A conditional update (`Session::update` and the operations built on
    /// it), its decision owned.
    Update {
        update: conditional::Parked<V>,
        expected_entry: u64,
    },
}

struct PendingOp<V> {
    serial: u64,
    hash: u64,
    key: AlignedBytes,
    address: Address,
    kind: PendingKind<V>,
    /// When it went pending (for the completion latency in `stats`).
    parked_at: std::time::Instant,
}

/// The bytes a read that never parks found (`read_with_protected` with
/// `park = None` gives no `Pending`).
fn found(status: ReadStatus<&[u8]>) -> Option<&[u8]> {
    debug_assert!(!matches!(status, ReadStatus::Pending { .. }));
    match status {
        ReadStatus::Found(bytes) => Some(bytes),
        ReadStatus::NotFound | ReadStatus::Pending { .. } => None,
    }
}

/// What an inlined fast path did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FastPath {
    /// The operation is done.
    Done,
    /// The index has no entry for the key's tag (the full protocol may go
    /// straight to creating one).
    NoEntry,
    /// Nothing was written: the full protocol must run.
    Fallback,
}

/// Where a key's newest record is.
enum Location {
    Memory(Address),
    Disk(Address),
    /// The chain ends: no record of the key.
    Absent,
    /// The chain went below the begin address: no record of the key,
    /// unless compaction moved the begin address during the walk (see
    /// `Session::entry_moved`).
    BelowBegin,
}

/// A session of a store: one thread at a time, with its own serial numbers
/// and pending operations.
///
/// A session owns a handle to its store (it is `Send + 'static`): move it
/// into `std::thread::spawn` or `tokio::spawn`; the store stays open while
/// it lives.
pub struct Session<K: Key, V: Value, D: Device> {
    /// The store's shared state, reached without a reference count on the
    /// hot path. The `'static` is this module's own: the reference is
    /// valid because `open` (dropped last, see below) keeps the state
    /// alive and in place; it never leaves the session.
    store: &'static StoreInner<K, V, D>,
    /// This session's epoch entry (in `store.epoch`; same lifetime rule).
    handle: EpochHandle<'static>,
    serial: u64,
    /// Operations that may have written (upserts, RMWs, deletes and their
    /// completions), counted for `SessionSlot::writes`.
    writes: u64,
    pending: VecDeque<PendingOp<V>>,
    /// Completions not yet handed to the caller (reads that `read_blocking`
    /// finished for a parked read of the same key); `complete_pending`
    /// returns them first.
    ready: Vec<Completed<V>>,
    scratch: Vec<u64>,
    /// The record `cache_read` builds for the read cache (kept, so that
    /// filling the cache allocates nothing once warm).
    cache_record: Vec<u8>,
    /// The index entry (raw; 0 for none) under which the last read that
    /// found nothing looked (see `missed`).
    miss_entry: u64,
    /// The CPR version this session runs at, and its 13 record bits.
    version: u32,
    version_bits: u32,
    /// Shared with checkpoints: commit points, parked RMWs.
    slot: Arc<SessionSlot>,
    /// What keeps the store's state alive. Declared last: fields drop in
    /// declaration order, so `handle` (and everything above) is gone
    /// before this reference, possibly the last, is released.
    _keep: Keep<K, V, D>,
}

/// What a session holds on to: the open store (a user's session keeps it
/// open), or for an internal session of a background task (compaction)
/// only the shared state, so that the task never keeps the store open.
enum Keep<K: Key, V: Value, D: Device> {
    Open(#[allow(dead_code)] Arc<super::OpenStore<K, V, D>>),
    Inner(#[allow(dead_code)] Arc<StoreInner<K, V, D>>),
}

impl<K: Key, V: Value, D: Device> std::fmt::Debug for Session<K, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.slot.id)
            .field("version", &self.version)
            .field("serial", &self.serial)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    pub(crate) fn new(
        open: Arc<super::OpenStore<K, V, D>>,
        slot: Arc<SessionSlot>,
        serial: u64,
    ) -> Result<Self> {
        // SAFETY: the state lives in an `Arc` that `open` holds and the
        // session keeps (its last field) until every field that borrows
        // from the state is dropped; an `Arc`'s contents never move. The
        // reference is private to the session, and nothing derived from it
        // with the `'static` lifetime is handed out (every public method
        // returns owned values).
        let store: &'static StoreInner<K, V, D> = unsafe { &*Arc::as_ptr(&open.inner) };
        // `max_sessions` counts user sessions; the epoch table has entries
        // for checkpoints on top (see `StoreInner::with_parts`).
        let max = store.config.max_sessions;
        if store.open_sessions.fetch_add(1, Ordering::AcqRel) >= max {
            store.open_sessions.fetch_sub(1, Ordering::AcqRel);
            slot.close();
            return Err(crate::Error::TooManySessions { max });
        }
        Self::with_keep(store, Keep::Open(open), slot, serial)
    }

    /// An internal session (for compaction): it holds only the shared
    /// state, is not counted against `max_sessions` (the epoch table has an
    /// entry for it) and is left out of checkpoints' commit points.
    pub(crate) fn internal(inner: Arc<StoreInner<K, V, D>>) -> Result<Self> {
        // SAFETY: as in `new`; `inner` itself is kept (the last field).
        let store: &'static StoreInner<K, V, D> = unsafe { &*Arc::as_ptr(&inner) };
        store.open_sessions.fetch_add(1, Ordering::AcqRel);
        let (version, _) = store.cpr.load();
        let slot = store.sessions.open_new_internal(version);
        Self::with_keep(store, Keep::Inner(inner), slot, 0)
    }

    fn with_keep(
        store: &'static StoreInner<K, V, D>,
        keep: Keep<K, V, D>,
        slot: Arc<SessionSlot>,
        serial: u64,
    ) -> Result<Self> {
        let handle = match store.epoch.register() {
            Ok(handle) => handle,
            Err(e) => {
                store.open_sessions.fetch_sub(1, Ordering::AcqRel);
                slot.close();
                return Err(e);
            }
        };
        let version = slot.version();
        Ok(Self {
            store,
            handle,
            serial,
            writes: 0,
            pending: VecDeque::new(),
            ready: Vec::new(),
            scratch: Vec::new(),
            cache_record: Vec::new(),
            miss_entry: 0,
            version,
            version_bits: version_bits(version),
            slot,
            _keep: keep,
        })
    }

    /// The session's id: checkpoints record its commit point under it, and
    /// `Store::continue_session` resumes it after recovery.
    pub fn id(&self) -> u64 {
        self.slot.id
    }

    /// The CPR version the session is at.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Protects the session for an operation and follows a version change;
    /// while the hash index grows, helps it first (see `store::grow`: a
    /// growth sets `cpr::GROWING`, then drains the epoch, so an operation
    /// that saw no growth here holds the drain back until its end).
    #[inline(always)]
    fn begin(&mut self) {
        self.handle.refresh();
        // One load and compare: this session's version, no growth (the
        // phase byte is masked; a version change is what matters here).
        let word = self.store.cpr.word();
        if word & !0xff != u64::from(self.version) << 8 {
            self.begin_slow(word);
        }
    }

    /// The start of an operation that found the index growing or a new
    /// version.
    #[cold]
    #[inline(never)]
    fn begin_slow(&mut self, word: u64) {
        if word & cpr::GROWING != 0 && self.store.index.grow_phase() != GrowPhase::Rest {
            self.help_grow();
        }
        self.observe_version();
    }

    /// Refreshes inside an operation (before it has written anything),
    /// following a version change: an operation that waits may not run on
    /// at a version a checkpoint has already left behind. (Flagged as a
    /// refresh in the middle of an operation: a growth of the index waits
    /// for it to end, see `Epoch::wait_mid_ops`.)
    #[inline]
    fn refresh_in_op(&mut self) {
        self.handle.refresh_mid_op();
        self.observe_version();
    }

    /// Helps a growth of the index to its end, at the start of an
    /// operation (nothing of the index held yet).
    #[cold]
    #[inline(never)]
    fn help_grow(&mut self) {
        loop {
            // Unprotected, the operation is not in flight: a growth waiting
            // for operations to end does not wait for this one.
            self.handle.unprotect();
            let mut spins = 0u32;
            while !crate::store::grow::help_round(self.store, &self.handle) {
                // A checkpoint's version change may be waiting for this
                // session meanwhile.
                self.handle.refresh();
                self.observe_version();
                self.handle.unprotect();
                crate::hlog::backoff(&mut spins);
            }
            self.handle.refresh();
            if self.store.index.grow_phase() == GrowPhase::Rest {
                return;
            }
        }
    }

    #[inline(always)]
    fn observe_version(&mut self) {
        let (version, _) = self.store.cpr.load();
        if version != self.version {
            self.switch_version(version);
        }
    }

    /// Moves to `version`, recording the commit point of the old one.
    #[cold]
    #[inline(never)]
    fn switch_version(&mut self, version: u32) {
        self.version = self.slot.switch_to(version);
        self.version_bits = version_bits(self.version);
    }

    /// Met a record of a newer version: move to the store's version before
    /// writing anything (module invariant 3 of `cpr`).
    #[cold]
    #[inline(never)]
    fn pivot(&mut self) {
        let (version, _) = self.store.cpr.load();
        self.switch_version(version);
    }

    /// [`Self::end`] for an operation that may have written: it also
    /// publishes the session's write count (what the checkpoint policy
    /// reads to tell whether anything changed).
    #[inline(always)]
    fn end_write(&mut self) {
        self.writes += 1;
        self.slot.writes.store(self.writes, Ordering::Release);
        self.end();
        if self.store.config.auto_grow_index && self.store.index.take_growth_request() {
            self.grow_index_now();
        }
    }

    /// The index asked to grow (its entries passed four per main bucket):
    /// grow it now, between operations (unless another session is already
    /// growing it).
    #[cold]
    #[inline(never)]
    fn grow_index_now(&mut self) {
        if let Err(e) = crate::store::grow::grow(self.store, &self.handle, false) {
            tracing::warn!(error = %e, "growing the hash index");
        }
    }

    /// Publishes the finished operation's serial number and unprotects.
    #[inline(always)]
    fn end(&mut self) {
        self.slot.serial.store(self.serial, Ordering::Release);
        self.handle.unprotect();
    }

    /// Whether a record an RMW-like operation (it reads the value, then
    /// writes) met is at this session's version; `None` when the operation
    /// must start over: the record is newer (the session moved to the
    /// store's version), or older while a version change is in flight (a
    /// session still at the old version may update it in place, and a copy
    /// now could lose that update).
    fn current_or_retry(&mut self, info: RecordInfo) -> Option<bool> {
        if info.version() == self.version_bits {
            return Some(true);
        }
        if self.is_newer_than_me(info.version()) {
            self.pivot();
            return None;
        }
        if self.version_change_in_flight() {
            self.refresh_in_op();
            return None;
        }
        Some(false)
    }

    /// Waits until every session that was protected when this was called
    /// has finished the operation it was in, refreshing this session as it
    /// waits (record pointers taken before are stale after it). What makes
    /// a sealed one-word record frozen: its in-place writers check the
    /// sealed bit before they write (`RecordPtr::seal_atomic`).
    #[cold]
    #[inline(never)]
    fn wait_for_drain(&mut self) {
        use crate::sync::{AtomicBool, Ordering};
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        self.handle.bump_with_action(move || flag.store(true, Ordering::Release));
        while !done.load(Ordering::Acquire) {
            self.refresh_in_op();
            crate::sync::yield_now();
        }
    }

    /// Whether a checkpoint's version change is still in flight: sessions at
    /// the old version may be running (module invariant 2 of `cpr`).
    #[inline]
    fn version_change_in_flight(&self) -> bool {
        self.store.cpr.load().1 == cpr::IN_PROGRESS
    }

    /// The serial number of the last operation started in this session.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The number of operations waiting for `complete_pending`.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    #[inline(always)]
    fn format(&self) -> RecordFormat<K, V> {
        self.store.format
    }

    /// The record at log address `address` (never a read-cache address:
    /// a log record's `previous` is always in the log, so chain walks use
    /// this; see [`Self::any_record`]).
    ///
    /// # Safety
    ///
    /// The session is protected and `address >= head` was observed after
    /// protecting (or the address was just allocated by this session).
    #[inline(always)]
    unsafe fn record(&self, address: Address) -> RecordPtr<K, V> {
        // SAFETY: per this function's contract, the frame holding the
        // record stays valid until the session refreshes or unprotects.
        unsafe { RecordPtr::new(self.store.log.record_ptr(address), self.format()) }
    }

    /// The read-cache record at `address` (kept out of line: only a store
    /// with a read cache has such addresses).
    ///
    /// # Safety
    ///
    /// The session is protected and loaded `address` from an index entry
    /// after protecting itself: the cache frees a frame only after an epoch
    /// drain that follows unlinking its records.
    #[cold]
    #[inline(never)]
    unsafe fn cached_record(&self, address: Address) -> RecordPtr<K, V> {
        let Some(cache) = &self.store.read_cache else {
            // An index entry points into the cache only when there is one.
            unreachable!("a read-cache address in a store without a read cache")
        };
        // SAFETY: this function's contract is the cache's.
        let ptr = unsafe { cache.record_ptr(address) }.cast_mut();
        // SAFETY: as above: the record stays valid while protected.
        unsafe { RecordPtr::new(ptr, self.format()) }
    }

    /// The log address the chain of an entry holding `entry` continues at:
    /// `entry` itself, or, when it is a read-cache record's, that record's
    /// `previous` (writes and walks that must see the log's own records
    /// start here). Protected.
    #[inline(always)]
    fn log_start(&self, entry: Address) -> Address {
        if readcache::is_cached(entry) { self.cached_previous(entry) } else { entry }
    }

    #[cold]
    #[inline(never)]
    fn cached_previous(&self, entry: Address) -> Address {
        // SAFETY: loaded from an index entry while protected.
        unsafe { self.cached_record(entry) }.info().previous()
    }

    /// [`Self::locate`] for a read, from an index entry's address `from`:
    /// with a read-cache address, the cached record if it is the key's
    /// (`Err`), else the log from the record's `previous`. One bit test on
    /// the log's path.
    #[inline(always)]
    fn locate_read<Q: KeyArg<K> + ?Sized>(
        &self,
        key: &Q,
        from: Address,
    ) -> std::result::Result<Location, Address> {
        if readcache::is_cached(from) {
            return self.locate_cached(key, from);
        }
        Ok(self.locate(key, from))
    }

    #[inline(never)]
    fn locate_cached<Q: KeyArg<K> + ?Sized>(
        &self,
        key: &Q,
        from: Address,
    ) -> std::result::Result<Location, Address> {
        // SAFETY: loaded from an index entry while protected.
        let record = unsafe { self.cached_record(from) };
        let info = record.info();
        let (key_len, _) = record.lengths();
        if !info.is_invalid() && key.key_arg_matches(record.key_bytes(key_len)) {
            return Err(from);
        }
        Ok(self.locate(key, info.previous()))
    }

    /// The value bytes of the read-cache record at `address` (which
    /// [`Self::locate_read`] found), where they lie: a cached record is
    /// never written once linked. Protected.
    #[cold]
    #[inline(never)]
    fn cached_value(&self, address: Address) -> &[u8] {
        // SAFETY: loaded from an index entry while protected.
        let record = unsafe { self.cached_record(address) };
        let (key_len, value_len) = record.lengths();
        let bytes = record.value_bytes_immutable(key_len, value_len);
        // SAFETY: the frame stays valid while the session is protected,
        // which outlasts this borrow of the session.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
    }

    /// Adds one to this session's `count` (see `stats`).
    #[inline(always)]
    fn count(&self, count: Count) {
        self.slot.counters.bump(count);
    }

    /// A read that found nothing under the index entry `entry` (raw; 0
    /// for none): counted, and the entry noted for
    /// [`Self::last_miss_entry`].
    #[inline(always)]
    fn missed(&mut self, entry: u64) {
        self.miss_entry = entry;
        self.count(Count::ReadsNotFound);
    }

    /// The index entry (raw; 0 for none) the last read that answered
    /// "not found" without going pending looked under: every record of
    /// the key that entry's chain held was seen, none matched. F2 links a
    /// cold read into the read cache only over this entry
    /// ([`Self::cache_value`]).
    pub(crate) fn last_miss_entry(&self) -> u64 {
        self.miss_entry
    }

    /// Counts a pending operation's completion after `waited`.
    fn completed(&self, waited: std::time::Duration) {
        self.slot.counters.completed(waited);
    }

    /// A read served by the read cache (out of line).
    #[cold]
    #[inline(never)]
    fn read_cached(&self, address: Address) -> Result<V> {
        self.count(Count::ReadsFound);
        self.count(Count::ReadsFromCache);
        Ok(V::decode(self.cached_value(address))?)
    }

    #[inline]
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Walks the chain from `from` for `key`'s newest record in memory.
    #[inline]
    fn locate<Q: KeyArg<K> + ?Sized>(&self, key: &Q, from: Address) -> Location {
        let log = &self.store.log;
        let head = log.head_address();
        let mut address = from;
        while address.is_valid() && address >= head {
            // SAFETY: protected, and `address >= head` observed after protecting.
            let record = unsafe { self.record(address) };
            let info = record.info();
            let (key_len, _) = record.lengths();
            if !info.is_invalid() && key.key_arg_matches(record.key_bytes(key_len)) {
                return Location::Memory(address);
            }
            address = info.previous();
        }
        if !address.is_valid() {
            Location::Absent
        } else if address >= log.begin_address() {
            Location::Disk(address)
        } else {
            Location::BelowBegin
        }
    }

    /// Appends a record and publishes it with a CAS of `slot` from the entry
    /// it held. Returns whether the CAS won.
    fn append<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        slot: &EntrySlot<'_>,
        hash: u64,
        key: &Q,
        value: Option<&W>,
        tombstone: bool,
    ) -> Result<bool> {
        let format = self.format();
        let (key_len, value_len) = format.checked_lengths(key, value)?;
        let previous = self.log_start(slot.entry.address());
        let size = format.record_size(key_len, value_len) as u64;
        let address = self.store.log.allocate(size, &self.handle)?;
        // SAFETY: just allocated by this session, which is protected.
        let record = unsafe { self.record(address) };
        let info = RecordInfo::new(previous, self.version_bits, tombstone);
        // An encoder that broke its word leaves the record invalid (its
        // header says so: recovery and the chain walks skip it) and the
        // operation fails; nothing was published.
        record.initialize(info, key, key_len, value, value_len)?;
        if self.store.cpr.load().0 != self.version {
            // A checkpoint moved the version on: `allocate` may have
            // refreshed while a page turned, or `previous` may be a record
            // of the new version (`cpr` invariant 3). Either way this
            // record's version is stale: abandon it and run the operation
            // at the new version (which it has not written anything at).
            record.set_info_bits(RecordInfo::INVALID_BIT);
            self.pivot();
            return Ok(false);
        }
        let new_entry = HashBucketEntry::new(address, HashBucketEntry::tag_of(hash), false);
        let won = slot
            .slot
            .compare_exchange(
                slot.entry.raw(),
                new_entry.raw(),
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .is_ok();
        if !won {
            record.set_info_bits(RecordInfo::INVALID_BIT);
        }
        Ok(won)
    }

    /// Whether a record carrying version bits `bits` (not this session's)
    /// was written at a newer version. Only possible while the store's
    /// version is ahead of the session's; otherwise the record is simply
    /// old (however far back on the version ring).
    #[cold]
    fn is_newer_than_me(&self, bits: u32) -> bool {
        is_newer(bits, self.version) && self.store.cpr.load().0 != self.version
    }

    /// Reads `key`.
    #[inline(always)]
    pub fn read<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<ReadStatus<V>> {
        let serial = self.next_serial();
        self.begin();
        let result = self.read_inner(key, key.key_arg_hash(), serial);
        self.end();
        result
    }

    /// A read of `key` (whose hash is `hash`) as operation `serial`, in a
    /// protected session.
    #[inline(always)]
    fn read_inner<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        hash: u64,
        serial: u64,
    ) -> Result<ReadStatus<V>> {
        // No poisoning check: a poisoned store (a failed write, a full
        // disk) still answers reads. What it holds in memory is intact, and
        // so is what reached the device before the failure.
        loop {
            let Some(slot) = self.store.index.find_entry(hash) else {
                self.missed(0);
                return Ok(ReadStatus::NotFound);
            };
            let location = match self.locate_read(key, slot.entry.address()) {
                Ok(location) => location,
                // A small return from the cold call (as for `park_read`
                // below) keeps the inlined read's result built in place.
                Err(cached) => {
                    return match self.read_cached(cached) {
                        Ok(value) => Ok(ReadStatus::Found(value)),
                        Err(e) => Err(e),
                    };
                }
            };
            match location {
                Location::Memory(address) => {
                    // SAFETY: `locate` found it at or above head while protected.
                    let record = unsafe { self.record(address) };
                    if record.info().is_tombstone() {
                        self.missed(slot.entry.raw());
                        return Ok(ReadStatus::NotFound);
                    }
                    self.count(Count::ReadsFound);
                    let (key_len, value_len) = record.lengths();
                    let value = if self.format().atomic_value() {
                        V::decode(&record.load_atomic_value(key_len).to_ne_bytes())?
                    } else {
                        V::decode(record.copy_value(key_len, value_len, &mut self.scratch))?
                    };
                    return Ok(ReadStatus::Found(value));
                }
                // Small returns from the cold calls keep the inlined
                // read's result built in place (a `Result` from a cold
                // call cost ~10 instructions per read to move).
                Location::Disk(address) => {
                    return match self.park_read(key, hash, serial, address, slot.entry.raw()) {
                        Some(status) => Ok(status),
                        None => Err(self.too_many_pending()),
                    };
                }
                Location::Absent => {
                    self.missed(slot.entry.raw());
                    return Ok(ReadStatus::NotFound);
                }
                // Compaction may have copied the key's record to the tail
                // and moved the begin address past the original meanwhile:
                // then the read runs again from the index.
                Location::BelowBegin if self.entry_moved(hash, slot.entry.raw()) => {
                    self.count(Count::Retries);
                    self.refresh_in_op();
                }
                Location::BelowBegin => {
                    self.missed(slot.entry.raw());
                    return Ok(ReadStatus::NotFound);
                }
            }
        }
    }

    /// Whether the index entry of `hash` is no longer `entry` (raw). A
    /// chain walk that ended below the begin address is a true "not found"
    /// only if it is not: compaction publishes the copies of the records
    /// it keeps (changing their entries) before it moves the begin
    /// address, and a reader that observed the moved begin address
    /// observes those changes too.
    #[cold]
    fn entry_moved(&self, hash: u64, entry: u64) -> bool {
        self.store.index.find_entry(hash).map(|slot| slot.entry.raw()) != Some(entry)
    }

    /// Queues a read whose record is on the device (kept out of the
    /// inlined read).
    #[cold]
    #[inline(never)]
    fn park_read<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        hash: u64,
        serial: u64,
        address: Address,
        entry: u64,
    ) -> Option<ReadStatus<V>> {
        if self.check_pending_room().is_err() {
            return None;
        }
        self.pending.push_back(PendingOp {
            serial,
            hash,
            key: key.key_arg_to_aligned_bytes(),
            address,
            kind: PendingKind::Read { entry },
            parked_at: std::time::Instant::now(),
        });
        self.count(Count::ReadsPending);
        Some(ReadStatus::Pending { serial })
    }

    /// Refuses to park one more operation past the session's bound.
    fn check_pending_room(&self) -> Result<()> {
        if self.pending.len() + self.ready.len() >= self.store.config.max_pending {
            return Err(self.too_many_pending());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_many_pending(&self) -> crate::Error {
        crate::Error::TooManyPending { limit: self.store.config.max_pending }
    }

    /// Reads `key`, doing any device I/O right away; other pending
    /// operations stay queued. Reads of `key` parked earlier in this
    /// session finish with this one (their results come from the next
    /// `complete_pending`), so a caller that retries a `Pending` read this
    /// way leaves nothing behind.
    pub fn read_blocking<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<Option<V>> {
        if !self.pending.iter().any(|op| matches!(op.kind, PendingKind::Read { .. })) {
            let decoded = self.read_with_inner(key, |bytes| bytes.map(V::decode).transpose())?;
            return Ok(decoded?);
        }
        let key_bytes = key.key_arg_to_aligned_bytes();
        let same_key = |op: &PendingOp<V>| {
            matches!(op.kind, PendingKind::Read { .. }) && op.key.as_slice() == key_bytes.as_slice()
        };
        let parked: Vec<u64> =
            self.pending.iter().filter(|op| same_key(op)).map(|op| op.serial).collect();
        let (value, parked) = self.read_with_inner(key, |bytes| {
            let decode = || bytes.map(V::decode).transpose();
            let parked: Vec<_> = parked.iter().map(|&serial| (serial, decode())).collect();
            (decode(), parked)
        })?;
        for (serial, result) in parked {
            let op = match result {
                Ok(value) => CompletedOp::Read(value),
                Err(e) => CompletedOp::Failed(OpError(std::sync::Arc::new(e.into()))),
            };
            self.ready.push(Completed { serial, op });
        }
        self.pending.retain(|op| !same_key(op));
        Ok(value?)
    }

    /// Reads `key` and calls `f` with a zero-copy view of its value (or
    /// `None`), doing any device I/O right away. Records in the immutable
    /// region are viewed where they lie; mutable records (which other
    /// sessions may update in place) are first copied consistently.
    pub fn read_with<Q: KeyArg<K> + ?Sized, R>(
        &mut self,
        key: &Q,
        f: impl FnOnce(Option<V::View<'_>>) -> R,
    ) -> Result<R> {
        let viewed = self.read_with_inner(key, |bytes| match bytes {
            None => Ok(f(None)),
            Some(bytes) => V::view(bytes).map(|view| f(Some(view))),
        })?;
        Ok(viewed?)
    }

    fn read_with_inner<Q: KeyArg<K> + ?Sized, R>(
        &mut self,
        key: &Q,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        self.next_serial();
        self.begin();
        let result =
            self.read_with_protected(key, key.key_arg_hash(), None, |status| f(found(status)));
        self.end();
        result
    }

    /// Reads `key` (whose hash is `hash`) in a protected session and calls
    /// `f` with the value's bytes where they can be viewed: in place when
    /// immutable, else copied consistently to the session's scratch.
    /// A record on the device is read right away, or with `park =
    /// Some(serial)` parked as a pending read (`f` then gets `Pending`).
    fn read_with_protected<Q: KeyArg<K> + ?Sized, R>(
        &mut self,
        key: &Q,
        hash: u64,
        park: Option<u64>,
        f: impl FnOnce(ReadStatus<&[u8]>) -> R,
    ) -> Result<R> {
        // No poisoning check, as for `read_inner`.
        loop {
            let Some(slot) = self.store.index.find_entry(hash) else {
                self.missed(0);
                return Ok(f(ReadStatus::NotFound));
            };
            let entry = slot.entry.raw();
            let location = match self.locate_read(key, slot.entry.address()) {
                Ok(location) => location,
                Err(cached) => {
                    self.count(Count::ReadsFound);
                    self.count(Count::ReadsFromCache);
                    return Ok(f(ReadStatus::Found(self.cached_value(cached))));
                }
            };
            match location {
                Location::Memory(address) => {
                    // SAFETY: `locate` found it at or above head while protected.
                    let record = unsafe { self.record(address) };
                    if record.info().is_tombstone() {
                        self.missed(entry);
                        return Ok(f(ReadStatus::NotFound));
                    }
                    self.count(Count::ReadsFound);
                    let (key_len, value_len) = record.lengths();
                    if address < self.store.log.safe_read_only_address() {
                        // Immutable: view it where it lies.
                        let bytes = record.value_bytes_immutable(key_len, value_len);
                        return Ok(f(ReadStatus::Found(bytes)));
                    }
                    let bytes = record.copy_value(key_len, value_len, &mut self.scratch);
                    return Ok(f(ReadStatus::Found(bytes)));
                }
                Location::Disk(address) => {
                    if let Some(serial) = park {
                        if self.park_read(key, hash, serial, address, entry).is_none() {
                            return Err(self.too_many_pending());
                        }
                        return Ok(f(ReadStatus::Pending { serial }));
                    }
                    self.handle.suspend();
                    let key_bytes = key.key_arg_to_aligned_bytes();
                    // A device read in line: counted as a pending read
                    // completed at once.
                    self.count(Count::ReadsPending);
                    let started = std::time::Instant::now();
                    let found = self.disk().find(&key_bytes, address);
                    self.completed(started.elapsed());
                    match found? {
                        Some(record) if !record.info.is_tombstone() => {
                            if self.store.read_cache.is_some() {
                                self.refresh_in_op();
                                self.cache_read(hash, &key_bytes, entry, &record);
                            }
                            return Ok(f(ReadStatus::Found(&record.value)));
                        }
                        Some(_) => {
                            self.miss_entry = entry;
                            return Ok(f(ReadStatus::NotFound));
                        }
                        None if self.entry_moved(hash, entry) => self.refresh_in_op(),
                        None => {
                            self.miss_entry = entry;
                            return Ok(f(ReadStatus::NotFound));
                        }
                    }
                }
                Location::Absent => {
                    self.missed(entry);
                    return Ok(f(ReadStatus::NotFound));
                }
                Location::BelowBegin if self.entry_moved(hash, entry) => self.refresh_in_op(),
                Location::BelowBegin => {
                    self.missed(entry);
                    return Ok(f(ReadStatus::NotFound));
                }
            }
        }
    }

    /// Whether `key`'s newest value is in the read cache (see
    /// [`StoreBuilder::read_cache_bytes`](crate::StoreBuilder::read_cache_bytes)):
    /// read from memory even though its record left the log's memory.
    pub fn is_cached<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> bool {
        self.begin();
        let hash = key.key_arg_hash();
        let cached = self.store.index.find_entry(hash).is_some_and(|slot| {
            let start = slot.entry.address();
            readcache::is_cached(start) && self.locate_read(key, start).is_err()
        });
        self.end();
        cached
    }

    /// Inserts or replaces `key`'s value.
    // `read`, `upsert` and `rmw` are inlined into the caller's loop (their
    // full protocols and parked I/O stay out of line). Called out of line,
    // an upsert-only loop ran at 5.6 Mops/s instead of 7.3 (1 M keys, one
    // thread, in memory), and the 50:50 mix lost 10%.
    #[inline(always)]
    pub fn upsert<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        key: &Q,
        value: &W,
    ) -> Result<()> {
        self.next_serial();
        self.begin();
        self.upsert_begun(key, key.key_arg_hash(), value)
    }

    /// An upsert of `key` (whose hash is `hash`) in a protected session,
    /// to the operation's end.
    #[inline(always)]
    fn upsert_begun<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        key: &Q,
        hash: u64,
        value: &W,
    ) -> Result<()> {
        let fast = self.try_upsert_in_place(key, hash, value);
        if fast == FastPath::Done {
            self.count(Count::UpsertsInPlace);
            self.end_write();
            return Ok(());
        }
        let result = self.upsert_inner(key, hash, value, fast == FastPath::NoEntry);
        self.end_write();
        result
    }

    /// The front of the in-place fast paths: `key`'s newest record with its
    /// key and value lengths, if it is in the mutable region, at this
    /// session's version and live; otherwise what the caller returns
    /// (`NoEntry` when the index has no entry for the tag). A chain whose
    /// head is below the read-only address has no mutable record, so it is
    /// not walked.
    #[inline(always)]
    fn live_mutable_record<Q: KeyArg<K> + ?Sized>(
        &self,
        key: &Q,
        hash: u64,
    ) -> std::result::Result<(RecordPtr<K, V>, usize, usize), FastPath> {
        if self.store.log.check_poisoned().is_err() {
            return Err(FastPath::Fallback);
        }
        let Some(slot) = self.store.index.find_entry(hash) else {
            return Err(FastPath::NoEntry);
        };
        let start = self.log_start(slot.entry.address());
        if !start.is_valid() || start < self.store.log.read_only_address() {
            return Err(FastPath::Fallback);
        }
        let Location::Memory(address) = self.locate(key, start) else {
            return Err(FastPath::Fallback);
        };
        // SAFETY: found at or above head while protected.
        let record = unsafe { self.record(address) };
        let info = record.info();
        if info.version() != self.version_bits
            || info.is_tombstone()
            || info.is_sealed()
            || address < self.store.log.read_only_address()
        {
            return Err(FastPath::Fallback);
        }
        let (key_len, value_len) = record.lengths();
        Ok((record, key_len, value_len))
    }

    /// The index entry of `hash` for a full protocol's attempt: created
    /// without a second lookup on the first attempt after a fast path
    /// found no entry (`no_entry`, cleared here), looked up otherwise.
    #[inline(always)]
    fn entry_for_attempt(&self, hash: u64, no_entry: &mut bool) -> EntrySlot<'static> {
        if std::mem::take(no_entry) {
            self.store.index.create_entry(hash)
        } else {
            self.store.index.find_or_create_entry(hash)
        }
    }

    /// The common case of an upsert, inlined: the key's newest record is
    /// mutable, at this session's version, live and of the same length, so
    /// the value is replaced in place. Anything else returns `NoEntry` or
    /// `Fallback` having written nothing, and `upsert_inner`'s full
    /// protocol runs (its first branch is this same case).
    #[inline(always)]
    fn try_upsert_in_place<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        key: &Q,
        hash: u64,
        value: &W,
    ) -> FastPath {
        let (record, key_len, stored_len) = match self.live_mutable_record(key, hash) {
            Ok(found) => found,
            Err(fast) => return fast,
        };
        if stored_len != value.value_arg_size() {
            return FastPath::Fallback;
        }
        if self.format().atomic_value() {
            let mut word = 0u64;
            if value.encode_value_arg_into(bytemuck::bytes_of_mut(&mut word)).is_err() {
                return FastPath::Fallback;
            }
            record.store_atomic_value(key_len, word);
            return FastPath::Done;
        }
        if record.update_value(key_len, stored_len, &mut self.scratch, |bytes| {
            value.encode_value_arg_into(bytes).is_ok()
        }) {
            FastPath::Done
        } else {
            FastPath::Fallback
        }
    }

    /// The upsert protocol. `no_entry`: the caller's lookup of `hash` just
    /// found no index entry.
    #[inline(never)]
    fn upsert_inner<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        key: &Q,
        hash: u64,
        value: &W,
        no_entry: bool,
    ) -> Result<()> {
        self.store.log.check_poisoned()?;
        let value_len = value.value_arg_size();
        let mut no_entry = no_entry;
        loop {
            let slot = self.entry_for_attempt(hash, &mut no_entry);
            let start = self.log_start(slot.entry.address());
            let read_only = self.store.log.read_only_address();
            if start.is_valid()
                && start >= read_only
                && let Location::Memory(address) = self.locate(key, start)
                && address >= self.store.log.read_only_address()
            {
                // SAFETY: found at or above head while protected.
                let record = unsafe { self.record(address) };
                let (key_len, stored_len) = record.lengths();
                let info = record.info();
                if info.version() != self.version_bits {
                    // Never in place across versions (`cpr` invariants 1, 3).
                    if self.is_newer_than_me(info.version()) {
                        self.pivot();
                        self.count(Count::Retries);
                        continue;
                    }
                } else if !info.is_tombstone()
                    && stored_len == value_len
                    && record.update_value(key_len, stored_len, &mut self.scratch, |bytes| {
                        value.encode_value_arg_into(bytes).is_ok()
                    })
                {
                    self.count(Count::UpsertsInPlace);
                    return Ok(());
                }
            }
            if self.append(&slot, hash, key, Some(value), false)? {
                self.count(Count::UpsertsAppended);
                return Ok(());
            }
            self.count(Count::Retries);
        }
    }

    /// Deletes `key` (a tombstone: reads then find nothing).
    pub fn delete<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<()> {
        self.next_serial();
        self.count(Count::Deletes);
        self.begin();
        let result = self.delete_inner(key);
        self.end_write();
        result
    }

    fn delete_inner<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<()> {
        self.store.log.check_poisoned()?;
        let hash = key.key_arg_hash();
        loop {
            let Some(slot) = self.store.index.find_entry(hash) else {
                return Ok(());
            };
            let start = self.log_start(slot.entry.address());
            if start >= self.store.log.read_only_address()
                && let Location::Memory(address) = self.locate(key, start)
                && address >= self.store.log.read_only_address()
            {
                // SAFETY: found at or above head while protected.
                let record = unsafe { self.record(address) };
                let version = record.info().version();
                if version != self.version_bits {
                    if self.is_newer_than_me(version) {
                        self.pivot();
                        continue;
                    }
                } else if record.tombstone_in_place() {
                    return Ok(());
                }
            }
            if self.append(&slot, hash, key, None::<&V>, true)? {
                return Ok(());
            }
        }
    }

    /// Read-modify-write: merges `input` into `key`'s value with
    /// `V::Merge`, or stores `Merge::initial(input)` if the key has none.
    #[inline(always)]
    pub fn rmw<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q, input: &V) -> Result<RmwStatus>
    where
        V: Merge + Clone,
    {
        let serial = self.next_serial();
        self.begin();
        self.rmw_begun(key, key.key_arg_hash(), input, serial)
    }

    /// An RMW of `key` (whose hash is `hash`) as operation `serial`, in a
    /// protected session, to the operation's end.
    #[inline(always)]
    fn rmw_begun<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        hash: u64,
        input: &V,
        serial: u64,
    ) -> Result<RmwStatus>
    where
        V: Merge + Clone,
    {
        let update = MergeUpdate(input);
        let fast = self.try_rmw_in_place(key, hash, &update);
        if fast == FastPath::Done {
            self.count(Count::RmwsInPlace);
            self.end_write();
            return Ok(RmwStatus::Done);
        }
        let result = self.rmw_core(key, hash, &update, serial, fast == FastPath::NoEntry);
        self.end_write();
        result
    }

    /// The common case of an RMW, inlined: the key's newest record is
    /// mutable, at this session's version and live, and the merge fits in
    /// place. Anything else returns `NoEntry` or `Fallback` having written
    /// nothing, and `rmw_core`'s full protocol runs (its first in-place
    /// branch is this same case).
    #[inline(always)]
    fn try_rmw_in_place<Q: KeyArg<K> + ?Sized, U: RmwUpdate<V>>(
        &mut self,
        key: &Q,
        hash: u64,
        update: &U,
    ) -> FastPath {
        let (record, key_len, value_len) = match self.live_mutable_record(key, hash) {
            Ok(found) => found,
            Err(fast) => return fast,
        };
        if self.format().atomic_value() && update.in_place_atomic(record.atomic_value(key_len)) {
            return FastPath::Done;
        }
        if record
            .update_value(key_len, value_len, &mut self.scratch, |bytes| update.in_place(bytes))
        {
            FastPath::Done
        } else {
            FastPath::Fallback
        }
    }

    /// Read-modify-write with a closure: `update` gets the current value
    /// (`None` if the key has none) and returns the new one. Unlike `rmw`,
    /// a value on the device is read right away (the closure is not parked),
    /// so this never returns `Pending`. The closure may run more than once
    /// when other sessions race on the same key; only one result is stored.
    pub fn rmw_with<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        update: impl Fn(Option<V>) -> V,
    ) -> Result<()> {
        let serial = self.next_serial();
        self.begin();
        let result = self.rmw_core(key, key.key_arg_hash(), &ClosureUpdate(update), serial, false);
        self.end_write();
        result.map(|_| ())
    }

    /// The whole RMW protocol with the derived merge.
    fn rmw_inner<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        input: &V,
        serial: u64,
    ) -> Result<RmwStatus>
    where
        V: Merge + Clone,
    {
        self.rmw_core(key, key.key_arg_hash(), &MergeUpdate(input), serial, false)
    }

    /// The RMW protocol, for any way of computing the new value.
    /// `no_entry`: the caller's lookup of `hash` just found no index entry.
    #[inline(never)]
    fn rmw_core<Q: KeyArg<K> + ?Sized, U: RmwUpdate<V>>(
        &mut self,
        key: &Q,
        hash: u64,
        update: &U,
        serial: u64,
        no_entry: bool,
    ) -> Result<RmwStatus> {
        self.store.log.check_poisoned()?;
        let mut no_entry = no_entry;
        // The sealed one-word record this operation waited on (see below).
        let mut drained = None;
        loop {
            let slot = self.entry_for_attempt(hash, &mut no_entry);
            let start = self.log_start(slot.entry.address());
            let location =
                if start.is_valid() { self.locate(key, start) } else { Location::Absent };
            let (new_value, initial_or_copy) = match location {
                Location::Memory(address) => {
                    let log = &self.store.log;
                    // SAFETY: found at or above head while protected.
                    let record = unsafe { self.record(address) };
                    let (key_len, value_len) = record.lengths();
                    let info = record.info();
                    let tombstone = info.is_tombstone();
                    let Some(current) = self.current_or_retry(info) else { continue };
                    if current && address >= log.read_only_address() {
                        if !tombstone
                            && record.update_value(key_len, value_len, &mut self.scratch, |bytes| {
                                update.in_place(bytes)
                            })
                        {
                            self.count(Count::RmwsInPlace);
                            return Ok(RmwStatus::Done);
                        }
                        if self.format().atomic_value()
                            && record.info().is_sealed()
                            && drained != Some(address)
                        {
                            // A conditional delete sealed this one-word
                            // record: its value is frozen once the sessions
                            // that wrote it in place have finished.
                            self.wait_for_drain();
                            drained = Some(address);
                            continue;
                        }
                        // A variable-length value that must change size (or
                        // a sealed or deleted record): seal it and copy, so
                        // that no in-place update is lost in between.
                        let (tombstone, bytes) =
                            record.seal_and_copy(key_len, value_len, &mut self.scratch);
                        let new_value =
                            if tombstone { update.initial() } else { update.copy_update(bytes)? };
                        if self.append(&slot, hash, key, Some(&new_value), false)? {
                            self.count(if tombstone {
                                Count::RmwsInitial
                            } else {
                                Count::RmwsCopyUpdate
                            });
                            return Ok(RmwStatus::Done);
                        }
                        self.count(Count::Retries);
                        continue;
                    } else if current && address >= log.safe_read_only_address() {
                        // The fuzzy region: a session that saw the old
                        // read-only address may still update this record in
                        // place. Let it finish (giving way: on a busy
                        // machine it may need this core), then retry.
                        self.refresh_in_op();
                        crate::sync::yield_now();
                        continue;
                    }
                    if tombstone {
                        (update.initial(), Count::RmwsInitial)
                    } else {
                        let bytes = record.copy_value(key_len, value_len, &mut self.scratch);
                        (update.copy_update(bytes)?, Count::RmwsCopyUpdate)
                    }
                }
                Location::Disk(address) => match update.park() {
                    Some(input) => {
                        self.check_pending_room()?;
                        self.slot.parked(serial);
                        self.pending.push_back(PendingOp {
                            serial,
                            hash,
                            key: key.key_arg_to_aligned_bytes(),
                            address,
                            kind: PendingKind::Rmw { input, expected_entry: slot.entry.raw() },
                            parked_at: std::time::Instant::now(),
                        });
                        self.count(Count::RmwsPending);
                        return Ok(RmwStatus::Pending { serial });
                    }
                    None => {
                        // Read the old value now, unprotected while waiting.
                        let expected_entry = slot.entry.raw();
                        self.handle.suspend();
                        let found = self.disk().find(&key.key_arg_to_aligned_bytes(), address);
                        self.refresh_in_op();
                        let old = found?.filter(|r| !r.info.is_tombstone());
                        let count =
                            if old.is_some() { Count::RmwsCopyUpdate } else { Count::RmwsInitial };
                        let new_value = match old {
                            Some(record) => update.copy_update(&record.value)?,
                            None => update.initial(),
                        };
                        let slot = self.store.index.find_or_create_entry(hash);
                        if slot.entry.raw() == expected_entry
                            && self.append(&slot, hash, key, Some(&new_value), false)?
                        {
                            self.count(count);
                            return Ok(RmwStatus::Done);
                        }
                        self.count(Count::Retries);
                        continue;
                    }
                },
                // Below the begin address: the key has no record, or
                // compaction just moved it to the tail, which changed the
                // entry: then the CAS from `slot` below fails and the RMW
                // runs again.
                Location::Absent | Location::BelowBegin => (update.initial(), Count::RmwsInitial),
            };
            if self.append(&slot, hash, key, Some(&new_value), false)? {
                self.count(initial_or_copy);
                return Ok(RmwStatus::Done);
            }
            self.count(Count::Retries);
        }
    }
}

impl<K: Key, V: Value, D: Device> Drop for Session<K, V, D> {
    fn drop(&mut self) {
        // Parked operations that were never completed stay excluded from
        // the commit points of a checkpoint in flight; with no checkpoint
        // in flight the session is forgotten at once (a store that opens a
        // session per request stays flat), else by that checkpoint.
        self.slot.close();
        if self.store.cpr.load().1 == cpr::REST {
            self.store.sessions.forget(&[self.slot.id]);
        }
        self.store.open_sessions.fetch_sub(1, Ordering::AcqRel);
    }
}
