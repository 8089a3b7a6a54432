//! Arguments of session operations: a key or value of the store's own
//! type, or a borrowed form with the same encoding, so that a
//! `Store<String, Vec<u8>>` takes `session.upsert("k", b"v")` without an
//! allocation.
//!
//! | store type | also accepted as |
//! |---|---|
//! | `String` | `str` (`"k"`, `&s[..]`) |
//! | `Vec<u8>`, `Box<[u8]>` | `[u8]`, `[u8; N]` (`b"k"`) |
//! | `Vec<T>` (values of numbers) | `[T]`, `[T; N]` |
//!
//! Every key type is its own [`KeyArg`] and every value type its own
//! [`ValueArg`]. Another implementation must write exactly the bytes the
//! store's type would (the engine sizes a record by one call of the size
//! method and refuses an encoder that writes another count, so a wrong
//! implementation gives wrong answers, never unsafety).

use super::varlen::TailElem;
use super::{
    AlignedBytes, ByteComparer, CodecError, Key, KeyHasher, MAX_ENCODED_SIZE_BYTES, Sink,
    SliceWriter, Value, hash_bytes,
};

/// A key argument for a store whose keys are `K`: `K` itself, or a
/// borrowed form with the same encoding (see the module's table).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot stand for a key of type `{K}`",
    label = "not a `{K}` key",
    note = "pass a `&{K}`; `String` keys also take `&str`, byte-string keys `&[u8]` and `b\"..\"`"
)]
pub trait KeyArg<K: Key> {
    /// The size of the encoding, in bytes.
    fn key_arg_size(&self) -> usize;
    /// Writes the encoding, `key_arg_size()` bytes in all, into `sink`.
    fn encode_key_arg<S: Sink + ?Sized>(&self, sink: &mut S);

    /// [`hash_bytes`] of the encoding.
    #[inline]
    fn key_arg_hash(&self) -> u64 {
        let mut hasher = KeyHasher::new();
        self.encode_key_arg(&mut hasher);
        hasher.finish()
    }
    /// Whether `stored` is exactly this key's encoding.
    #[inline]
    fn key_arg_matches(&self, stored: &[u8]) -> bool {
        if stored.len() != self.key_arg_size() {
            return false;
        }
        let mut comparer = ByteComparer::new(stored);
        self.encode_key_arg(&mut comparer);
        comparer.is_equal()
    }
    /// The encoding as an owned, 8-byte aligned buffer.
    fn key_arg_to_aligned_bytes(&self) -> AlignedBytes {
        AlignedBytes::from_encoder(self.key_arg_size(), |s| self.encode_key_arg(s))
    }
    /// Encodes into `dst`, which must be exactly `key_arg_size()` bytes
    /// long.
    fn encode_key_arg_into(&self, dst: &mut [u8]) -> Result<(), CodecError> {
        encode_checked::<K>(self.key_arg_size(), dst, |w| self.encode_key_arg(w))
    }
}

/// Encodes `size` bytes into `dst` through `encode`, an error if the size
/// is beyond any encoding or the encoder wrote another count.
fn encode_checked<T>(
    size: usize,
    dst: &mut [u8],
    encode: impl FnOnce(&mut SliceWriter<'_>),
) -> Result<(), CodecError> {
    if size > MAX_ENCODED_SIZE_BYTES {
        return Err(CodecError::TooLarge {
            type_name: std::any::type_name::<T>(),
            size,
            max: MAX_ENCODED_SIZE_BYTES,
        });
    }
    let mut writer = SliceWriter::new(dst);
    encode(&mut writer);
    writer.finish(std::any::type_name::<T>())
}

impl<K: Key> KeyArg<K> for K {
    #[inline(always)]
    fn key_arg_size(&self) -> usize {
        self.key_size()
    }
    #[inline(always)]
    fn encode_key_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        self.encode_key(sink)
    }
    #[inline(always)]
    fn key_arg_hash(&self) -> u64 {
        self.hash64()
    }
    #[inline(always)]
    fn key_arg_matches(&self, stored: &[u8]) -> bool {
        self.matches(stored)
    }
    fn key_arg_to_aligned_bytes(&self) -> AlignedBytes {
        self.key_to_aligned_bytes()
    }
    #[inline(always)]
    fn encode_key_arg_into(&self, dst: &mut [u8]) -> Result<(), CodecError> {
        self.encode_key_into(dst)
    }
}

/// A value argument for a store whose values are `V`: `V` itself, or a
/// borrowed form with the same encoding (see the module's table).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot stand for a value of type `{V}`",
    label = "not a `{V}` value",
    note = "pass a `&{V}`; `String` values also take `&str`, byte strings `&[u8]` and `b\"..\"`, \
            `Vec<T>` a slice or array of `T`"
)]
pub trait ValueArg<V: Value> {
    /// The size of the encoding, in bytes.
    fn value_arg_size(&self) -> usize;
    /// Writes the encoding, `value_arg_size()` bytes in all, into `sink`.
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S);

    /// Encodes into `dst`, which must be exactly `value_arg_size()` bytes
    /// long.
    fn encode_value_arg_into(&self, dst: &mut [u8]) -> Result<(), CodecError> {
        encode_checked::<V>(self.value_arg_size(), dst, |w| self.encode_value_arg(w))
    }
}

impl<V: Value> ValueArg<V> for V {
    #[inline(always)]
    fn value_arg_size(&self) -> usize {
        self.encoded_size()
    }
    #[inline(always)]
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        self.encode(sink)
    }
    #[inline(always)]
    fn encode_value_arg_into(&self, dst: &mut [u8]) -> Result<(), CodecError> {
        self.encode_into(dst)
    }
}

/// A key argument that is a run of bytes, the encoding itself.
macro_rules! bytes_key_arg {
    ([$($generics:tt)*] $arg:ty => $key:ty) => {
        impl<$($generics)*> KeyArg<$key> for $arg {
            #[inline]
            fn key_arg_size(&self) -> usize {
                self.len()
            }
            #[inline]
            fn encode_key_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
                sink.put(self.as_ref())
            }
            #[inline]
            fn key_arg_hash(&self) -> u64 {
                hash_bytes(self.as_ref())
            }
            #[inline]
            fn key_arg_matches(&self, stored: &[u8]) -> bool {
                stored == <Self as AsRef<[u8]>>::as_ref(self)
            }
        }
    };
}
bytes_key_arg!([] str => String);
bytes_key_arg!([] [u8] => Vec<u8>);
bytes_key_arg!([] [u8] => Box<[u8]>);
bytes_key_arg!([const N: usize] [u8; N] => Vec<u8>);
bytes_key_arg!([const N: usize] [u8; N] => Box<[u8]>);

impl ValueArg<String> for str {
    #[inline]
    fn value_arg_size(&self) -> usize {
        self.len()
    }
    #[inline]
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(self.as_bytes())
    }
}

/// A value argument that is a sequence of numbers (their bytes, element
/// after element, as `Vec<T>` encodes them).
macro_rules! slice_value_arg {
    ([$($generics:tt)*] $arg:ty => $value:ty) => {
        impl<$($generics)*> ValueArg<$value> for $arg {
            #[inline]
            fn value_arg_size(&self) -> usize {
                size_of_val(self)
            }
            #[inline]
            fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
                sink.put(T::slice_bytes(&self[..]))
            }
        }
    };
}
slice_value_arg!([T: TailElem] [T] => Vec<T>);
slice_value_arg!([T: TailElem, const N: usize] [T; N] => Vec<T>);

impl ValueArg<Box<[u8]>> for [u8] {
    #[inline]
    fn value_arg_size(&self) -> usize {
        self.len()
    }
    #[inline]
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(self)
    }
}

impl<const N: usize> ValueArg<Box<[u8]>> for [u8; N] {
    #[inline]
    fn value_arg_size(&self) -> usize {
        N
    }
    #[inline]
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(self)
    }
}

/// A key given as its encoding (the bytes of a stored record): compaction
/// copies and operations replayed from a parked key use it.
pub(crate) struct EncodedKey<'a>(pub(crate) &'a [u8]);

impl<K: Key> KeyArg<K> for EncodedKey<'_> {
    #[inline]
    fn key_arg_size(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn encode_key_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(self.0)
    }
    #[inline]
    fn key_arg_hash(&self) -> u64 {
        hash_bytes(self.0)
    }
    #[inline]
    fn key_arg_matches(&self, stored: &[u8]) -> bool {
        stored == self.0
    }
}

/// A value given as its encoding (compaction's copies).
pub(crate) struct EncodedValue<'a>(pub(crate) &'a [u8]);

impl<V: Value> ValueArg<V> for EncodedValue<'_> {
    #[inline]
    fn value_arg_size(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A borrowed argument encodes, hashes and matches exactly as the
    /// owned type does.
    #[test]
    fn borrowed_forms_encode_as_the_owned_types() {
        fn same_key<K: Key, Q: KeyArg<K> + ?Sized>(owned: &K, borrowed: &Q) {
            assert_eq!(borrowed.key_arg_size(), owned.key_size());
            assert_eq!(borrowed.key_arg_hash(), owned.hash64());
            assert_eq!(&*borrowed.key_arg_to_aligned_bytes(), &*owned.key_to_aligned_bytes());
            assert!(borrowed.key_arg_matches(&owned.key_to_aligned_bytes()));
            assert!(!borrowed.key_arg_matches(b"something else"));
        }
        same_key(&"key".to_string(), "key");
        same_key(&b"key".to_vec(), &b"key"[..]);
        same_key(&b"key".to_vec(), b"key");
        same_key::<Box<[u8]>, _>(&b"key"[..].into(), b"key");
        same_key(&7u64, &7u64);

        fn same_value<V: Value, W: ValueArg<V> + ?Sized>(owned: &V, borrowed: &W) {
            assert_eq!(borrowed.value_arg_size(), owned.encoded_size());
            let mut dst = vec![0; owned.encoded_size()];
            borrowed.encode_value_arg_into(&mut dst).expect("encodes");
            assert_eq!(&dst[..], &*owned.to_aligned_bytes());
        }
        same_value(&"value".to_string(), "value");
        same_value(&vec![1u8, 2, 3], &[1u8, 2, 3][..]);
        same_value(&vec![1u8, 2, 3], &[1u8, 2, 3]);
        same_value(&vec![1u32, 2, 3], &[1u32, 2, 3]);
        same_value(&vec![1.5f64, -2.0], &[1.5f64, -2.0][..]);
        same_value::<Box<[u8]>, _>(&b"v"[..].into(), b"v");
    }
}
