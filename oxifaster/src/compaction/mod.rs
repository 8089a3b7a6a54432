//! Compaction: reclaiming the log's oldest range while sessions run.
//!
//! [`Store::compact`] takes the range `[begin, until)` of the log (`until`
//! at most the safe read-only address, on a record boundary) and:
//!
//! 1. writes the log up to `until` to the device and syncs it (so every
//!    page of the range has a durable seal covering it);
//! 2. reads the range back page by page, checking each page's seal, and
//!    for every valid record asks an internal session to copy it to the
//!    tail *if it is still the newest record of its key*
//!    (`Session::copy_if_newest`, FASTER's `ConditionalCopyToTail`; its
//!    protocol and invariant are at the top of `store/session/copy.rs`).
//!    Superseded records and tombstones that are their key's newest record
//!    are not copied: once the range is gone, an older record of the key
//!    cannot remain, so the key is absent as the tombstone said;
//! 3. moves the begin address to `until` (after every copy is published:
//!    a reader whose chain walk ends below the new begin address while the
//!    key's index entry changed reads again from the index, see
//!    `Session::entry_moved`), which makes records below it unreachable
//!    (index entries pointing there read as absent);
//! 4. deletes the device's segments wholly below the begin address that no
//!    checkpoint in the store directory still needs ([`Store::reclaim`]):
//!    every complete checkpoint pins the log from its own begin address,
//!    and a running checkpoint pins the begin address it recorded when it
//!    started.
//!
//! Compactions run one at a time. The new begin address becomes durable
//! with the next checkpoint; a crash before it recovers the previous
//! checkpoint, whose log is still on the device (it pins it).

use std::time::{Duration, Instant};

use crate::address::Address;
use crate::checkpoint;
use crate::device::Device;
use crate::hlog::seal;
use crate::record::{AlignedBytes, Key, Value};
use crate::store::record::{RecordFormat, pad8};
use crate::store::{CopyOutcome, Session, Store};
use crate::{Error, Result};

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// The begin address before: the range compacted is `[from, until)`.
    pub from: u64,
    /// The new begin address.
    pub until: u64,
    /// Bytes of log read back.
    pub scanned_bytes: u64,
    /// Valid records in the range.
    pub records: u64,
    /// Records copied to the tail (each the newest of its key).
    pub copied: u64,
    /// The bytes those copies take at the tail.
    pub copied_bytes: u64,
    /// Tombstones dropped (each the newest record of its key).
    pub tombstones_dropped: u64,
    /// Bytes of log segments deleted (see [`Store::reclaim`]).
    pub reclaimed_bytes: u64,
    /// How long it took.
    pub duration: Duration,
}

impl<K: Key, V: Value, D: Device> Store<K, V, D> {
    /// Compacts the log below `until` while sessions keep running: every
    /// record in `[begin, until)` that is still the newest of its key is
    /// copied to the tail (unless it is a tombstone), then the begin
    /// address moves to `until` and the log segments below it that no
    /// checkpoint needs are deleted. `until` must be a record boundary at
    /// or above the begin address and at most the safe read-only address
    /// ([`Store::log_regions`]); a page boundary always is one.
    ///
    /// ```
    /// use oxifaster::Store;
    ///
    /// let store = Store::<u64, String>::builder()
    ///     .log_memory_size_bytes(1 << 16)
    ///     .page_size_bits(12)
    ///     .open()?;
    /// let mut session = store.start_session()?;
    /// for round in 1..=10 {
    ///     for key in 0..1_000u64 {
    ///         // A longer value each round: every upsert appends.
    ///         session.upsert(&key, "x".repeat(round).as_str())?;
    ///     }
    /// }
    /// let regions = store.log_regions();
    /// let page = regions.page_size_bytes;
    /// let until = regions.safe_read_only_address / page * page;
    /// let report = store.compact(until)?;
    /// assert_eq!(store.log_regions().begin_address, until);
    /// assert!(report.copied < report.records, "superseded records are not copied");
    /// assert_eq!(session.read_blocking(&42)?, Some("x".repeat(10)));
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn compact(&self, until: u64) -> Result<CompactionReport> {
        let started = Instant::now();
        let inner = &self.inner;
        let _one = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let log = &inner.log;
        log.check_poisoned()?;
        let from = log.begin_address().raw();
        let mut report = CompactionReport {
            from,
            until: from,
            scanned_bytes: 0,
            records: 0,
            copied: 0,
            copied_bytes: 0,
            tombstones_dropped: 0,
            reclaimed_bytes: 0,
            duration: Duration::ZERO,
        };
        let bad = |why| Err(Error::InvalidAddress { address: until, why });
        if until < from {
            return bad("compaction cannot end below the begin address");
        }
        if until > log.safe_read_only_address().raw() {
            return bad("compaction stops at the safe read-only address (see Store::log_regions)");
        }
        if !until.is_multiple_of(8) {
            return bad("not a record boundary");
        }
        if until == from {
            return Ok(report);
        }
        let target = Address::new(until).ok_or(Error::LogFull)?;
        let mut session = Session::internal(inner.clone())?;
        // 1. The range on the device, each page with a durable seal.
        session.with_handle(|handle| log.flush_written(target, handle))?;
        log.sync_device()?;
        // 2. Copy what is still live.
        let format = RecordFormat::<K, V>::shape();
        let page_size = log.page_size();
        let gaps = inner.checkpoints.gaps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let reader = log.reader();
        let mut page_buf = AlignedBytes::zeroed(page_size as usize);
        let load = |page: u64, end: u64, buf: &mut AlignedBytes| -> Result<()> {
            let start = Address::new(page).ok_or(Error::LogFull)?;
            reader.read_from_device(start, buf.as_mut_slice())?;
            let need = (end - page).min(log.page_body());
            seal::check_page(page, buf.as_slice(), need, false).map_err(|what| Error::Corruption {
                address: page,
                what: format!("the page's seal: {what}"),
            })
        };
        // `until` must end a record (or fall where the page's records end):
        // checked before anything is copied.
        let last_page = until & !(page_size - 1);
        if until > last_page && !gaps.iter().any(|(f, t)| (*f..=*t).contains(&until)) {
            let start = from.max(last_page);
            load(last_page, until, &mut page_buf)?;
            let chunk = &mut page_buf.as_mut_slice()
                [(start - last_page) as usize..(until - last_page) as usize];
            if checkpoint::for_each_record(&format, chunk, start, page_size, |_, _, _, _| {})
                .is_err()
            {
                return bad("not a record boundary");
            }
        }
        let mut at = from;
        while at < until {
            if let Some(&(_, to)) = gaps.iter().find(|(f, t)| (*f..*t).contains(&at)) {
                // A dead range left by a recovery: nothing was written there.
                at = to.min(until);
                continue;
            }
            let page = at & !(page_size - 1);
            let end = (page + page_size).min(until);
            let end = gaps.iter().filter(|(f, _)| *f > at).map(|(f, _)| *f).fold(end, u64::min);
            load(page, end, &mut page_buf)?;
            report.scanned_bytes += end - at;
            let chunk = &mut page_buf.as_mut_slice()[(at - page) as usize..(end - page) as usize];
            let mut records = Vec::new();
            checkpoint::for_each_record(
                &format,
                chunk,
                at,
                page_size,
                |address, bytes, info, _| {
                    if !info.is_invalid() {
                        records.push((address, bytes.to_vec(), info));
                    }
                },
            )?;
            for (address, bytes, info) in records {
                report.records += 1;
                let (key_len, value_len) = format.lengths_in(&bytes[..format.header_size]);
                let key = &bytes[format.header_size..format.header_size + key_len];
                let value_at = format.header_size + pad8(key_len);
                let value = &bytes[value_at..value_at + value_len];
                let address = Address::new(address).ok_or(Error::LogFull)?;
                match session.copy_if_newest(address, key, value, info.is_tombstone())? {
                    CopyOutcome::Copied => {
                        report.copied += 1;
                        report.copied_bytes += bytes.len() as u64;
                    }
                    CopyOutcome::Tombstone => report.tombstones_dropped += 1,
                    CopyOutcome::Superseded => {}
                }
            }
            at = end;
        }
        // 3. The begin address, once every copy is published.
        session.with_handle(|handle| log.shift_begin(target, handle))?;
        {
            let mut gaps = inner.checkpoints.gaps.lock().unwrap_or_else(|p| p.into_inner());
            gaps.retain(|(_, to)| *to > until);
        }
        drop(session);
        report.until = until;
        // 4. The segments nothing needs any more.
        report.reclaimed_bytes = self.reclaim()?;
        report.duration = started.elapsed();
        tracing::info!(?report, "compacted");
        Ok(report)
    }

    /// Deletes the log's device segments wholly below the begin address
    /// that no checkpoint in the store directory still needs (each complete
    /// checkpoint needs the log from its own begin address; a running one
    /// from the begin address it recorded when it started). Returns the
    /// bytes of the segments deleted. Compaction calls it; call it after
    /// deleting checkpoints by hand.
    pub fn reclaim(&self) -> Result<u64> {
        let inner = &self.inner;
        let pin = inner.checkpoints.log_pin.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep = inner.log.begin_address().raw();
        if let Some(running) = *pin {
            keep = keep.min(running);
        }
        if let Some(dir) = &inner.dir {
            for info in checkpoint::list(dir)? {
                if info.kind != checkpoint::CheckpointKind::IndexOnly {
                    keep = keep.min(info.begin_address);
                }
            }
        }
        let device = inner.log.device();
        let stored_before = device.stored_bytes();
        device.truncate_before(keep).map_err(|source| Error::Io {
            context: format!("deleting log segments below {keep:#x}"),
            source,
        })?;
        Ok(stored_before.saturating_sub(device.stored_bytes()))
    }
}
