//! Plain old data: fixed-size types whose bytes are their encoding.
//!
//! [`PodValue`] and [`PodKey`] mark types that may be viewed in place: a
//! `&T` read straight out of record bytes. The byte casts live here and
//! nowhere else. There are two markers, not one, so that a struct may derive
//! both `FasterKey` and `FasterValue`: each derive implements its own marker.
//!
//! Why not `bytemuck::Pod` itself as the marker: two derives on one struct
//! cannot see each other, so both would implement it and collide. Instead
//! the derives emit bounds that every field is `PodKey`/`PodValue` plus
//! compile-time proofs of `#[repr(C)]`, no padding and alignment ≤ 8; the
//! library implements the markers for primitives only where `bytemuck::Pod`
//! holds (checked at compile time in `primitives.rs`) and for arrays of
//! markers. Soundness thus rests on bytemuck's judgement of the primitives
//! and on compiler-checked layout facts, never on the macro's reasoning.

use super::{CodecError, Key, Value};

/// A [`Value`] whose encoding is its in-memory image: `view` returns `&Self`.
///
/// # Safety
///
/// Implementors guarantee what `bytemuck::Pod` guarantees: the type is
/// `Copy`, inhabited, has no padding bytes, no pointers or references, no
/// interior mutability, and every bit pattern of its size is a valid value.
/// Its [`Value`] encoding must be exactly its in-memory bytes.
/// `#[derive(FasterValue)]` implements it for `#[repr(C)]` structs whose fields
/// are all `PodValue` and whose size is the sum of its fields' sizes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a fixed-size value",
    label = "not plain old data",
    note = "fields of a fixed-size `#[derive(FasterValue)]` struct must be integers, floats, \
            arrays of them, or `#[repr(C)]` structs that derive `FasterValue` themselves",
    note = "a struct with `String`, `Vec` or `Box<[u8]>` fields is variable-length and cannot be \
            nested in another struct: move its fields into the outer struct",
    note = "`bool`, `char` and enums are not allowed there, because not every byte pattern is \
            one of their values: store a `u8` for a `bool` (or make the struct variable-length, \
            where a `bool` may be), a `u32` for a `char`, and an enum's discriminant as \
            an integer (`as u8`)"
)]
pub unsafe trait PodValue: Value + Copy {}

/// A [`Key`] whose encoding is its in-memory image.
///
/// # Safety
///
/// The same contract as [`PodValue`], for the [`Key`] encoding.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a fixed-size key",
    label = "not plain old data",
    note = "fields of a fixed-size `#[derive(FasterKey)]` struct must be integers, arrays of \
            them, or `#[repr(C)]` structs that derive `FasterKey` themselves",
    note = "a struct with `String`, `Vec` or `Box<[u8]>` fields is variable-length and cannot be \
            nested in another struct: move its fields into the outer struct",
    note = "floats, `bool`, `char` and enums are not allowed there: store an integer instead"
)]
pub unsafe trait PodKey: Key + Copy {}

/// The bytes of a plain-old-data value.
///
/// # Safety
///
/// `T` must have no padding bytes (every byte of it is initialised).
#[inline(always)]
unsafe fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `value` is a valid reference, so `size_of::<T>()` bytes from it
    // are readable for the borrow's lifetime; the caller guarantees that all
    // of them are initialised (no padding).
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Reads a `T` from exactly `size_of::<T>()` bytes, at any alignment.
///
/// # Safety
///
/// Every bit pattern of `T`'s size must be a valid `T`.
#[inline(always)]
unsafe fn read<T: Copy>(bytes: &[u8]) -> Result<T, CodecError> {
    check_size::<T>(bytes.len())?;
    // SAFETY: the slice holds exactly `size_of::<T>()` readable bytes, the read
    // is unaligned, and the caller guarantees that any bit pattern is a `T`.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Views exactly `size_of::<T>()` aligned bytes as a `&T`.
///
/// # Safety
///
/// Every bit pattern of `T`'s size must be a valid `T`, and `T` must have no
/// interior mutability.
#[inline(always)]
unsafe fn view<T: Copy>(bytes: &[u8]) -> Result<&T, CodecError> {
    check_size::<T>(bytes.len())?;
    check_align::<T>(bytes.as_ptr())?;
    // SAFETY: size and alignment were checked above; the caller guarantees
    // that the bytes are a valid `T`; the shared borrow of the bytes becomes a
    // shared borrow of the `T` for the same lifetime.
    Ok(unsafe { &*bytes.as_ptr().cast::<T>() })
}

/// Views exactly `size_of::<T>()` aligned bytes as a `&mut T`.
///
/// # Safety
///
/// Every bit pattern of `T`'s size must be a valid `T`, and `T` must have no
/// padding (writes through the `&mut T` must leave every byte initialised).
#[inline(always)]
unsafe fn view_mut<T: Copy>(bytes: &mut [u8]) -> Option<&mut T> {
    check_size::<T>(bytes.len()).ok()?;
    check_align::<T>(bytes.as_ptr()).ok()?;
    // SAFETY: size and alignment were checked above; the exclusive borrow of
    // the bytes becomes an exclusive borrow of the `T`; the caller guarantees
    // that the bytes are a valid `T` and that any `T` written back is bytes.
    Some(unsafe { &mut *bytes.as_mut_ptr().cast::<T>() })
}

#[inline(always)]
fn check_size<T>(found: usize) -> Result<(), CodecError> {
    if found != size_of::<T>() {
        return Err(CodecError::Size {
            type_name: std::any::type_name::<T>(),
            expected: size_of::<T>(),
            found,
        });
    }
    Ok(())
}

#[inline(always)]
fn check_align<T>(ptr: *const u8) -> Result<(), CodecError> {
    if !(ptr as usize).is_multiple_of(align_of::<T>()) {
        return Err(CodecError::Misaligned {
            type_name: std::any::type_name::<T>(),
            align: align_of::<T>(),
        });
    }
    Ok(())
}

/// The encoding of a plain-old-data value: its bytes.
#[inline(always)]
pub fn value_bytes<T: PodValue>(value: &T) -> &[u8] {
    // SAFETY: `T: PodValue` promises no padding.
    unsafe { bytes_of(value) }
}

/// The encoding of a plain-old-data key: its bytes.
#[inline(always)]
pub fn key_bytes<T: PodKey>(key: &T) -> &[u8] {
    // SAFETY: `T: PodKey` promises no padding.
    unsafe { bytes_of(key) }
}

/// Decodes a plain-old-data value (any alignment).
#[inline(always)]
pub fn value_read<T: PodValue>(bytes: &[u8]) -> Result<T, CodecError> {
    // SAFETY: `T: PodValue` promises that every bit pattern is valid.
    unsafe { read(bytes) }
}

/// Decodes a plain-old-data key (any alignment).
#[inline(always)]
pub fn key_read<T: PodKey>(bytes: &[u8]) -> Result<T, CodecError> {
    // SAFETY: `T: PodKey` promises that every bit pattern is valid.
    unsafe { read(bytes) }
}

/// Views a plain-old-data value in place (the bytes must be aligned for `T`).
#[inline(always)]
pub fn value_view<T: PodValue>(bytes: &[u8]) -> Result<&T, CodecError> {
    // SAFETY: `T: PodValue` promises valid bit patterns and no interior
    // mutability.
    unsafe { view(bytes) }
}

/// Views a plain-old-data value in place for an update; `None` if the bytes
/// have the wrong size or alignment.
#[inline(always)]
pub fn value_view_mut<T: PodValue>(bytes: &mut [u8]) -> Option<&mut T> {
    // SAFETY: `T: PodValue` promises valid bit patterns and no padding.
    unsafe { view_mut(bytes) }
}

/// The size of a fixed-size value type, for a field of a derived
/// variable-length struct; a compile-time error for a variable-length type.
pub const fn value_fixed_size<V: Value>() -> usize {
    match V::FIXED_SIZE {
        Some(n) => n,
        None => panic!(
            "a variable-length type is a fixed field of a variable-length struct: only \
             `Vec<T>`, `String` and `Box<[u8]>` fields may vary in length"
        ),
    }
}

/// The size of a fixed-size key type, for a field of a derived
/// variable-length key; a compile-time error for a variable-length type.
pub const fn key_fixed_size<K: Key>() -> usize {
    match K::FIXED_KEY_SIZE {
        Some(n) => n,
        None => panic!(
            "a variable-length type is a fixed field of a variable-length key: only \
             `Vec<T>`, `String` and `Box<[u8]>` fields may vary in length"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AlignedBytes;

    #[test]
    fn view_checks_size_and_alignment() {
        let buf = AlignedBytes::copy_from(&[1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(value_view::<u64>(&buf[..8]), Ok(&1));
        assert!(matches!(value_view::<u64>(&buf[..7]), Err(CodecError::Size { .. })));
        assert!(matches!(value_view::<u64>(&buf[1..9]), Err(CodecError::Misaligned { .. })));
        assert_eq!(value_read::<u64>(&buf[1..9]), Ok(2 << 56));
    }

    #[test]
    fn view_mut_refuses_bad_slices() {
        let mut buf = AlignedBytes::zeroed(16);
        assert!(value_view_mut::<u64>(&mut buf.as_mut_slice()[1..9]).is_none());
        assert!(value_view_mut::<u64>(&mut buf.as_mut_slice()[..9]).is_none());
        *value_view_mut::<u64>(&mut buf.as_mut_slice()[8..]).expect("aligned") = 7;
        assert_eq!(value_read::<u64>(&buf[8..]), Ok(7));
    }
}
