//! Errors of the record codecs.

/// A key or value could not be encoded or decoded.
///
/// Every variant names the Rust type involved (and the field, where there is
/// one), so that a corrupt record or a misuse is easy to trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not the size that the type's encoding has.
    #[error("`{type_name}` encodes to {expected} bytes, but {found} bytes were given")]
    Size {
        /// The type being decoded.
        type_name: &'static str,
        /// The size its encoding must have.
        expected: usize,
        /// The size that was given.
        found: usize,
    },
    /// The bytes end before the type's fixed head does.
    #[error("`{type_name}` needs at least {needed} bytes, but {found} bytes were given")]
    Truncated {
        /// The type being decoded.
        type_name: &'static str,
        /// The smallest valid encoding.
        needed: usize,
        /// The size that was given.
        found: usize,
    },
    /// The length fields of a variable-length encoding do not add up to the
    /// bytes given (or overflow).
    #[error(
        "`{type_name}`: the lengths of its variable-length fields add up to {declared} bytes, \
         but {found} bytes follow its head"
    )]
    LengthMismatch {
        /// The type being decoded.
        type_name: &'static str,
        /// The sum of the length fields.
        declared: u64,
        /// The bytes actually present after the head and length fields.
        found: usize,
    },
    /// A variable-length field's byte length is not a multiple of its element
    /// size.
    #[error("field `{field}` of `{type_name}` holds {len} bytes, not a multiple of {element_size}")]
    RaggedSequence {
        /// The type being decoded.
        type_name: &'static str,
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The size of one element.
        element_size: usize,
    },
    /// A `bool` byte that is neither 0 nor 1.
    #[error("invalid bool byte {byte:#04x}")]
    InvalidBool {
        /// The byte found.
        byte: u8,
    },
    /// A string field that is not UTF-8.
    #[error("`{type_name}`: field `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The type being decoded.
        type_name: &'static str,
        /// The field (empty for a bare `String`).
        field: &'static str,
    },
    /// An enum discriminant that names no variant.
    #[error("`{type_name}` has no variant with discriminant {value}")]
    InvalidDiscriminant {
        /// The enum being decoded.
        type_name: &'static str,
        /// The discriminant found.
        value: i128,
    },
    /// A zero-copy view was asked for bytes that are not aligned for the type.
    #[error("a view of `{type_name}` needs {align}-byte aligned bytes")]
    Misaligned {
        /// The type being viewed.
        type_name: &'static str,
        /// The alignment it needs.
        align: usize,
    },
    /// An instance is too large to encode.
    #[error("`{type_name}` instance encodes to {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// The type being encoded.
        type_name: &'static str,
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An instance's `encoded_size` (or `key_size`) disagrees with the
    /// type's `FIXED_SIZE` (or `FIXED_KEY_SIZE`): a hand-written
    /// implementation is inconsistent.
    #[error(
        "`{type_name}` declares a fixed encoding of {fixed} bytes, but an instance \
         announced {announced}"
    )]
    FixedSizeMismatch {
        /// The type being encoded.
        type_name: &'static str,
        /// Its `FIXED_SIZE`.
        fixed: usize,
        /// What the instance announced.
        announced: usize,
    },
    /// An encoder wrote a different number of bytes than it announced: a
    /// hand-written `Key`/`Value` implementation is inconsistent.
    #[error("`{type_name}` announced {announced} encoded bytes but wrote {written}")]
    EncoderMismatch {
        /// The type being encoded.
        type_name: &'static str,
        /// What `encoded_size` returned (the buffer size).
        announced: usize,
        /// What `encode` wrote.
        written: usize,
    },
}
