//! Recovery: a store from a checkpoint.
//!
//! 1. Read and validate the metadata (checksum, archive, format version,
//!    the key and value layouts against the types asked for).
//! 2. Load the index checkpoint (checksum, structure).
//! 3. Pick the new incarnation's base: the first page boundary at or after
//!    everything the device holds. The recovered log's tail starts there,
//!    so nothing another checkpoint needs is ever overwritten.
//! 4. Replay `[log_start, final)`: for each valid record of the
//!    checkpoint's version or older, point its (bucket, tag) entry at it;
//!    records of later versions are skipped (unreachable, by CPR invariant
//!    3). A snapshot's pages are read from its file and *relocated* by a
//!    whole number of pages to the new base (their addresses, their chain
//!    pointers into the snapshot, and index entries into it move by the
//!    same delta), then written to the device there.
//! 5. Sync the device and open the log empty in memory at the new tail.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::verify::{Source, corrupt, load_delta, load_meta};
use super::walk::for_each_record;
use super::{CheckpointInfo, CheckpointKind, root};
use crate::address::Address;
use crate::cpr::report;
use crate::cpr::{self, is_newer};
use crate::device::Device;
use crate::hlog::seal::{self, TRAILER as PAGE_TRAILER};
use crate::hlog::{FIRST_ADDRESS, HybridLog};
use crate::index::{HashBucketEntry, HashIndex};
use crate::record::{Key, Value, hash_bytes};
use crate::store::record::{RecordFormat, RecordShape};
use crate::store::{StoreConfig, StoreInner};
use crate::{Error, Result};

/// Bytes replayed per device read.
const REPLAY_CHUNK: u64 = 8 << 20;

/// Recovers the shared state of a store from checkpoint `token` in `dir`,
/// with the log on `device`.
pub(crate) fn recover<K: Key, V: Value, D: Device>(
    mut config: StoreConfig,
    device: D,
    dir: &Path,
    token: &str,
) -> Result<StoreInner<K, V, D>> {
    let span = tracing::info_span!("recover", token);
    let _enter = span.enter();
    let started = std::time::Instant::now();
    let progress = config.progress.clone();
    let (meta, kind) = load_meta(dir, token)?;
    if kind == CheckpointKind::IndexOnly {
        return Err(Error::InvalidToken {
            token: token.into(),
            why: "an index-only checkpoint holds no log; recover a log checkpoint",
        });
    }
    let check = |what: &'static str, stored: &str, stored_fp: u64, opened: &str, opened_fp: u64| {
        if stored_fp == opened_fp {
            Ok(())
        } else {
            Err(Error::LayoutMismatch {
                what,
                stored: stored.into(),
                stored_fingerprint: stored_fp,
                opened: opened.into(),
                opened_fingerprint: opened_fp,
            })
        }
    };
    check(
        "key",
        &meta.key_type,
        meta.key_fingerprint,
        std::any::type_name::<K>(),
        K::key_layout_fingerprint(),
    )?;
    check(
        "value",
        &meta.value_type,
        meta.value_fingerprint,
        std::any::type_name::<V>(),
        V::layout_fingerprint(),
    )?;
    // The record shape too: a fixed-size type's records are read back with
    // its fixed size, so it must be the size they were written with (a
    // hand-written `Layout` may match while `FIXED_SIZE` does not).
    let check_size = |what, stored: Option<u32>, stored_fp, opened: Option<usize>, opened_fp| {
        let stored = stored.map(|n| n as usize);
        if stored == opened {
            return Ok(());
        }
        Err(Error::LayoutMismatch {
            what,
            stored: format!("{stored:?}"),
            stored_fingerprint: stored_fp,
            opened: format!("{opened:?}"),
            opened_fingerprint: opened_fp,
        })
    };
    check_size(
        "key size",
        meta.key_size,
        meta.key_fingerprint,
        K::FIXED_KEY_SIZE,
        K::key_layout_fingerprint(),
    )?;
    check_size(
        "value size",
        meta.value_size,
        meta.value_fingerprint,
        V::FIXED_SIZE,
        V::layout_fingerprint(),
    )?;

    // The index.
    let index_path = root(dir).join(&meta.index.token).join("index");
    let (index, header) = {
        let _phase = tracing::info_span!("load_index").entered();
        HashIndex::read_checkpoint(&index_path)?
    };
    if header.log_start != meta.index.log_start
        || header.log_end != meta.index.log_end
        || header.table_size != meta.index.table_size
    {
        return Err(corrupt(&index_path, "it is not the index the metadata names"));
    }
    config.page_size_bits = meta.page_size_bits;
    config.table_size = meta.index.table_size;
    let geometry = config.geometry()?;
    config.validate()?;

    // The new incarnation's base and the snapshot's relocation.
    let bits = meta.page_size_bits;
    let page_size = 1u64 << bits;
    let round_up = |a: u64| a.div_ceil(page_size) * page_size;
    let device_end = device
        .end_offset()
        .map_err(|source| Error::Io { context: "sizing the log device".into(), source })?;
    let base = round_up(device_end.max(meta.final_address).max(FIRST_ADDRESS));
    let final_address = meta.final_address;
    let (snap_from, delta, tail) = match &meta.snapshot {
        Some(s) => (s.from, base - s.from, round_up(final_address + (base - s.from))),
        None => (final_address, 0, base),
    };
    // Address 0 is "no record" (a chain's end): it never moves, even when
    // a snapshot starts at page 0.
    let relocate =
        |a: u64| if a != 0 && a >= snap_from && a < final_address { a + delta } else { a };
    // A snapshot's pages go back into memory (as FASTER loads the log's
    // last pages), unless they do not fit this store's log memory; then
    // they are written to the device.
    let in_memory = meta.snapshot.is_some() && {
        // An empty snapshot (nothing above the flushed address) has no page.
        let end = final_address + delta;
        let pages = if end > base { (end - 1) / page_size - base / page_size + 1 } else { 0 };
        pages + 2 <= geometry.frames
    };
    let log = if in_memory {
        HybridLog::recovered_in_memory(
            geometry,
            device,
            meta.begin_address,
            base,
            final_address + delta,
        )?
    } else {
        HybridLog::recovered(geometry, device, meta.begin_address, tail)?
    };
    let device = log.device();

    // Index entries: in range, and moved with the snapshot.
    let mut bad_entry = None;
    index.for_each_entry(|slot| {
        let entry = HashBucketEntry::from_raw(slot.load(Ordering::Relaxed));
        let address = entry.address().raw();
        if address >= final_address && bad_entry.is_none() {
            bad_entry = Some(address);
        }
        let moved = relocate(address);
        if moved != address {
            let moved = Address::new(moved).unwrap_or(Address::INVALID);
            slot.store(HashBucketEntry::new(moved, entry.tag(), false).raw(), Ordering::Relaxed);
        }
    });
    if let Some(address) = bad_entry {
        return Err(corrupt(
            &index_path,
            format!("an entry points at {address:#x}, past the checkpoint's end"),
        ));
    }

    // The replay.
    let snapshot = match &meta.snapshot {
        Some(s) => {
            let path = root(dir).join(&s.token).join("snapshot");
            let file = File::open(&path).map_err(|source| Error::Io {
                context: format!("opening {}", path.display()),
                source,
            })?;
            let len = file
                .metadata()
                .map_err(|source| Error::Io {
                    context: format!("reading {}", path.display()),
                    source,
                })?
                .len();
            if len != s.len {
                return Err(corrupt(&path, format!("{len} bytes, expected {}", s.len)));
            }
            Some((file, s.from, path))
        }
        None => None,
    };
    let replay_from = match &meta.snapshot {
        Some(s) => meta.index.log_start.min(s.from),
        None => meta.index.log_start,
    };
    let format = RecordFormat::<K, V>::new();
    // An incremental snapshot: its copied range, and the base's records
    // that changed since the base (checked in full before use).
    let (delta_file, changed, base_end) = match &meta.delta {
        Some(d) => {
            let path = root(dir).join(token).join("delta");
            let changed = load_delta(&path, d, meta.page_size_bits)?;
            let file = File::open(&path).map_err(|source| Error::Io {
                context: format!("opening {}", path.display()),
                source,
            })?;
            (Some((file, d.from, path)), changed, d.from)
        }
        None => (None, Default::default(), final_address),
    };
    let source = Source { device, snapshot, delta: delta_file };
    let mut hash = xxhash_rust::xxh3::Xxh3Default::new();
    let mut batches = [Vec::new(), Vec::new()];
    let total = final_address.saturating_sub(replay_from);
    // The chunks: whole pages (the first and last may be partial), never
    // across the snapshot's start. Replay skips the reserved start of page
    // 0 itself; a snapshot from page 0 includes those bytes in its checksum.
    let chunk_size = REPLAY_CHUNK.max(page_size);
    let mut plan = Vec::new();
    let mut at = replay_from.min(final_address);
    while at < final_address {
        let mut end = ((at & !(page_size - 1)) + chunk_size).min(final_address);
        for boundary in [snap_from, base_end] {
            if at < boundary && end > boundary {
                end = boundary;
            }
        }
        plan.push((at, end));
        at = end;
    }
    let mut relocated = SealedWriter::new(snap_from + delta, page_size);
    let _phase = tracing::info_span!("replay", from = replay_from, to = final_address).entered();
    report(&progress, "replay", 0, total);
    // A reader thread keeps the next chunks coming while this one indexes.
    std::thread::scope(|scope| -> Result<()> {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Result<(u64, Vec<u8>)>>(2);
        let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        for _ in 0..3 {
            let _ = free_tx.send(Vec::with_capacity(chunk_size as usize));
        }
        let mut source = source;
        let plan = &plan;
        scope.spawn(move || {
            for &(at, end) in plan {
                let Ok(mut buf) = free_rx.recv() else { return };
                let read = if at < snap_from {
                    read_sealed(&mut source, at, end, page_size, &mut buf)
                } else {
                    buf.resize((end - at) as usize, 0);
                    source.read(at, &mut buf)
                };
                let read = read.map(|()| (at, buf));
                let failed = read.is_err();
                if full_tx.send(read).is_err() || failed {
                    return;
                }
            }
        });
        for read in full_rx {
            let (at, mut chunk) = read?;
            let in_snapshot = at >= snap_from;
            if in_snapshot && at < base_end {
                // The snapshot's checksum is over the bytes as written;
                // then the records changed since (incremental) go on top.
                hash.update(&chunk);
                for (address, record) in changed.range(at..at + chunk.len() as u64) {
                    let i = (address - at) as usize;
                    let Some(target) = chunk.get_mut(i..i + record.len()) else {
                        return Err(Error::Corruption {
                            address: *address,
                            what: "a changed record crosses the replay's chunk".into(),
                        });
                    };
                    target.copy_from_slice(record);
                }
            }
            replay_chunk(
                &format,
                &index,
                &mut chunk,
                at,
                page_size,
                meta.version,
                &relocate,
                in_snapshot,
                &mut batches,
            )?;
            if in_snapshot && in_memory {
                let mut from = at;
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let room = (page_size - from % page_size) as usize;
                    let (piece, more) = rest.split_at(room.min(rest.len()));
                    let to = Address::new(from + delta).ok_or(Error::LogFull)?;
                    // SAFETY: the log is not shared yet (no session exists),
                    // and `piece` lies in one page of `[base, final + delta)`.
                    unsafe { log.load(to, piece) };
                    from += piece.len() as u64;
                    rest = more;
                }
            } else if in_snapshot {
                relocated.write(device, &chunk)?;
            }
            report(&progress, "replay", at + chunk.len() as u64 - replay_from, total);
            let _ = free_tx.send(chunk);
        }
        Ok(())
    })?;
    // Reads of a record near a page's end may ask for more than the record
    // (its size is unknown until its header is read): the last page the
    // device holds, and the relocated snapshot's, are padded to their end.
    // Both pads lie past everything the device held, so they overwrite
    // nothing.
    // (A relocated snapshot written to the device is in whole pages.)
    relocated.flush(device)?;
    pad_to_page(device, device_end, page_size)?;
    if let Some(snapshot) = &meta.snapshot
        && hash.digest() != snapshot.checksum
    {
        // Nothing refers to what was written past the device's end.
        return Err(corrupt(&root(dir).join(token).join("snapshot"), "checksum mismatch"));
    }
    device
        .sync()
        .map_err(|source| Error::Io { context: "syncing the recovered log".into(), source })?;
    // The addresses the recovered store will follow in memory must be
    // records the log's own walk found (untrusted files may point anywhere).
    // The first record in memory: a snapshot from page 0 brings that
    // page's reserved start along.
    let in_memory_range = if in_memory {
        Some((base, snap_from.max(FIRST_ADDRESS) + delta, final_address + delta))
    } else {
        None
    };
    check_addresses(&log, &RecordFormat::<K, V>::shape(), &index, in_memory_range, &index_path)?;

    // The new version is past every checkpoint in the directory, so that
    // tokens keep sorting by version across incarnations.
    let newest = super::list(dir)?.iter().map(|c| c.version).max().unwrap_or(meta.version);
    let version = newest.max(meta.version) + 1;
    let mut inner = StoreInner::with_parts(config, index, log, version)?;
    inner.dir = Some(dir.to_path_buf());
    for session in &meta.sessions {
        let point = cpr::CommitPoint { until: session.until, excluded: session.excluded.clone() };
        inner.sessions.add_recovered(session.id, &point, version);
    }
    inner.sessions.reserve_ids(meta.next_session_id);
    // What lay past the checkpoint on the device is dead from now on.
    let mut gaps: Vec<(u64, u64)> = meta.gaps.iter().map(|g| (g.from, g.to)).collect();
    if snap_from < base {
        gaps.push((snap_from, base));
    }
    *inner.checkpoints.gaps.lock().unwrap_or_else(|p| p.into_inner()) = gaps;
    let info = CheckpointInfo::from_meta(&meta).ok_or_else(|| corrupt(dir, "unknown kind"))?;
    *inner.checkpoints.recovered.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
    inner.checkpoint_counters.recovered(started.elapsed());
    tracing::info!(secs = started.elapsed().as_secs_f64(), "recovered");
    Ok(inner)
}

/// Checks every address a recovered store follows from memory
/// (`in_memory`: the range `[from, to)` held in memory and its first
/// record's address). Index
/// entries must be 8-byte aligned (records are; reads of a misaligned one
/// would be misaligned atomics). In the range `[from, to)` held in memory
/// (a snapshot loaded back), index entries and records' previous pointers
/// that land in the range must be record starts found by walking its pages
/// (whose headers `for_each_record` bounds to their page); anything else
/// would make a read take arbitrary bytes for a header. Below the range,
/// records are read from the device, whose reader bounds every length.
fn check_addresses<D: Device>(
    log: &HybridLog<D>,
    shape: &RecordShape,
    index: &HashIndex,
    in_memory: Option<(u64, u64, u64)>,
    index_path: &Path,
) -> Result<()> {
    let mut starts: Vec<u64> = Vec::new();
    let (from, first_record, to) = in_memory.unwrap_or((0, 0, 0));
    let is_start = |starts: &[u64], a: u64| {
        let bit = (a - from) / 8;
        starts.get((bit / 64) as usize).is_some_and(|w| w >> (bit % 64) & 1 == 1)
    };
    if from < to {
        starts = vec![0; ((to - from) / 8).div_ceil(64) as usize];
        let page_size = log.page_size();
        let mut words = Vec::new();
        for pass in 0..2 {
            let mut page = from & !(page_size - 1);
            while page < to {
                let start = page.max(first_record);
                let end = (page + page_size).min(to);
                let end_body = end.min(page + log.page_body());
                if start < end_body {
                    let (Some(a), Some(b)) = (Address::new(start), Address::new(end_body)) else {
                        return Err(Error::LogFull);
                    };
                    // SAFETY: the log is not shared yet (no session, no
                    // flush); `[start, end_body)` lies in one page of the
                    // range just loaded into memory, 8-byte aligned.
                    unsafe { log.copy_live(a, b, &mut words) };
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
                    let mut bad = None;
                    for_each_record(shape, bytes, start, page_size, |address, _, info, _| {
                        if pass == 0 {
                            let bit = (address - from) / 8;
                            starts[(bit / 64) as usize] |= 1 << (bit % 64);
                        } else {
                            let previous = info.previous().raw();
                            let wrong = !previous.is_multiple_of(8)
                                || (previous >= from
                                    && previous < to
                                    && !is_start(&starts, previous));
                            if wrong && bad.is_none() {
                                bad = Some((address, previous));
                            }
                        }
                    })?;
                    if let Some((address, previous)) = bad {
                        return Err(Error::Corruption {
                            address,
                            what: format!(
                                "the record's previous pointer {previous:#x} is not a record"
                            ),
                        });
                    }
                }
                page += page_size;
            }
        }
    }
    let mut bad = None;
    index.for_each_entry(|slot| {
        let address = HashBucketEntry::from_raw(slot.load(Ordering::Relaxed)).address().raw();
        let wrong = !address.is_multiple_of(8)
            || (address >= from && address < to && !is_start(&starts, address));
        if wrong && bad.is_none() {
            bad = Some(address);
        }
    });
    match bad {
        Some(address) => Err(corrupt(
            index_path,
            format!("an entry points at {address:#x}, which is not a record's start"),
        )),
        None => Ok(()),
    }
}

/// Reads the device's log bytes `[at, end)` into `buf`, checking the seal
/// of every page they touch (each read whole, so that its seal can be
/// checked over the bytes needed).
fn read_sealed<D: Device>(
    source: &mut Source<'_, D>,
    at: u64,
    end: u64,
    page_size: u64,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let low = at & !(page_size - 1);
    let high = end.next_multiple_of(page_size);
    buf.resize((high - low) as usize, 0);
    source.read(low, buf)?;
    for page in (low..high).step_by(page_size as usize) {
        let need = end.min(page + page_size - PAGE_TRAILER) - page;
        let i = (page - low) as usize;
        seal::check_page(page, &buf[i..i + page_size as usize], need, false)
            .map_err(|what| Error::Corruption { address: page, what })?;
    }
    buf.copy_within((at - low) as usize..(end - low) as usize, 0);
    buf.truncate((end - at) as usize);
    Ok(())
}

/// Writes log bytes that arrive in order (a relocated snapshot) to the
/// device in whole, sealed pages.
struct SealedWriter {
    page: Vec<u8>,
    /// The address of the page being filled, and how much of it is.
    at: u64,
    filled: u64,
}

impl SealedWriter {
    /// A writer whose first byte goes to `at`, a page boundary.
    fn new(at: u64, page_size: u64) -> Self {
        Self { page: vec![0u8; page_size as usize], at, filled: 0 }
    }

    /// Appends `bytes`, writing every page they complete.
    fn write<D: Device>(&mut self, device: &D, mut bytes: &[u8]) -> Result<()> {
        let page_size = self.page.len() as u64;
        while !bytes.is_empty() {
            let take = ((page_size - self.filled) as usize).min(bytes.len());
            let at = self.filled as usize;
            self.page[at..at + take].copy_from_slice(&bytes[..take]);
            self.filled += take as u64;
            bytes = &bytes[take..];
            if self.filled == page_size {
                self.flush(device)?;
                self.at += page_size;
                self.filled = 0;
            }
        }
        Ok(())
    }

    /// Seals and writes the page being filled (whole: zeros past its
    /// bytes, so that a read near its end finds bytes).
    fn flush<D: Device>(&mut self, device: &D) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let page_size = self.page.len() as u64;
        let len = self.filled.min(page_size - PAGE_TRAILER);
        self.page[len as usize..].fill(0);
        seal::seal_image(self.at, &mut self.page, len);
        device.write_at(self.at, &self.page).map_err(|source| Error::Io {
            context: format!("writing the recovered snapshot at {:#x}", self.at),
            source,
        })
    }
}

/// Writes zeros from `from` to the end of its page (nothing if `from` is a
/// page boundary).
fn pad_to_page<D: Device>(device: &D, from: u64, page_size: u64) -> Result<()> {
    let rest = from.next_multiple_of(page_size) - from;
    if rest == 0 {
        return Ok(());
    }
    device.write_at(from, &vec![0u8; rest as usize]).map_err(|source| Error::Io {
        context: format!("padding the log's last page at {from:#x}"),
        source,
    })
}

/// Indexes the records of one chunk (whole pages, possibly partial at
/// either end) and relocates snapshot records in place. Two threads share
/// the work: each parses half of the pages, then each updates the entries of
/// half of the buckets (by bucket parity), visiting the records in address
/// order, so the result is the sequential one.
#[allow(clippy::too_many_arguments)]
fn replay_chunk<K: Key, V: Value>(
    format: &RecordFormat<K, V>,
    index: &HashIndex,
    chunk: &mut [u8],
    start: u64,
    page_size: u64,
    version: u32,
    relocate: &(impl Fn(u64) -> u64 + Sync),
    in_snapshot: bool,
    batches: &mut [Vec<(u64, u64)>; 2],
) -> Result<()> {
    let end = start + chunk.len() as u64;
    let first_page = start / page_size;
    let pages = end.div_ceil(page_size) - first_page;
    // Split at a page boundary (a record boundary) inside the chunk.
    let mid = ((first_page + pages / 2) * page_size).clamp(start, end);
    let (low, high) = chunk.split_at_mut((mid - start) as usize);
    let [low_batch, high_batch] = batches;
    let parse = |bytes: &mut [u8], at: u64, batch: &mut Vec<(u64, u64)>| {
        parse_records(format, bytes, at, page_size, version, relocate, in_snapshot, batch)
    };
    std::thread::scope(|scope| {
        let high_done = scope.spawn(|| parse(high, mid, high_batch));
        let low_done = parse(low, start, low_batch);
        let high_done = high_done.join().unwrap_or_else(|_| {
            Err(Error::Corruption { address: mid, what: "replay thread panicked".into() })
        });
        low_done.and(high_done)
    })?;
    let batches = [&low_batch[..], &high_batch[..]];
    if index.table_size() > 1 {
        std::thread::scope(|scope| {
            scope.spawn(|| apply(index, batches, 1));
            apply(index, batches, 0);
        });
    } else {
        apply(index, batches, u64::MAX);
    }
    low_batch.clear();
    high_batch.clear();
    Ok(())
}

/// Points the entries of the buckets of parity `part` (all buckets for
/// `u64::MAX`) at the records of `batches`, in order, prefetching a few
/// records ahead.
fn apply(index: &HashIndex, batches: [&[(u64, u64)]; 2], part: u64) {
    const AHEAD: usize = 32;
    let mine = |hash: u64| part == u64::MAX || hash & 1 == part;
    for batch in batches {
        for (i, &(hash, address)) in batch.iter().enumerate() {
            if let Some((ahead, _)) = batch.get(i + AHEAD)
                && mine(*ahead)
            {
                index.prefetch(*ahead);
            }
            if !mine(hash) {
                continue;
            }
            // Each thread owns the bucket chains of its parity.
            index.set_entry_exclusive(hash, Address::new(address).unwrap_or(Address::INVALID));
        }
    }
}

/// Parses the records of `chunk` (starting at log address `start`, a record
/// boundary): relocates snapshot records' chain pointers in place, and
/// collects `(hash, address)` of every record to index.
#[allow(clippy::too_many_arguments)]
fn parse_records<K: Key, V: Value>(
    format: &RecordFormat<K, V>,
    chunk: &mut [u8],
    start: u64,
    page_size: u64,
    version: u32,
    relocate: &impl Fn(u64) -> u64,
    in_snapshot: bool,
    batch: &mut Vec<(u64, u64)>,
) -> Result<()> {
    for_each_record(
        &RecordFormat::<K, V>::shape(),
        chunk,
        start,
        page_size,
        |at, record, info, key_len| {
            if in_snapshot {
                let previous = info.previous().raw();
                let moved = relocate(previous);
                if moved != previous {
                    let raw = (info.raw() & !((1u64 << Address::BITS) - 1)) | moved;
                    record[..8].copy_from_slice(&raw.to_le_bytes());
                }
            }
            if !info.is_invalid() && !is_newer(info.version(), version) {
                let key = &record[format.header_size()..format.header_size() + key_len];
                batch.push((hash_bytes(key), relocate(at)));
            }
        },
    )
}
