//! Read-modify-write: how a stored value absorbs an input.
//!
//! [`Merge`] has the three forms the engine needs. `in_place` works on the
//! stored encoding inside the log (the engine guarantees exclusive access
//! while it runs); it returns `false` when the result does not fit, and the
//! engine then calls `copy_update` to build a new record at the tail.
//!
//! The field-level merge kinds of `#[derive(FasterValue)]` are the traits
//! below, so that a merge on an unsuitable field type is a compile error
//! that says so. `sum` on integers **wraps** on overflow (like a hardware
//! counter; saturating or checked sums belong in a `merge_with` function);
//! on floats it is IEEE addition.

use std::sync::atomic::AtomicU64;

use super::Value;

/// Read-modify-write of a stored value with an input of type `I`.
///
/// `#[derive(FasterValue)]` implements `Merge<Self>` from its field
/// attributes. Primitive numbers merge by wrapping addition, `bool` by `|`,
/// and byte strings (`Vec<u8>`, `String`, `Box<[u8]>`) by appending.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no read-modify-write merge with input `{I}`",
    note = "derive `FasterValue` with `#[faster(merge = \"…\")]` field attributes, or use the \
            closure form of `rmw`"
)]
pub trait Merge<I: ?Sized = Self>: Value {
    /// The value of a key that did not exist before the first RMW.
    fn initial(input: &I) -> Self;

    /// Updates the stored encoding in place. Returns `false`, leaving
    /// `stored` untouched, when the result needs another size (or the bytes
    /// cannot be updated in place); the engine then calls `copy_update`.
    fn in_place(stored: &mut [u8], input: &I) -> bool;

    /// Builds the new value from a view of the old one.
    fn copy_update(old: Self::View<'_>, input: &I) -> Self;

    /// For a value whose encoding is one 8-byte word (the engine calls it
    /// for no other): merges `input` into the stored `word` with a single
    /// atomic read-modify-write, such as `fetch_add`, and returns `true`;
    /// or returns `false` (the default) to merge with `in_place` through a
    /// compare-and-swap loop. Counters that many threads increment at once
    /// never retry this way. The word holds the value's encoding in native
    /// byte order.
    #[inline(always)]
    fn in_place_atomic(word: &AtomicU64, input: &I) -> bool {
        let _ = (word, input);
        false
    }
}

/// `merge = "sum"`: wrapping addition for integers, addition for floats.
#[diagnostic::on_unimplemented(
    message = "`merge = \"sum\"` does not apply to a field of type `{Self}`",
    label = "no `sum` merge for this type",
    note = "`sum` applies to integers (wrapping on overflow) and floats",
    note = "use `merge = \"replace\"`, or `merge_with = \"path::to::fn\"` for custom logic"
)]
pub trait MergeSum: Copy {
    /// Merges `input` into `self`.
    fn merge_sum(self, input: Self) -> Self;
}

/// `merge = "min"`: the smaller of stored and input.
#[diagnostic::on_unimplemented(
    message = "`merge = \"min\"` does not apply to a field of type `{Self}`",
    label = "no `min` merge for this type",
    note = "`min` applies to integers and floats",
    note = "use `merge = \"replace\"`, or `merge_with = \"path::to::fn\"` for custom logic"
)]
pub trait MergeMin: Copy {
    /// Merges `input` into `self`.
    fn merge_min(self, input: Self) -> Self;
}

/// `merge = "max"`: the larger of stored and input.
#[diagnostic::on_unimplemented(
    message = "`merge = \"max\"` does not apply to a field of type `{Self}`",
    label = "no `max` merge for this type",
    note = "`max` applies to integers and floats",
    note = "use `merge = \"replace\"`, or `merge_with = \"path::to::fn\"` for custom logic"
)]
pub trait MergeMax: Copy {
    /// Merges `input` into `self`.
    fn merge_max(self, input: Self) -> Self;
}

/// `merge = "or"`: bitwise or.
#[diagnostic::on_unimplemented(
    message = "`merge = \"or\"` does not apply to a field of type `{Self}`",
    label = "no `or` merge for this type",
    note = "`or` applies to integers, `bool` and byte arrays `[u8; N]`",
    note = "use `merge = \"replace\"`, or `merge_with = \"path::to::fn\"` for custom logic"
)]
pub trait MergeOr: Copy {
    /// Merges `input` into `self`.
    fn merge_or(self, input: Self) -> Self;
}

/// `merge = "and"`: bitwise and.
#[diagnostic::on_unimplemented(
    message = "`merge = \"and\"` does not apply to a field of type `{Self}`",
    label = "no `and` merge for this type",
    note = "`and` applies to integers, `bool` and byte arrays `[u8; N]`",
    note = "use `merge = \"replace\"`, or `merge_with = \"path::to::fn\"` for custom logic"
)]
pub trait MergeAnd: Copy {
    /// Merges `input` into `self`.
    fn merge_and(self, input: Self) -> Self;
}

macro_rules! int_merges {
    ($($t:ty),*) => {$(
        impl MergeSum for $t {
            #[inline(always)]
            fn merge_sum(self, input: Self) -> Self { self.wrapping_add(input) }
        }
        impl MergeMin for $t {
            #[inline(always)]
            fn merge_min(self, input: Self) -> Self { Ord::min(self, input) }
        }
        impl MergeMax for $t {
            #[inline(always)]
            fn merge_max(self, input: Self) -> Self { Ord::max(self, input) }
        }
        impl MergeOr for $t {
            #[inline(always)]
            fn merge_or(self, input: Self) -> Self { self | input }
        }
        impl MergeAnd for $t {
            #[inline(always)]
            fn merge_and(self, input: Self) -> Self { self & input }
        }
    )*};
}
int_merges!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

macro_rules! float_merges {
    ($($t:ty),*) => {$(
        impl MergeSum for $t {
            #[inline(always)]
            fn merge_sum(self, input: Self) -> Self { self + input }
        }
        impl MergeMin for $t {
            #[inline(always)]
            fn merge_min(self, input: Self) -> Self { self.min(input) }
        }
        impl MergeMax for $t {
            #[inline(always)]
            fn merge_max(self, input: Self) -> Self { self.max(input) }
        }
    )*};
}
float_merges!(f32, f64);

impl MergeOr for bool {
    #[inline(always)]
    fn merge_or(self, input: Self) -> Self {
        self | input
    }
}

impl MergeAnd for bool {
    #[inline(always)]
    fn merge_and(self, input: Self) -> Self {
        self & input
    }
}

impl<const N: usize> MergeOr for [u8; N] {
    #[inline]
    fn merge_or(mut self, input: Self) -> Self {
        self.iter_mut().zip(input).for_each(|(a, b)| *a |= b);
        self
    }
}

impl<const N: usize> MergeAnd for [u8; N] {
    #[inline]
    fn merge_and(mut self, input: Self) -> Self {
        self.iter_mut().zip(input).for_each(|(a, b)| *a &= b);
        self
    }
}
