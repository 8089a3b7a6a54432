//! Checkpoints and recovery: concurrent prefix recovery (CPR) the FASTER
//! way.
//!
//! A checkpoint runs while sessions keep working. It is driven by epoch
//! bumps (see `store::cpr` for the phases and the session-side invariants):
//!
//! 1. **Index** (kinds `FoldOver`, `Snapshot`, `IndexOnly`, and `LogOnly`
//!    when no earlier index checkpoint of this incarnation exists): note the
//!    log tail as `log_start`, wait for one epoch (every operation that
//!    allocated below it has published or abandoned its record), then dump
//!    the hash table and its overflow buckets, fuzzily.
//! 2. **Version change**: publish `IN_PROGRESS(v + 1)`; once every
//!    protected session has refreshed (an epoch action), every operation of
//!    version `v` has finished or is parked (and excluded). Record every
//!    session's commit point, claiming idle sessions.
//! 3. **Log**: *fold-over* moves the read-only address to the tail (the
//!    final address) and waits until the log below it is written and
//!    synced; *snapshot* copies the in-memory part of the log above the
//!    flushed address into its own file (the mutable region stays mutable),
//!    and syncs the log below it.
//! 4. **Metadata**, last and atomically (temp file, fsync, rename, fsync
//!    directory): a checkpoint exists exactly when its `meta` file does.
//!
//! Recovery loads the index checkpoint, replays the log from its
//! `log_start` to the final address (records of later versions are
//! skipped: by CPR invariant 3 they are unreachable from older records),
//! and starts a new incarnation of the log beyond everything the device
//! holds, so recovering never destroys another checkpoint.
//!
//! On disk, under the store directory:
//!
//! ```text
//! checkpoints/<token>/meta       metadata (see `meta.rs`)
//! checkpoints/<token>/index      index checkpoint (see `index::checkpoint`)
//! checkpoints/<token>/snapshot   log pages of a snapshot checkpoint
//! ```

mod admin;
#[cfg(feature = "testing")]
mod fault_io;
mod io;
mod meta;
mod recover;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub use fault_io::FaultIo;
pub use io::{CheckpointFile, CheckpointIo, RealIo};

/// Decodes checkpoint metadata bytes (for fuzzing); the error, if any.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn meta_decode(bytes: &[u8], path: &std::path::Path) -> Result<()> {
    meta::Meta::decode(bytes, path).map(|_| ())
}

/// See `meta::fix_checksum` (for fuzzing).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn meta_fix_checksum(bytes: &mut [u8]) {
    meta::fix_checksum(bytes)
}

/// Recomputes the snapshot checksum that checkpoint `token`'s metadata
/// records (after a test changed the snapshot file on purpose), and the
/// metadata's own checksum.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn snapshot_fix_checksum(dir: &Path, token: &str) -> Result<()> {
    let path = root(dir).join(token).join("meta");
    let mut meta = Meta::read(&path)?;
    if let Some(snapshot) = &mut meta.snapshot {
        let file = root(dir).join(&snapshot.token).join("snapshot");
        let bytes = std::fs::read(&file).map_err(|source| Error::Io {
            context: format!("reading {}", file.display()),
            source,
        })?;
        snapshot.checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
    }
    std::fs::write(&path, meta.encode()?)
        .map_err(|source| Error::Io { context: format!("writing {}", path.display()), source })
}

/// A valid metadata file's bytes (a fuzzing seed).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn meta_sample() -> Vec<u8> {
    meta::sample().encode().unwrap_or_default()
}
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::store::CommitPoint;
pub(crate) use meta::IndexRef;
use meta::{DeltaRef, Meta, SessionPoint, SnapshotRef};

use crate::address::Address;
use crate::device::Device;
use crate::epoch::EpochHandle;
use crate::record::{Key, Value};
use crate::store::cpr::{IN_PROGRESS, REST, WAIT_FLUSH};
use crate::store::{Store, StoreInner};
use crate::{Error, Result};

/// What a checkpoint writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckpointKind {
    /// Index and log; the log is flushed up to its tail ("folded over"):
    /// everything in memory becomes read-only. The cheapest to write.
    FoldOver,
    /// Index and log; the in-memory log above the flushed address is copied
    /// to a snapshot file, so hot records stay mutable in place.
    Snapshot,
    /// Only the hash index; later `LogOnly` checkpoints build on it.
    IndexOnly,
    /// Only the log (fold-over), on the last index checkpoint of this
    /// store (one is taken first if there is none).
    LogOnly,
    /// On the last `Snapshot` of this store (a full snapshot is taken if
    /// there is none): no index dump; the log appended since that snapshot,
    /// and only the records in the snapshot's range that changed since it.
    /// Recovery reads the base snapshot and this delta.
    IncrementalSnapshot,
}

impl CheckpointKind {
    fn code(self) -> u8 {
        match self {
            Self::FoldOver => 1,
            Self::Snapshot => 2,
            Self::IndexOnly => 3,
            Self::LogOnly => 4,
            Self::IncrementalSnapshot => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::FoldOver,
            2 => Self::Snapshot,
            3 => Self::IndexOnly,
            4 => Self::LogOnly,
            5 => Self::IncrementalSnapshot,
            _ => return None,
        })
    }
}

/// The name of a checkpoint: a directory under `checkpoints/`. Tokens sort
/// by version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointToken(String);

impl CheckpointToken {
    /// Checks a token given by a user: non-empty, at most 64 characters of
    /// `[0-9a-zA-Z_-]` (no path separators, no `..`).
    pub fn parse(token: &str) -> Result<Self> {
        let why = if token.is_empty() {
            Some("it is empty")
        } else if token.len() > 64 {
            Some("it is longer than 64 characters")
        } else if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            Some("only letters, digits, '-' and '_' are allowed (no path separators)")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::InvalidToken { token: token.into(), why }),
            None => Ok(Self(token.into())),
        }
    }

    fn new(version: u32) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self(format!("{version:010}-{:016x}", nanos as u64))
    }

    /// The token as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CheckpointToken {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CheckpointToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A finished checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// Its token.
    pub token: CheckpointToken,
    /// The store version it captures.
    pub version: u32,
    /// What it wrote.
    pub kind: CheckpointKind,
    /// The log holds its records below this address.
    pub final_address: u64,
    /// Recovery replays the log from here.
    pub log_start: u64,
    /// Commit points, `(session id, point)`, of every session open when the
    /// checkpoint was taken, recovered and not yet continued, or closed
    /// since the previous checkpoint (a closed session is listed once, with
    /// its final point, and then forgotten).
    pub sessions: Vec<(u64, CommitPoint)>,
    /// The checkpoint whose index file it uses (itself, unless log-only
    /// or incremental).
    pub index_token: String,
    /// The checkpoint whose snapshot file it uses, if any (itself for a
    /// snapshot, the base for an incremental snapshot).
    pub snapshot_token: Option<String>,
    /// When it finished (milliseconds since the Unix epoch).
    pub created_unix_ms: u64,
    /// The key type's name (`std::any::type_name`) and layout fingerprint.
    pub key_type: String,
    /// See `key_type`.
    pub key_fingerprint: u64,
    /// The value type's name and layout fingerprint.
    pub value_type: String,
    /// See `value_type`.
    pub value_fingerprint: u64,
    /// The encoded key size, if fixed.
    pub key_size: Option<u32>,
    /// The encoded value size, if fixed.
    pub value_size: Option<u32>,
    /// log2 of the log's page size.
    pub page_size_bits: u32,
    /// The index's number of main buckets.
    pub table_size: u64,
    /// The log's begin address: nothing below it is needed.
    pub begin_address: u64,
    /// Where the snapshot file takes over from the device, if any.
    pub snapshot_from: Option<u64>,
    /// Dead ranges of the device inside `[begin_address, final_address)`
    /// (left behind by recoveries).
    pub gaps: Vec<(u64, u64)>,
}

impl CheckpointInfo {
    fn from_meta(meta: &Meta) -> Option<Self> {
        Some(Self {
            token: CheckpointToken(meta.token.clone()),
            version: meta.version,
            kind: CheckpointKind::from_code(meta.kind)?,
            final_address: meta.final_address,
            log_start: meta.index.log_start,
            sessions: meta
                .sessions
                .iter()
                .map(|s| (s.id, CommitPoint { until: s.until, excluded: s.excluded.clone() }))
                .collect(),
            index_token: meta.index.token.clone(),
            snapshot_token: meta.snapshot.as_ref().map(|s| s.token.clone()),
            created_unix_ms: meta.created_unix_ms,
            key_type: meta.key_type.clone(),
            key_fingerprint: meta.key_fingerprint,
            value_type: meta.value_type.clone(),
            value_fingerprint: meta.value_fingerprint,
            key_size: meta.key_size,
            value_size: meta.value_size,
            page_size_bits: meta.page_size_bits,
            table_size: meta.index.table_size,
            begin_address: meta.begin_address,
            snapshot_from: meta.snapshot.as_ref().map(|s| s.from),
            gaps: meta.gaps.iter().map(|g| (g.from, g.to)).collect(),
        })
    }

    /// The commit point of session `id`, if the checkpoint knows it.
    pub fn commit_point(&self, id: u64) -> Option<&CommitPoint> {
        self.sessions.iter().find(|(s, _)| *s == id).map(|(_, p)| p)
    }
}

/// Progress of a checkpoint or a recovery phase, for a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// `"index"`, `"flush"`, `"snapshot"`, `"metadata"`, `"replay"`.
    pub phase: &'static str,
    /// Bytes done in this phase.
    pub done: u64,
    /// Bytes in this phase.
    pub total: u64,
}

/// Checkpoint file I/O for a store (see [`crate::StoreBuilder::checkpoint_io`]).
#[derive(Debug, Clone)]
pub struct IoHandle(pub Arc<dyn CheckpointIo>);

/// A persistence callback (see [`crate::StoreBuilder::on_checkpoint`]).
#[derive(Clone)]
pub struct CheckpointFn(pub Arc<dyn Fn(&CheckpointInfo) + Send + Sync>);

impl std::fmt::Debug for CheckpointFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointFn")
    }
}

/// A progress callback (see [`crate::StoreBuilder::on_progress`]).
#[derive(Clone)]
pub struct ProgressFn(pub Arc<dyn Fn(Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

fn report(progress: &Option<ProgressFn>, phase: &'static str, done: u64, total: u64) {
    if let Some(p) = progress {
        (p.0)(Progress { phase, done, total });
    }
}

/// A checkpoint started with [`Store::checkpoint`].
#[derive(Debug)]
struct Task {
    token: CheckpointToken,
    result: Mutex<Option<std::result::Result<CheckpointInfo, Arc<Error>>>>,
    finished: Condvar,
}

/// A store's checkpoint bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Set while a checkpoint runs.
    busy: AtomicBool,
    /// Background checkpoints, newest last.
    tasks: Mutex<Vec<Arc<Task>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The last index checkpoint of this incarnation of the log.
    pub(crate) last_index: Mutex<Option<IndexRef>>,
    /// The last full snapshot of this incarnation, and its version: the
    /// base of incremental snapshots.
    last_snapshot: Mutex<Option<(u32, SnapshotRef)>>,
    /// What recovery found, if the store was recovered.
    pub(crate) recovered: Mutex<Option<CheckpointInfo>>,
    /// The log's dead ranges (see `meta::Gap`), in order.
    pub(crate) gaps: Mutex<Vec<(u64, u64)>>,
    /// Damaged checkpoints that recovery skipped: (token, why).
    pub(crate) skipped: Mutex<Vec<(String, String)>>,
    /// The store's write count and tail when the last checkpoint
    /// started (see `StoreInner::changed_since_checkpoint`).
    pub(crate) started_at: Mutex<Option<(u64, u64)>>,
}

impl Control {
    /// Where this incarnation's last index checkpoint ends, if it has one.
    pub(crate) fn last_index_end(&self) -> Option<u64> {
        self.last_index.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|i| i.log_end)
    }

    /// Waits for background checkpoints (the store is being dropped).
    pub(crate) fn join_running(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Clears the busy flag however the checkpoint ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs one epoch: bumps with an action and waits, unprotected (refreshing
/// only to drain), until every session protected before the bump has
/// refreshed.
fn wait_epoch(handle: &EpochHandle<'_>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    handle.bump_with_action(move || flag.store(true, Ordering::Release));
    let mut spins = 0u32;
    while !done.load(Ordering::Acquire) {
        handle.refresh();
        handle.unprotect();
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// The `checkpoints` directory of a store directory.
pub(crate) fn root(dir: &Path) -> PathBuf {
    dir.join("checkpoints")
}

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

    /// The store's write count and tail address now.
    pub(crate) fn change_mark(&self) -> (u64, u64) {
        (self.sessions.writes(), self.log.tail_address().raw())
    }

    /// Whether any write ran since the last checkpoint of this
    /// incarnation started (or, before the first, since the store opened:
    /// `Store::from_inner` records the mark then).
    pub(crate) fn changed_since_checkpoint(&self) -> bool {
        let started = *self.checkpoints.started_at.lock().unwrap_or_else(|p| p.into_inner());
        started != Some(self.change_mark())
    }

    /// Claims the right to run the one checkpoint at a time.
    fn claim_checkpoint(&self) -> Result<CheckpointToken> {
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

    /// Makes the whole log durable on the device: read-only up to the
    /// tail, written, synced.
    pub(crate) fn flush_log(&self) -> Result<()> {
        let handle = self.epoch.register()?;
        let tail = self.log.tail_address();
        let flushed = self.log.flush_durable(tail, &handle);
        handle.unprotect();
        flushed
    }

    /// Runs a whole checkpoint on this thread.
    fn run_checkpoint(
        &self,
        kind: CheckpointKind,
        token: &CheckpointToken,
    ) -> Result<CheckpointInfo> {
        let span = tracing::info_span!("checkpoint", token = %token, ?kind);
        let _enter = span.enter();
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
        let (version, phase) = self.cpr.load();
        debug_assert_eq!(phase, REST);

        // 1. The index.
        let last_index =
            self.checkpoints.last_index.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
                wait_epoch(&handle);
                let total = self.index.table_size() * 64;
                report(&progress, "index", 0, total);
                let header = self.write_index(&dir.join("index"), log_start)?;
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
                wait_epoch(&handle);
                self.cpr.store(version + 1, WAIT_FLUSH);
            }
            let slots = self.sessions.all();
            // Closed before this point: their final commit point is in
            // this checkpoint, so later ones need not list them.
            retired = slots.iter().filter(|s| s.is_retired()).map(|s| s.id).collect();
            let sessions: Vec<SessionPoint> = slots
                .iter()
                .map(|slot| {
                    let point = slot.commit_point(version);
                    SessionPoint { id: slot.id, until: point.until, excluded: point.excluded }
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
            begin_address: self.log.begin_address().raw(),
            final_address,
            gaps: {
                let begin = self.log.begin_address().raw();
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
    fn write_index(&self, path: &Path, log_start: u64) -> Result<crate::index::IndexFileHeader> {
        let io = |source| Error::Io { context: format!("writing {}", path.display()), source };
        let file = self.io().create(path).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, io::Appender::new(file, true));
        let (header, header_bytes) = self
            .index
            .write_checkpoint(&mut out, log_start, || self.log.tail_address().raw())
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
        wait_epoch(handle);
        let page_size = 1u64 << self.config.page_size_bits;
        // Sessions kept appending while we waited: the flush may have passed
        // the final address (read before). The snapshot starts at the page
        // of whichever is lower; the log below it is flushed (and synced
        // below).
        let from = self.log.flushed_until_address().raw().min(final_address) & !(page_size - 1);
        let path = dir.join("snapshot");
        let io = |source| Error::Io { context: format!("writing {}", path.display()), source };
        let file = self.io().create(&path).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, io::Appender::new(file, false));
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
        wait_epoch(handle);
        let page_size = 1u64 << self.config.page_size_bits;
        let base_end = base.from + base.len;
        let path = dir.join("delta");
        let io = |source| Error::Io { context: format!("writing {}", path.display()), source };
        let file = self.io().create(&path).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, io::Appender::new(file, false));
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
            recover::for_each_record(&shape, bytes, at, page_size, |address, record, info, _| {
                if !info.is_invalid() && crate::store::cpr::is_newer(info.version(), *base_version)
                {
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

impl<K: Key, V: Value, D: Device> Store<K, V, D> {
    /// Takes a checkpoint on this thread and returns when it is durable.
    /// Sessions on other threads keep running meanwhile; a session on this
    /// thread may stay open (it is not protected between operations).
    ///
    /// ```
    /// use oxifaster::checkpoint::CheckpointKind;
    /// use oxifaster::Store;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store: Store<u64, u64> =
    ///     Store::<u64, u64>::builder().dir(dir.path()).log_memory_size_bytes(1 << 24).open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&1, &10)?;
    /// let info = store.checkpoint_and_wait(CheckpointKind::FoldOver)?;
    /// assert_eq!(info.commit_point(session.id()).map(|p| p.until), Some(1));
    /// drop(session);
    /// drop(store);
    ///
    /// let store = Store::<u64, u64>::recover(dir.path(), info.token.as_str())?;
    /// let mut session = store.start_session()?;
    /// assert_eq!(session.read_blocking(&1)?, Some(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint_and_wait(&self, kind: CheckpointKind) -> Result<CheckpointInfo> {
        self.inner.checkpoint_now(kind)
    }

    /// Starts a checkpoint on a background thread and returns its token at
    /// once; [`Store::wait_for_checkpoint`] (or the async form) waits for
    /// it. One checkpoint runs at a time: starting another meanwhile is
    /// [`Error::CheckpointInProgress`].
    pub fn checkpoint(&self, kind: CheckpointKind) -> Result<CheckpointToken> {
        let token = self.inner.claim_checkpoint()?;
        let task = Arc::new(Task {
            token: token.clone(),
            result: Mutex::new(None),
            finished: Condvar::new(),
        });
        let control = &self.inner.checkpoints;
        {
            // Results of finished checkpoints are kept for the last 64 of
            // them (for `wait_for_checkpoint`), not forever.
            let mut tasks = control.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let finished =
                |t: &Arc<Task>| t.result.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            let done = tasks.iter().filter(|t| finished(t)).count();
            let mut excess = done.saturating_sub(64);
            tasks.retain(|t| {
                let drop = excess > 0 && finished(t);
                excess -= usize::from(drop);
                !drop
            });
            tasks.push(task.clone());
        }
        let inner = self.inner.clone();
        let thread = std::thread::Builder::new()
            .name("oxifaster-checkpoint".into())
            .spawn(move || {
                let result = {
                    let _busy = Busy(&inner.checkpoints.busy);
                    // A panic inside the checkpoint (a user callback, a
                    // bug) is reported to every waiter, never a hang.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inner.run_checkpoint(kind, &task.token)
                    }))
                    .unwrap_or_else(|panic| {
                        Err(Error::CheckpointFailed {
                            token: task.token.to_string(),
                            message: format!("the checkpoint panicked: {}", panic_message(&*panic)),
                            source: None,
                        })
                    })
                    .map_err(Arc::new)
                };
                *task.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                task.finished.notify_all();
            })
            .map_err(|source| {
                control.busy.store(false, Ordering::Release);
                Error::Io { context: "starting the checkpoint thread".into(), source }
            })?;
        let mut threads = control.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Ok(token)
    }

    /// Waits for a checkpoint started with [`Store::checkpoint`].
    pub fn wait_for_checkpoint(&self, token: &CheckpointToken) -> Result<CheckpointInfo> {
        let task = {
            let tasks = self.inner.checkpoints.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.iter().find(|t| t.token == *token).cloned()
        };
        let Some(task) = task else {
            return Err(Error::CheckpointNotFound {
                token: token.to_string(),
                dir: self.dir().map(Path::to_path_buf).unwrap_or_default(),
            });
        };
        wait_task(&task)
    }

    /// Awaits a checkpoint started with [`Store::checkpoint`] without
    /// blocking the async runtime.
    #[cfg(feature = "tokio")]
    pub async fn checkpoint_async(&self, kind: CheckpointKind) -> Result<CheckpointInfo> {
        let token = self.checkpoint(kind)?;
        let task = {
            let tasks = self.inner.checkpoints.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.iter().find(|t| t.token == token).cloned()
        };
        let Some(task) = task else {
            return Err(Error::CheckpointNotFound {
                token: token.to_string(),
                dir: self.dir().map(Path::to_path_buf).unwrap_or_default(),
            });
        };
        tokio::task::spawn_blocking(move || wait_task(&task)).await.map_err(|e| Error::Io {
            context: "waiting for a checkpoint".into(),
            source: std::io::Error::other(e),
        })?
    }

    /// The checkpoint this store was recovered from, with every session's
    /// commit point, if it was recovered.
    pub fn recovered(&self) -> Option<CheckpointInfo> {
        self.inner.checkpoints.recovered.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sessions of the checkpoint this store was recovered from, with
    /// their commit points: `continue_session(id)` resumes one.
    pub fn recovered_sessions(&self) -> Vec<(u64, CommitPoint)> {
        self.recovered().map(|info| info.sessions).unwrap_or_default()
    }

    /// Resumes a recovered session: returns it, with its serial number set
    /// to its commit point's `until`, and the commit point (reissue the
    /// operations after `until` and those in `excluded`).
    pub fn continue_session(&self, id: u64) -> Result<(crate::Session<K, V, D>, CommitPoint)> {
        let point = self
            .recovered_sessions()
            .into_iter()
            .find(|(s, _)| *s == id)
            .map(|(_, p)| p)
            .ok_or(Error::UnknownSession { id })?;
        let (version, _) = self.inner.cpr.load();
        let slot = self.inner.sessions.reopen(id, version).ok_or(Error::UnknownSession { id })?;
        let session = crate::Session::new(self.open.clone(), slot, point.until)?;
        Ok((session, point))
    }
}

/// The text of a caught panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

fn wait_task(task: &Task) -> Result<CheckpointInfo> {
    let mut result = task.result.lock().unwrap_or_else(|p| p.into_inner());
    while result.is_none() {
        result = task.finished.wait(result).unwrap_or_else(|p| p.into_inner());
    }
    match result.clone() {
        Some(Ok(info)) => Ok(info),
        Some(Err(message)) => Err(Error::CheckpointFailed {
            token: task.token.to_string(),
            message: message.to_string(),
            source: Some(message),
        }),
        None => Err(Error::CheckpointFailed {
            token: task.token.to_string(),
            message: "no result".into(),
            source: None,
        }),
    }
}

pub(crate) use admin::retain_older;
#[cfg(any(test, feature = "testing"))]
pub(crate) use admin::walk_page;
pub use admin::{
    LogVerification, RawRecord, delete, latest_token, list, retain, scan_log, verify, verify_log,
};
pub(crate) use recover::recover as recover_store;
