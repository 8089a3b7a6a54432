//! `Key`, `Value` and `Merge` for the primitive types, arrays and byte
//! strings.
//!
//! Integers are keys and values; floats are values only (their equality is
//! not byte equality). `usize`/`isize` are neither: their size depends on
//! the platform, and encodings must not. Every plain-old-data impl is checked
//! against `bytemuck::Pod` at compile time.

use std::sync::atomic::{AtomicU64, Ordering};

use super::pod::{self, PodKey, PodValue};
use super::varlen::{Tail, TailElem};
use super::{CodecError, Key, Layout, Merge, Sink, Value, hash_bytes};

/// Compile-time proof that a type is `bytemuck::Pod`.
const fn assert_bytemuck_pod<T: bytemuck::Pod>() {}

macro_rules! pod_key {
    ($t:ty, $name:expr) => {
        impl Key for $t {
            const FIXED_KEY_SIZE: Option<usize> = Some(size_of::<$t>());
            #[inline(always)]
            fn key_size(&self) -> usize {
                size_of::<$t>()
            }
            #[inline(always)]
            fn encode_key<S: Sink + ?Sized>(&self, sink: &mut S) {
                sink.put(pod::key_bytes(self))
            }
            #[inline(always)]
            fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
                pod::key_read(bytes)
            }
            fn key_layout() -> Layout {
                $name
            }
            #[inline(always)]
            fn hash64(&self) -> u64 {
                hash_bytes(pod::key_bytes(self))
            }
            #[inline(always)]
            fn matches(&self, stored: &[u8]) -> bool {
                stored == pod::key_bytes(self)
            }
        }
    };
}

macro_rules! pod_value {
    ($t:ty, $name:expr, view = ref) => {
        pod_value!(@impl $t, $name, &'a $t, pod::value_view);
    };
    ($t:ty, $name:expr, view = copy) => {
        pod_value!(@impl $t, $name, $t, pod::value_read);
    };
    (@impl $t:ty, $name:expr, $view:ty, $view_fn:path) => {
        impl Value for $t {
            const FIXED_SIZE: Option<usize> = Some(size_of::<$t>());
            type View<'a> = $view;
            #[inline(always)]
            fn encoded_size(&self) -> usize {
                size_of::<$t>()
            }
            #[inline(always)]
            fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
                sink.put(pod::value_bytes(self))
            }
            #[inline(always)]
            fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
                pod::value_read(bytes)
            }
            #[inline(always)]
            fn view(bytes: &[u8]) -> Result<Self::View<'_>, CodecError> {
                $view_fn(bytes)
            }
            fn layout() -> Layout {
                $name
            }
        }
    };
}

/// Numbers merge by (wrapping) addition: the counter case.
macro_rules! sum_merge {
    ($t:ty, $add:ident, |$old:ident| $own:expr) => {
        impl Merge for $t {
            #[inline(always)]
            fn initial(input: &Self) -> Self {
                *input
            }
            #[inline(always)]
            fn in_place(stored: &mut [u8], input: &Self) -> bool {
                match pod::value_view_mut::<$t>(stored) {
                    Some(v) => {
                        *v = v.$add(*input);
                        true
                    }
                    None => false,
                }
            }
            #[inline(always)]
            fn copy_update($old: Self::View<'_>, input: &Self) -> Self {
                ($own).$add(*input)
            }
            #[inline(always)]
            fn in_place_atomic(word: &AtomicU64, input: &Self) -> bool {
                sum_atomic!($add, word, input)
            }
        }
    };
}

/// One `fetch_add` for 8-byte integers (wrapping addition of their bits is
/// wrapping addition of the integers, signed or not); floats do not add
/// that way.
macro_rules! sum_atomic {
    (wrapping_add, $word:ident, $input:ident) => {{
        if size_of::<Self>() == 8 {
            let mut bits = [0u8; 8];
            bits.copy_from_slice(&pod::value_bytes($input)[..8]);
            $word.fetch_add(u64::from_ne_bytes(bits), Ordering::AcqRel);
            true
        } else {
            false
        }
    }};
    (float_add, $word:ident, $input:ident) => {{
        let _ = ($word, $input);
        false
    }};
}

trait FloatAdd {
    fn float_add(self, other: Self) -> Self;
}
impl FloatAdd for f32 {
    fn float_add(self, other: Self) -> Self {
        self + other
    }
}
impl FloatAdd for f64 {
    fn float_add(self, other: Self) -> Self {
        self + other
    }
}

macro_rules! ints {
    ($view:ident, |$old:ident| $own:expr; $($t:ident),*) => {$(
        const _: () = assert_bytemuck_pod::<$t>();
        pod_key!($t, Layout::primitive(stringify!($t), size_of::<$t>(), align_of::<$t>()));
        pod_value!($t, Layout::primitive(stringify!($t), size_of::<$t>(), align_of::<$t>()), view = $view);
        // SAFETY: integers are Copy, have no padding, and every bit pattern is
        // an integer (checked against bytemuck::Pod above).
        unsafe impl PodKey for $t {}
        // SAFETY: as above.
        unsafe impl PodValue for $t {}
        sum_merge!($t, wrapping_add, |$old| $own);
    )*};
}
ints!(ref, |old| *old; u8, u16, u32, u64, i8, i16, i32, i64);
// 128-bit integers need 16-byte alignment, more than a record guarantees:
// their view is a copy.
ints!(copy, |old| old; u128, i128);

macro_rules! floats {
    ($($t:ident),*) => {$(
        const _: () = assert_bytemuck_pod::<$t>();
        pod_value!($t, Layout::primitive(stringify!($t), size_of::<$t>(), align_of::<$t>()), view = ref);
        // SAFETY: floats are Copy, have no padding, and every bit pattern is
        // a float (checked against bytemuck::Pod above).
        unsafe impl PodValue for $t {}
        sum_merge!($t, float_add, |old| *old);
    )*};
}
floats!(f32, f64);

impl<T: PodValue, const N: usize> Value for [T; N] {
    const FIXED_SIZE: Option<usize> = Some(size_of::<[T; N]>());
    type View<'a> = &'a [T; N];
    #[inline(always)]
    fn encoded_size(&self) -> usize {
        size_of::<[T; N]>()
    }
    #[inline(always)]
    fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(pod::value_bytes(self))
    }
    #[inline(always)]
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        pod::value_read(bytes)
    }
    #[inline(always)]
    fn view(bytes: &[u8]) -> Result<&[T; N], CodecError> {
        pod::value_view(bytes)
    }
    fn layout() -> Layout {
        Layout::array(T::layout(), N)
    }
}
// SAFETY: an array of plain old data is plain old data: elements are laid out
// back to back (the size is a multiple of the alignment), so there is no
// padding, and every bit pattern is a valid array if it is a valid element.
unsafe impl<T: PodValue, const N: usize> PodValue for [T; N] {}

impl<T: PodKey, const N: usize> Key for [T; N] {
    const FIXED_KEY_SIZE: Option<usize> = Some(size_of::<[T; N]>());
    #[inline(always)]
    fn key_size(&self) -> usize {
        size_of::<[T; N]>()
    }
    #[inline(always)]
    fn encode_key<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(pod::key_bytes(self))
    }
    #[inline(always)]
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        pod::key_read(bytes)
    }
    fn key_layout() -> Layout {
        Layout::array(T::key_layout(), N)
    }
    #[inline(always)]
    fn hash64(&self) -> u64 {
        hash_bytes(pod::key_bytes(self))
    }
    #[inline(always)]
    fn matches(&self, stored: &[u8]) -> bool {
        stored == pod::key_bytes(self)
    }
}
// SAFETY: as for `PodValue` arrays above.
unsafe impl<T: PodKey, const N: usize> PodKey for [T; N] {}

fn decode_bool(bytes: &[u8]) -> Result<bool, CodecError> {
    match bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        [byte] => Err(CodecError::InvalidBool { byte: *byte }),
        _ => Err(CodecError::Size { type_name: "bool", expected: 1, found: bytes.len() }),
    }
}

impl Key for bool {
    const FIXED_KEY_SIZE: Option<usize> = Some(1);
    #[inline(always)]
    fn key_size(&self) -> usize {
        1
    }
    #[inline(always)]
    fn encode_key<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(&[u8::from(*self)])
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_bool(bytes)
    }
    fn key_layout() -> Layout {
        Layout::primitive("bool", 1, 1)
    }
}

impl Value for bool {
    const FIXED_SIZE: Option<usize> = Some(1);
    type View<'a> = bool;
    #[inline(always)]
    fn encoded_size(&self) -> usize {
        1
    }
    #[inline(always)]
    fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(&[u8::from(*self)])
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_bool(bytes)
    }
    fn view(bytes: &[u8]) -> Result<bool, CodecError> {
        decode_bool(bytes)
    }
    fn layout() -> Layout {
        Layout::primitive("bool", 1, 1)
    }
}

/// `bool` merges by `|`: a sticky flag.
impl Merge for bool {
    fn initial(input: &Self) -> Self {
        *input
    }
    fn in_place(stored: &mut [u8], input: &Self) -> bool {
        match stored {
            [byte @ (0 | 1)] => {
                *byte |= u8::from(*input);
                true
            }
            _ => false,
        }
    }
    fn copy_update(old: bool, input: &Self) -> Self {
        old | *input
    }
}

macro_rules! byte_string_key {
    ($t:ty) => {
        impl Key for $t {
            const FIXED_KEY_SIZE: Option<usize> = None;
            #[inline]
            fn key_size(&self) -> usize {
                self.tail_bytes().len()
            }
            #[inline]
            fn encode_key<S: Sink + ?Sized>(&self, sink: &mut S) {
                sink.put(self.tail_bytes())
            }
            fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
                <$t as Tail>::tail_decode(bytes, stringify!($t), "")
            }
            fn key_layout() -> Layout {
                <$t as Tail>::tail_layout()
            }
            #[inline]
            fn hash64(&self) -> u64 {
                hash_bytes(self.tail_bytes())
            }
            #[inline]
            fn matches(&self, stored: &[u8]) -> bool {
                stored == self.tail_bytes()
            }
        }
    };
}
byte_string_key!(Vec<u8>);
byte_string_key!(String);
byte_string_key!(Box<[u8]>);

macro_rules! sequence_value {
    ([$($generics:tt)*] $t:ty, $name:expr, $append:ident) => {
        impl<$($generics)*> Value for $t {
            const FIXED_SIZE: Option<usize> = None;
            type View<'a> = <$t as Tail>::Ref<'a>;
            #[inline]
            fn encoded_size(&self) -> usize {
                self.tail_bytes().len()
            }
            #[inline]
            fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
                sink.put(self.tail_bytes())
            }
            fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
                <$t as Tail>::tail_decode(bytes, $name, "")
            }
            fn view(bytes: &[u8]) -> Result<Self::View<'_>, CodecError> {
                <$t as Tail>::tail_ref(bytes, $name, "")
            }
            fn layout() -> Layout {
                <$t as Tail>::tail_layout()
            }
        }

        /// Sequences merge by appending the input.
        impl<$($generics)*> Merge for $t {
            fn initial(input: &Self) -> Self {
                input.clone()
            }
            fn in_place(_stored: &mut [u8], input: &Self) -> bool {
                // Appending grows the value; only an empty append fits.
                input.tail_bytes().is_empty()
            }
            fn copy_update(old: Self::View<'_>, input: &Self) -> Self {
                let mut new = <$t as Tail>::tail_owned(old);
                new.$append(input);
                new
            }
        }
    };
}
sequence_value!([T: TailElem] Vec<T>, "Vec", extend_from_slice);
sequence_value!([] String, "String", push_str);

impl Value for Box<[u8]> {
    const FIXED_SIZE: Option<usize> = None;
    type View<'a> = &'a [u8];
    #[inline]
    fn encoded_size(&self) -> usize {
        self.len()
    }
    #[inline]
    fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(bytes.into())
    }
    fn view(bytes: &[u8]) -> Result<&[u8], CodecError> {
        Ok(bytes)
    }
    fn layout() -> Layout {
        <Self as Tail>::tail_layout()
    }
}

/// Byte strings merge by appending the input.
impl Merge for Box<[u8]> {
    fn initial(input: &Self) -> Self {
        input.clone()
    }
    fn in_place(_stored: &mut [u8], input: &Self) -> bool {
        input.is_empty()
    }
    fn copy_update(old: &[u8], input: &Self) -> Self {
        [old, &input[..]].concat().into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AlignedBytes;

    #[test]
    fn bool_rejects_other_bytes() {
        assert_eq!(<bool as Value>::decode(&[1]), Ok(true));
        assert_eq!(<bool as Value>::decode(&[2]), Err(CodecError::InvalidBool { byte: 2 }));
        assert!(matches!(<bool as Key>::decode_key(&[]), Err(CodecError::Size { .. })));
    }

    #[test]
    fn string_rejects_invalid_utf8() {
        assert!(matches!(<String as Value>::view(&[0xff]), Err(CodecError::InvalidUtf8 { .. })));
        assert_eq!(<String as Value>::view(b"ok"), Ok("ok"));
    }

    #[test]
    fn u128_views_at_eight_byte_alignment() {
        let bytes = 7u128.to_aligned_bytes();
        assert_eq!(<u128 as Value>::view(&bytes), Ok(7));
        let mut stored = AlignedBytes::zeroed(24);
        stored.as_mut_slice()[8..].copy_from_slice(&bytes);
        assert_eq!(<u128 as Value>::view(&stored[8..]), Ok(7));
    }

    #[test]
    fn integer_sum_wraps() {
        let mut stored = AlignedBytes::copy_from(&u8::MAX.to_le_bytes());
        assert!(u8::in_place(stored.as_mut_slice(), &2));
        assert_eq!(stored.as_slice(), &[1]);
        assert_eq!(i64::copy_update(&i64::MAX, &1), i64::MIN);
    }
}
