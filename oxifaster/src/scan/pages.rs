//! Reading the log page by page: from the device (each page checked
//! against its seal) or, for pages still in memory, copied out of their
//! frames under epoch protection.

use crate::address::Address;
use crate::checkpoint;
use crate::device::Device;
use crate::hlog::seal;
use crate::record::{Key, Value};

/// A page buffer: block-aligned, so that direct I/O reads into it with no
/// copy.
pub(crate) type PageBuf = crate::mem::BlockBuf;
use crate::store::StoreInner;
use crate::store::record::{RecordFormat, RecordInfo, RecordShape, pad8};
use crate::{Error, Result};

/// How many records ahead the scan loops prefetch what they will look up.
pub(crate) const PREFETCH_AHEAD: usize = 16;

/// The hashes of the keys of `records`, into `out`.
pub(crate) fn key_hashes(
    shape: &RecordShape,
    chunk: &[u8],
    records: &[PageRecord],
    out: &mut Vec<u64>,
) {
    out.clear();
    out.extend(records.iter().map(|r| crate::record::hash_bytes(key_of(shape, r.bytes(chunk)))));
}

/// A record's key and value bytes.
pub(crate) fn key_value<'b>(shape: &RecordShape, bytes: &'b [u8]) -> (&'b [u8], &'b [u8]) {
    let (key_len, value_len) = shape.lengths_in(&bytes[..shape.header_size]);
    let key = &bytes[shape.header_size..shape.header_size + key_len];
    let value_at = shape.header_size + pad8(key_len);
    (key, &bytes[value_at..value_at + value_len])
}

/// The key bytes of a record (`bytes` from the header on).
pub(crate) fn key_of<'a>(shape: &RecordShape, bytes: &'a [u8]) -> &'a [u8] {
    let (key_len, _) = shape.lengths_in(&bytes[..shape.header_size]);
    &bytes[shape.header_size..shape.header_size + key_len]
}

/// Reads the log's pages back from the device, each checked against its
/// seal, or (for a live scan) out of memory where a page still is, and
/// walks their records.
pub(crate) struct Pages<D> {
    reader: crate::hlog::LogReader<D>,
    pub(crate) shape: RecordShape,
    pub(crate) page_size: u64,
    /// The log's begin address when this was made.
    pub(crate) begin: u64,
    /// Dead ranges left by recoveries (nothing was written there).
    gaps: Vec<(u64, u64)>,
    buf: PageBuf,
    /// The part of `buf` the last [`Pages::read_chunk`] filled.
    chunk: std::ops::Range<usize>,
    /// The valid records of that chunk (reused).
    pub(crate) records: Vec<PageRecord>,
    /// A page already read from the device (by a read-ahead), used
    /// instead of reading it again, and a buffer no longer needed.
    preloaded: Option<(u64, PageBuf)>,
    spent: Option<PageBuf>,
    /// Pages below this were only on the device when this was made.
    pub(crate) on_device: u64,
}

/// Copies the log's `[at, end)` (within one page) into the slice if it is
/// still in memory (see `Session::copy_from_memory`); false if not.
pub(crate) type FromMemory<'m> = &'m mut dyn FnMut(u64, u64, &mut [u8]) -> Result<bool>;

impl<D: Device> Pages<D> {
    pub(crate) fn new<K: Key, V: Value>(inner: &StoreInner<K, V, D>) -> Result<Self> {
        let log = &inner.log;
        Ok(Self {
            reader: log.reader(),
            shape: RecordFormat::<K, V>::shape(),
            page_size: log.page_size(),
            begin: log.begin_address().raw(),
            gaps: inner.checkpoints.gaps.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            buf: PageBuf::zeroed(log.page_size() as usize)?,
            chunk: 0..0,
            records: Vec::new(),
            preloaded: None,
            spent: None,
            on_device: log.head_address().raw().min(log.flushed_until_address().raw())
                & !(log.page_size() - 1),
        })
    }

    /// A reader of this log's device.
    pub(crate) fn log_reader(&self) -> crate::hlog::LogReader<D> {
        self.reader.clone()
    }

    /// Whether a page read ahead for `page` is waiting to be used.
    pub(crate) fn has_preloaded(&self, page: u64) -> bool {
        self.preloaded.as_ref().is_some_and(|(p, _)| *p == page)
    }

    /// Offers the page at `page`, read from the device (whole), for the
    /// next read of that page.
    pub(crate) fn preload(&mut self, page: u64, bytes: PageBuf) {
        if let Some((_, old)) = self.preloaded.replace((page, bytes)) {
            self.spent = Some(old);
        }
    }

    /// A page buffer this reader no longer needs (after a preloaded page
    /// was used or passed over).
    pub(crate) fn take_spent(&mut self) -> Option<PageBuf> {
        self.spent.take()
    }

    /// Reads the page at `page` with its bytes up to `end` sealed (the
    /// preloaded copy if there is one).
    pub(crate) fn load(&mut self, page: u64, end: u64) -> Result<()> {
        match self.preloaded.take() {
            Some((p, bytes)) if p == page && bytes.len() == self.buf.len() => {
                self.spent = Some(std::mem::replace(&mut self.buf, bytes));
            }
            other => {
                self.spent = other.map(|(_, bytes)| bytes).or(self.spent.take());
                let start = Address::new(page).ok_or(Error::LogFull)?;
                self.reader.read_from_device(start, self.buf.as_mut_slice())?;
            }
        }
        let need = (end - page).min(self.reader.page_body());
        seal::check_page(page, self.buf.as_slice(), need, false).map_err(|what| Error::Corruption {
            address: page,
            what: format!("the page's seal: {what}"),
        })
    }

    /// Whether `until` ends a record (or falls where its page's records
    /// end), walking its page from `from` or the page's start.
    pub(crate) fn ends_a_record(&mut self, from: u64, until: u64) -> Result<bool> {
        let page = until & !(self.page_size - 1);
        if until == page || self.gaps.iter().any(|(f, t)| (*f..=*t).contains(&until)) {
            return Ok(true);
        }
        let start = from.max(page);
        self.load(page, until)?;
        let chunk = &mut self.buf.as_mut_slice()[(start - page) as usize..(until - page) as usize];
        Ok(checkpoint::for_each_record(&self.shape, chunk, start, self.page_size, |_, _, _, _| {})
            .is_ok())
    }

    /// Calls `f(address, record bytes, header)` for every valid record in
    /// `[from, to)` (`from` a record boundary) on the device, stopping at
    /// its first error; returns the bytes read.
    pub(crate) fn walk(
        &mut self,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, &[u8], RecordInfo) -> Result<()>,
    ) -> Result<u64> {
        self.walk_pages(from, to, |chunk, records| {
            records.iter().try_for_each(|r| f(r.address, r.bytes(chunk), r.info))
        })
    }

    /// [`Pages::walk`] a page at a time: `f(chunk, records)` gets the
    /// valid records of each page's part of the range at once (for loops
    /// that prefetch ahead).
    pub(crate) fn walk_pages(
        &mut self,
        from: u64,
        to: u64,
        mut f: impl FnMut(&[u8], &[PageRecord]) -> Result<()>,
    ) -> Result<u64> {
        let mut scanned = 0;
        let mut at = from;
        while at < to {
            let next = self.read_chunk(at, to, &mut |_, _, _| Ok(false))?;
            scanned += next - at;
            f(self.chunk(), &self.records)?;
            at = next;
        }
        Ok(scanned)
    }

    /// Reads the part of `[at, to)` in `at`'s page (up to the next dead
    /// range) — from memory if `memory` finds it there, else from the
    /// device — and lists its valid records; returns where the next part
    /// starts. A part inside a dead range reads as no records.
    pub(crate) fn read_chunk(&mut self, at: u64, to: u64, memory: FromMemory<'_>) -> Result<u64> {
        self.records.clear();
        self.chunk = 0..0;
        let end = self.chunk_end(at, to);
        if self.gaps.iter().any(|(f, t)| (*f..*t).contains(&at)) {
            return Ok(end);
        }
        let page = at & !(self.page_size - 1);
        let range = (at - page) as usize..(end - page) as usize;
        if !memory(at, end, &mut self.buf.as_mut_slice()[range.clone()])? {
            self.load(page, end)?;
        }
        let chunk = &mut self.buf.as_mut_slice()[range.clone()];
        let records = &mut self.records;
        checkpoint::for_each_record(
            &self.shape,
            chunk,
            at,
            self.page_size,
            |address, bytes, info, _| {
                if !info.is_invalid() {
                    let offset = (address - at) as usize;
                    records.push(PageRecord { address, offset, len: bytes.len(), info });
                }
            },
        )?;
        self.chunk = range;
        Ok(end)
    }

    /// Where the part of `[at, to)` that [`Pages::read_chunk`] reads from
    /// `at` ends (and the next begins).
    pub(crate) fn chunk_end(&self, at: u64, to: u64) -> u64 {
        if let Some(&(_, gap_end)) = self.gaps.iter().find(|(f, t)| (*f..*t).contains(&at)) {
            return gap_end.min(to).max(at + 1);
        }
        let page = at & !(self.page_size - 1);
        let end = (page + self.page_size).min(to);
        self.gaps.iter().filter(|(f, _)| *f > at).map(|(f, _)| *f).fold(end, u64::min)
    }

    /// Exchanges the last chunk read with `other` (a chunk another
    /// reader read, or a spare buffer).
    pub(crate) fn swap_chunk(&mut self, other: &mut Chunk) {
        std::mem::swap(&mut self.buf, &mut other.buf);
        std::mem::swap(&mut self.chunk, &mut other.range);
        std::mem::swap(&mut self.records, &mut other.records);
    }

    /// A spare chunk of this reader's page size.
    pub(crate) fn spare_chunk(&self) -> Result<Chunk> {
        Ok(Chunk {
            buf: PageBuf::zeroed(self.page_size as usize)?,
            range: 0..0,
            records: Vec::new(),
        })
    }

    /// The bytes the last [`Pages::read_chunk`] read (its records'
    /// offsets are into them).
    pub(crate) fn chunk(&self) -> &[u8] {
        &self.buf.as_slice()[self.chunk.clone()]
    }
}

/// A chunk's bytes and records, moved between readers (see
/// [`Pages::swap_chunk`]).
pub(crate) struct Chunk {
    buf: PageBuf,
    range: std::ops::Range<usize>,
    records: Vec<PageRecord>,
}

/// A valid record of a page [`Pages::walk_pages`] read.
pub(crate) struct PageRecord {
    pub(crate) address: u64,
    /// Where its bytes start in the chunk, and their length.
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) info: RecordInfo,
}

impl PageRecord {
    pub(crate) fn bytes<'c>(&self, chunk: &'c [u8]) -> &'c [u8] {
        &chunk[self.offset..self.offset + self.len]
    }
}
