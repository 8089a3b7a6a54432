//! The hybrid log: a ring of in-memory page frames over a device.
//!
//! Addresses are byte positions in the log (`page << page_bits | offset`);
//! the device offset of an address is the address itself. The regions are
//!
//! ```text
//! begin <= head <= safe_read_only <= read_only <= tail
//!   [begin, head)             on the device only
//!   [head, safe_read_only)    in memory, immutable: read in place
//!   [safe_read_only, read_only) the fuzzy region: some threads may still
//!                             update in place (they saw the old read_only)
//!   [read_only, tail)         mutable: updated in place
//! ```
//!
//! ## Protocols and their invariants
//!
//! - **Tail allocation** is a `fetch_add` on a packed `page:offset` word
//!   (page in the high 32 bits). The one thread whose allocation crosses the
//!   page end (old offset <= page size < new end) turns the page; others
//!   whose allocation starts past the end wait (refreshing their epoch) for
//!   the page to change and retry. So exactly one thread turns each page, and
//!   no record spans two pages.
//! - **Read-only shift**: `read_only` moves forward, then an epoch action
//!   (run once every thread has refreshed, so nobody can still be updating in
//!   place below it) publishes `safe_read_only` and writes the newly
//!   immutable pages to the device, in order, advancing `flushed_until`.
//! - **Head shift** (only up to `flushed_until`): `head` moves forward, then
//!   an epoch action (run once nobody can still be reading those frames)
//!   publishes `closed_until`. A frame is reused for page `p` only when
//!   `closed_until` has passed the page that last used it (`p - frames`).
//!
//! Every access to frame memory happens under epoch protection, after a
//! check against `head`, which is what makes the raw frame pointers sound.

use crate::sync::{AtomicBool, AtomicU64, CachePadded, Ordering};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::address::{Address, AtomicAddress};
use crate::device::Device;
use crate::epoch::EpochHandle;
use crate::mem::LargeBuffer;
use crate::{Error, Result};

/// The longest an allocation waits while the log is throttled (see
/// [`HybridLog::throttle_at`]): a safety valve, so that a writer is
/// never stopped for good if compaction cannot make room.
pub const MAX_THROTTLE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

std::thread_local! {
    /// Set on threads whose appends make room (compaction): they are never
    /// throttled.
    static UNTHROTTLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread exempt from the log's throttle (see
/// [`HybridLog::set_throttled`]).
pub fn unthrottled<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            UNTHROTTLED.with(|u| u.set(self.0));
        }
    }
    let _reset = Reset(UNTHROTTLED.with(|u| u.replace(true)));
    f()
}

pub mod seal;

/// The first address of the log: the start of page 0 is reserved, so that
/// address 0 means "no record".
pub const FIRST_ADDRESS: u64 = 64;
/// Frames are aligned for direct I/O.
const FRAME_ALIGN: usize = 4096;
/// The smallest and largest page sizes.
pub const MIN_PAGE_BITS: u32 = 9;
/// The largest page size: offsets must fit the low 32 bits of the tail word.
pub const MAX_PAGE_BITS: u32 = 30;

/// The geometry of a hybrid log.
#[derive(Debug, Clone, Copy)]
pub struct LogGeometry {
    /// log2 of the page size in bytes.
    pub page_bits: u32,
    /// The number of page frames in memory: a power of two, so that a
    /// page's frame is a mask of its number, not a division.
    pub frames: u64,
    /// How many of the newest pages stay mutable.
    pub mutable_pages: u64,
    /// Whether every page ends in a seal (its checksum, see [`seal`]); the
    /// store's log is sealed, FasterLog's entries carry their own.
    pub sealed: bool,
}

impl LogGeometry {
    /// Checks the geometry.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_PAGE_BITS..=MAX_PAGE_BITS).contains(&self.page_bits) {
            return Err(Error::InvalidConfig {
                what: "page_size_bits",
                why: format!("{} is outside {MIN_PAGE_BITS}..={MAX_PAGE_BITS}", self.page_bits),
            });
        }
        if self.frames < 4 || !self.frames.is_power_of_two() {
            return Err(Error::InvalidConfig {
                what: "log_memory_size_bytes",
                why: format!("holds {} pages; a power of two, at least 4, is needed", self.frames),
            });
        }
        // The frames' bytes and the ring mask must be representable (and
        // addressable: the ring lives in one allocation, and addresses are
        // 48 bits).
        let bytes = self.frames.checked_shl(self.page_bits).filter(|b| {
            b >> self.page_bits == self.frames && *b <= 1 << 47 && usize::try_from(*b).is_ok()
        });
        if bytes.is_none() {
            return Err(Error::InvalidConfig {
                what: "log_memory_size_bytes",
                why: format!(
                    "{} pages of 2^{} bytes do not fit in this machine's address space",
                    self.frames, self.page_bits
                ),
            });
        }
        if self.mutable_pages == 0 || self.mutable_pages > self.frames - 2 {
            return Err(Error::InvalidConfig {
                what: "mutable_fraction",
                why: format!(
                    "gives {} mutable pages of {}; it must give 1..={}",
                    self.mutable_pages,
                    self.frames,
                    self.frames - 2
                ),
            });
        }
        Ok(())
    }
}

/// The shared state of the log, reachable from epoch actions.
struct Shared<D> {
    geometry: LogGeometry,
    page_size: u64,
    /// The bytes of a page that records may use: the page less its seal.
    body: u64,
    /// `frames * page_size - 1`: masking an address with it gives the
    /// record's offset in the frames (page `p` lives in frame
    /// `p mod frames`, and both counts are powers of two).
    ring_mask: u64,
    base: NonNull<u8>,
    /// Owns the frames that `base` points into.
    _frames: LargeBuffer,
    device: D,
    begin: AtomicAddress,
    head: AtomicAddress,
    closed_until: AtomicAddress,
    safe_read_only: AtomicAddress,
    read_only: AtomicAddress,
    flushed_until: AtomicAddress,
    /// `page << 32 | offset`; the offset may pass the page size while a page
    /// turns. On its own cache lines: every append writes it, and readers
    /// load the region addresses beside it on every operation.
    tail: CachePadded<AtomicU64>,
    /// Serialises flushes so that pages reach the device in order; holds
    /// the block buffer for a flush that ends inside a block.
    flush_lock: Mutex<FlushBlock>,
    /// With a flush thread: the thread, and the highest target handed to it.
    flusher: std::sync::OnceLock<std::thread::Thread>,
    /// For each page read back from the device, how many of its bytes
    /// have been checked against its seal (see `LogReader::verify`).
    verified: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    flush_target: AtomicU64,
    /// Set when a device write failed: the log refuses further work.
    poisoned: AtomicBool,
    /// The tail address at which appends pause (`u64::MAX`: never), set
    /// while the store nears its disk budget (see
    /// [`HybridLog::throttle_at`]).
    throttle_at: AtomicU64,
    /// Set while a disk budget's round runs (see
    /// [`HybridLog::set_making_room`]).
    making_room: AtomicBool,
    error: Mutex<Option<(String, Option<std::io::ErrorKind>)>>,
}

// SAFETY: the frame memory behind `base` is only accessed through the
// protocols in the module documentation (epoch-protected, region-checked);
// everything else is atomics, locks and the `Device` (Send + Sync).
unsafe impl<D: Device> Send for Shared<D> {}
// SAFETY: as above.
unsafe impl<D: Device> Sync for Shared<D> {}

/// The hybrid log over a device `D`.
pub struct HybridLog<D> {
    shared: Arc<Shared<D>>,
}

impl<D> std::fmt::Debug for HybridLog<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.shared;
        f.debug_struct("HybridLog")
            .field("begin", &s.begin.load(Ordering::Relaxed))
            .field("head", &s.head.load(Ordering::Relaxed))
            .field("safe_read_only", &s.safe_read_only.load(Ordering::Relaxed))
            .field("read_only", &s.read_only.load(Ordering::Relaxed))
            .field("tail", &s.tail.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[inline(always)]
fn split(word: u64) -> (u64, u64) {
    (word >> 32, word & 0xffff_ffff)
}

impl<D: Device> HybridLog<D> {
    /// A new, empty log.
    pub fn new(geometry: LogGeometry, device: D) -> Result<Self> {
        Self::with_regions(
            geometry,
            device,
            FIRST_ADDRESS,
            FIRST_ADDRESS,
            FIRST_ADDRESS,
            FIRST_ADDRESS,
        )
    }

    /// A log whose records below `tail` are on the device (a recovered
    /// log): nothing is in memory, and appends start at `tail`, which must
    /// be a page boundary (or `FIRST_ADDRESS`).
    pub fn recovered(geometry: LogGeometry, device: D, begin: u64, tail: u64) -> Result<Self> {
        let page_size = 1u64 << geometry.page_bits;
        if tail != FIRST_ADDRESS && !tail.is_multiple_of(page_size) || begin > tail {
            return Err(Error::Corruption {
                address: tail,
                what: format!("a recovered log cannot start at {tail:#x} (begin {begin:#x})"),
            });
        }
        Self::with_regions(geometry, device, begin, tail, tail, tail)
    }

    /// A recovered log that resumes appending at `tail`, which may fall
    /// inside a page: the bytes `[head, tail)` of that page (`head` is the
    /// page's start, or [`FIRST_ADDRESS`] on page 0) are already on the
    /// device and are immutable; the caller copies them into memory with
    /// [`Self::load`] before sharing the log, so that reads find them. The
    /// next flush writes from `tail` on, so the bytes before it are never
    /// rewritten.
    pub fn resumed(geometry: LogGeometry, device: D, begin: u64, tail: u64) -> Result<Self> {
        let page_start = tail >> geometry.page_bits << geometry.page_bits;
        let head = page_start.max(FIRST_ADDRESS);
        if tail < FIRST_ADDRESS || begin > tail {
            return Err(Error::Corruption {
                address: tail,
                what: format!("a log cannot resume at {tail:#x} (begin {begin:#x})"),
            });
        }
        Self::with_regions(geometry, device, begin.min(head), head, tail, tail)
    }

    /// A recovered log whose records in `[head, tail)` are in memory, not
    /// yet on the device: the caller fills those pages with [`Self::load`]
    /// before sharing the log. They start in the mutable region (read-only
    /// at `head`), so that the read-only address, and with it the flush,
    /// advance as the log grows, as for any page; their records are all of
    /// older versions, which the store never updates in place. `head` is a
    /// page boundary; the range must leave two frames free.
    pub fn recovered_in_memory(
        geometry: LogGeometry,
        device: D,
        begin: u64,
        head: u64,
        tail: u64,
    ) -> Result<Self> {
        let bits = geometry.page_bits;
        let pages = (tail.saturating_sub(1) >> bits).saturating_sub(head >> bits) + 1;
        if !head.is_multiple_of(1 << bits)
            || head > tail
            || begin > head
            || pages + 2 > geometry.frames
        {
            return Err(Error::Corruption {
                address: head,
                what: format!("cannot hold [{head:#x}, {tail:#x}) in {} frames", geometry.frames),
            });
        }
        Self::with_regions(geometry, device, begin, head, head, tail)
    }

    /// Copies `bytes` into the log's memory at `address`.
    ///
    /// # Safety
    ///
    /// Only while the log is being recovered and not yet shared (no other
    /// thread can read or write its frames), for a range of one page inside
    /// `[head, tail)` of [`Self::recovered_in_memory`] or [`Self::resumed`].
    pub unsafe fn load(&self, address: Address, bytes: &[u8]) {
        debug_assert!(
            address.offset(self.shared.geometry.page_bits) as usize + bytes.len()
                <= self.shared.page_size as usize
        );
        // SAFETY: per the contract, the range is inside one live frame and
        // nothing else accesses the frames yet.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.record_ptr(address), bytes.len())
        }
    }

    /// `[head, tail)` are in memory, `[head, immutable)` of them read-only
    /// and already on the device; everything from `tail` on is free.
    fn with_regions(
        geometry: LogGeometry,
        device: D,
        begin: u64,
        head: u64,
        immutable: u64,
        tail: u64,
    ) -> Result<Self> {
        geometry.validate()?;
        let page_size = 1u64 << geometry.page_bits;
        let bytes =
            usize::try_from(page_size.saturating_mul(geometry.frames)).map_err(|_| Error::InvalidConfig {
                what: "log_memory_size_bytes",
                why: "does not fit this machine's address space".into(),
            })?;
        let frames = LargeBuffer::zeroed(bytes, FRAME_ALIGN)?;
        // Flushes are rounded out to the device's write alignment when it
        // has one that divides the page and the frame alignment.
        let block = match device.write_alignment() {
            a if a > 1 && a.is_power_of_two() && a as u64 <= page_size && a <= FRAME_ALIGN => a,
            _ => 1,
        };
        let base = NonNull::new(frames.as_ptr()).ok_or(Error::OutOfMemory { bytes })?;
        let first = Address::new(head).ok_or(Error::LogFull)?;
        let immutable = Address::new(immutable).ok_or(Error::LogFull)?;
        let begin = Address::new(begin).unwrap_or(Address::INVALID);
        let page = tail >> geometry.page_bits;
        if page >= 1 << 32 {
            return Err(Error::LogFull);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                geometry,
                page_size,
                body: page_size - if geometry.sealed { seal::TRAILER } else { 0 },
                ring_mask: (geometry.frames << geometry.page_bits) - 1,
                base,
                _frames: frames,
                device,
                begin: AtomicAddress::new(begin),
                head: AtomicAddress::new(first),
                closed_until: AtomicAddress::new(first),
                safe_read_only: AtomicAddress::new(immutable),
                read_only: AtomicAddress::new(immutable),
                flushed_until: AtomicAddress::new(immutable),
                tail: CachePadded(AtomicU64::new(page << 32 | (tail & (page_size - 1)))),
                flush_lock: Mutex::new(FlushBlock::new(block)?),
                flusher: std::sync::OnceLock::new(),
                verified: std::sync::Mutex::new(std::collections::HashMap::new()),
                flush_target: AtomicU64::new(0),
                poisoned: AtomicBool::new(false),
                throttle_at: AtomicU64::new(u64::MAX),
                making_room: AtomicBool::new(false),
                error: Mutex::new(None),
            }),
        })
    }

    /// The page size in bytes.
    #[inline(always)]
    pub fn page_size(&self) -> u64 {
        self.shared.page_size
    }

    /// The bytes of a page that records may use (the page less its seal).
    #[inline(always)]
    pub fn page_body(&self) -> u64 {
        self.shared.body
    }

    /// The geometry.
    pub fn geometry(&self) -> LogGeometry {
        self.shared.geometry
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.shared.device
    }

    /// The begin address: records below it are gone.
    #[inline(always)]
    pub fn begin_address(&self) -> Address {
        self.shared.begin.load(Ordering::Acquire)
    }

    /// The head address: records below it are on the device only.
    #[inline(always)]
    pub fn head_address(&self) -> Address {
        self.shared.head.load(Ordering::Acquire)
    }

    /// The safe read-only address: records below it are immutable.
    #[inline(always)]
    pub fn safe_read_only_address(&self) -> Address {
        self.shared.safe_read_only.load(Ordering::Acquire)
    }

    /// The read-only address: records at or above it are updated in place.
    #[inline(always)]
    pub fn read_only_address(&self) -> Address {
        self.shared.read_only.load(Ordering::Acquire)
    }

    /// The address up to which pages are on the device.
    pub fn flushed_until_address(&self) -> Address {
        self.shared.flushed_until.load(Ordering::Acquire)
    }

    /// The tail address: the next record goes here (or on the next page).
    pub fn tail_address(&self) -> Address {
        let (page, offset) = split(self.shared.tail.load(Ordering::Acquire));
        let offset = offset.min(self.shared.page_size);
        Address::new((page << self.shared.geometry.page_bits) + offset).unwrap_or(Address::MAX)
    }

    /// The error that poisoned the log, if a device write failed.
    #[inline(always)]
    pub fn check_poisoned(&self) -> Result<()> {
        self.shared.check_poisoned()
    }

    /// A pointer to the record bytes at `address`.
    ///
    /// # Safety
    ///
    /// The caller is epoch-protected and has checked `address >= head`
    /// after protecting, and `address + len` stays inside the page.
    #[inline(always)]
    pub unsafe fn record_ptr(&self, address: Address) -> *mut u8 {
        let s = &self.shared;
        // Page `p`'s frame is `p mod frames`, so its byte `o` is at
        // `(p mod frames) * page_size + o`, which is the address masked by
        // `frames * page_size - 1` (both powers of two).
        let offset = address.raw() & s.ring_mask;
        // SAFETY: `offset <= ring_mask`, the last byte of the frames
        // allocation.
        unsafe { s.base.as_ptr().add(offset as usize) }
    }

    /// Asks the CPU to start loading the record at `address` (a hint: the
    /// frame its page would occupy is touched by nothing; an address not
    /// in memory just loads a useless line).
    #[inline(always)]
    pub fn prefetch(&self, address: Address) {
        let s = &self.shared;
        // In the frames allocation whatever the address (as `record_ptr`);
        // a prefetch never faults anyway.
        crate::mem::prefetch(s.base.as_ptr().wrapping_add((address.raw() & s.ring_mask) as usize));
    }

    /// Allocates `size` bytes (a multiple of 8, at most a page) at the tail.
    /// The caller holds epoch protection through `handle` and must write the
    /// record before its next refresh.
    pub fn allocate(&self, size: u64, handle: &EpochHandle<'_>) -> Result<Address> {
        let s = &self.shared;
        debug_assert!(size.is_multiple_of(8) && size > 0);
        let limit = s.throttle_at.load(Ordering::Relaxed);
        if limit != u64::MAX && self.tail_address().raw() >= limit {
            self.pause(handle);
        }
        if size > s.body - FIRST_ADDRESS {
            return Err(Error::RecordTooLarge { size, max: s.body - FIRST_ADDRESS });
        }
        let mut spins = 0u32;
        loop {
            let (page, offset) = split(self.fetch_add_tail(size));
            let end = offset + size;
            if end <= s.body {
                return Ok(self.address(page, offset));
            }
            if offset <= s.body {
                // This allocation crossed the page end: turn the page.
                return self.turn_page(page, size, handle);
            }
            // Another thread is turning the page: wait for it.
            while split(s.tail.load(Ordering::Acquire)).0 == page {
                s.check_poisoned()?;
                handle.refresh_mid_op();
                backoff(&mut spins);
            }
        }
    }

    /// [`Self::allocate`] that never waits: `Ok(None)` when another thread
    /// is turning the page, or when this allocation would turn it and the
    /// next page's frame is not free yet (its old page is not flushed and
    /// closed). The tail moves by a CAS rather than a fetch-add, so that a
    /// refused allocation leaves no trace; the thread whose CAS crosses the
    /// page end turns the page, which then cannot wait (its frame was seen
    /// closed, and `closed_until` only grows).
    pub fn try_allocate(&self, size: u64, handle: &EpochHandle<'_>) -> Result<Option<Address>> {
        let s = &self.shared;
        debug_assert!(size.is_multiple_of(8) && size > 0);
        if size > s.body - FIRST_ADDRESS {
            return Err(Error::RecordTooLarge { size, max: s.body - FIRST_ADDRESS });
        }
        s.check_poisoned()?;
        loop {
            let word = s.tail.load(Ordering::Acquire);
            let (page, offset) = split(word);
            if offset > s.body {
                return Ok(None);
            }
            let crosses = offset + size > s.body;
            if crosses && page + 1 >= s.geometry.frames {
                let needed = self.page_start(page + 2 - s.geometry.frames);
                if s.closed_until.load(Ordering::Acquire) < needed {
                    if s.flushed_until.load(Ordering::Acquire) >= needed {
                        self.shift_head(needed, handle);
                    }
                    return Ok(None);
                }
            }
            if s.tail
                .compare_exchange_weak(word, word + size, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            if !crosses {
                return Ok(Some(self.address(page, offset)));
            }
            return self.turn_page(page, size, handle).map(Some);
        }
    }

    /// The tail allocation's one atomic step (under loom, optionally the
    /// broken load-then-store that the model must catch).
    #[inline(always)]
    fn fetch_add_tail(&self, size: u64) -> u64 {
        #[cfg(oxifaster_loom)]
        if crate::sync::broken::plain_tail() {
            let word = self.shared.tail.load(Ordering::Acquire);
            self.shared.tail.store(word + size, Ordering::Release);
            return word;
        }
        self.shared.tail.fetch_add(size, Ordering::AcqRel)
    }

    #[inline(always)]
    fn address(&self, page: u64, offset: u64) -> Address {
        Address::new((page << self.shared.geometry.page_bits) | offset).unwrap_or(Address::MAX)
    }

    fn page_start(&self, page: u64) -> Address {
        self.address(page, 0)
    }

    /// Admission control: with `Some(limit)`, an allocation first waits
    /// while the tail is at or past `limit`, refreshing its epoch (it holds
    /// no part of the log yet: other threads, and page turns, go on), until
    /// the limit moves or is lifted (`None`), or — unless room is being
    /// made (see [`HybridLog::set_making_room`]) — [`MAX_THROTTLE_PAUSE`]
    /// has passed. The disk budget's task sets it at every measurement, to
    /// the tail plus the bytes the budget still has room for, so that
    /// writers cannot outrun compaction however fast they write. Threads
    /// marked with [`unthrottled`] (compaction's, whose copies make room)
    /// never wait. Without a limit, an allocation pays one load of a word
    /// nobody writes; with one below the limit, a load of the tail too.
    pub fn throttle_at(&self, limit: Option<Address>) {
        let raw = limit.map_or(u64::MAX, Address::raw);
        self.shared.throttle_at.store(raw, Ordering::Release);
    }

    /// Says whether a task is making room (a disk budget's round): while
    /// it is, throttled allocations wait for it however long it takes
    /// (a round always ends: its own appends are never throttled).
    pub fn set_making_room(&self, on: bool) {
        self.shared.making_room.store(on, Ordering::Release);
    }

    #[cold]
    #[inline(never)]
    fn pause(&self, handle: &EpochHandle<'_>) {
        if UNTHROTTLED.with(std::cell::Cell::get) {
            return;
        }
        let started = std::time::Instant::now();
        // While room is being made, as long as it takes; otherwise (no
        // one is making room: the live data may not fit) up to the limit.
        while self.tail_address().raw() >= self.shared.throttle_at.load(Ordering::Acquire)
            && (self.shared.making_room.load(Ordering::Acquire)
                || started.elapsed() < MAX_THROTTLE_PAUSE)
        {
            handle.refresh_mid_op();
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Opens page `page + 1` and allocates `size` bytes at its start.
    fn turn_page(&self, page: u64, size: u64, handle: &EpochHandle<'_>) -> Result<Address> {
        let s = &self.shared;
        let g = s.geometry;
        let next = page + 1;
        // Log addresses stay below 2^47: bit 47 of an index entry's address
        // marks a read-cache record (`readcache::READ_CACHE_BIT`).
        if next >= (1u64 << 32) || next >= (1u64 << (Address::BITS - 1 - g.page_bits)) {
            // The tail stays past the page end: poison the log, so that
            // threads waiting for the page to turn get an error, not a hang.
            s.poison(Error::LogFull.to_string(), None);
            return Err(Error::LogFull);
        }
        // Keep `mutable_pages` pages mutable: everything older becomes
        // read-only (and is flushed once that is safe).
        if next >= g.mutable_pages {
            self.shift_read_only(self.page_start(next + 1 - g.mutable_pages), handle);
        }
        // The frame of `next` last held page `next - frames`; it must be
        // flushed, evicted and closed before it is reused.
        if next >= g.frames {
            let needed = self.page_start(next + 1 - g.frames);
            let mut spins = 0u32;
            while s.closed_until.load(Ordering::Acquire) < needed {
                // A failed flush never completes: report it rather than hang.
                s.check_poisoned()?;
                if s.flushed_until.load(Ordering::Acquire) >= needed {
                    self.shift_head(needed, handle);
                }
                handle.refresh_mid_op();
                backoff(&mut spins);
            }
        }
        // A frame used before holds an old page: clear it (a fresh frame is
        // already zero).
        if next >= g.frames {
            // SAFETY: the frame is closed (no thread reads or writes it: the
            // head shift's epoch action ran), and we alone turn this page.
            unsafe {
                let frame = self.record_ptr(self.page_start(next));
                std::ptr::write_bytes(frame, 0, s.page_size as usize);
            }
        }
        s.tail.store((next << 32) | size, Ordering::Release);
        Ok(self.page_start(next))
    }

    /// Moves `read_only` to `target`; once every thread has refreshed, the
    /// pages below it are safe to read without locks and are flushed.
    pub fn shift_read_only(&self, target: Address, handle: &EpochHandle<'_>) {
        let s = &self.shared;
        if s.read_only.fetch_max(target, Ordering::AcqRel) >= target {
            return;
        }
        let shared = self.shared.clone();
        handle.bump_with_action(move || {
            shared.safe_read_only.fetch_max(target, Ordering::AcqRel);
            match shared.flusher.get() {
                Some(flusher) => {
                    shared.flush_target.fetch_max(target.raw(), Ordering::AcqRel);
                    flusher.unpark();
                }
                None => shared.flush_until(target),
            }
        });
    }

    /// Moves page flushes to a background thread: from now on the epoch
    /// action that makes pages read-only only hands the target to that
    /// thread, so the thread that ran the action (an appender, typically)
    /// goes on filling pages while the device writes. The flushes keep their
    /// order (one thread, under the flush lock) and their guarantee (the
    /// target was published by the action, after every thread that could
    /// still write below it had left). The thread stops when the returned
    /// handle is dropped.
    pub fn start_flusher(&self) -> Result<Flusher> {
        let shared = self.shared.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("oxifaster-flush".into())
            .spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    let target = shared.flush_target.load(Ordering::Acquire);
                    if target > shared.flushed_until.load(Ordering::Acquire).raw()
                        && !shared.poisoned.load(Ordering::Acquire)
                    {
                        shared.flush_until(Address::new(target).unwrap_or(Address::MAX));
                        continue;
                    }
                    std::thread::park_timeout(std::time::Duration::from_millis(50));
                }
            })
            .map_err(|source| Error::Io { context: "starting the flush thread".into(), source })?;
        if self.shared.flusher.set(thread.thread().clone()).is_err() {
            stop.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
            return Err(Error::InvalidConfig {
                what: "flusher",
                why: "this log already has a flush thread".into(),
            });
        }
        // A target handed over before the thread was known is flushed now.
        self.shared
            .flush_target
            .fetch_max(self.shared.safe_read_only.load(Ordering::Acquire).raw(), Ordering::AcqRel);
        thread.thread().unpark();
        Ok(Flusher { stop, thread: Some(thread) })
    }

    /// Moves `head` to `target` (at most `flushed_until`); once every thread
    /// has refreshed, the frames below it may be reused.
    fn shift_head(&self, target: Address, handle: &EpochHandle<'_>) {
        let s = &self.shared;
        debug_assert!(target <= s.flushed_until.load(Ordering::Acquire));
        if s.head.fetch_max(target, Ordering::AcqRel) >= target {
            return;
        }
        let shared = self.shared.clone();
        handle.bump_with_action(move || {
            shared.closed_until.fetch_max(target, Ordering::AcqRel);
        });
    }

    /// Reads `buf.len()` bytes of the log at `address` from the device.
    pub fn read_from_device(&self, address: Address, buf: &mut [u8]) -> Result<()> {
        self.shared.read_from_device(address, buf)
    }

    /// Reads a batch from the device ([`LogReader::read_batch`]).
    pub fn read_batch(&self, requests: &mut [crate::device::ReadRequest<'_>]) -> Vec<Result<()>> {
        self.reader().read_batch(requests)
    }

    /// Makes everything below `target` immutable and durable: moves
    /// `read_only` to `target`, waits (refreshing `handle`) until the pages
    /// below it are written, then syncs the device. `target` may fall inside
    /// a page; that page is written up to `target` now and in full later.
    pub fn flush_durable(&self, target: Address, handle: &EpochHandle<'_>) -> Result<()> {
        self.flush_written(target, handle)?;
        self.sync_device()
    }

    /// [`Self::flush_durable`] without the sync: returns once everything
    /// below `target` is written to the device (not yet durable), so that
    /// the caller can leave its epoch protection before syncing.
    pub fn flush_written(&self, target: Address, handle: &EpochHandle<'_>) -> Result<()> {
        #[cfg(oxifaster_loom)]
        if crate::sync::broken::eager_flush() {
            self.shared.read_only.fetch_max(target, Ordering::AcqRel);
            self.shared.safe_read_only.fetch_max(target, Ordering::AcqRel);
            self.shared.flush_until(target);
        }
        self.shift_read_only(target, handle);
        let mut spins = 0u32;
        while self.shared.flushed_until.load(Ordering::Acquire) < target {
            self.shared.check_poisoned()?;
            handle.refresh_mid_op();
            backoff(&mut spins);
        }
        self.shared.check_poisoned()
    }

    /// Moves the begin address to `target` (at most the safe read-only
    /// address: only immutable records can go): the pages below it are
    /// written to the device first, `head` follows if it is behind (the
    /// frames below it are released as in any head shift), then `begin` is
    /// published. Records below it are gone for readers from then on; the
    /// device keeps them until the caller deletes its segments.
    pub fn shift_begin(&self, target: Address, handle: &EpochHandle<'_>) -> Result<()> {
        let safe = self.shared.safe_read_only.load(Ordering::Acquire);
        if target > safe {
            return Err(Error::InvalidAddress {
                address: target.raw(),
                why: "the begin address cannot pass the safe read-only address",
            });
        }
        self.flush_written(target, handle)?;
        self.shift_head(target, handle);
        self.shared.begin.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Makes every completed device write durable. In a sealed log the
    /// flush lock is held across the sync, so that no flush writes a seal
    /// meanwhile, and the seal written last becomes the page's durable one
    /// (see [`seal`]).
    pub fn sync_device(&self) -> Result<()> {
        let mut block = if self.shared.geometry.sealed {
            Some(self.shared.flush_lock.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            None
        };
        let synced = self.shared.device.sync();
        if synced.is_ok()
            && let Some(seal) = block.as_mut().and_then(|b| b.seal.as_mut())
        {
            seal.synced();
        }
        drop(block);
        synced.map_err(|source| {
            // A failed sync may have lost writes: nothing after it may be
            // reported durable.
            self.shared.poison(format!("syncing the log device failed: {source}"), Some(source.kind()));
            Error::Io { context: "syncing the log device".into(), source }
        })
    }

    /// Copies the bytes `[from, to)` of one page into `out` (8-byte words)
    /// with atomic loads, so that concurrent in-place updates of other
    /// records in the page are not a data race. `from` and `to` are 8-byte
    /// aligned, in one page.
    ///
    /// # Safety
    ///
    /// The caller is epoch-protected and observed `from >= head` after
    /// protecting.
    pub unsafe fn copy_live(&self, from: Address, to: Address, out: &mut Vec<u64>) {
        let words = ((to.raw() - from.raw()) / 8) as usize;
        // SAFETY: per the contract the page's frame is live; `[from, to)`
        // lies in one page and is 8-byte aligned.
        let src = unsafe { self.record_ptr(from) }.cast::<AtomicU64>();
        out.clear();
        out.extend((0..words).map(|i| {
            // SAFETY: word `i` of the range, inside the frame.
            unsafe { &*src.add(i) }.load(Ordering::Relaxed)
        }));
    }

    /// A handle for reading the log's device from any thread, with no
    /// borrow of the log (for I/O moved to a blocking thread).
    pub fn reader(&self) -> LogReader<D> {
        LogReader { shared: self.shared.clone() }
    }
}

/// The background flush thread of a hybrid log (see
/// [`HybridLog::start_flusher`]); dropping it stops the thread after its
/// current flush.
#[derive(Debug)]
pub struct Flusher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Reads a hybrid log's device; cheap to clone, `'static`.
pub struct LogReader<D> {
    shared: Arc<Shared<D>>,
}

impl<D> Clone for LogReader<D> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<D> std::fmt::Debug for LogReader<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader").finish_non_exhaustive()
    }
}

impl<D: Device> LogReader<D> {
    /// Reads `buf.len()` bytes of the log at `address` from the device.
    pub fn read_from_device(&self, address: Address, buf: &mut [u8]) -> Result<()> {
        self.shared.read_from_device(address, buf)
    }

    /// Whether the device's reads bypass the page cache (see
    /// [`Device::direct_reads`]).
    pub fn direct_reads(&self) -> bool {
        self.shared.device.direct_reads()
    }

    /// Reads a batch from the device (see [`Device::read_batch`]); errors
    /// name the log address.
    pub fn read_batch(&self, requests: &mut [crate::device::ReadRequest<'_>]) -> Vec<Result<()>> {
        let addresses: Vec<(u64, usize)> =
            requests.iter().map(|r| (r.offset, r.buf.len())).collect();
        self.shared
            .device
            .read_batch(requests)
            .into_iter()
            .zip(addresses)
            .map(|(result, (offset, len))| {
                result.map_err(|source| Error::Io {
                    context: format!("reading {len} bytes of the log at {offset:#x}"),
                    source,
                })
            })
            .collect()
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> u64 {
        self.shared.page_size
    }

    /// Checks the bytes `[address, end)` that a reader took from the device
    /// against their page's seal (integrity on every read: a flipped bit is
    /// `Error::Corruption`, never a wrong value). The first read of a page
    /// reads the page whole and checks its seal; the length checked is
    /// remembered, so later reads of the page cost nothing more. Pages on
    /// the device below `head` never change again (their final seal was
    /// written before `head` passed them), which is what makes the memo
    /// sound. A log without seals (FasterLog's, whose entries carry their
    /// own checksums) checks nothing here.
    pub fn verify(&self, address: Address, end: u64) -> Result<()> {
        let s = &self.shared;
        if !s.geometry.sealed {
            return Ok(());
        }
        let page = address.raw() & !(s.page_size - 1);
        let need = end.saturating_sub(page);
        let known = |verified: &std::collections::HashMap<u64, u64>| {
            verified.get(&page).is_some_and(|len| *len >= need)
        };
        if known(&s.verified.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        let corrupt = |what: String| {
            tracing::error!(page = format_args!("{page:#x}"), %what, "a log page read from the device does not check");
            Error::Corruption { address: page, what }
        };
        if need > s.body {
            return Err(corrupt(format!("a record reaches {need} bytes into a page of {}", s.body)));
        }
        let mut buf = crate::record::AlignedBytes::zeroed(s.page_size as usize);
        let start = Address::new(page).ok_or(Error::LogFull)?;
        s.read_from_device(start, buf.as_mut_slice())?;
        seal::check_page(page, buf.as_slice(), need, false)
            .map_err(|what| corrupt(format!("the page's seal does not check: {what}")))?;
        let mut verified = s.verified.lock().unwrap_or_else(|p| p.into_inner());
        let len = verified.entry(page).or_insert(0);
        *len = (*len).max(need);
        Ok(())
    }

    /// The bytes of a page that records may use (the page less its seal).
    pub fn page_body(&self) -> u64 {
        self.shared.body
    }

    /// log2 of the page size.
    pub fn page_bits(&self) -> u32 {
        self.shared.geometry.page_bits
    }

    /// The begin address: records below it are gone.
    pub fn begin_address(&self) -> Address {
        self.shared.begin.load(Ordering::Acquire)
    }
}

impl<D: Device> Shared<D> {
    fn read_from_device(&self, address: Address, buf: &mut [u8]) -> Result<()> {
        self.device.read_at(address.raw(), buf).map_err(|source| {
            tracing::warn!(%address, bytes = buf.len(), error = %source, "reading the log from the device failed");
            Error::Io { context: format!("reading {} bytes of the log at {address}", buf.len()), source }
        })
    }

    /// Fails once a device write has failed. The common case is one load.
    #[inline(always)]
    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn poisoned_error(&self) -> Error {
        let (message, kind) = self
            .error
            .lock()
            .map(|e| e.clone().unwrap_or_default())
            .unwrap_or_else(|_| ("lock poisoned".into(), None));
        Error::Poisoned { message, kind }
    }

    /// Records the first failure (its words and its I/O error's kind) and
    /// refuses every later write.
    fn poison(&self, message: String, kind: Option<std::io::ErrorKind>) {
        tracing::error!(%message, "the log is poisoned");
        if let Ok(mut error) = self.error.lock() {
            error.get_or_insert((message, kind));
        }
        self.poisoned.store(true, Ordering::Release);
    }

    /// Writes `[flushed_until, target)` to the device, in order, a page at a
    /// time (`target` may fall inside a page: that page is written up to it,
    /// and in full by a later flush). Runs inside an epoch action: the bytes
    /// are immutable.
    ///
    /// With a write alignment `B` > 1 the writes are rounded out to whole
    /// blocks: each starts at `flushed_until` rounded down to `B` (the bytes
    /// before it, already written, are written again, unchanged), and a
    /// last partial block is copied into a zeroed block buffer, so that no
    /// byte at or past `target` (which other threads may still be writing)
    /// is ever read. The zeros past `target` on the device are rewritten by
    /// the next flush.
    fn flush_until(&self, target: Address) {
        let mut block = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let from = self.flushed_until.load(Ordering::Acquire);
        if from >= target || self.poisoned.load(Ordering::Acquire) {
            return;
        }
        let bits = self.geometry.page_bits;
        let b = block.size as u64;
        let mut at = from.raw();
        while at < target.raw() {
            let page = at >> bits;
            let page_start = page << bits;
            let page_end = page_start + self.page_size;
            let end = page_end.min(target.raw());
            // A sealed page's last bytes are its seal, not records.
            let data_end = end.min(page_start + self.body);
            let trailer_block = page_end - b;
            let start = at.min(data_end) & !(b - 1);
            let body_end = data_end & !(b - 1);
            if body_end > start
                && let Err(e) = self.device.write_at(start, self.frame_bytes(start, body_end))
            {
                self.poison(format!("writing page {page} failed: {e}"), Some(e.kind()));
                return;
            }
            let partial_from = body_end.max(start);
            // A partial last block; in a sealed log with an alignment, the
            // block that holds the seal is written with it, below.
            if data_end > partial_from
                && !(self.geometry.sealed && b > 1 && partial_from == trailer_block)
            {
                let bytes = self.frame_bytes(partial_from, data_end);
                let write = match block.fill(bytes) {
                    Some(whole_block) => self.device.write_at(partial_from, whole_block),
                    None => self.device.write_at(partial_from, bytes),
                };
                if let Err(e) = write {
                    self.poison(format!("writing page {page} failed: {e}"), Some(e.kind()));
                    return;
                }
            }
            if self.geometry.sealed
                && let Err(e) = self.write_seal(&mut block, page, data_end)
            {
                self.poison(format!("writing the seal of page {page} failed: {e}"), Some(e.kind()));
                return;
            }
            at = end;
            self.flushed_until.store(Address::new(at).unwrap_or(Address::MAX), Ordering::Release);
        }
    }

    /// Extends the seal of `page` over its bytes up to `data_end` and
    /// writes the page's trailer (with a write alignment: the whole last
    /// block, with the page's bytes below `data_end` and zeros up to the
    /// trailer).
    fn write_seal(&self, block: &mut FlushBlock, page: u64, data_end: u64) -> std::io::Result<()> {
        let bits = self.geometry.page_bits;
        let page_start = page << bits;
        let page_end = page_start + self.page_size;
        let state = match &mut block.seal {
            Some(state) if state.page() == page => state,
            other => other.insert(seal::SealState::new(page, page_start)),
        };
        let sealed_until = page_start + state.covered();
        let more =
            if data_end > sealed_until { self.frame_bytes(sealed_until, data_end) } else { &[] };
        let trailer = state.extend(more);
        let b = block.size as u64;
        if b <= seal::TRAILER {
            return self.device.write_at(page_end - seal::TRAILER, &trailer);
        }
        let trailer_block = page_end - b;
        let data =
            if data_end > trailer_block { self.frame_bytes(trailer_block, data_end) } else { &[] };
        let Some(whole) = block.fill_with_trailer(data, &trailer) else {
            return self.device.write_at(page_end - seal::TRAILER, &trailer);
        };
        self.device.write_at(trailer_block, whole)
    }

    /// The frame bytes of the log range `[from, to)`, inside one page.
    fn frame_bytes(&self, from: u64, to: u64) -> &[u8] {
        let bits = self.geometry.page_bits;
        let frame = (from >> bits) & (self.geometry.frames - 1);
        let offset = ((frame << bits) + (from & (self.page_size - 1))) as usize;
        debug_assert!(to >= from && to - from <= self.page_size - (from & (self.page_size - 1)));
        // SAFETY: only called by `flush_until` for ranges below the flush
        // target, hence below `safe_read_only` (immutable: no thread writes
        // them any more), in pages whose frames are not reused before
        // `flushed_until` passes them; the range lies inside one frame.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), (to - from) as usize) }
    }
}

/// The buffer for a flush's last partial block (when the device has a
/// write alignment).
struct FlushBlock {
    size: usize,
    buffer: Option<LargeBuffer>,
    /// In a sealed log: the seal of the page being flushed.
    seal: Option<seal::SealState>,
}

impl FlushBlock {
    fn new(size: usize) -> Result<Self> {
        let buffer = if size > 1 { Some(LargeBuffer::zeroed(size, size)?) } else { None };
        Ok(Self { size, buffer, seal: None })
    }

    /// The block: `bytes` (the block's first bytes), zeros, and `trailer`
    /// at its end; `None` without an alignment.
    fn fill_with_trailer(&mut self, bytes: &[u8], trailer: &[u8]) -> Option<&[u8]> {
        debug_assert!(bytes.len() + trailer.len() <= self.size);
        let block = self.block_mut()?;
        let at = block.len() - trailer.len();
        block[..bytes.len()].copy_from_slice(bytes);
        block[bytes.len()..at].fill(0);
        block[at..].copy_from_slice(trailer);
        Some(block)
    }

    /// The block: `bytes` (at most a block) followed by zeros; `None`
    /// without an alignment (write `bytes` as they are).
    fn fill(&mut self, bytes: &[u8]) -> Option<&[u8]> {
        debug_assert!(bytes.len() <= self.size);
        let block = self.block_mut()?;
        block[..bytes.len()].copy_from_slice(bytes);
        block[bytes.len()..].fill(0);
        Some(block)
    }

    /// The block buffer, if there is one.
    fn block_mut(&mut self) -> Option<&mut [u8]> {
        let buffer = self.buffer.as_ref()?;
        // SAFETY: the buffer holds `size` bytes and we hold `&mut self`, so
        // nothing else accesses it for the returned borrow's life.
        Some(unsafe { std::slice::from_raw_parts_mut(buffer.as_ptr(), self.size) })
    }
}

/// Spin briefly, then yield: waits here last microseconds (a page turn, an
/// epoch action), not milliseconds.
#[inline]
pub(crate) fn backoff(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins < 64 && !cfg!(oxifaster_loom) {
        std::hint::spin_loop();
    } else {
        crate::sync::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;
    use crate::epoch::Epoch;

    fn geometry() -> LogGeometry {
        LogGeometry { page_bits: 9, frames: 4, mutable_pages: 1, sealed: false }
    }

    #[test]
    fn geometries_that_overflow_are_refused() {
        for (page_bits, frames) in [(30, 1u64 << 34), (30, 1 << 40), (20, 1 << 60), (9, 1 << 63)] {
            let g = LogGeometry { page_bits, frames, mutable_pages: 1, sealed: true };
            assert!(
                matches!(g.validate(), Err(Error::InvalidConfig { what: "log_memory_size_bytes", .. })),
                "2^{page_bits} x {frames}"
            );
            assert!(HybridLog::new(g, MemoryDevice::new()).is_err());
        }
    }

    #[test]
    fn allocation_turns_pages_flushes_and_evicts() {
        let epoch = Epoch::new(4);
        let handle = epoch.register().expect("entry");
        let log = HybridLog::new(geometry(), MemoryDevice::new()).expect("log");
        let mut addresses = Vec::new();
        for i in 0..200u64 {
            handle.refresh();
            let a = log.allocate(48, &handle).expect("allocate");
            // SAFETY: freshly allocated, protected, within the page.
            unsafe { std::ptr::write_bytes(log.record_ptr(a), (i % 251) as u8 + 1, 48) };
            addresses.push(a);
            handle.unprotect();
        }
        handle.refresh();
        for w in addresses.windows(2) {
            assert!(w[1] > w[0]);
            assert_eq!(w[0].page(9), (w[0].raw() + 47) >> 9, "a record spans pages");
        }
        assert!(log.head_address().raw() > FIRST_ADDRESS, "nothing was evicted");
        assert!(log.flushed_until_address() >= log.head_address());
        assert!(log.safe_read_only_address() <= log.read_only_address());
        // Evicted records read back from the device.
        for (i, a) in addresses.iter().enumerate().filter(|(_, a)| **a < log.head_address()) {
            let mut buf = [0u8; 48];
            log.read_from_device(*a, &mut buf).expect("read");
            assert_eq!(buf, [(i as u64 % 251) as u8 + 1; 48]);
        }
    }

    #[test]
    fn oversized_records_and_bad_geometry_are_errors() {
        let epoch = Epoch::new(1);
        let handle = epoch.register().expect("entry");
        let log = HybridLog::new(geometry(), MemoryDevice::new()).expect("log");
        handle.refresh();
        assert!(matches!(log.allocate(512, &handle), Err(Error::RecordTooLarge { .. })));
        let bad = LogGeometry { page_bits: 9, frames: 3, mutable_pages: 1, sealed: false };
        assert!(matches!(
            HybridLog::new(bad, crate::device::NullDevice),
            Err(Error::InvalidConfig { .. })
        ));
    }
}
