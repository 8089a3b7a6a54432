//! Read-ahead for scans: a thread reads the pages of the scanned range that
//! are only on the device, in address order and a bounded number ahead of
//! the scan, so that the device sees one sequential stream with a read
//! always in flight while the scan's threads settle records.
//!
//! ## Protocol
//!
//! One consumer (the scan's driving thread) takes pages in increasing
//! address order ([`ReadAhead::take`]); a page it asks past is dropped (its
//! buffer reused). The reader thread keeps at most `depth` pages read and
//! not taken: it waits for the consumer to take or pass one before reading
//! on (so the consumer never waits for a reader that waits for it), into
//! buffers the consumer gave back ([`ReadAhead::give_back`]) where it
//! can. A page the reader failed to read, skipped or has not
//! reached when it stops is simply not offered: the consumer reads it
//! itself (and sees the device's error there), so the read-ahead never
//! changes what a scan returns, only when the bytes arrive.
//!
//! Only pages below the head address when the scan started are read (they
//! are closed and on the device for good; compaction, the only thing that
//! removes them, waits for the scan), and the bytes are checked against
//! their page's seal by the consumer as any device read is.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::device::{Device, ReadRequest};
use crate::hlog::LogReader;
use crate::record::AlignedBytes;
use crate::{Error, Result};

/// How many bytes of pages a scan reads ahead of itself.
const AHEAD_BYTES: u64 = 32 << 20;

/// The size of its read requests.
const REQUEST_BYTES: usize = 1 << 20;

/// A scan's read-ahead thread (see the module's comment).
pub(crate) struct ReadAhead {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
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
    /// Pages read and not yet taken, in address order.
    read: VecDeque<(u64, AlignedBytes)>,
    /// Buffers to read into.
    free: Vec<AlignedBytes>,
    /// Every page below this has been read (or given up on).
    passed: u64,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ReadAhead {
    /// Starts reading the pages of `[from, to)` (page-aligned `from`).
    pub(crate) fn start<D: Device>(
        reader: LogReader<D>,
        from: u64,
        to: u64,
        page_size: u64,
    ) -> Result<Self> {
        let depth = (AHEAD_BYTES / page_size).clamp(2, 64) as usize;
        let shared = Arc::new(Shared::default());
        shared.lock().passed = from;
        let ours = shared.clone();
        let thread = std::thread::Builder::new()
            .name("oxifaster-read-ahead".into())
            .spawn(move || read_pages(&reader, &ours, from, to, page_size, depth))
            .map_err(|source| Error::Io {
                context: "starting a read-ahead thread".into(),
                source,
            })?;
        Ok(Self { shared, thread: Some(thread), page_size, to })
    }

    /// The page at `page` as read from the device, once the reader has it;
    /// `None` if it will not have it (then the caller reads it). Pages
    /// below `page` not taken yet are dropped.
    pub(crate) fn take(&self, page: u64) -> Option<AlignedBytes> {
        if page >= self.to {
            return None;
        }
        let mut state = self.shared.lock();
        loop {
            while state.read.front().is_some_and(|(p, _)| *p < page) {
                let (_, buf) = state.read.pop_front().expect("a front page");
                state.free.push(buf);
                self.shared.changed.notify_all();
            }
            if state.read.front().is_some_and(|(p, _)| *p == page) {
                let (_, buf) = state.read.pop_front().expect("a front page");
                self.shared.changed.notify_all();
                return Some(buf);
            }
            if state.passed > page || state.stop {
                return None;
            }
            state = self.shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns a page buffer (one `take` gave out, or any of this page
    /// size) for the reader to read into.
    pub(crate) fn give_back(&self, buf: AlignedBytes) {
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
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reader thread: reads `[from, to)` page by page, at most `depth`
/// pages ahead of what was taken (into returned buffers where there are
/// some, so a scan's buffers are its `depth` plus the few it holds).
fn read_pages<D: Device>(
    reader: &LogReader<D>,
    shared: &Shared,
    from: u64,
    to: u64,
    page_size: u64,
    depth: usize,
) {
    let mut page = from;
    while page < to {
        let buf = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if state.read.len() < depth {
                    break state.free.pop();
                }
                state = shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut buf = buf.unwrap_or_else(|| AlignedBytes::zeroed(page_size as usize));
        // In requests of `REQUEST_BYTES`, as one batch (in flight together
        // on the io_uring device): the kernel's own read-ahead keeps a
        // stream of such requests going, where a cold 4 MiB request waits
        // for its whole size.
        let mut requests: Vec<ReadRequest<'_>> = buf
            .as_mut_slice()
            .chunks_mut(REQUEST_BYTES)
            .enumerate()
            .map(|(i, part)| ReadRequest { offset: page + (i * REQUEST_BYTES) as u64, buf: part })
            .collect();
        let read = reader.read_batch(&mut requests).iter().all(Result::is_ok);
        let mut state = shared.lock();
        match read {
            true => state.read.push_back((page, buf)),
            false => state.free.push(buf),
        }
        page += page_size;
        state.passed = page;
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;
    use crate::hlog::{HybridLog, LogGeometry};

    const PAGE: u64 = 512;

    /// A log whose device holds `pages` pages, page `p` filled with `p`.
    fn log(pages: u64) -> HybridLog<MemoryDevice> {
        let device = MemoryDevice::new();
        for p in 0..pages {
            device.write_at(p * PAGE, &[p as u8; PAGE as usize]).expect("write");
        }
        let geometry = LogGeometry { page_bits: 9, frames: 4, mutable_pages: 1, sealed: false };
        HybridLog::new(geometry, device).expect("log")
    }

    fn page_of(bytes: &AlignedBytes) -> u8 {
        let first = bytes.as_slice()[0];
        assert!(bytes.as_slice().iter().all(|&b| b == first), "a whole page");
        first
    }

    #[test]
    fn pages_come_in_order_and_the_ones_passed_over_are_dropped() {
        let log = log(10);
        let ahead = ReadAhead::start(log.reader(), PAGE, 9 * PAGE, PAGE).expect("start");
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
        ahead.give_back(AlignedBytes::zeroed(8));
        for p in 4..9 {
            assert_eq!(page_of(&ahead.take(p * PAGE).expect("page")), p as u8);
        }
    }

    #[test]
    fn a_consumer_that_skips_pages_never_waits_for_a_full_reader() {
        // Many more pages than the reader keeps ahead (64 of 512 bytes):
        // taking every third one must not wait for the reader to make
        // room it only gets when pages are taken.
        let pages = 1000;
        let log = log(pages);
        let ahead = ReadAhead::start(log.reader(), 0, pages * PAGE, PAGE).expect("start");
        for p in (0..pages).step_by(3) {
            let bytes = ahead.take(p * PAGE).expect("page");
            assert_eq!(page_of(&bytes), p as u8);
            ahead.give_back(bytes);
        }
    }

    #[test]
    fn a_page_the_device_cannot_read_is_left_to_the_consumer() {
        // The range runs two pages past the device's end.
        let log = log(4);
        let ahead = ReadAhead::start(log.reader(), 0, 6 * PAGE, PAGE).expect("start");
        assert_eq!(page_of(&ahead.take(3 * PAGE).expect("page 3")), 3);
        assert!(ahead.take(4 * PAGE).is_none());
        assert!(ahead.take(5 * PAGE).is_none());
    }

    #[test]
    fn dropping_it_stops_the_reader() {
        let log = log(1000);
        let ahead = ReadAhead::start(log.reader(), 0, 1000 * PAGE, PAGE).expect("start");
        assert!(ahead.take(0).is_some());
        drop(ahead); // joins the thread, which waits for room
    }
}
