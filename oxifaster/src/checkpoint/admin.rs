//! Administration of a store directory's checkpoints, without opening the
//! store: listing, verifying (files and log pages), scanning the log of a
//! checkpoint, deleting and retention.

use std::path::Path;

use super::meta::Meta;
#[cfg(any(test, feature = "testing"))]
use super::walk;
use super::{CheckpointInfo, CheckpointKind, CheckpointToken, root};
use crate::device::Device;
#[cfg(any(test, feature = "testing"))]
use crate::record::{Key, Value};
use crate::{Error, Result};

/// Every complete checkpoint in a store directory, oldest first. Damaged
/// or incomplete ones are left out (see [`verify`] to find them).
pub fn list(dir: impl AsRef<Path>) -> Result<Vec<CheckpointInfo>> {
    let root = root(dir.as_ref());
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io { context: format!("listing {}", root.display()), source });
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            context: format!("listing {}", root.display()),
            source,
        })?;
        let Some(name) = entry.file_name().to_str().map(String::from) else { continue };
        if CheckpointToken::parse(&name).is_err() {
            continue;
        }
        if let Ok(meta) = Meta::read(&entry.path().join("meta"))
            && meta.token == name
            && let Some(info) = CheckpointInfo::from_meta(&meta)
        {
            found.push(info);
        }
    }
    found.sort_by(|a, b| (a.version, &a.token).cmp(&(b.version, &b.token)));
    Ok(found)
}

/// The token of the newest recoverable checkpoint in `dir`.
pub fn latest_token(dir: impl AsRef<Path>) -> Result<String> {
    super::verify::latest(dir.as_ref())
}

/// Checks a checkpoint's metadata and files (index checksum, snapshot
/// checksum) without recovering it.
pub fn verify(dir: impl AsRef<Path>, token: &str) -> Result<CheckpointInfo> {
    super::verify::verify(dir.as_ref(), token)
}

/// The size and fill of the hash index checkpoint `token` recovers
/// (buckets, overflow buckets, entries), read from its index file without
/// opening the store.
pub fn index_stats(dir: impl AsRef<Path>, token: &str) -> Result<crate::IndexStats> {
    super::verify::index_stats(dir.as_ref(), token)
}

/// Walks the records of one log page image at `address` as recovery does;
/// returns how many there are (for fuzzing).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn walk_page<K: Key, V: Value>(
    page: &mut [u8],
    address: u64,
    page_size: u64,
) -> Result<usize> {
    let format = crate::store::record::RecordFormat::<K, V>::shape();
    let mut records = 0;
    walk::for_each_record(&format, page, address, page_size, |_, _, _, _| records += 1)?;
    Ok(records)
}

/// A record of the log, as [`scan_log`] found it (its bytes, with no
/// type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Its log address.
    pub address: u64,
    /// The previous record of its hash chain (0: none).
    pub previous: u64,
    /// The store version that wrote it.
    pub version: u32,
    /// Whether it is a tombstone (a delete).
    pub tombstone: bool,
    /// Whether it was abandoned (never published).
    pub invalid: bool,
    /// The key's encoding.
    pub key: Vec<u8>,
    /// The value's encoding.
    pub value: Vec<u8>,
}

/// Walks the records of checkpoint `token`'s log, oldest first, from its
/// begin address (device pages, skipping dead ranges, then the snapshot
/// file), calling `f` with each until it returns `false`. The log is read
/// with the record shape stored in the checkpoint, so no types are needed.
/// For an incremental snapshot, the base snapshot's records that changed
/// since show as the delta holds them, then the log appended since the
/// base follows. Page seals are not checked here (see
/// [`verify_log`]); a malformed record is an error naming its address.
pub fn scan_log<D: Device>(
    dir: impl AsRef<Path>,
    token: &str,
    device: &D,
    f: impl FnMut(RawRecord) -> bool,
) -> Result<()> {
    super::verify::scan_log(dir.as_ref(), token, device, f)
}

/// What [`verify_log`] found.
#[derive(Debug, Clone)]
pub struct LogVerification {
    /// The checkpoint (its files checked as by [`verify`]).
    pub checkpoint: CheckpointInfo,
    /// How many log pages were read.
    pub pages: u64,
    /// How many bytes of records and free space their seals cover.
    pub bytes: u64,
    /// Every page that failed its check: its address and what is wrong.
    pub problems: Vec<(u64, String)>,
}

/// Checks a checkpoint as [`verify`] does, and reads every page of the log
/// it needs from `device` (for a store opened with
/// [`StoreBuilder::open`](crate::StoreBuilder::open), a
/// [`FileDevice`](crate::device::FileDevice) on the store's directory),
/// checking each page's seal: the CRC-32C over its address and its bytes
/// (see `docs/FORMAT.md`). Damaged checkpoint files are an error; damaged
/// pages are listed in [`LogVerification::problems`].
pub fn verify_log<D: Device>(
    dir: impl AsRef<Path>,
    token: &str,
    device: &D,
) -> Result<LogVerification> {
    super::verify::verify_log(dir.as_ref(), token, device)
}

/// Deletes one checkpoint.
pub fn delete(dir: impl AsRef<Path>, token: &str) -> Result<()> {
    let token = CheckpointToken::parse(token)?;
    let path = root(dir.as_ref()).join(token.as_str());
    std::fs::remove_dir_all(&path)
        .map_err(|source| Error::Io { context: format!("deleting {}", path.display()), source })
}

/// Keeps the newest `keep` *intact* recoverable checkpoints and deletes
/// every older checkpoint directory (incomplete ones included) that none of
/// them needs. A checkpoint is intact when everything its recovery reads
/// checks: metadata, index, snapshot files and every log page it replays
/// ([`verify_log`] on the directory's log files). Nothing newer than the
/// oldest kept checkpoint is deleted, so a checkpoint being written (or a
/// damaged newest one, kept for inspection) survives, and when no
/// checkpoint is intact nothing is deleted. Returns the tokens deleted.
pub fn retain(dir: impl AsRef<Path>, keep: usize) -> Result<Vec<String>> {
    let dir = dir.as_ref();
    let device = crate::device::FileDevice::open_existing(dir).map_err(|source| Error::Io {
        context: format!("opening the log in {}", dir.display()),
        source,
    })?;
    let intact = |info: &CheckpointInfo| {
        verify_log(dir, info.token.as_str(), &device).is_ok_and(|report| report.problems.is_empty())
    };
    prune(dir, keep, intact)
}

/// [`retain`] for checkpoints this process just wrote (the automatic
/// policy's): the newest `keep` complete ones are kept without reading
/// their log again.
pub(crate) fn retain_older(dir: &Path, keep: usize) -> Result<Vec<String>> {
    prune(dir, keep, |_| true)
}

fn prune(
    dir: &Path,
    keep: usize,
    mut intact: impl FnMut(&CheckpointInfo) -> bool,
) -> Result<Vec<String>> {
    let all = list(dir)?;
    let mut kept: Vec<&CheckpointInfo> = Vec::new();
    for info in all.iter().rev().filter(|c| c.kind != CheckpointKind::IndexOnly) {
        if kept.len() >= keep.max(1) {
            break;
        }
        if intact(info) {
            kept.push(info);
        }
    }
    let Some(oldest_kept) = kept.last().map(|c| c.version) else {
        return Ok(Vec::new());
    };
    let mut needed: std::collections::BTreeSet<String> =
        kept.iter().map(|c| c.token.to_string()).collect();
    needed.extend(kept.iter().map(|c| c.index_token.clone()));
    needed.extend(kept.iter().filter_map(|c| c.snapshot_token.clone()));
    let root = root(dir);
    let mut deleted = Vec::new();
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(deleted),
        Err(source) => {
            return Err(Error::Io { context: format!("listing {}", root.display()), source });
        }
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(String::from) else { continue };
        if CheckpointToken::parse(&name).is_err() || needed.contains(&name) {
            continue;
        }
        // Tokens start with their version: never touch one at or past the
        // oldest kept (it may be being written right now).
        let version = name.split('-').next().and_then(|v| v.parse::<u32>().ok());
        if version.is_none_or(|v| v >= oldest_kept) {
            continue;
        }
        delete(dir, &name)?;
        deleted.push(name);
    }
    deleted.sort();
    Ok(deleted)
}
