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
//! Compactions run one at a time. With a disk budget
//! ([`crate::StoreBuilder::disk_budget`]) a background task runs them (see
//! `budget`). The new begin address becomes durable
//! with the next checkpoint; a crash before it recovers the previous
//! checkpoint, whose log is still on the device (it pins it).

mod budget;

pub(crate) use budget::BudgetTask;

use crate::scan::keys::KeyTable;
use crate::scan::pages::{PREFETCH_AHEAD, Pages, key_hashes, key_of, key_value};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::checkpoint;
use crate::device::Device;
use crate::record::{Key, Value};
pub use crate::store::CompactionTotals;
use crate::store::record::RecordShape;
use crate::store::{CopyOutcome, Session, Store, StoreInner};
use crate::{Error, Result};

/// What a key's chain walk on the device costs, in bytes of sequential
/// log scan (a read of a few KiB and a system call each): the scan
/// compaction reads the rest of the log only when its unsettled keys
/// would cost more walks than that.
const WALK_COST_BYTES: u64 = 4096;

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
        self.compact_with(until, CompactionKind::default())
    }

    /// [`Store::compact`] in the given form (see [`CompactionKind`]).
    pub fn compact_with(&self, until: u64, kind: CompactionKind) -> Result<CompactionReport> {
        let _span = tracing::info_span!("compact", until, ?kind).entered();
        crate::hlog::unthrottled(|| compact(&self.inner, until, kind))
    }

    /// Deletes the log's device segments wholly below the begin address
    /// that no checkpoint in the store directory still needs (each complete
    /// checkpoint needs the log from its own begin address; a running one
    /// from the begin address it recorded when it started). Returns the
    /// bytes of the segments deleted. Compaction calls it; call it after
    /// deleting checkpoints by hand.
    pub fn reclaim(&self) -> Result<u64> {
        reclaim(&self.inner)
    }

    /// What compactions did since the store opened, summed.
    pub fn compaction_totals(&self) -> CompactionTotals {
        *self.inner.compaction_totals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which records [`Store::compact_with`] examines one by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompactionKind {
    /// For every record of the range, walk its key's chain from the index
    /// to see whether it is still the newest (FASTER's lookup compaction).
    /// No memory beyond a page; a walk per record, which reads the device
    /// where chains leave memory.
    Lookup,
    /// Settle each record against the index in memory (a record whose
    /// key's chain reaches it before leaving memory is copied at once, or
    /// found superseded), and collect the keys that cannot be settled so
    /// (the newest record of each in the range) in a temporary table; drop
    /// those that have a record in the log above the range (one sequential
    /// read of it, or a chain walk each when that costs less), and copy the
    /// survivors (FASTER's scan compaction, with the index first). Memory:
    /// one entry per unsettled key. The default: on a 50:50 workload over
    /// a log larger than memory it is several times faster
    /// (BENCHMARKS.md).
    #[default]
    Scan,
}

/// Where a migration puts the records a compaction keeps, instead of the
/// log's tail (the F2 store's cold tier).
pub(crate) trait Migrate {
    /// The record of `key` (its encoding) with `value` is its key's newest
    /// and no tombstone: keep it. A record written here later for the key
    /// supersedes it (the caller reads this log first).
    fn keep(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Every record kept is to be visible where it went: called before the
    /// begin address moves past the originals.
    fn publish(&mut self) -> Result<()>;
}

/// [`Store::compact_with`] on the store's shared state.
pub(crate) fn compact<K: Key, V: Value, D: Device>(
    inner: &Arc<StoreInner<K, V, D>>,
    until: u64,
    kind: CompactionKind,
) -> Result<CompactionReport> {
    compact_to(inner, until, kind, None)
}

/// [`compact`], keeping the live records in `target` instead of copying
/// them to the tail when one is given (a migration).
pub(crate) fn compact_to<K: Key, V: Value, D: Device>(
    inner: &Arc<StoreInner<K, V, D>>,
    until: u64,
    kind: CompactionKind,
    mut migrate: Option<&mut dyn Migrate>,
) -> Result<CompactionReport> {
    let started = Instant::now();
    let _one = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
    // A running scan must not see records it has yet to read move above
    // its end (see `scan`); no scan starts while we hold the lock.
    inner.scans.wait_idle();
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
    flush_and_sync(&mut session, log, target)?;
    let mut pages = Pages::new(inner)?;
    if !pages.ends_a_record(from, until)? {
        return bad("not a record boundary");
    }
    // 2. Copy what is still live, straight from the page read back.
    let shape = pages.shape;
    let mut copier = Copier {
        session: &mut session,
        shape,
        copied: 0,
        bytes: 0,
        tombstones: 0,
        target: migrate.as_deref_mut(),
    };
    match kind {
        CompactionKind::Lookup => {
            let mut records = 0;
            report.scanned_bytes += pages.walk(from, until, |address, bytes, info| {
                records += 1;
                copier.copy(address, bytes, info.is_tombstone(), true).map(drop)
            })?;
            report.records = records;
        }
        CompactionKind::Scan => {
            // Each record the index settles in memory is copied (or not)
            // at once; for the others, the newest record of their key in
            // the range goes in the map.
            let mut unsettled = KeyTable::new();
            let mut records = 0;
            let mut hashes = Vec::new();
            report.scanned_bytes += pages.walk_pages(from, until, |chunk, page| {
                records += page.len() as u64;
                key_hashes(&shape, chunk, page, &mut hashes);
                for (i, r) in page.iter().enumerate() {
                    if let Some(ahead) = hashes.get(i + PREFETCH_AHEAD) {
                        inner.index.prefetch(*ahead);
                    }
                    let (bytes, tombstone) = (r.bytes(chunk), r.info.is_tombstone());
                    let key = key_of(&shape, bytes);
                    match copier.copy(r.address, bytes, tombstone, false)? {
                        CopyOutcome::Unsettled => {
                            unsettled.insert(hashes[i], key, r.address, tombstone)
                        }
                        // Settled: an older record of the key in the range
                        // is not its newest.
                        _ => unsettled.remove(hashes[i], key),
                    }
                }
                Ok(())
            })?;
            report.records = records;
            // Keys with a record above the range are not copied: one read
            // of the rest of the log finds them, unless the chain walks from
            // the index (a device read each) cost less. The scan is a filter
            // only: a key it leaves in goes through the conditional copy,
            // which decides.
            let scan_end = log.safe_read_only_address();
            let rest = scan_end.raw().saturating_sub(until);
            if unsettled.len() as u64 * WALK_COST_BYTES >= rest {
                flush_and_sync(copier.session, log, scan_end)?;
                report.scanned_bytes +=
                    pages.walk_pages(until, scan_end.raw(), |chunk, page| {
                        key_hashes(&shape, chunk, page, &mut hashes);
                        for (i, r) in page.iter().enumerate() {
                            if let Some(ahead) = hashes.get(i + PREFETCH_AHEAD) {
                                unsettled.prefetch(*ahead);
                            }
                            unsettled.remove(hashes[i], key_of(&shape, r.bytes(chunk)));
                        }
                        Ok(())
                    })?;
            }
            // Read the survivors' pages back, and copy.
            let survivors = unsettled.into_sorted();
            let mut at = 0;
            while at < survivors.len() {
                let page = survivors[at].0 & !(pages.page_size - 1);
                let end = (page + pages.page_size).min(until);
                let in_page = survivors[at..].iter().take_while(|(a, _)| *a < end).count();
                let wanted = &survivors[at..at + in_page];
                let mut next = 0;
                pages.walk(page.max(from), end, |address, bytes, _| {
                    // Both in address order.
                    if next < wanted.len() && wanted[next].0 == address {
                        next += 1;
                        copier.copy(address, bytes, wanted[next - 1].1, true)?;
                    }
                    Ok(())
                })?;
                at += in_page;
            }
        }
    }
    (report.copied, report.copied_bytes) = (copier.copied, copier.bytes);
    report.tombstones_dropped = copier.tombstones;
    if let Some(migrate) = migrate {
        migrate.publish()?;
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
    report.reclaimed_bytes = reclaim(inner)?;
    report.duration = started.elapsed();
    {
        let mut totals = inner.compaction_totals.lock().unwrap_or_else(|p| p.into_inner());
        totals.compactions += 1;
        totals.scanned_bytes += report.scanned_bytes;
        totals.copied_bytes += report.copied_bytes;
        totals.duration += report.duration;
    }
    tracing::info!(?report, "compacted");
    Ok(report)
}

/// Writes the log up to `to` to the device and syncs it.
fn flush_and_sync<K: Key, V: Value, D: Device>(
    session: &mut Session<K, V, D>,
    log: &crate::hlog::HybridLog<D>,
    to: Address,
) -> Result<()> {
    session.with_handle(|handle| log.flush_written(to, handle))?;
    log.sync_device()
}

/// Copies records that are still their key's newest, counting.
struct Copier<'s, 't, K: Key, V: Value, D: Device> {
    session: &'s mut Session<K, V, D>,
    shape: RecordShape,
    copied: u64,
    bytes: u64,
    tombstones: u64,
    target: Option<&'s mut (dyn Migrate + 't)>,
}

impl<K: Key, V: Value, D: Device> Copier<'_, '_, K, V, D> {
    /// Copies the record at `address` (its bytes from the header on) if it
    /// is still its key's newest and not a tombstone (see
    /// `Session::copy_if_newest`, and `device`).
    fn copy(
        &mut self,
        address: u64,
        bytes: &[u8],
        tombstone: bool,
        device: bool,
    ) -> Result<CopyOutcome> {
        let (key, value) = key_value(&self.shape, bytes);
        let at = Address::new(address).ok_or(Error::LogFull)?;
        let tell = self.target.is_some();
        let outcome = self.session.copy_if_newest(at, key, value, tombstone, device, tell)?;
        match outcome {
            CopyOutcome::Newest => {
                if let Some(target) = self.target.as_deref_mut() {
                    target.keep(key, value)?;
                }
                self.copied += 1;
                self.bytes += bytes.len() as u64;
            }
            CopyOutcome::Copied => {
                self.copied += 1;
                self.bytes += bytes.len() as u64;
            }
            CopyOutcome::Tombstone => self.tombstones += 1,
            CopyOutcome::Superseded | CopyOutcome::Unsettled => {}
        }
        Ok(outcome)
    }
}

/// [`Store::reclaim`] on the store's shared state.
pub(crate) fn reclaim<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>) -> Result<u64> {
    {
        // Held while deleting: a checkpoint starting meanwhile waits to
        // record its begin address.
        let pin = inner.checkpoints.log_pin.lock().unwrap_or_else(|p| p.into_inner());
        let keep = needed_from(inner, *pin)?;
        let device = inner.log.device();
        let stored_before = device.stored_bytes();
        device.truncate_before(keep).map_err(|source| Error::Io {
            context: format!("deleting log segments below {keep:#x}"),
            source,
        })?;
        let freed = stored_before.saturating_sub(device.stored_bytes());
        inner.compaction_totals.lock().unwrap_or_else(|p| p.into_inner()).reclaimed_bytes += freed;
        Ok(freed)
    }
}

/// The lowest log address anything still needs: the begin address, the
/// begin address a running checkpoint recorded (`running`), and the begin
/// address of every complete checkpoint in the store directory.
fn needed_from<K: Key, V: Value, D: Device>(
    inner: &StoreInner<K, V, D>,
    running: Option<u64>,
) -> Result<u64> {
    let mut keep = inner.log.begin_address().raw();
    if let Some(running) = running {
        keep = keep.min(running);
    }
    if let Some(dir) = &inner.dir {
        for info in checkpoint::list(dir)? {
            if info.kind != checkpoint::CheckpointKind::IndexOnly {
                keep = keep.min(info.begin_address);
            }
        }
    }
    Ok(keep)
}

/// The bytes the files under `path` take on the disk (their allocated
/// blocks, so holes in sparse files do not count), `path`'s subdirectories
/// included; 0 for a path that cannot be read. What the disk budget
/// measures, for a store directory.
pub fn directory_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => directory_bytes(&entry.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
