//! The crate's umbrella error type.
//!
//! Every public fallible function returns [`Result<T>`]. Errors name the
//! problem (which type, which field, which size) so that a user can act on
//! them without reading the source.

use crate::record::CodecError;

/// The result type of oxifaster's public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in oxifaster.
///
/// The enum is `#[non_exhaustive]`: new layers add variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key or value could not be encoded or decoded: the bytes are not a
    /// valid encoding of the type, or an instance is too large to encode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A record (header, key and value) is larger than a log page allows.
    #[error(
        "a record of {size} bytes does not fit in a log page, which holds at most {max}: \
         raise `page_size_bits` (each step doubles the page)"
    )]
    RecordTooLarge {
        /// The record's size.
        size: u64,
        /// The largest record a page holds.
        max: u64,
    },
    /// The log's address space (48 bits) is used up.
    #[error("the log's 48-bit address space is full")]
    LogFull,
    /// Memory for the log's page frames could not be allocated.
    #[error("could not allocate {bytes} bytes of log memory")]
    OutOfMemory {
        /// The request.
        bytes: usize,
    },
    /// A device operation failed.
    #[error("I/O error {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier device failure left the store (or log) unable to write
    /// safely; reopen it to recover. A store keeps answering reads: what
    /// it holds in memory and what reached the device are intact.
    #[error("poisoned by an earlier failure (reopen to recover): {message}")]
    Poisoned {
        /// The original failure.
        message: String,
        /// The kind of the I/O error behind it, if one was
        /// (`StorageFull` for a full disk: see [`Error::is_disk_full`]).
        kind: Option<std::io::ErrorKind>,
    },
    /// Bytes read back from the device are not a valid record.
    #[error("corrupt log at {address:#x}: {what}")]
    Corruption {
        /// The log address.
        address: u64,
        /// What is wrong.
        what: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: `{what}`: {why}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A configuration file or environment variable is not valid
    /// (feature `serde`): where (the file and line, or "the environment"),
    /// which key or variable, and what is allowed. (Boxed: every
    /// operation returns a `Result` of this type, whose size is its
    /// largest variant's.)
    #[error("{0}")]
    ConfigFile(Box<ConfigError>),
    /// Every entry of the epoch table is taken by an open session.
    #[error("too many sessions: at most {max} may be open at once")]
    TooManySessions {
        /// The configured maximum.
        max: usize,
    },
    /// A checkpoint is already running; one runs at a time.
    #[error("a checkpoint (token {token}) is already in progress")]
    CheckpointInProgress {
        /// The running checkpoint.
        token: String,
    },
    /// A background checkpoint failed (it left no checkpoint behind).
    #[error("checkpoint {token} failed: {message}")]
    CheckpointFailed {
        /// The checkpoint.
        token: String,
        /// Why.
        message: String,
        /// The error it failed with (an I/O error keeps its `io::Error`
        /// there: a full disk is recognisable); `None` for a panic.
        #[source]
        source: Option<std::sync::Arc<Error>>,
    },
    /// A checkpoint token is malformed (it names a directory, so it may not
    /// contain path separators or be empty).
    #[error("invalid checkpoint token {token:?}: {why}")]
    InvalidToken {
        /// The token given.
        token: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No (complete) checkpoint with this token exists.
    #[error("no checkpoint {token:?} in {}", dir.display())]
    CheckpointNotFound {
        /// The token looked for.
        token: String,
        /// The store directory.
        dir: std::path::PathBuf,
    },
    /// A checkpoint file is damaged: truncated, bit-flipped, or not a
    /// checkpoint file at all.
    #[error("checkpoint file {} is corrupt: {what}", path.display())]
    CheckpointCorrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The store on disk was written with other key or value types.
    #[error(
        "the store holds {what} type `{stored}` (layout {stored_fingerprint:#018x}) \
         but was opened as `{opened}` (layout {opened_fingerprint:#018x})"
    )]
    LayoutMismatch {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// The type recorded in the checkpoint.
        stored: String,
        /// Its layout fingerprint.
        stored_fingerprint: u64,
        /// The type asked for.
        opened: String,
        /// Its layout fingerprint.
        opened_fingerprint: u64,
    },
    /// A checkpoint uses a format this version cannot read.
    #[error(
        "checkpoint {} has format version {found}; this build reads version {supported}",
        path.display()
    )]
    UnsupportedFormat {
        /// The file.
        path: std::path::PathBuf,
        /// Its format version.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// `continue_session` was asked for a session the recovered checkpoint
    /// does not know, or one already continued.
    #[error("no recovered session {id} to continue")]
    UnknownSession {
        /// The session id.
        id: u64,
    },
    /// A log address that names no readable entry: below the log's begin
    /// (truncated), inside a range dropped by `truncate_after`, not yet
    /// committed, or not 8-byte aligned.
    #[error("no readable log entry at {address:#x}: {why}")]
    InvalidAddress {
        /// The address given.
        address: u64,
        /// Why it cannot be read.
        why: &'static str,
    },
    /// `open` was given a directory that holds something other than a
    /// store (a `FasterLog`, or files the store did not write).
    #[error("{path} is not a store directory: {why}")]
    NotAStore {
        /// The directory.
        path: std::path::PathBuf,
        /// What it holds instead.
        why: String,
    },
    /// [`Store::close`](crate::Store::close) while sessions or other
    /// handles of the store are still alive.
    #[error(
        "the store is still in use by {handles} other handle(s) or session(s); \
         drop them before closing it"
    )]
    StillInUse {
        /// How many other handles and sessions are alive.
        handles: usize,
    },
    /// A session already has the most parked (pending) operations it may
    /// hold; complete them with `complete_pending` first.
    #[error(
        "the session has {limit} pending operations, the most it may hold: \
         call complete_pending before issuing more"
    )]
    TooManyPending {
        /// The configured bound.
        limit: usize,
    },
    /// Another process (or another instance in this one) has the directory
    /// open.
    #[error("{} is locked: another process has it open", path.display())]
    Locked {
        /// The lock file.
        path: std::path::PathBuf,
    },
}

impl Error {
    /// Whether the error reports damaged data (a corrupt file or log
    /// page), as opposed to a wrong request, a configuration or an I/O
    /// failure: `recover_latest` skips a checkpoint that fails this way and
    /// tries an older one.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Error::Corruption { .. }
                | Error::CheckpointCorrupt { .. }
                | Error::Codec(_)
                | Error::UnsupportedFormat { .. }
        )
    }

    /// The kind of the operating system's error behind this one: an I/O
    /// error's own, or the one that poisoned the store.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            Error::Poisoned { kind, .. } => *kind,
            _ => None,
        }
    }

    /// Whether the device ran out of space (`ENOSPC`) or quota (`EDQUOT`),
    /// directly or as the cause of a poisoning. The store stays readable;
    /// free space and reopen it to write again (it recovers its last
    /// checkpoint). A disk budget ([`crate::StoreBuilder::disk_budget`])
    /// below the free space keeps it from happening.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self.io_kind(),
            Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        )
    }
}

/// What [`Error::ConfigFile`] says: where a configuration is not valid,
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file's path, or "the environment".
    pub origin: String,
    /// The line of the file (1-based), where known.
    pub line: Option<usize>,
    /// The key (or environment variable), where known.
    pub key: Option<String>,
    /// What is wrong, and what is allowed.
    pub message: String,
}

/// `file:line: key: message`.
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration {}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

// Every operation returns a `Result` of `Error`, built in place by the
// inlined operations: keep it no larger than it is (large payloads go in
// a `Box`).
const _: () = assert!(std::mem::size_of::<Error>() <= 88);
