//! The crate's error.

/// What can go wrong in a replicated store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store or its log failed.
    #[error(transparent)]
    Store(#[from] oxifaster::Error),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Bytes on disk or received from a peer are not what they must be.
    #[error("{what} is corrupt: {why}")]
    Corrupt {
        /// What was read.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// The directory belongs to another cluster or node.
    #[error("{dir} belongs to {found}, not to {expected}")]
    WrongIdentity {
        /// The data directory.
        dir: String,
        /// Its recorded identity.
        found: String,
        /// The identity asked for.
        expected: String,
    },
    /// Raft refused or failed (not leader, shutting down, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// A peer or client broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
