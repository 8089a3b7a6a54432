//! The vocabulary of checkpoints that the store carries and the checkpoint
//! layer fills in: kinds, tokens, what a finished checkpoint reports, and
//! the callbacks a store is configured with.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::CommitPoint;
use super::io::CheckpointIo;
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
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::FoldOver => 1,
            Self::Snapshot => 2,
            Self::IndexOnly => 3,
            Self::LogOnly => 4,
            Self::IncrementalSnapshot => 5,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
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

    /// A new token for a checkpoint of `version`.
    pub(crate) fn new(version: u32) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self(format!("{version:010}-{:016x}", nanos as u64))
    }

    /// A token read back from a checkpoint's own metadata.
    pub(crate) fn from_stored(token: String) -> Self {
        Self(token)
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

/// Calls the progress callback, if any.
pub(crate) fn report(progress: &Option<ProgressFn>, phase: &'static str, done: u64, total: u64) {
    if let Some(p) = progress {
        (p.0)(Progress { phase, done, total });
    }
}
