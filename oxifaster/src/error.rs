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
