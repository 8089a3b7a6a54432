//! Scans: iterating over committed entries, from memory and the device,
//! optionally following the tail.
//!
//! The iterator reads the log in chunks of up to [`CHUNK`] bytes, never
//! across a page (an entry never spans pages), into its own buffer, and
//! decodes entries from it, checking each checksum. A zero header means the
//! rest of the page is unused: the scan moves to the next page. It skips
//! ranges dropped by `truncate_after` and jumps to the log's begin if the
//! prefix it stands on was truncated.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::entry::{self, HEADER, Header, decode_header, entry_size};
use super::{Inner, LogAddress};
use crate::device::Device;
use crate::{Error, Result};

/// The most a scan reads at once.
const CHUNK: u64 = 256 * 1024;

/// One entry returned by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The entry's address.
    pub address: LogAddress,
    /// The address just past it (where a scan resumes).
    pub next_address: LogAddress,
    /// The payload.
    pub data: Vec<u8>,
}

/// An iterator over a [`super::FasterLog`]'s committed entries (see
/// [`super::FasterLog::scan`]).
///
/// `Iterator::next` yields `Result<LogEntry>` and returns `None` at the
/// commit point (or the scan's end); on a log that is still growing, a
/// later call may yield the entries committed since (the iterator is not
/// fused, except after an error, which ends it); [`Self::next_blocking`] and [`Self::next_async`]
/// wait for further commits until the scan's end. [`Self::next_ref`] lends
/// the payload from the iterator's buffer without copying.
pub struct LogIter<D: Device> {
    inner: Arc<Inner<D>>,
    /// Where the next entry starts.
    next: u64,
    /// The scan's exclusive end (`u64::MAX`: follow the tail).
    end: u64,
    /// Holds the log bytes `[buf_start, buf_start + buf.len())`.
    buf: Vec<u8>,
    buf_start: u64,
    /// Verification walks dropped ranges too, and checks that every page's
    /// unused end is zero.
    verify: bool,
    /// A named iterator's name.
    name: Option<String>,
    /// Whether the start must still be checked to be an entry boundary (a
    /// scan from a caller's address; see `Inner::is_boundary`).
    check_start: bool,
}

impl<D: Device> std::fmt::Debug for LogIter<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogIter")
            .field("next", &self.next)
            .field("end", &self.end)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<D: Device> LogIter<D> {
    pub(crate) fn new(inner: Arc<Inner<D>>, from: u64, end: u64, name: Option<String>) -> Self {
        Self {
            inner,
            next: from.max(crate::hlog::FIRST_ADDRESS),
            end,
            buf: Vec::new(),
            buf_start: 0,
            verify: false,
            name,
            check_start: false,
        }
    }

    /// Refuses (on the first `next`) a start that is not where an entry
    /// starts: bytes inside an entry's payload may look like an entry (its
    /// checksum is public), and must never be returned as one.
    pub(crate) fn checking_start(mut self) -> Self {
        self.check_start = true;
        self
    }

    pub(crate) fn verifying(&mut self) {
        self.verify = true;
    }

    /// Where the next entry would start: everything before it was returned.
    pub fn next_address(&self) -> LogAddress {
        LogAddress(self.next)
    }

    /// For a named iterator: records that every entry before `address` is
    /// processed, so that after the next commit (and across reopens) the
    /// iterator of this name resumes there. A no-op for unnamed scans.
    pub fn complete_until(&self, address: LogAddress) -> Result<()> {
        let begin = self.inner.begin.load(Ordering::Acquire);
        if !self.inner.is_boundary(address.0, begin)? {
            return Err(Error::InvalidAddress {
                address: address.0,
                why: "an iterator's position must be where an entry starts (or the commit point)",
            });
        }
        if let Some(name) = &self.name {
            let mut iterators = self.inner.lock_iterators();
            // A name removed meanwhile comes back only while there is room.
            if iterators.contains_key(name) || iterators.len() < super::commit::MAX_ITERATORS {
                iterators.insert(name.clone(), address.0);
                self.inner.iterators_dirty.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    /// The next committed entry, its payload borrowed from the iterator's
    /// buffer; `Ok(None)` at the commit point or the scan's end.
    pub fn next_ref(&mut self) -> Result<Option<(LogAddress, &[u8])>> {
        let Some((address, at, len)) = self.advance()? else {
            return Ok(None);
        };
        Ok(Some((LogAddress(address), &self.buf[at..at + len])))
    }

    /// The next entry, waiting for commits (blocking this thread) until the
    /// scan's end; `Ok(None)` at the end, or once the log is dropped.
    pub fn next_blocking(&mut self) -> Result<Option<LogEntry>> {
        loop {
            if let Some(entry) = self.next_owned()? {
                return Ok(Some(entry));
            }
            if self.next >= self.end {
                return Ok(None);
            }
            let (inner, after) = (self.inner.clone(), self.next);
            match inner.signal.wait_until(|| inner.commit_status(after).transpose()) {
                Ok(()) => {}
                Err(_) if inner.closed.load(Ordering::Acquire) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Self::next_blocking`] for async code: awaits commits instead of
    /// blocking (reads of entries no longer in memory are short blocking
    /// device reads).
    pub async fn next_async(&mut self) -> Result<Option<LogEntry>> {
        loop {
            if let Some(entry) = self.next_owned()? {
                return Ok(Some(entry));
            }
            if self.next >= self.end {
                return Ok(None);
            }
            match super::CommitFuture::new(self.inner.clone(), self.next).await {
                Ok(()) => {}
                Err(_) if self.inner.closed.load(Ordering::Acquire) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn next_owned(&mut self) -> Result<Option<LogEntry>> {
        let Some((address, at, len)) = self.advance()? else {
            return Ok(None);
        };
        Ok(Some(LogEntry {
            address: LogAddress(address),
            next_address: LogAddress(self.next),
            data: self.buf[at..at + len].to_vec(),
        }))
    }

    /// Moves past the next entry: its address and where its payload lies in
    /// the buffer. After an error the scan ends (it does not return the
    /// same error forever).
    fn advance(&mut self) -> Result<Option<(u64, usize, usize)>> {
        if std::mem::take(&mut self.check_start) {
            let committed = self.inner.committed.load(Ordering::Acquire);
            let begin = self.inner.begin.load(Ordering::Acquire);
            if self.next < committed && !self.inner.is_boundary(self.next, begin)? {
                self.end = self.next;
                return Err(Error::InvalidAddress {
                    address: self.next,
                    why: "no entry starts here",
                });
            }
        }
        loop {
            let result = self.advance_inner();
            if result.is_err() {
                // `truncate_until` may have deleted what we were reading:
                // then resume at the new begin.
                if self.next < self.inner.begin.load(Ordering::Acquire) {
                    self.buf.clear();
                    continue;
                }
                self.end = self.next;
            }
            return result;
        }
    }

    fn advance_inner(&mut self) -> Result<Option<(u64, usize, usize)>> {
        let bits = self.inner.hlog.geometry().page_bits;
        loop {
            let committed = self.inner.committed.load(Ordering::Acquire);
            let limit = self.end.min(committed);
            let begin = self.inner.begin.load(Ordering::Acquire);
            if self.next < begin {
                self.next = begin;
            }
            if self.next >= limit {
                return Ok(None);
            }
            if !self.verify
                && let Some((_, to)) =
                    super::read::dropped_range(&self.inner.dropped_ranges(), self.next)
            {
                self.next = to;
                continue;
            }
            let at = self.next;
            let page_end = super::page_end(at, bits);
            let room = page_end - at;
            let readable = page_end.min(committed);
            self.fill(at, HEADER, readable)?;
            let rel = (at - self.buf_start) as usize;
            let mut header = [0u8; 8];
            header.copy_from_slice(&self.buf[rel..rel + 8]);
            let corrupt = |what: &str| Error::Corruption { address: at, what: what.into() };
            let len = match decode_header(header, room) {
                Ok(Header::Empty) => {
                    if self.verify {
                        self.check_zero(at, readable)?;
                    }
                    self.next = page_end;
                    continue;
                }
                Ok(Header::Entry { len, .. }) => len,
                Err(invalid) => return Err(corrupt(invalid.describe())),
            };
            let size = entry_size(len as usize);
            if at + size > committed {
                return Err(corrupt("the entry runs past the commit point"));
            }
            self.fill(at, size, readable)?;
            let rel = (at - self.buf_start) as usize;
            match entry::decode(at, &self.buf[rel..rel + size as usize], room) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(corrupt("the entry header changed while reading")),
                Err(invalid) => return Err(corrupt(invalid.describe())),
            }
            self.next = at + size;
            if self.next > self.end {
                // The scan's end falls inside this entry.
                self.next = at;
                self.end = at;
                return Ok(None);
            }
            return Ok(Some((at, rel + HEADER as usize, len as usize)));
        }
    }

    /// Checks that the log bytes `[from, to)` (in one page) are all zero.
    fn check_zero(&mut self, from: u64, to: u64) -> Result<()> {
        let mut at = from;
        while at < to {
            let n = (to - at).min(CHUNK);
            self.fill(at, n, to)?;
            let rel = (at - self.buf_start) as usize;
            if let Some(i) = self.buf[rel..rel + n as usize].iter().position(|b| *b != 0) {
                return Err(Error::Corruption {
                    address: at + i as u64,
                    what: "a non-zero byte in a page's unused end".into(),
                });
            }
            at += n;
        }
        Ok(())
    }

    /// Makes the buffer hold `[at, at + need)`, reading from `at` up to
    /// `readable` (the end of `at`'s page or the commit point) at most
    /// `max(CHUNK, need)` bytes.
    fn fill(&mut self, at: u64, need: u64, readable: u64) -> Result<()> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if at >= self.buf_start && at + need <= buf_end {
            return Ok(());
        }
        if at + need > readable {
            return Err(Error::Corruption {
                address: at,
                what: "an entry runs past its page or the commit point".into(),
            });
        }
        let len = (readable - at).min(CHUNK.max(need)) as usize;
        self.buf.resize(len, 0);
        self.buf_start = at;
        let result = self.inner.read_bytes(at, &mut self.buf);
        if result.is_err() {
            self.buf.clear();
        }
        result
    }
}

impl<D: Device> Iterator for LogIter<D> {
    type Item = Result<LogEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_owned().transpose()
    }
}
