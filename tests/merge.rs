//! Read-modify-write merges: every merge kind, in place and by copy-update,
//! for derived fixed-size and variable-length values and the primitives.
//! `sum` wraps on integer overflow (documented in `oxifaster::record::merge`).

use oxifaster::FasterValue;
use oxifaster::record::{AlignedBytes, Merge, Value};

#[derive(FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct Fixed {
    #[faster(merge = "sum")]
    sum: u64,
    #[faster(merge = "min")]
    min: i32,
    #[faster(merge = "max")]
    max: i32,
    #[faster(merge = "or")]
    or: u16,
    #[faster(merge = "and")]
    and: u16,
    #[faster(merge = "replace")]
    replace: u32,
    #[faster(merge = "sum")]
    small: u8,
    #[faster(merge = "or")]
    bits: [u8; 7],
    #[faster(merge = "sum")]
    total: f64,
}

#[allow(clippy::too_many_arguments)]
fn fixed(
    sum: u64,
    min: i32,
    max: i32,
    or: u16,
    and: u16,
    replace: u32,
    small: u8,
    bits: [u8; 7],
    total: f64,
) -> Fixed {
    Fixed { sum, min, max, or, and, replace, small, bits, total }
}

/// Merges by both paths and checks that they agree.
fn merge_both_ways<V>(old: &V, input: &V) -> V
where
    V: Merge + PartialEq + std::fmt::Debug,
{
    let by_copy = V::copy_update(V::view(&old.to_aligned_bytes()).expect("view"), input);
    let mut stored = old.to_aligned_bytes();
    if V::in_place(stored.as_mut_slice(), input) {
        assert_eq!(
            V::decode(&stored).expect("decode"),
            by_copy,
            "in-place and copy-update disagree"
        );
    }
    by_copy
}

#[test]
fn every_kind_on_a_fixed_value() {
    let old = fixed(10, -5, 5, 0b0011, 0b0011, 1, 200, [1, 0, 0, 0, 0, 0, 0], 1.5);
    let input = fixed(5, -9, 2, 0b0100, 0b0110, 7, 100, [0, 2, 4, 0, 0, 0, 8], 2.25);
    let merged = merge_both_ways(&old, &input);
    assert_eq!(merged, fixed(15, -9, 5, 0b0111, 0b0010, 7, 44, [1, 2, 4, 0, 0, 0, 8], 3.75));
    // In place always succeeds for a fixed value, and leaves the same bytes.
    let mut stored = old.to_aligned_bytes();
    assert!(Fixed::in_place(stored.as_mut_slice(), &input));
    assert_eq!(*Fixed::view(&stored).expect("view"), merged);
    assert_eq!(Fixed::initial(&input), input);
}

#[test]
fn integer_sum_wraps_on_overflow() {
    let old = fixed(u64::MAX, 0, 0, 0, 0, 0, u8::MAX, [0; 7], 0.0);
    let input = fixed(2, 0, 0, 0, 0, 0, 1, [0; 7], 0.0);
    let merged = merge_both_ways(&old, &input);
    assert_eq!((merged.sum, merged.small), (1, 0));
    assert_eq!(merge_both_ways(&i32::MIN, &-1), i32::MAX);
    assert_eq!(merge_both_ways(&u64::MAX, &1), 0);
}

#[test]
fn in_place_refuses_bytes_of_the_wrong_size() {
    let mut short = AlignedBytes::zeroed(4);
    assert!(!Fixed::in_place(
        short.as_mut_slice(),
        &Fixed::initial(&fixed(1, 1, 1, 1, 1, 1, 1, [1; 7], 1.0))
    ));
    assert_eq!(short.as_slice(), &[0; 4]);
    assert!(!u64::in_place(short.as_mut_slice(), &1));
}

#[derive(FasterValue, Clone, PartialEq, Debug)]
struct Profile {
    #[faster(merge = "sum")]
    visits: u64,
    #[faster(merge = "max")]
    last_seen: u64,
    #[faster(merge = "min")]
    first_seen: u64,
    #[faster(merge = "or")]
    verified: bool,
    name: String,
    avatar: Vec<u8>,
}

fn profile(
    visits: u64,
    last: u64,
    first: u64,
    verified: bool,
    name: &str,
    avatar: &[u8],
) -> Profile {
    Profile {
        visits,
        last_seen: last,
        first_seen: first,
        verified,
        name: name.into(),
        avatar: avatar.into(),
    }
}

#[test]
fn varlen_merges_in_place_when_the_tails_keep_their_length() {
    let old = profile(1, 100, 100, false, "ada", b"xy");
    let input = profile(2, 150, 90, true, "bob", b"zz");
    let mut stored = old.to_aligned_bytes();
    assert!(Profile::in_place(stored.as_mut_slice(), &input));
    assert_eq!(Profile::decode(&stored).expect("decode"), profile(3, 150, 90, true, "bob", b"zz"));
    assert_eq!(merge_both_ways(&old, &input), profile(3, 150, 90, true, "bob", b"zz"));
}

#[test]
fn varlen_growth_falls_back_to_copy_update_and_leaves_the_record_untouched() {
    let old = profile(1, 100, 100, false, "ada", b"xy");
    let input = profile(1, 200, 200, false, "ada lovelace", b"xy");
    let mut stored = old.to_aligned_bytes();
    let before = stored.clone();
    assert!(!Profile::in_place(stored.as_mut_slice(), &input));
    assert_eq!(stored, before, "a refused in-place merge changed the record");
    let merged = Profile::copy_update(Profile::view(&stored).expect("view"), &input);
    assert_eq!(merged, profile(2, 200, 100, false, "ada lovelace", b"xy"));
    // Shrinking is a copy-update too.
    let shrink = profile(0, 0, 0, false, "a", b"");
    assert!(!Profile::in_place(stored.as_mut_slice(), &shrink));
}

#[test]
fn varlen_in_place_refuses_corrupt_records() {
    let input = profile(1, 1, 1, true, "a", b"");
    let mut garbage = AlignedBytes::copy_from(&[0xff; 40]);
    assert!(!Profile::in_place(garbage.as_mut_slice(), &input));
    assert_eq!(garbage.as_slice(), &[0xff; 40]);
}

// `merge_with` functions take `&Field`, here `&Vec<u8>`.
#[allow(clippy::ptr_arg)]
fn concat_tags(stored: &mut Vec<u8>, input: &Vec<u8>) {
    stored.push(b',');
    stored.extend_from_slice(input);
}

fn saturating(stored: &mut u32, input: &u32) {
    *stored = stored.saturating_add(*input);
}

#[derive(FasterValue, Clone, PartialEq, Debug)]
struct Tagged {
    #[faster(merge_with = "saturating")]
    hits: u32,
    #[faster(merge_with = "concat_tags")]
    tags: Vec<u8>,
}

#[test]
fn merge_with_functions_on_fields() {
    let old = Tagged { hits: u32::MAX - 1, tags: b"a".to_vec() };
    let input = Tagged { hits: 5, tags: b"b".to_vec() };
    let mut stored = old.to_aligned_bytes();
    // A function on a tail may grow it: never in place.
    assert!(!Tagged::in_place(stored.as_mut_slice(), &input));
    let merged = Tagged::copy_update(Tagged::view(&stored).expect("view"), &input);
    assert_eq!(merged, Tagged { hits: u32::MAX, tags: b"a,b".to_vec() });
}

#[test]
fn primitive_merges() {
    assert_eq!(merge_both_ways(&1.5f64, &2.0), 3.5);
    assert!(merge_both_ways(&false, &true));
    assert!(merge_both_ways(&true, &false));
    assert_eq!(merge_both_ways(&b"ab".to_vec(), &b"cd".to_vec()), b"abcd".to_vec());
    assert_eq!(merge_both_ways(&String::from("ab"), &String::from("cd")), "abcd");
    let boxed: Box<[u8]> = Box::new([1, 2]);
    assert_eq!(&*merge_both_ways(&boxed, &boxed), &[1, 2, 1, 2]);
    assert_eq!(u64::initial(&9), 9);
}

#[test]
fn eight_byte_integers_merge_with_one_atomic_add_and_others_decline() {
    use std::sync::atomic::{AtomicU64, Ordering};
    // The word holds the value's encoding in native byte order.
    let word = AtomicU64::new(u64::MAX - 1);
    assert!(u64::in_place_atomic(&word, &3));
    assert_eq!(word.load(Ordering::Relaxed), 1, "wraps like `sum`");
    let word = AtomicU64::new((-5i64) as u64);
    assert!(i64::in_place_atomic(&word, &7));
    assert_eq!(word.load(Ordering::Relaxed) as i64, 2);
    // The same result as the byte-level merge.
    let mut stored = 40i64.to_ne_bytes();
    assert!(i64::in_place(&mut stored, &-50));
    let word = AtomicU64::new(u64::from_ne_bytes(40i64.to_ne_bytes()));
    assert!(i64::in_place_atomic(&word, &-50));
    assert_eq!(word.load(Ordering::Relaxed).to_ne_bytes(), stored);
    // Floats do not add bitwise, and derived values keep the default.
    let word = AtomicU64::new(1.5f64.to_bits());
    assert!(!f64::in_place_atomic(&word, &1.0));
    assert_eq!(word.load(Ordering::Relaxed), 1.5f64.to_bits());
}
