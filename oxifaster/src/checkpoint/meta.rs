//! Checkpoint metadata: what a checkpoint holds, written last and
//! atomically, so that a checkpoint exists exactly when its metadata does.
//!
//! ```text
//! "OXFMETA\0" | format version u32 | 0 u32 | payload length u64 |
//! XXH3-64 of the payload u64 | payload (an rkyv archive of `Meta`)
//! ```
//!
//! The payload is validated twice before use: by the checksum, and by
//! rkyv's bytecheck (every offset and length inside the archive in bounds),
//! so a damaged file is an error, never a panic or garbage.

use std::path::Path;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::cpr::{CheckpointInfo, CheckpointKind, CheckpointToken, CommitPoint};
use crate::cpr::{CheckpointIo, IndexRef, SnapshotRef};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"OXFMETA\0";
/// The metadata format this build writes and reads.
pub const META_FORMAT_VERSION: u32 = 2;
const HEADER_SIZE: usize = 32;
/// No metadata is this large; a larger length field is damage.
const MAX_PAYLOAD: u64 = 64 << 20;

/// A session's commit point, as stored.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPoint {
    pub(crate) id: u64,
    pub(crate) until: u64,
    pub(crate) excluded: Vec<u64>,
}

/// What an incremental snapshot wrote on top of its base snapshot: the log
/// from the base's end to its own final address, and every record in the
/// base's range changed since (see `checkpoint::mod`).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeltaRef {
    /// The log address where the copied range starts (the base's end).
    pub(crate) from: u64,
    /// The copied range's length (it ends at the final address).
    pub(crate) len: u64,
    /// How many changed records follow it in the file.
    pub(crate) changed: u64,
    /// The `delta` file's length.
    pub(crate) file_len: u64,
    /// XXH3-64 of the file.
    pub(crate) checksum: u64,
}

/// A range of the log device that holds no records of the checkpoint's
/// log: what lay past an older checkpoint's end when the store was
/// recovered from it (the new incarnation starts past the device's end).
/// Its pages may be torn; nothing refers to them.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) from: u64,
    pub(crate) to: u64,
}

/// Everything a checkpoint records.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) token: String,
    /// The store version the checkpoint captures.
    pub(crate) version: u32,
    /// `CheckpointKind as u8`.
    pub(crate) kind: u8,
    pub(crate) key_type: String,
    pub(crate) key_fingerprint: u64,
    pub(crate) value_type: String,
    pub(crate) value_fingerprint: u64,
    /// The key's and the value's encoded sizes when fixed (the record
    /// shape, so that tools can walk the log without the types).
    pub(crate) key_size: Option<u32>,
    pub(crate) value_size: Option<u32>,
    pub(crate) page_size_bits: u32,
    /// The index checkpoint to load (for an index-only checkpoint, its own).
    pub(crate) index: IndexRef,
    pub(crate) begin_address: u64,
    /// The log holds the checkpoint's records below this address.
    pub(crate) final_address: u64,
    /// The dead ranges inside `[begin_address, final_address)`, in order.
    pub(crate) gaps: Vec<Gap>,
    pub(crate) snapshot: Option<SnapshotRef>,
    pub(crate) delta: Option<DeltaRef>,
    pub(crate) sessions: Vec<SessionPoint>,
    pub(crate) next_session_id: u64,
    pub(crate) created_unix_ms: u64,
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename,
/// fsync of the directory. A crash leaves either the old file or the new
/// one, never a mix.
pub(crate) fn write_atomic(fs: &dyn CheckpointIo, path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io { context: format!("writing {}", path.display()), source };
    let dir = path.parent().ok_or_else(|| io(std::io::Error::other("no parent directory")))?;
    let temp = path.with_extension("tmp");
    {
        let mut file = fs.create(&temp).map_err(io)?;
        file.write_at(0, bytes).map_err(io)?;
        file.sync().map_err(io)?;
    }
    fs.rename(&temp, path).map_err(io)?;
    sync_dir(fs, dir)
}

/// Makes a directory's entries (created, renamed files) durable.
pub(crate) fn sync_dir(fs: &dyn CheckpointIo, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).map_err(|source| Error::Io {
        context: format!("syncing directory {}", dir.display()),
        source,
    })
}

/// `bytes` (a metadata file, possibly damaged) with the payload length and
/// checksum fields set to match the payload, so that a fuzzer reaches the
/// archive validation behind them.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn fix_checksum(bytes: &mut [u8]) {
    if bytes.len() < HEADER_SIZE {
        return;
    }
    let len = (bytes.len() - HEADER_SIZE) as u64;
    let hash = xxhash_rust::xxh3::xxh3_64(&bytes[HEADER_SIZE..]);
    bytes[12..16].fill(0);
    bytes[16..24].copy_from_slice(&len.to_le_bytes());
    bytes[24..32].copy_from_slice(&hash.to_le_bytes());
}

impl Meta {
    /// The file's bytes: header and archive.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let payload = rkyv::to_bytes::<rancor::Error>(self).map_err(|e| Error::Io {
            context: "archiving checkpoint metadata".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&META_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Reads and validates a metadata file.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        Self::decode(&bytes, path)
    }

    /// Validates and decodes a metadata file's bytes (`path` names it in
    /// errors).
    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |what: String| Error::CheckpointCorrupt { path: path.to_path_buf(), what };
        if bytes.len() < HEADER_SIZE {
            return Err(corrupt(format!(
                "{} bytes is too short for checkpoint metadata",
                bytes.len()
            )));
        }
        if &bytes[0..8] != MAGIC {
            return Err(corrupt("not checkpoint metadata (bad magic)".into()));
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
        if version != META_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: version,
                supported: META_FORMAT_VERSION,
            });
        }
        let len = word(16);
        if len > MAX_PAYLOAD || len != (bytes.len() - HEADER_SIZE) as u64 {
            return Err(corrupt(format!(
                "payload length {len} does not match the file ({} bytes)",
                bytes.len()
            )));
        }
        let payload = &bytes[HEADER_SIZE..];
        if xxhash_rust::xxh3::xxh3_64(payload) != word(24) || bytes[12..16] != [0; 4] {
            return Err(corrupt("checksum mismatch".into()));
        }
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let archived = rkyv::access::<ArchivedMeta, rancor::Error>(&aligned)
            .map_err(|e| corrupt(format!("invalid archive: {e}")))?;
        rkyv::deserialize::<Meta, rancor::Error>(archived)
            .map_err(|e| corrupt(format!("invalid archive: {e}")))
    }
}

/// A metadata value with every field set (tests and fuzzing seeds).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn sample() -> Meta {
    Meta {
        token: "0000000002-00ab".into(),
        version: 2,
        kind: 1,
        key_type: "u64".into(),
        key_fingerprint: 1,
        value_type: "u64".into(),
        value_fingerprint: 2,
        key_size: Some(8),
        value_size: None,
        page_size_bits: 12,
        index: IndexRef { token: "t".into(), log_start: 64, log_end: 128, table_size: 16 },
        begin_address: 64,
        final_address: 4096,
        gaps: vec![Gap { from: 600, to: 1024 }],
        snapshot: Some(SnapshotRef { token: "t".into(), from: 0, len: 4096, checksum: 7 }),
        delta: Some(DeltaRef { from: 4096, len: 0, changed: 1, file_len: 24, checksum: 9 }),
        sessions: vec![SessionPoint { id: 1, until: 10, excluded: vec![3, 4] }],
        next_session_id: 2,
        created_unix_ms: 1,
    }
}

impl CheckpointInfo {
    /// What `meta` describes; `None` for an unknown kind.
    pub(crate) fn from_meta(meta: &Meta) -> Option<Self> {
        Some(Self {
            token: CheckpointToken::from_stored(meta.token.clone()),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_every_bit_flip_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta");
        let meta = sample();
        write_atomic(&crate::cpr::RealIo, &path, &meta.encode().expect("encode")).expect("write");
        assert_eq!(Meta::read(&path).expect("read"), meta);
        let good = std::fs::read(&path).expect("read");
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&path, &bad).expect("write");
            let err = Meta::read(&path).expect_err("flip detected");
            assert!(
                matches!(err, Error::CheckpointCorrupt { .. } | Error::UnsupportedFormat { .. }),
                "bit {bit}: {err}"
            );
        }
        for len in [0, 7, 31, 32, good.len() - 1] {
            std::fs::write(&path, &good[..len]).expect("write");
            assert!(matches!(Meta::read(&path), Err(Error::CheckpointCorrupt { .. })), "len {len}");
        }
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta");
        let mut bytes = sample().encode().expect("encode");
        bytes[8..12].copy_from_slice(&(META_FORMAT_VERSION + 1).to_le_bytes());
        std::fs::write(&path, &bytes).expect("write");
        assert!(matches!(Meta::read(&path), Err(Error::UnsupportedFormat { found: 3, .. })));
    }
}
