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
    #[error("a record of {size} bytes does not fit in a log page (at most {max} bytes)")]
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
    /// An earlier device failure left the store unable to make progress
    /// safely; reopen it to recover.
    #[error("the store is poisoned by an earlier failure: {message}")]
    Poisoned {
        /// The original failure.
        message: String,
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
    /// Every entry of the epoch table is taken by an open session.
    #[error("too many sessions: at most {max} may be open at once")]
    TooManySessions {
        /// The configured maximum.
        max: usize,
    },
}
