//! Records: the typed keys and values that a store keeps in its log pages.
//!
//! This module owns the contract between a user's types and the engine:
//!
//! - [`Key`]: a stable byte encoding, equality on those bytes, and a 64-bit
//!   hash of those bytes that never changes across runs, versions or
//!   platforms (it is persisted in the hash index). The hash is XXH3-64 with
//!   seed 0 over the key's encoded bytes ([`hash_bytes`]).
//! - [`Value`]: a fixed-size (plain old data, zero-copy) or variable-length
//!   encoding, read back as an owned value ([`Value::decode`]) or through a
//!   borrowed view that does not copy ([`Value::view`]).
//! - [`Merge`]: read-modify-write in three forms: the initial value, an
//!   in-place update of the stored bytes, and a copy-update.
//! - [`Layout`]: a description of a type's byte layout, and its fingerprint,
//!   which checkpoints record so that reopening a store with other types is
//!   an error and not garbage.
//!
//! # Encodings
//!
//! All encodings are little-endian (the crate refuses to build on big-endian
//! targets). A fixed-size type's encoding is its in-memory `#[repr(C)]` image
//! without padding: integers and floats as their bytes, `bool` as one byte
//! (`0` or `1`), arrays element after element. Variable-length types carry no
//! length of their own: the record that holds them stores the length, and
//! `decode`/`view` are given exactly the bytes of one encoding.
//!
//! - `Vec<u8>`, `Box<[u8]>`: the bytes; `String`: its UTF-8 bytes;
//!   `Vec<T>` for a fixed element type: the elements back to back.
//! - A derived variable-length struct: its fixed-size fields in declaration
//!   order, then one `u32` length (in bytes) per variable-length field, then
//!   those fields' bytes in declaration order (see `docs/FORMAT.md`).
//!
//! Encodings handed to [`Value::view`] must be 8-byte aligned, as they are in
//! the log; [`AlignedBytes`] gives such a buffer outside a store.
//!
//! Decoders never trust their input: every length is checked before it is
//! used, and bad bytes come back as a [`CodecError`] naming the type.

mod aligned;
mod arg;
mod error;
mod layout;
pub mod merge;
#[doc(hidden)]
pub mod pod;
mod primitives;
mod sink;
#[doc(hidden)]
pub mod varlen;

pub use aligned::AlignedBytes;
pub(crate) use arg::{EncodedKey, EncodedValue};
pub use arg::{KeyArg, ValueArg};
pub use error::CodecError;
pub use layout::{FieldLayout, LAYOUT_FORMAT_VERSION, Layout, LayoutKind};
pub use merge::Merge;
pub use pod::{PodKey, PodValue};
pub use sink::{ByteComparer, KeyHasher, Sink, SliceWriter};
pub use varlen::{PodSlice, Tail, TailElem};

/// The largest encoding of one key or value, in bytes.
///
/// Variable-length fields record their length as a `u32`, so no encoding may
/// exceed it; stores impose their own, smaller limit (a record must fit in a
/// log page).
pub const MAX_ENCODED_SIZE_BYTES: usize = u32::MAX as usize;

/// The stable hash of a key's encoded bytes: XXH3-64 with seed 0.
///
/// This function is part of the on-disk format: the hash index stores bits of
/// it. It must never change; `tests/hash_stability.rs` pins it.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// A type that can be a key of a store.
///
/// A key has a stable byte encoding (no padding, no pointers), is equal to
/// another key exactly when the encodings are equal, and hashes to
/// [`hash_bytes`] of its encoding. Implement it with `#[derive(FasterKey)]`;
/// it is implemented for the integer types, `bool`, arrays of integers,
/// `Vec<u8>`, `String`, `Box<[u8]>` and `Vec<T>` of integers.
///
/// Its items carry `key` in their names so that a type that is both a key and
/// a value (every integer) has no ambiguous methods.
///
/// Implementations must keep the three methods consistent: `encode` writes
/// exactly `encoded_size()` bytes, `decode` accepts exactly what `encode`
/// writes, and the provided `hash64`/`matches` depend on that.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an oxifaster key type",
    label = "not a key",
    note = "derive it with `#[derive(oxifaster::FasterKey)]`, or use an integer, `bool`, \
            an array of integers, `Vec<u8>`, `String` or `Box<[u8]>`"
)]
pub trait Key: Sized + Send + Sync + 'static {
    /// `Some(n)` when every instance encodes to exactly `n` bytes.
    const FIXED_KEY_SIZE: Option<usize>;

    /// The size of this instance's encoding, in bytes.
    fn key_size(&self) -> usize;

    /// Writes the encoding, `key_size()` bytes in all, into `sink`.
    fn encode_key<S: Sink + ?Sized>(&self, sink: &mut S);

    /// Decodes an owned key from exactly the bytes of one encoding.
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError>;

    /// The type's layout, recorded in checkpoints.
    fn key_layout() -> Layout;

    /// The stable 64-bit hash of the key: [`hash_bytes`] of its encoding.
    #[inline]
    fn hash64(&self) -> u64 {
        let mut hasher = KeyHasher::new();
        self.encode_key(&mut hasher);
        hasher.finish()
    }

    /// Whether `stored` is exactly this key's encoding.
    #[inline]
    fn matches(&self, stored: &[u8]) -> bool {
        if stored.len() != self.key_size() {
            return false;
        }
        let mut comparer = ByteComparer::new(stored);
        self.encode_key(&mut comparer);
        comparer.is_equal()
    }

    /// Encodes the key into `dst`, which must be exactly `key_size()`
    /// bytes long.
    fn encode_key_into(&self, dst: &mut [u8]) -> Result<(), CodecError> {
        check_encoded_size::<Self>(self.key_size())?;
        let mut writer = SliceWriter::new(dst);
        self.encode_key(&mut writer);
        writer.finish(std::any::type_name::<Self>())
    }

    /// The encoding as an owned, 8-byte aligned buffer.
    fn key_to_aligned_bytes(&self) -> AlignedBytes {
        AlignedBytes::from_encoder(self.key_size(), |s| self.encode_key(s))
    }

    /// The fingerprint of [`Key::key_layout`].
    fn key_layout_fingerprint() -> u64 {
        Self::key_layout().fingerprint()
    }
}

/// A type that can be a value of a store.
///
/// A value is fixed-size (plain old data, read back without copying as a
/// `&Self`) or variable-length (a fixed head and length-prefixed tails, read
/// back through a generated borrowed view). Implement it with
/// `#[derive(FasterValue)]`; it is implemented for the integer and float
/// types, `bool`, arrays of integers and floats, `Vec<u8>`, `String`,
/// `Box<[u8]>` and `Vec<T>` of integers and floats.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an oxifaster value type",
    label = "not a value",
    note = "derive it with `#[derive(oxifaster::FasterValue)]`, or use an integer, a float, \
            `bool`, an array of numbers, `Vec<u8>`, `String` or `Box<[u8]>`"
)]
pub trait Value: Sized + Send + Sync + 'static {
    /// `Some(n)` when every instance encodes to exactly `n` bytes.
    const FIXED_SIZE: Option<usize>;

    /// A borrowed, zero-copy view of an encoded value: `&Self` for plain old
    /// data, `&[u8]`/`&str` for byte strings, a generated `FooRef<'a>` for a
    /// derived variable-length struct.
    type View<'a>;

    /// The size of this instance's encoding, in bytes.
    fn encoded_size(&self) -> usize;

    /// Writes the encoding, `encoded_size()` bytes in all, into `sink`.
    fn encode<S: Sink + ?Sized>(&self, sink: &mut S);

    /// Decodes an owned value from exactly the bytes of one encoding.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;

    /// Views exactly the bytes of one encoding without copying them. The
    /// bytes must be 8-byte aligned (they are in a store's log).
    fn view(bytes: &[u8]) -> Result<Self::View<'_>, CodecError>;

    /// The type's layout, recorded in checkpoints.
    fn layout() -> Layout;

    /// Encodes the value into `dst`, which must be exactly `encoded_size()`
    /// bytes long.
    fn encode_into(&self, dst: &mut [u8]) -> Result<(), CodecError> {
        check_encoded_size::<Self>(self.encoded_size())?;
        let mut writer = SliceWriter::new(dst);
        self.encode(&mut writer);
        writer.finish(std::any::type_name::<Self>())
    }

    /// The encoding as an owned, 8-byte aligned buffer, ready for
    /// [`Value::view`].
    fn to_aligned_bytes(&self) -> AlignedBytes {
        AlignedBytes::from_encoder(self.encoded_size(), |s| self.encode(s))
    }

    /// The fingerprint of [`Value::layout`].
    fn layout_fingerprint() -> u64 {
        Self::layout().fingerprint()
    }
}

fn check_encoded_size<T>(size: usize) -> Result<(), CodecError> {
    if size > MAX_ENCODED_SIZE_BYTES {
        return Err(CodecError::TooLarge {
            type_name: std::any::type_name::<T>(),
            size,
            max: MAX_ENCODED_SIZE_BYTES,
        });
    }
    Ok(())
}
