//! Variable-length encodings: byte strings, text, sequences, and the
//! head-plus-tails layout of derived variable-length structs.
//!
//! A derived variable-length struct encodes as
//!
//! ```text
//! [fixed fields, declaration order][u32 LE byte length × tails][tail bytes × tails]
//! ```
//!
//! [`split`] checks every length before using it (the lengths must add up to
//! exactly the bytes that follow, without overflow), so a corrupt or hostile
//! encoding is an error and never a panic or an oversized allocation.

use std::marker::PhantomData;
use std::ops::Range;

use super::{CodecError, Layout, Sink};

/// An element type of a variable-length sequence field (`Vec<T>`): a
/// primitive number.
pub trait TailElem: Copy + Send + Sync + 'static + private::Sealed {
    /// The borrowed view of a sequence: `&[u8]` for bytes, [`PodSlice`]
    /// for wider elements (which may be unaligned inside a record).
    type SliceRef<'a>: Copy;
    /// The bytes of a slice of elements.
    fn slice_bytes(elements: &[Self]) -> &[u8];
    /// Views bytes whose length is a multiple of the element size.
    fn slice_ref(bytes: &[u8]) -> Self::SliceRef<'_>;
    /// Copies a view into a vector.
    fn slice_to_vec(view: Self::SliceRef<'_>) -> Vec<Self>;
    /// The element's layout.
    fn element_layout() -> Layout;
}

mod private {
    /// Only primitive numbers are sequence elements; bytemuck vouches that
    /// each is plain old data.
    pub trait Sealed: bytemuck::Pod {}
}

/// A borrowed sequence of primitive numbers inside a record, read without
/// copying the sequence. Elements are read one by one (records place them at
/// any alignment); [`PodSlice::as_slice`] gives a `&[T]` when aligned.
pub struct PodSlice<'a, T> {
    bytes: &'a [u8],
    element: PhantomData<T>,
}

impl<T> Clone for PodSlice<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PodSlice<'_, T> {}

impl<T: TailElem + std::fmt::Debug> std::fmt::Debug for PodSlice<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: TailElem> PodSlice<'a, T> {
    fn new(bytes: &'a [u8]) -> Self {
        debug_assert!(bytes.len().is_multiple_of(size_of::<T>()));
        Self { bytes, element: PhantomData }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / size_of::<T>()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The element at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<T> {
        let start = index.checked_mul(size_of::<T>())?;
        let bytes = self.bytes.get(start..start.checked_add(size_of::<T>())?)?;
        Some(bytemuck::pod_read_unaligned(bytes))
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = T> + 'a {
        self.bytes.chunks_exact(size_of::<T>()).map(bytemuck::pod_read_unaligned)
    }

    /// The elements as a slice, when the bytes are aligned for `T`.
    pub fn as_slice(&self) -> Option<&'a [T]> {
        bytemuck::try_cast_slice(self.bytes).ok()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Copies the elements into a vector.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }
}

impl<T: TailElem + PartialEq> PartialEq<[T]> for PodSlice<'_, T> {
    fn eq(&self, other: &[T]) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == *b)
    }
}

impl<T: TailElem + PartialEq> PartialEq<Vec<T>> for PodSlice<'_, T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        *self == **other
    }
}

impl private::Sealed for u8 {}
impl TailElem for u8 {
    type SliceRef<'a> = &'a [u8];
    #[inline]
    fn slice_bytes(elements: &[u8]) -> &[u8] {
        elements
    }
    #[inline]
    fn slice_ref(bytes: &[u8]) -> &[u8] {
        bytes
    }
    fn slice_to_vec(view: &[u8]) -> Vec<u8> {
        view.to_vec()
    }
    fn element_layout() -> Layout {
        Layout::primitive("u8", 1, 1)
    }
}

macro_rules! wide_tail_elems {
    ($($t:ident),*) => {$(
        impl private::Sealed for $t {}
        impl TailElem for $t {
            type SliceRef<'a> = PodSlice<'a, $t>;
            #[inline]
            fn slice_bytes(elements: &[$t]) -> &[u8] {
                bytemuck::cast_slice(elements)
            }
            #[inline]
            fn slice_ref(bytes: &[u8]) -> PodSlice<'_, $t> {
                PodSlice::new(bytes)
            }
            fn slice_to_vec(view: PodSlice<'_, $t>) -> Vec<$t> {
                view.to_vec()
            }
            fn element_layout() -> Layout {
                Layout::primitive(stringify!($t), size_of::<$t>(), align_of::<$t>())
            }
        }
    )*};
}
wide_tail_elems!(i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// A variable-length field of a derived struct: `Vec<T>` of a primitive
/// number, `String` or `Box<[u8]>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a variable-length field",
    label = "unsupported variable-length field type",
    note = "variable-length fields may be `Vec<T>` of a primitive number, `String` or `Box<[u8]>`",
    note = "the derive takes a field of a type named `String`, `Vec` or `Box` for the standard \
            one; for a type of your own with such a name, write its path (`crate::String`, \
            `types::Vec`)"
)]
pub trait Tail: Sized {
    /// The borrowed view of the field: `&[u8]`, `&str` or [`PodSlice`].
    type Ref<'a>: Copy;
    /// The size of one element in bytes.
    const ELEMENT_SIZE: usize;
    /// The field's encoding.
    fn tail_bytes(&self) -> &[u8];
    /// Views an encoding; `type_name`/`field` name it in errors.
    fn tail_ref<'a>(
        bytes: &'a [u8],
        type_name: &'static str,
        field: &'static str,
    ) -> Result<Self::Ref<'a>, CodecError>;
    /// Copies a view into an owned field.
    fn tail_owned(view: Self::Ref<'_>) -> Self;
    /// The field type's layout.
    fn tail_layout() -> Layout;

    /// Decodes an owned field.
    fn tail_decode(
        bytes: &[u8],
        type_name: &'static str,
        field: &'static str,
    ) -> Result<Self, CodecError> {
        Self::tail_ref(bytes, type_name, field).map(Self::tail_owned)
    }
}

/// A variable-length field that may be part of a key: its bytes compare
/// equal exactly when its values do (no floats).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a variable-length field of a key",
    label = "not a key field",
    note = "variable-length fields of a `#[derive(FasterKey)]` struct must be `String`, \
            `Vec<u8>`, `Box<[u8]>` or a `Vec` of integers",
    note = "floats are not allowed in keys: keys compare as bytes, so `0.0` and `-0.0` would be \
            two keys and `NAN` would find itself; store an integer instead"
)]
pub trait KeyTail: Tail {}

impl<T: TailElem + super::PodKey> KeyTail for Vec<T> {}
impl KeyTail for Box<[u8]> {}
impl KeyTail for String {}

impl<T: TailElem> Tail for Vec<T> {
    type Ref<'a> = T::SliceRef<'a>;
    const ELEMENT_SIZE: usize = size_of::<T>();
    #[inline]
    fn tail_bytes(&self) -> &[u8] {
        T::slice_bytes(self)
    }
    #[inline]
    fn tail_ref<'a>(
        bytes: &'a [u8],
        type_name: &'static str,
        field: &'static str,
    ) -> Result<T::SliceRef<'a>, CodecError> {
        if !bytes.len().is_multiple_of(size_of::<T>()) {
            return Err(CodecError::RaggedSequence {
                type_name,
                field,
                len: bytes.len(),
                element_size: size_of::<T>(),
            });
        }
        Ok(T::slice_ref(bytes))
    }
    fn tail_owned(view: T::SliceRef<'_>) -> Self {
        T::slice_to_vec(view)
    }
    fn tail_layout() -> Layout {
        Layout::sequence("Vec", T::element_layout())
    }
}

impl Tail for Box<[u8]> {
    type Ref<'a> = &'a [u8];
    const ELEMENT_SIZE: usize = 1;
    #[inline]
    fn tail_bytes(&self) -> &[u8] {
        self
    }
    #[inline]
    fn tail_ref<'a>(
        bytes: &'a [u8],
        _: &'static str,
        _: &'static str,
    ) -> Result<&'a [u8], CodecError> {
        Ok(bytes)
    }
    fn tail_owned(view: &[u8]) -> Self {
        view.into()
    }
    fn tail_layout() -> Layout {
        Layout::sequence("Box<[u8]>", u8::element_layout())
    }
}

impl Tail for String {
    type Ref<'a> = &'a str;
    const ELEMENT_SIZE: usize = 1;
    #[inline]
    fn tail_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    #[inline]
    fn tail_ref<'a>(
        bytes: &'a [u8],
        type_name: &'static str,
        field: &'static str,
    ) -> Result<&'a str, CodecError> {
        std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8 { type_name, field })
    }
    fn tail_owned(view: &str) -> Self {
        view.to_owned()
    }
    fn tail_layout() -> Layout {
        Layout::utf8("String")
    }
}

/// The size of the length fields of `tails` variable-length fields.
pub const fn lengths_size(tails: usize) -> usize {
    tails * size_of::<u32>()
}

/// Writes one tail's length field.
#[inline]
pub fn put_len<S: Sink + ?Sized>(sink: &mut S, len: usize) {
    // Lengths above u32::MAX cannot occur: `encode_into` refuses encodings
    // larger than MAX_ENCODED_SIZE_BYTES before calling the encoder.
    sink.put(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// The byte ranges of the `M` tails of a variable-length encoding whose fixed
/// head is `head_size` bytes, checked against the encoding's length.
pub fn tail_ranges<const M: usize>(
    bytes: &[u8],
    head_size: usize,
    type_name: &'static str,
) -> Result<[Range<usize>; M], CodecError> {
    let lengths_end = head_size + lengths_size(M);
    let Some(lengths) = bytes.get(head_size..lengths_end) else {
        return Err(CodecError::Truncated { type_name, needed: lengths_end, found: bytes.len() });
    };
    let mut lens = [0usize; M];
    let mut declared: u64 = 0;
    for (len, raw) in lens.iter_mut().zip(lengths.chunks_exact(4)) {
        let mut le = [0u8; 4];
        le.copy_from_slice(raw);
        let value = u32::from_le_bytes(le);
        declared += u64::from(value); // at most M * u32::MAX: no overflow for any real M
        *len = value as usize;
    }
    let found = bytes.len() - lengths_end;
    if declared != found as u64 {
        return Err(CodecError::LengthMismatch { type_name, declared, found });
    }
    let mut start = lengths_end;
    Ok(lens.map(|len| {
        let range = start..start + len;
        start += len;
        range
    }))
}

/// Splits a variable-length encoding into its fixed head and its `M` tails.
pub fn split<'a, const M: usize>(
    bytes: &'a [u8],
    head_size: usize,
    type_name: &'static str,
) -> Result<(&'a [u8], [&'a [u8]; M]), CodecError> {
    let ranges = tail_ranges::<M>(bytes, head_size, type_name)?;
    // `tail_ranges` checked that every range lies inside `bytes`.
    let head = bytes.get(..head_size).unwrap_or_default();
    Ok((head, ranges.map(|r| bytes.get(r).unwrap_or_default())))
}

/// The `size` bytes at `offset` of a head, or an empty slice (which the
/// field's decoder rejects) if they are out of range.
#[inline]
pub fn field(head: &[u8], offset: usize, size: usize) -> &[u8] {
    head.get(offset..offset.saturating_add(size)).unwrap_or_default()
}

/// The `size` bytes at `offset`, mutably (empty if out of range).
#[inline]
pub fn field_mut(bytes: &mut [u8], offset: usize, size: usize) -> &mut [u8] {
    bytes.get_mut(offset..offset.saturating_add(size)).unwrap_or_default()
}

/// Whether `range` is as long as `bytes`.
#[inline]
pub fn same_len(range: &Range<usize>, bytes: &[u8]) -> bool {
    range.end - range.start == bytes.len()
}

/// Overwrites `range` of `bytes` with `src` of the same length; returns
/// whether it could.
#[inline]
pub fn overwrite(bytes: &mut [u8], range: Range<usize>, src: &[u8]) -> bool {
    match bytes.get_mut(range) {
        Some(dst) if dst.len() == src.len() => {
            dst.copy_from_slice(src);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(head: &[u8], tails: &[&[u8]]) -> Vec<u8> {
        let mut out = head.to_vec();
        for t in tails {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
        }
        for t in tails {
            out.extend_from_slice(t);
        }
        out
    }

    #[test]
    fn split_finds_head_and_tails() {
        let bytes = encoding(&[9, 9], &[b"abc", b"", b"de"]);
        let (head, [a, b, c]) = split::<3>(&bytes, 2, "T").expect("valid");
        assert_eq!((head, a, b, c), (&[9u8, 9][..], &b"abc"[..], &b""[..], &b"de"[..]));
    }

    #[test]
    fn split_rejects_lengths_that_do_not_add_up() {
        let mut bytes = encoding(&[], &[b"abc", b"de"]);
        assert!(matches!(split::<2>(&bytes[..9], 0, "T"), Err(CodecError::LengthMismatch { .. })));
        bytes[0] = 0xff;
        assert!(matches!(split::<2>(&bytes, 0, "T"), Err(CodecError::LengthMismatch { .. })));
        bytes[..8].copy_from_slice(&[0xff; 8]);
        assert!(matches!(split::<2>(&bytes, 0, "T"), Err(CodecError::LengthMismatch { .. })));
        assert!(matches!(split::<2>(&bytes[..5], 0, "T"), Err(CodecError::Truncated { .. })));
    }

    #[test]
    fn pod_slice_reads_unaligned_elements() {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        let view = <Vec<u32> as Tail>::tail_ref(&bytes[1..], "T", "f").expect("valid");
        assert_eq!(view.len(), 2);
        assert_eq!(view.get(1), Some(2));
        assert_eq!(view.get(2), None);
        assert_eq!(view, vec![1, 2]);
        assert!(matches!(
            <Vec<u32> as Tail>::tail_ref(&bytes[1..8], "T", "f"),
            Err(CodecError::RaggedSequence { len: 7, .. })
        ));
    }
}
