//! Reading a checkpoint back and checking it: its metadata, its index and
//! snapshot files, and the log pages it needs; the verification and the
//! log scan built on that. Recovery loads a checkpoint through the same
//! functions.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::meta::Meta;
use super::walk::for_each_record;
use super::{CheckpointInfo, CheckpointKind, CheckpointToken, root};
use crate::device::Device;
use crate::hlog::FIRST_ADDRESS;
use crate::hlog::seal::{self, TRAILER as PAGE_TRAILER};
use crate::index::HashIndex;
use crate::store::record::{RecordInfo, RecordShape};
use crate::{Error, Result};

pub(super) fn corrupt(path: &Path, what: impl Into<String>) -> Error {
    Error::CheckpointCorrupt { path: path.to_path_buf(), what: what.into() }
}

/// Reads a checkpoint's metadata, checking that it is a complete log
/// checkpoint.
pub(super) fn load_meta(dir: &Path, token: &str) -> Result<(Meta, CheckpointKind)> {
    let token = CheckpointToken::parse(token)?;
    let path = root(dir).join(token.as_str()).join("meta");
    if !path.exists() {
        return Err(Error::CheckpointNotFound { token: token.to_string(), dir: dir.to_path_buf() });
    }
    let meta = Meta::read(&path)?;
    if meta.token != token.as_str() {
        return Err(corrupt(&path, format!("it names checkpoint {:?}", meta.token)));
    }
    let kind = CheckpointKind::from_code(meta.kind)
        .ok_or_else(|| corrupt(&path, format!("unknown checkpoint kind {}", meta.kind)))?;
    if meta.final_address < meta.index.log_end
        || meta.index.log_start > meta.index.log_end
        || meta.begin_address > meta.index.log_start.max(FIRST_ADDRESS)
        || !(crate::hlog::MIN_PAGE_BITS..=crate::hlog::MAX_PAGE_BITS).contains(&meta.page_size_bits)
    {
        return Err(corrupt(&path, "inconsistent addresses or page size"));
    }
    let snapshot_end = meta.snapshot.as_ref().and_then(|s| s.from.checked_add(s.len));
    let log_end = match &meta.delta {
        Some(delta) => {
            if Some(delta.from) != snapshot_end {
                return Err(corrupt(&path, "the delta does not start where its base ends"));
            }
            delta.from.checked_add(delta.len)
        }
        None => snapshot_end,
    };
    if let Some(snapshot) = &meta.snapshot {
        CheckpointToken::parse(&snapshot.token)?;
        if snapshot.from & ((1u64 << meta.page_size_bits) - 1) != 0
            || log_end != Some(meta.final_address)
        {
            return Err(corrupt(&path, "the snapshot does not end at the final address"));
        }
    }
    let mut last = meta.begin_address;
    for gap in &meta.gaps {
        if gap.from < last || gap.to <= gap.from || gap.to > meta.final_address {
            return Err(corrupt(&path, "dead log ranges out of order or out of range"));
        }
        last = gap.to;
    }
    CheckpointToken::parse(&meta.index.token)?;
    Ok((meta, kind))
}

/// See [`super::verify`].
pub(super) fn verify(dir: &Path, token: &str) -> Result<CheckpointInfo> {
    verify_files(dir, token).map(|(_, info)| info)
}

/// The size and fill of checkpoint `token`'s index (its file read whole
/// and checked).
pub(super) fn index_stats(dir: &Path, token: &str) -> Result<crate::IndexStats> {
    let (meta, _) = load_meta(dir, token)?;
    let index_path = root(dir).join(&meta.index.token).join("index");
    let (index, _) = HashIndex::read_checkpoint(&index_path)?;
    Ok(index.stats())
}

/// Checks a checkpoint's metadata and files; returns the metadata too.
pub(super) fn verify_files(dir: &Path, token: &str) -> Result<(Meta, CheckpointInfo)> {
    let (meta, _) = load_meta(dir, token)?;
    let index_path = root(dir).join(&meta.index.token).join("index");
    let (_, header) = HashIndex::read_checkpoint(&index_path)?;
    if header.log_start != meta.index.log_start || header.table_size != meta.index.table_size {
        return Err(corrupt(&index_path, "it is not the index the metadata names"));
    }
    if let Some(snapshot) = &meta.snapshot {
        let path = root(dir).join(&snapshot.token).join("snapshot");
        check_file(&path, snapshot.len, snapshot.checksum, |_| Ok(()))?;
    }
    if let Some(delta) = &meta.delta {
        load_delta(&root(dir).join(token).join("delta"), delta, meta.page_size_bits)?;
    }
    let info = CheckpointInfo::from_meta(&meta).ok_or_else(|| corrupt(dir, "unknown kind"))?;
    Ok((meta, info))
}

/// The live ranges of the device for a checkpoint: `[begin, end)` less
/// its dead ranges, `end` being where the snapshot file takes over.
pub(super) fn live_ranges(meta: &Meta) -> Vec<(u64, u64)> {
    let end = meta.snapshot.as_ref().map_or(meta.final_address, |s| s.from);
    let mut live = Vec::new();
    let mut at = meta.begin_address.max(FIRST_ADDRESS).min(end);
    for gap in &meta.gaps {
        if gap.from > at {
            live.push((at, gap.from.min(end)));
        }
        at = at.max(gap.to);
    }
    if end > at {
        live.push((at, end));
    }
    live
}

/// See [`super::scan_log`].
pub(super) fn scan_log<D: Device>(
    dir: &Path,
    token: &str,
    device: &D,
    mut f: impl FnMut(super::RawRecord) -> bool,
) -> Result<()> {
    let (meta, _) = load_meta(dir, token)?;
    let page_size = 1u64 << meta.page_size_bits;
    let shape =
        RecordShape::new(meta.key_size.map(|n| n as usize), meta.value_size.map(|n| n as usize));
    let mut ranges = live_ranges(&meta);
    let mut source = Source { device, snapshot: None, delta: None };
    if let Some(s) = &meta.snapshot {
        let path = root(dir).join(&s.token).join("snapshot");
        let file = File::open(&path).map_err(|source| Error::Io {
            context: format!("opening {}", path.display()),
            source,
        })?;
        source.snapshot = Some((file, s.from, path));
        ranges.push((s.from, s.from + s.len));
    }
    // An incremental snapshot: the log appended since its base, and the
    // base's records that changed since (each replaces the base's copy).
    let mut changed = std::collections::BTreeMap::new();
    if let Some(d) = &meta.delta {
        let path = root(dir).join(token).join("delta");
        changed = load_delta(&path, d, meta.page_size_bits)?;
        let file = File::open(&path).map_err(|source| Error::Io {
            context: format!("opening {}", path.display()),
            source,
        })?;
        source.delta = Some((file, d.from, path));
        ranges.push((d.from, d.from + d.len));
    }
    let mut page = vec![0u8; page_size as usize];
    let mut go_on = true;
    for (from, to) in ranges {
        let mut at = from;
        while at < to && go_on {
            let end = ((at & !(page_size - 1)) + page_size).min(to);
            let bytes = &mut page[..(end - at) as usize];
            source.read(at, bytes)?;
            for_each_record(&shape, bytes, at, page_size, |address, record, info, key_len| {
                if !go_on {
                    return;
                }
                let (record, info) = match changed.get(&address) {
                    Some(newer) if newer.len() == record.len() => {
                        let raw = u64::from_le_bytes(newer[..8].try_into().unwrap_or([0; 8]));
                        (&newer[..], RecordInfo::from_raw(raw))
                    }
                    _ => (&record[..], info),
                };
                let (_, value_len) = shape.lengths_in(record);
                let value_at = shape.header_size + crate::store::record::pad8(key_len);
                go_on = f(super::RawRecord {
                    address,
                    previous: info.previous().raw(),
                    version: info.version(),
                    tombstone: info.is_tombstone(),
                    invalid: info.is_invalid(),
                    key: record[shape.header_size..shape.header_size + key_len].to_vec(),
                    value: record[value_at..value_at + value_len].to_vec(),
                });
            })?;
            at = end;
        }
    }
    Ok(())
}

/// See [`super::verify_log`].
pub(super) fn verify_log<D: Device>(
    dir: &Path,
    token: &str,
    device: &D,
) -> Result<super::LogVerification> {
    let (meta, info) = verify_files(dir, token)?;
    let page_size = 1u64 << meta.page_size_bits;
    let body = page_size - PAGE_TRAILER;
    let live = live_ranges(&meta);
    let mut report =
        super::LogVerification { checkpoint: info, pages: 0, bytes: 0, problems: Vec::new() };
    let mut page_bytes = vec![0u8; page_size as usize];
    for (from, to) in live {
        let mut page = from & !(page_size - 1);
        while page < to {
            let need = to.min(page + body) - page;
            // A range's last page may have been flushed further, unsynced,
            // before a crash: only its covering seal must hold.
            let strict = page + page_size <= to;
            match device.read_at(page, &mut page_bytes) {
                Ok(()) => {
                    if let Err(what) = seal::check_page(page, &page_bytes, need, strict) {
                        report.problems.push((page, what));
                    }
                }
                Err(e) => report.problems.push((page, format!("unreadable: {e}"))),
            }
            report.pages += 1;
            report.bytes += need;
            page += page_size;
        }
    }
    Ok(report)
}

/// Reads a whole file, checking its length and XXH3 checksum, and passes
/// its bytes to `f` in order (in pieces of up to 1 MiB).
pub(super) fn check_file(
    path: &Path,
    len: u64,
    checksum: u64,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let io = |source| Error::Io { context: format!("reading {}", path.display()), source };
    let file = File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() != len {
        return Err(corrupt(path, format!("its length is not {len}")));
    }
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut hash = xxhash_rust::xxh3::Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        f(&buf[..n])?;
    }
    if hash.digest() != checksum {
        return Err(corrupt(path, "checksum mismatch"));
    }
    Ok(())
}

/// Checks an incremental snapshot's `delta` file and returns its changed
/// records by address. Every length is checked before it is used.
pub(super) fn load_delta(
    path: &Path,
    delta: &super::meta::DeltaRef,
    page_bits: u32,
) -> Result<std::collections::BTreeMap<u64, Vec<u8>>> {
    let mut tail = Vec::new(); // the changed-records section
    let mut seen = 0u64;
    check_file(path, delta.file_len, delta.checksum, |piece| {
        let skip = delta.len.saturating_sub(seen).min(piece.len() as u64) as usize;
        tail.extend_from_slice(&piece[skip..]);
        seen += piece.len() as u64;
        Ok(())
    })?;
    if delta.file_len < delta.len {
        return Err(corrupt(path, "shorter than its copied range"));
    }
    let mut changed = std::collections::BTreeMap::new();
    let mut at = 0usize;
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(tail.get(at..at + 8)?.try_into().ok()?))
    };
    for _ in 0..delta.changed {
        let (Some(address), Some(len)) = (word(at), word(at + 8)) else {
            return Err(corrupt(path, "a changed record is cut short"));
        };
        let start = at + 16;
        let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l));
        let record = match end {
            Some(end) if len <= 1 << page_bits && len % 8 == 0 && end <= tail.len() => {
                &tail[start..end]
            }
            _ => return Err(corrupt(path, format!("a changed record of {len} bytes"))),
        };
        if address % 8 != 0 || address >= delta.from {
            return Err(corrupt(path, format!("a changed record at {address:#x}")));
        }
        changed.insert(address, record.to_vec());
        at = start + record.len();
    }
    if at != tail.len() {
        return Err(corrupt(path, "bytes after the changed records"));
    }
    Ok(changed)
}

/// The newest recoverable checkpoint's token: the highest version whose
/// metadata is complete and valid (incomplete ones — a crash before the
/// metadata was renamed into place — are skipped).
pub(crate) fn latest(dir: &Path) -> Result<String> {
    super::list(dir)?
        .into_iter()
        .rev()
        .find(|c| c.kind != CheckpointKind::IndexOnly)
        .map(|c| c.token.to_string())
        .ok_or_else(|| Error::CheckpointNotFound {
            token: "(latest)".into(),
            dir: dir.to_path_buf(),
        })
}

/// Where replayed bytes come from: the device below a snapshot's start,
/// the snapshot file above it, and an incremental snapshot's delta file
/// above the base's end.
pub(super) struct Source<'a, D> {
    pub(super) device: &'a D,
    pub(super) snapshot: Option<(File, u64, std::path::PathBuf)>,
    pub(super) delta: Option<(File, u64, std::path::PathBuf)>,
}

impl<D: Device> Source<'_, D> {
    pub(super) fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let file = match (&self.delta, &self.snapshot) {
            (Some(delta), _) if address >= delta.1 => Some(delta),
            (_, Some(snapshot)) if address >= snapshot.1 => Some(snapshot),
            _ => None,
        };
        match file {
            Some((file, from, path)) => {
                file.read_exact_at(buf, address - *from).map_err(|source| Error::Io {
                    context: format!("reading {}", path.display()),
                    source,
                })
            }
            None => self.device.read_at(address, buf).map_err(|source| Error::Io {
                context: format!("reading {} bytes of the log at {address:#x}", buf.len()),
                source,
            }),
        }
    }
}
