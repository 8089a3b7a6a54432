//! What scans need of a session: the end of a live scan, copies of log
//! pages still in memory, the settling of a record against the index (is
//! it its key's newest record below the scan's end?), and a key's history.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Location, Session};
use crate::address::Address;
use crate::device::Device;
use crate::record::{EncodedKey, Key, KeyArg, Value};
use crate::scan::pages::{PREFETCH_AHEAD, PageRecord, key_of};
use crate::store::record::{RecordShape, pad8};
use crate::{Error, Result};

/// Whether a record is its key's newest below a scan's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// It is.
    Newest,
    /// The key has a newer record below the end (or the record is not in
    /// its key's chain).
    Older,
    /// The key's chain leaves memory above the record: only the rest of
    /// the scan can tell.
    Unsettled,
}

/// A version of a key, as [`Session::history`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyVersion<V> {
    /// The record's log address.
    pub address: u64,
    /// The store version (CPR) that wrote it.
    pub version: u32,
    /// Its value; `None` for a delete (a tombstone).
    pub value: Option<V>,
}

impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    /// A session for a scan: it keeps the store open, counts as one of its
    /// sessions, and is left out of checkpoints' commit points.
    pub(crate) fn for_scan(open: Arc<crate::store::OpenStore<K, V, D>>) -> Result<Self> {
        // SAFETY: as in `Session::new`: `open` (kept as the last field)
        // holds the state in place for the session's whole life.
        let store: &'static crate::store::StoreInner<K, V, D> =
            unsafe { &*Arc::as_ptr(&open.inner) };
        let max = store.config.max_sessions;
        if store.open_sessions.fetch_add(1, Ordering::AcqRel) >= max {
            store.open_sessions.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::TooManySessions { max });
        }
        let (version, _) = store.cpr.load();
        let slot = store.sessions.open_new_internal(version);
        Self::with_keep(store, super::Keep::Open(open), slot, 0)
    }

    /// The end of a live scan: the tail now, once every record below it is
    /// written (a session that allocated below it is protected until its
    /// record is initialized, so after a drain none is half-written).
    pub(crate) fn scan_end(&mut self) -> Address {
        self.begin();
        let end = self.store.log.tail_address();
        self.wait_for_drain();
        self.end();
        end
    }

    /// Copies the log's `[at, end)` (8-byte aligned, within one page) into
    /// `out` if the page is still in memory; false if it was evicted. Every
    /// record below `end` is written (see `scan_end`). Values that sessions
    /// may still update in place are copied consistently, each by itself.
    pub(crate) fn copy_from_memory(
        &mut self,
        at: u64,
        end: u64,
        out: &mut [u8],
        shape: &RecordShape,
        page_size: u64,
    ) -> Result<bool> {
        self.begin();
        let result = self.copy_from_memory_protected(at, end, out, shape, page_size);
        self.end();
        result
    }

    fn copy_from_memory_protected(
        &mut self,
        at: u64,
        end: u64,
        out: &mut [u8],
        shape: &RecordShape,
        page_size: u64,
    ) -> Result<bool> {
        let log = &self.store.log;
        let start = Address::new(at).ok_or(Error::LogFull)?;
        if start < log.head_address() {
            return Ok(false);
        }
        // Records below this are immutable for as long as we are protected.
        let mutable_from = log.safe_read_only_address().raw();
        // SAFETY: protected, and `at >= head` observed after protecting:
        // the page's frame holds it until we unprotect; `[at, end)` lies in
        // one page, so its bytes are inside the frame.
        let src = unsafe { log.record_ptr(start) };
        // The immutable part: no session writes it while we are protected
        // (every record below `end` is written, see `scan_end`), so a
        // plain copy.
        let fixed = (mutable_from.clamp(at, end) - at) as usize;
        // SAFETY: as above; `out` is ours, `fixed <= out.len()`.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), fixed) };
        if fixed == out.len() {
            return Ok(true);
        }
        // The rest: sessions may write some of its words concurrently,
        // hence atomic loads (`at` and `fixed` are 8-byte aligned).
        let words = src.wrapping_add(fixed).cast::<AtomicU64>();
        for (i, word) in out[fixed..].chunks_exact_mut(8).enumerate() {
            // SAFETY: word `i` of `[at + fixed, end)`, inside the frame.
            let value = unsafe { &*words.add(i) }.load(Ordering::Relaxed);
            word.copy_from_slice(&value.to_ne_bytes());
        }
        // Values in the mutable region: copy each again consistently (a
        // value under its seqlock, a one-word value whole).
        let mut scratch = std::mem::take(&mut self.scratch);
        let walked = crate::checkpoint::for_each_record(
            shape,
            out,
            at,
            page_size,
            |address, bytes, info, key_len| {
                if address < mutable_from || info.is_empty() {
                    return;
                }
                let Some(record_at) = Address::new(address) else { return };
                // SAFETY: as above, for a record inside the copied range.
                let record = unsafe { self.record(record_at) };
                let (_, value_len) = record.lengths();
                let value = record.copy_value(key_len, value_len, &mut scratch);
                let value_at = shape.header_size + pad8(key_len);
                if let Some(dst) = bytes.get_mut(value_at..value_at + value.len()) {
                    dst.copy_from_slice(value);
                }
                // The header too (a delete in place sets its bit).
                bytes[..8].copy_from_slice(&record.info().raw().to_le_bytes());
            },
        );
        self.scratch = scratch;
        walked.map(|_| true)
    }

    /// Settles each record of a page read by a scan that ends at `end`
    /// (see [`Settle`]), into `out`; `hashes` are their keys' hashes.
    pub(crate) fn settle_page(
        &mut self,
        shape: &RecordShape,
        chunk: &[u8],
        records: &[PageRecord],
        hashes: &[u64],
        end: Address,
        out: &mut Vec<Settle>,
    ) {
        out.clear();
        self.begin();
        for (i, r) in records.iter().enumerate() {
            if let Some(ahead) = hashes.get(i + PREFETCH_AHEAD) {
                self.store.index.prefetch(*ahead);
            }
            let key = EncodedKey(key_of(shape, r.bytes(chunk)));
            out.push(self.settle(&key, hashes[i], r.address, end));
        }
        self.end();
    }

    /// Whether the record at `address` is `key`'s newest below `end`, by a
    /// walk of its chain in memory. Protected.
    fn settle(&self, key: &EncodedKey<'_>, hash: u64, address: u64, end: Address) -> Settle {
        let Some(slot) = self.store.index.find_entry(hash) else { return Settle::Older };
        let mut at = self.log_start(slot.entry.address());
        if at.raw() == address {
            // The chain starts at the record itself (the common case): it
            // is the newest record of its key, below the end.
            return Settle::Newest;
        }
        let log = &self.store.log;
        let head = log.head_address();
        while at.is_valid() && at >= head {
            // SAFETY: protected, and `at >= head` observed after protecting.
            let record = unsafe { self.record(at) };
            let info = record.info();
            if at < end && !info.is_invalid() {
                let (key_len, _) = record.lengths();
                if <EncodedKey<'_> as KeyArg<K>>::key_arg_matches(key, record.key_bytes(key_len)) {
                    return if at.raw() == address { Settle::Newest } else { Settle::Older };
                }
            }
            at = info.previous();
        }
        match at.raw() {
            a if a == address => Settle::Newest,
            a if a > address && at.is_valid() => Settle::Unsettled,
            _ => Settle::Older,
        }
    }

    /// Every version of `key` the log still holds, newest first: one per
    /// record of the key, down to the begin address, in memory and on the
    /// device. `None` values are deletes. An update or delete made in place
    /// (the key's newest record is in the mutable region, see
    /// [`crate::Store::log_regions`]) changes that record rather than
    /// adding a version; so does compaction, which moves the live record of
    /// a compacted range to the tail and drops the older ones.
    ///
    /// ```
    /// use oxifaster::Store;
    ///
    /// let store = Store::<u64, String>::builder().open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&1, "a")?;
    /// session.upsert(&1, "bb")?; // another size: a new record
    /// session.upsert(&1, "cc")?; // the same size: in place
    /// session.upsert(&1, "ddd")?;
    /// let values: Vec<_> = session.history(&1)?.into_iter().map(|v| v.value).collect();
    /// let text = |s: &str| Some(s.to_string());
    /// assert_eq!(values, [text("ddd"), text("cc"), text("a")]);
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn history<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<Vec<KeyVersion<V>>> {
        self.next_serial();
        self.begin();
        let mut versions = Vec::new();
        let on_device = self.history_in_memory(key, &mut versions);
        self.end();
        let Some(mut at) = on_device? else { return Ok(versions) };
        let disk = self.disk();
        let key = key.key_arg_to_aligned_bytes();
        while let Some(record) = disk.find(&key, at)? {
            let value = match record.info.is_tombstone() {
                true => None,
                false => Some(V::decode(&record.value)?),
            };
            versions.push(KeyVersion {
                address: record.address.raw(),
                version: record.info.version(),
                value,
            });
            at = record.info.previous();
            if !at.is_valid() {
                break;
            }
        }
        Ok(versions)
    }

    /// The in-memory part of `history`; where the chain continues on the
    /// device, if it does. Protected.
    fn history_in_memory<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        out: &mut Vec<KeyVersion<V>>,
    ) -> Result<Option<Address>> {
        let Some(slot) = self.store.index.find_entry(key.key_arg_hash()) else { return Ok(None) };
        let mut at = self.log_start(slot.entry.address());
        loop {
            match self.locate(key, at) {
                Location::Memory(found) => {
                    // SAFETY: `locate` found it at or above head while protected.
                    let record = unsafe { self.record(found) };
                    let info = record.info();
                    let value = if info.is_tombstone() {
                        None
                    } else {
                        let (key_len, value_len) = record.lengths();
                        Some(V::decode(record.copy_value(key_len, value_len, &mut self.scratch))?)
                    };
                    out.push(KeyVersion { address: found.raw(), version: info.version(), value });
                    at = info.previous();
                }
                Location::Disk(from) => return Ok(Some(from)),
                Location::Absent | Location::BelowBegin => return Ok(None),
            }
        }
    }
}
