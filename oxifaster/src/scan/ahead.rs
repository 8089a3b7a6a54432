//! Read-ahead for scans: threads read the pages of the scanned range that
//! are only on the device, in address order and a bounded number ahead of
//! the scan, so that the device sees one sequential stream with a read
//! always in flight while the scan's threads settle records.
//!
//! ## Protocol
//!
//! One consumer (the scan's driving thread) takes pages in increasing
//! address order ([`ReadAhead::take`]); a page it asks past is dropped (its
//! buffer reused). The reader threads (one for buffered reads, which the
//! kernel reads ahead of; two for direct reads, so that one is always in
//! flight) claim pages in address order and keep at most `depth` pages
//! read or being read and not taken: they wait for the consumer to take
//! or pass one before claiming more. The consumer never waits for a
//! reader that waits for it: it waits only for a page at or above the
//! lowest one not yet read, and it drops every page below the one it
//! wants, which makes room. Readers read into buffers the consumer gave
//! back ([`ReadAhead::give_back`]) where they can. A page a reader failed
//! to read, or that no reader reached before they stopped, is simply not
//! offered: the consumer reads it itself (and sees the device's error
//! there), so the read-ahead never changes what a scan returns, only when
//! the bytes arrive.
//!
//! Only pages below the head address when the scan started are read (they
//! are closed and on the device for good; compaction, the only thing that
//! removes them, waits for the scan), and the bytes are checked against
//! their page's seal by the consumer as any device read is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::pages::PageBuf;
use crate::device::{Device, ReadRequest};
use crate::hlog::LogReader;
use crate::{Error, Result};

/// How many bytes of pages a scan reads ahead of itself.
const AHEAD_BYTES: u64 = 32 << 20;

/// The size of its read requests.
const REQUEST_BYTES: usize = 1 << 20;

/// A scan's read-ahead threads (see the module's comment).
pub(crate) struct ReadAhead {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    page_size: u64,
    /// The end of the range it reads.
    to: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Pages read and not yet taken.
    read: BTreeMap<u64, PageBuf>,
    /// Pages being read.
    reading: BTreeSet<u64>,
    /// The next page to read (`u64::MAX` once the readers gave up).
    next: u64,
    /// Buffers to read into.
    free: Vec<PageBuf>,
    stop: bool,
}

impl State {
    /// Every page below this has been read (or given up on).
    fn passed(&self) -> u64 {
        self.reading.first().copied().unwrap_or(self.next)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ReadAhead {
    /// Starts reading the pages of `[from, to)` (page-aligned `from`): one
    /// thread where the kernel reads ahead of it (buffered reads), two
    /// where it does not (direct reads), so that a read is always in
    /// flight.
    pub(crate) fn start<D: Device>(
        reader: LogReader<D>,
        from: u64,
        to: u64,
        page_size: u64,
    ) -> Result<Self> {
        let depth = (AHEAD_BYTES / page_size).clamp(2, 64) as usize;
        let shared = Arc::new(Shared::default());
        shared.lock().next = from;
        let mut ahead = Self { shared, threads: Vec::new(), page_size, to };
        let readers = if reader.direct_reads() { 2 } else { 1 };
        for _ in 0..readers {
            let (reader, shared) = (reader.clone(), ahead.shared.clone());
            let thread = std::thread::Builder::new()
                .name("oxifaster-read-ahead".into())
                .spawn(move || read_pages(&reader, &shared, to, page_size, depth))
                .map_err(|source| Error::Io {
                    context: "starting a read-ahead thread".into(),
                    source,
                })?;
            ahead.threads.push(thread);
        }
        Ok(ahead)
    }

    /// The page at `page` as read from the device, once the readers have
    /// it; `None` if they will not have it (then the caller reads it).
    /// Pages below `page` not taken yet are dropped.
    pub(crate) fn take(&self, page: u64) -> Option<PageBuf> {
        if page >= self.to {
            return None;
        }
        let mut state = self.shared.lock();
        loop {
            while let Some(entry) = state.read.first_entry()
                && *entry.key() < page
            {
                let buf = entry.remove();
                state.free.push(buf);
                self.shared.changed.notify_all();
            }
            if let Some(buf) = state.read.remove(&page) {
                self.shared.changed.notify_all();
                return Some(buf);
            }
            if state.passed() > page || state.stop {
                return None;
            }
            state = self.shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns a page buffer (one `take` gave out, or any of this page
    /// size) for the readers to read into.
    pub(crate) fn give_back(&self, buf: PageBuf) {
        if buf.len() as u64 == self.page_size {
            self.shared.lock().free.push(buf);
            self.shared.changed.notify_all();
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A reader thread: claims the next page of the range below `to` and
/// reads it, while fewer than `depth` pages are read or being read and not
/// taken (into returned buffers where there are some, so a scan's buffers
/// are its `depth` plus the few it holds).
fn read_pages<D: Device>(
    reader: &LogReader<D>,
    shared: &Shared,
    to: u64,
    page_size: u64,
    depth: usize,
) {
    loop {
        let (page, buf) = {
            let mut state = shared.lock();
            loop {
                if state.stop || state.next >= to {
                    return;
                }
                if state.read.len() + state.reading.len() < depth {
                    break;
                }
                state = shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            let page = state.next;
            state.next += page_size;
            state.reading.insert(page);
            (page, state.free.pop())
        };
        let buf = buf.or_else(|| PageBuf::zeroed(page_size as usize).ok());
        let read = buf.map(|mut buf| {
            let ok = read_page(reader, page, page_size, &mut buf);
            (buf, ok)
        });
        let mut state = shared.lock();
        state.reading.remove(&page);
        match read {
            Some((buf, true)) => drop(state.read.insert(page, buf)),
            Some((buf, false)) => state.free.push(buf),
            // Out of memory for another buffer: the consumer reads the
            // rest itself.
            None => state.next = u64::MAX,
        }
        shared.changed.notify_all();
    }
}

/// Reads the page at `page` into `buf`; false if the device failed.
fn read_page<D: Device>(
    reader: &LogReader<D>,
    page: u64,
    page_size: u64,
    buf: &mut PageBuf,
) -> bool {
    // Buffered, in requests of `REQUEST_BYTES` as one batch (in flight
    // together on the io_uring device): the kernel's own read-ahead keeps
    // a stream of such requests going, where a cold 4 MiB request waits
    // for its whole size. Direct, in one request: nothing reads ahead
    // there, and larger requests go faster.
    let request = if reader.direct_reads() { page_size as usize } else { REQUEST_BYTES };
    let mut requests: Vec<ReadRequest<'_>> = buf
        .as_mut_slice()
        .chunks_mut(request)
        .enumerate()
        .map(|(i, part)| ReadRequest { offset: page + (i * request) as u64, buf: part })
        .collect();
    reader.read_batch(&mut requests).iter().all(Result::is_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{FileDevice, MemoryDevice};
    use crate::hlog::{HybridLog, LogGeometry};

    const PAGE: u64 = 4096;

    /// A log whose device holds `pages` pages, page `p` filled with `p`.
    fn log<D: Device>(device: D, pages: u64) -> LogReader<D> {
        let mut page = PageBuf::zeroed(PAGE as usize).expect("memory");
        for p in 0..pages {
            page.as_mut_slice().fill(p as u8);
            device.write_at(p * PAGE, page.as_slice()).expect("write");
        }
        let geometry = LogGeometry { page_bits: 12, frames: 4, mutable_pages: 1, sealed: false };
        HybridLog::new(geometry, device).expect("log").reader()
    }

    /// Runs `check` on a log in memory (one reader) and on files read
    /// directly (two readers).
    macro_rules! on_both {
        ($pages:expr, $check:ident) => {{
            $check(log(MemoryDevice::new(), $pages));
            let dir = tempfile::tempdir().expect("tempdir");
            let device = FileDevice::open(dir.path(), 30).expect("device").with_direct_io();
            $check(log(device, $pages));
        }};
    }

    fn page_of(bytes: &PageBuf) -> u8 {
        let first = bytes.as_slice()[0];
        assert!(bytes.as_slice().iter().all(|&b| b == first), "a whole page");
        first
    }

    #[test]
    fn pages_come_in_order_and_the_ones_passed_over_are_dropped() {
        fn check<D: Device>(reader: LogReader<D>) {
            let ahead = ReadAhead::start(reader, PAGE, 9 * PAGE, PAGE).expect("start");
            let one = ahead.take(PAGE).expect("page 1");
            assert_eq!(page_of(&one), 1);
            let three = ahead.take(3 * PAGE).expect("page 3");
            assert_eq!(page_of(&three), 3);
            // Page 2 was passed over; pages outside the range are not read.
            assert!(ahead.take(2 * PAGE).is_none());
            assert!(ahead.take(9 * PAGE).is_none());
            ahead.give_back(one);
            ahead.give_back(three);
            // A buffer of another size is not taken back.
            ahead.give_back(PageBuf::zeroed(8).expect("memory"));
            for p in 4..9 {
                assert_eq!(page_of(&ahead.take(p * PAGE).expect("page")), p as u8);
            }
        }
        on_both!(10, check);
    }

    #[test]
    fn a_consumer_that_skips_pages_never_waits_for_a_full_reader() {
        // Many more pages than the readers keep ahead: taking every third
        // one must not wait for readers that wait for room.
        const PAGES: u64 = 300;
        fn check<D: Device>(reader: LogReader<D>) {
            let pages = PAGES;
            let ahead = ReadAhead::start(reader, 0, pages * PAGE, PAGE).expect("start");
            for p in (0..pages).step_by(3) {
                let bytes = ahead.take(p * PAGE).expect("page");
                assert_eq!(page_of(&bytes), p as u8);
                ahead.give_back(bytes);
            }
        }
        on_both!(PAGES, check);
    }

    #[test]
    fn a_page_the_device_cannot_read_is_left_to_the_consumer() {
        // The range runs two pages past the device's end.
        fn check<D: Device>(reader: LogReader<D>) {
            let ahead = ReadAhead::start(reader, 0, 6 * PAGE, PAGE).expect("start");
            assert_eq!(page_of(&ahead.take(3 * PAGE).expect("page 3")), 3);
            assert!(ahead.take(4 * PAGE).is_none());
            assert!(ahead.take(5 * PAGE).is_none());
        }
        on_both!(4, check);
    }

    #[test]
    fn dropping_it_stops_the_readers() {
        fn check<D: Device>(reader: LogReader<D>) {
            let ahead = ReadAhead::start(reader, 0, 300 * PAGE, PAGE).expect("start");
            assert!(ahead.take(0).is_some());
            drop(ahead); // joins the threads, which wait for room
        }
        on_both!(300, check);
    }
}
