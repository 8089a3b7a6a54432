//! The checkpoint state machine: the phases a checkpoint runs through
//! (see the module documentation of `checkpoint`), on the thread that
//! takes it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::appender::Appender;
use super::meta::{self, DeltaRef, Meta, SessionPoint};
use super::root;
use super::walk;

use crate::address::Address;
use crate::cpr::{
    Busy, CheckpointInfo, CheckpointIo, CheckpointKind, CheckpointToken, IN_PROGRESS, IndexRef,
    ProgressFn, REST, RealIo, SnapshotRef, WAIT_FLUSH, report,
};
use crate::device::Device;
use crate::epoch::EpochHandle;
use crate::record::{Key, Value};
use crate::store::StoreInner;
use crate::{Error, Result};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl<K: Key, V: Value, D: Device> StoreInner<K, V, D> {
    fn io(&self) -> &dyn CheckpointIo {
        match &self.config.checkpoint_io {
            Some(io) => &*io.0,
            None => &RealIo,
        }
    }

    fn checkpoint_dir(&self) -> Result<PathBuf> {
        self.dir.as_ref().map(|d| root(d)).ok_or(Error::InvalidConfig {
            what: "dir",
            why: "checkpoints need a store directory".into(),
        })
    }

    /// Claims the right to run the one checkpoint at a time.
    pub(super) fn claim_checkpoint(&self) -> Result<CheckpointToken> {
        let control = &self.checkpoints;
        self.checkpoint_dir()?;
        if control.busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            let running = control.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let token = running
                .iter()
                .rev()
                .find(|t| t.result.lock().unwrap_or_else(|p| p.into_inner()).is_none())
                .map_or_else(
                    || "(one taken on another thread)".to_string(),
                    |t| t.token.to_string(),
                );
            return Err(Error::CheckpointInProgress { token });
        }
        Ok(CheckpointToken::new(self.cpr.load().0))
    }

    /// Takes a checkpoint on this thread (claiming it first).
    pub(crate) fn checkpoint_now(&self, kind: CheckpointKind) -> Result<CheckpointInfo> {
        let token = self.claim_checkpoint()?;
        let _busy = Busy(&self.checkpoints.busy);
        self.run_checkpoint(kind, &token)
    }

    /// Runs a whole checkpoint on this thread, and counts it (`stats`):
    /// its duration and the bytes of its files, or its failure (an ERROR
    /// event naming the token).
    pub(super) fn run_checkpoint(
        &self,
        kind: CheckpointKind,
        token: &CheckpointToken,
    ) -> Result<CheckpointInfo> {
        let span = tracing::info_span!("checkpoint", token = %token, ?kind);
        let _enter = span.enter();
        let started = std::time::Instant::now();
        let result = self.run_checkpoint_steps(kind, token);
        match &result {
            Ok(_) => {
                let bytes = self
                    .checkpoint_dir()
                    .map(|root| dir_bytes(&root.join(token.as_str())))
                    .unwrap_or(0);
                self.checkpoint_counters.checkpoint(true, started.elapsed(), bytes);
                tracing::info!(secs = started.elapsed().as_secs_f64(), bytes, "checkpoint done");
            }
            Err(e) => {
                self.checkpoint_counters.checkpoint(false, started.elapsed(), 0);
                tracing::error!(token = %token, error = %e, "checkpoint failed");
            }
        }
        result
    }

    /// The steps of [`Self::run_checkpoint`].
    fn run_checkpoint_steps(
        &self,
        kind: CheckpointKind,
        token: &CheckpointToken,
    ) -> Result<CheckpointInfo> {
        let progress = self.config.progress.clone();
        let root = self.checkpoint_dir()?;
        let dir = root.join(token.as_str());
        let io =
            |what: &str, source| Error::Io { context: format!("{what} {}", dir.display()), source };
        self.io().create_dir_all(&dir).map_err(|e| io("creating", e))?;
        meta::sync_dir(self.io(), &root)?;
        *self.checkpoints.started_at.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(self.change_mark());
        let handle = self.epoch.register()?;
        // No growth of the index while the checkpoint runs: every record in
        // its replay range is then chained by the table size its index has
        // (a growth also forgets the last index, see `store::grow`), which
        // recovery's replay needs — replaying records chained by a larger
        // table into a smaller one would merge buckets and lose chains.
        let _no_growth = self.resizing.lock().unwrap_or_else(|p| p.into_inner());
        let (version, phase) = self.cpr.load();
        debug_assert_eq!(phase, REST);
        // The log this checkpoint needs starts at today's begin address:
        // pinned until the checkpoint ends, so that compaction does not
        // delete it meanwhile (see `Control::log_pin`).
        let pin = LogPin::new(&self.checkpoints.log_pin, || self.log.begin_address().raw());
        let begin = pin.begin;

        // 1. The index. An index checkpoint whose replay would start below
        // the begin address cannot be built on (compaction moved the log
        // past it); then neither can an incremental snapshot (it uses the
        // same index), which becomes a full one.
        let last_index = self
            .checkpoints
            .last_index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|index| index.log_start >= begin);
        let base = self.checkpoints.last_snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Without a base, an incremental snapshot is a full one.
        let kind = match (kind, &base, &last_index) {
            (CheckpointKind::IncrementalSnapshot, Some(_), Some(_)) => kind,
            (CheckpointKind::IncrementalSnapshot, _, _) => CheckpointKind::Snapshot,
            _ => kind,
        };
        let index = match (kind, last_index) {
            (CheckpointKind::LogOnly | CheckpointKind::IncrementalSnapshot, Some(index)) => index,
            _ => {
                let _phase = tracing::info_span!("index").entered();
                let log_start = self.log.tail_address().raw();
                handle.wait_epoch();
                let total = self.index.table_size() * 64;
                report(&progress, "index", 0, total);
                let header = self.write_index(&dir.join("index"), log_start, &handle)?;
                meta::sync_dir(self.io(), &dir)?;
                report(&progress, "index", total, total);
                IndexRef {
                    token: token.as_str().into(),
                    log_start: header.log_start,
                    log_end: header.log_end,
                    table_size: header.table_size,
                }
            }
        };
        let index_only = kind == CheckpointKind::IndexOnly;
        let mut retired: Vec<u64> = Vec::new();
        let (final_address, snapshot, delta, sessions, captured) = if index_only {
            (index.log_end, None, None, Vec::new(), version)
        } else {
            // 2. The version change.
            {
                let _phase = tracing::info_span!("version_change", to = version + 1).entered();
                self.cpr.store(version + 1, IN_PROGRESS);
                handle.wait_epoch();
                self.cpr.store(version + 1, WAIT_FLUSH);
            }
            let slots = self.sessions.all();
            // Closed before this point: their final commit point is in
            // this checkpoint, so later ones need not list them.
            retired = slots.iter().filter(|s| s.is_retired()).map(|s| s.id).collect();
            // Every session is claimed into the new version; internal ones
            // (compaction's) are not listed.
            let sessions: Vec<SessionPoint> = slots
                .iter()
                .filter_map(|slot| {
                    let point = slot.commit_point(version);
                    (!slot.is_internal()).then(|| SessionPoint {
                        id: slot.id,
                        until: point.until,
                        excluded: point.excluded,
                    })
                })
                .collect();
            // 3. The log. The store returns to rest whatever happens.
            let written = match (kind, base) {
                (CheckpointKind::Snapshot, _) => self
                    .write_snapshot(&handle, &dir, token, &progress)
                    .map(|(f, s)| (f, Some(s), None)),
                (CheckpointKind::IncrementalSnapshot, Some(base)) => self
                    .write_delta(&handle, &dir, &base, &progress)
                    .map(|(f, d)| (f, Some(base.1.clone()), Some(d))),
                _ => self.fold_over(&handle, &progress).map(|f| (f, None, None)),
            };
            handle.unprotect();
            self.cpr.store(version + 1, REST);
            let (final_address, snapshot, delta) = written?;
            (final_address, snapshot, delta, sessions, version)
        };

        // 4. The metadata.
        let _phase = tracing::info_span!("metadata").entered();
        let meta = Meta {
            token: token.as_str().into(),
            version: captured,
            kind: kind.code(),
            key_type: std::any::type_name::<K>().into(),
            key_fingerprint: K::key_layout_fingerprint(),
            value_type: std::any::type_name::<V>().into(),
            value_fingerprint: V::layout_fingerprint(),
            key_size: K::FIXED_KEY_SIZE.map(|n| n as u32),
            value_size: V::FIXED_SIZE.map(|n| n as u32),
            page_size_bits: self.config.page_size_bits,
            index: index.clone(),
            begin_address: begin,
            final_address,
            gaps: {
                let gaps = self.checkpoints.gaps.lock().unwrap_or_else(|p| p.into_inner());
                gaps.iter()
                    .filter(|(_, to)| *to > begin)
                    .map(|&(from, to)| meta::Gap { from: from.max(begin), to })
                    .collect()
            },
            snapshot,
            delta,
            sessions,
            next_session_id: self.sessions.next_id(),
            created_unix_ms: now_ms(),
        };
        meta::write_atomic(self.io(), &dir.join("meta"), &meta.encode()?)?;
        report(&progress, "metadata", 1, 1);
        *self.checkpoints.last_index.lock().unwrap_or_else(|p| p.into_inner()) = Some(index);
        self.sessions.forget(&retired);
        if kind == CheckpointKind::Snapshot
            && let Some(snapshot) = &meta.snapshot
        {
            *self.checkpoints.last_snapshot.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((captured, snapshot.clone()));
        }
        let info = CheckpointInfo::from_meta(&meta).ok_or(Error::CheckpointCorrupt {
            path: dir.to_path_buf(),
            what: "unknown kind".into(),
        })?;
        // The persistence callback: the checkpoint is durable.
        if let Some(callback) = &self.config.on_checkpoint {
            (callback.0)(&info);
        }
        Ok(info)
    }

    /// Dumps the index into `path` (synced).
    /// The entry in `slot` with a read-cache address replaced by the log
    /// address its cache record's chain continues at (protected while it
    /// reads the record: the cache frees a frame only after a drain).
    fn resolve_cached_entry(&self, handle: &EpochHandle<'_>, slot: &crate::sync::AtomicU64) -> u64 {
        handle.protect();
        let raw = slot.load(Ordering::Acquire);
        let entry = crate::index::HashBucketEntry::from_raw(raw);
        let resolved = match &self.read_cache {
            Some(cache) if crate::readcache::is_cached(entry.address()) => {
                // SAFETY: loaded from the index after protecting (the
                // cache's invariant); a record's header is an aligned word.
                let header = unsafe {
                    &*cache.record_ptr(entry.address()).cast::<std::sync::atomic::AtomicU64>()
                };
                let previous =
                    crate::store::record::RecordInfo::from_raw(header.load(Ordering::Acquire))
                        .previous();
                crate::index::HashBucketEntry::new(previous, entry.tag(), entry.is_tentative())
                    .raw()
            }
            _ => raw,
        };
        handle.unprotect();
        resolved
    }

    fn write_index(
        &self,
        path: &Path,
        log_start: u64,
        handle: &EpochHandle<'_>,
    ) -> Result<crate::index::IndexFileHeader> {
        let io = |source| Error::Io { context: format!("writing {}", path.display()), source };
        let file = self.io().create(path).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, Appender::new(file, true));
        let (header, header_bytes) = self
            .index
            .write_checkpoint_resolving(
                &mut out,
                log_start,
                || self.log.tail_address().raw(),
                &|slot| self.resolve_cached_entry(handle, slot),
            )
            .map_err(io)?;
        let mut appender = out.into_inner().map_err(|e| io(e.into_error()))?;
        appender.finish().map_err(io)?;
        let mut file = appender.file;
        file.write_at(0, &header_bytes).map_err(io)?;
        file.sync().map_err(io)?;
        Ok(header)
    }

    /// Flushes the log up to its tail and syncs it; returns the final address.
    fn fold_over(&self, handle: &EpochHandle<'_>, progress: &Option<ProgressFn>) -> Result<u64> {
        let _phase = tracing::info_span!("fold_over").entered();
        let final_address = self.log.tail_address();
        let from = self.log.flushed_until_address().raw();
        report(progress, "flush", 0, final_address.raw() - from);
        self.log.flush_durable(final_address, handle)?;
        handle.unprotect();
        report(progress, "flush", final_address.raw() - from, final_address.raw() - from);
        Ok(final_address.raw())
    }

    /// Calls `f` with the log's bytes in `[from, to)`, a page (or the part
    /// of one in range) at a time: from memory where the page is still
    /// there (with atomic loads: other records in it may be updated in place
    /// meanwhile), else from the device (it was written before eviction).
    fn copy_log(
        &self,
        handle: &EpochHandle<'_>,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let bits = self.config.page_size_bits;
        let mut words = Vec::new();
        let mut bytes = Vec::new();
        let mut at = from;
        while at < to {
            let end = (((at >> bits) + 1) << bits).min(to);
            let start = Address::new(at).ok_or(Error::LogFull)?;
            let stop = Address::new(end).ok_or(Error::LogFull)?;
            handle.refresh();
            // Page 0's first bytes are reserved: the log's head starts past them.
            let first = Address::new(at.max(crate::hlog::FIRST_ADDRESS)).ok_or(Error::LogFull)?;
            if first >= self.log.head_address() {
                // SAFETY: protected, and the page is at or above head
                // (checked after protecting).
                unsafe { self.log.copy_live(start, stop, &mut words) };
                handle.unprotect();
                bytes.clear();
                bytes.extend(words.iter().flat_map(|w| w.to_le_bytes()));
            } else {
                handle.unprotect();
                bytes.resize((end - at) as usize, 0);
                self.log.read_from_device(start, &mut bytes)?;
            }
            f(at, &mut bytes)?;
            at = end;
        }
        Ok(())
    }

    /// Copies the log above the flushed address into `dir/snapshot` and
    /// syncs the log below it; returns the final address and the snapshot.
    fn write_snapshot(
        &self,
        handle: &EpochHandle<'_>,
        dir: &Path,
        token: &CheckpointToken,
        progress: &Option<ProgressFn>,
    ) -> Result<(u64, SnapshotRef)> {
        let _phase = tracing::info_span!("snapshot").entered();
        let final_address = self.log.tail_address().raw();
        // Every record below the final address is completely written.
        handle.wait_epoch();
        let page_size = 1u64 << self.config.page_size_bits;
        // Sessions kept appending while we waited: the flush may have passed
        // the final address (read before). The snapshot starts at the page
        // of whichever is lower; the log below it is flushed (and synced
        // below).
        let from = self.log.flushed_until_address().raw().min(final_address) & !(page_size - 1);
        let path = dir.join("snapshot");
        let io = |source| Error::Io { context: format!("writing {}", path.display()), source };
        let file = self.io().create(&path).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, Appender::new(file, false));
        let mut hash = xxhash_rust::xxh3::Xxh3Default::new();
        let total = final_address - from;
        self.copy_log(handle, from, final_address, |at, bytes| {
            hash.update(bytes);
            out.write_all(bytes).map_err(io)?;
            report(progress, "snapshot", at + bytes.len() as u64 - from, total);
            Ok(())
        })?;
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?.file;
        file.sync().map_err(io)?;
        meta::sync_dir(self.io(), dir)?;
        // The log below the snapshot must be durable too.
        self.log.sync_device()?;
        let snapshot =
            SnapshotRef { token: token.as_str().into(), from, len: total, checksum: hash.digest() };
        Ok((final_address, snapshot))
    }

    /// Writes `dir/delta` on top of the base snapshot `(version, base)`:
    /// the log from the base's end to the final address, then every valid
    /// record in the base's range of a version newer than the base's (by
    /// CPR invariant 1, older records there cannot have changed), each as
    /// `address u64 ‖ length u64 ‖ bytes`. Returns the final address.
    fn write_delta(
        &self,
        handle: &EpochHandle<'_>,
        dir: &Path,
        (base_version, base): &(u32, SnapshotRef),
        progress: &Option<ProgressFn>,
    ) -> Result<(u64, DeltaRef)> {
        let _phase = tracing::info_span!("incremental_snapshot").entered();
        let final_address = self.log.tail_address().raw();
        handle.wait_epoch();
        let page_size = 1u64 << self.config.page_size_bits;
        let base_end = base.from + base.len;
        let path = dir.join("delta");
        let io = |source| Error::Io { context: format!("writing {}", path.display()), source };
        let file = self.io().create(&path).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, Appender::new(file, false));
        let mut hash = xxhash_rust::xxh3::Xxh3Default::new();
        let mut file_len = 0u64;
        let mut write = |bytes: &[u8]| -> Result<()> {
            hash.update(bytes);
            file_len += bytes.len() as u64;
            out.write_all(bytes).map_err(io)
        };
        let total = final_address - base.from;
        self.copy_log(handle, base_end, final_address, |at, bytes| {
            write(bytes)?;
            report(progress, "snapshot", at + bytes.len() as u64 - base_end, total);
            Ok(())
        })?;
        let mut changed = 0u64;
        let shape = crate::store::record::RecordFormat::<K, V>::shape();
        self.copy_log(handle, base.from, base_end, |at, bytes| {
            let mut found = Vec::new();
            walk::for_each_record(&shape, bytes, at, page_size, |address, record, info, _| {
                if !info.is_invalid() && crate::cpr::is_newer(info.version(), *base_version) {
                    found.push((address, record.to_vec()));
                }
            })?;
            for (address, record) in found {
                write(&address.to_le_bytes())?;
                write(&(record.len() as u64).to_le_bytes())?;
                write(&record)?;
                changed += 1;
            }
            report(progress, "snapshot", final_address - base_end + at - base.from, total);
            Ok(())
        })?;
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?.file;
        file.sync().map_err(io)?;
        meta::sync_dir(self.io(), dir)?;
        report(progress, "snapshot", total, total);
        let delta = DeltaRef {
            from: base_end,
            len: final_address - base_end,
            changed,
            file_len,
            checksum: hash.digest(),
        };
        Ok((final_address, delta))
    }
}

/// The running checkpoint's pin on the log (see `Control::log_pin`),
/// released however the checkpoint ends.
struct LogPin<'a> {
    slot: &'a std::sync::Mutex<Option<u64>>,
    begin: u64,
}

impl<'a> LogPin<'a> {
    /// Pins the begin address `begin` reads, reading it under the pin's
    /// lock (a deletion runs entirely before or after).
    fn new(slot: &'a std::sync::Mutex<Option<u64>>, begin: impl FnOnce() -> u64) -> Self {
        let mut pinned = slot.lock().unwrap_or_else(|p| p.into_inner());
        let begin = begin();
        *pinned = Some(begin);
        drop(pinned);
        Self { slot, begin }
    }
}

impl Drop for LogPin<'_> {
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The bytes of the files in `dir` (a checkpoint's; 0 where unreadable).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum::<u64>()
        })
        .unwrap_or(0)
}
