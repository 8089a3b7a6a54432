//! Every merge kind on a fixed-size value.
use oxifaster::record::{Merge, Value};
use oxifaster::FasterValue;

fn keep_larger_abs(stored: &mut i32, input: &i32) {
    if input.abs() > stored.abs() {
        *stored = *input;
    }
}

#[derive(FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct Stats {
    #[faster(merge = "sum")]
    count: u64,
    #[faster(merge = "max")]
    high: f64,
    #[faster(merge = "min")]
    low: i64,
    #[faster(merge = "or")]
    flags: u32,
    #[faster(merge = "and")]
    mask: u32,
    #[faster(merge = "replace")]
    last: u32,
    #[faster(merge_with = "keep_larger_abs")]
    extreme: i32,
}

fn main() {
    let old = Stats { count: 1, high: 1.5, low: -3, flags: 0b01, mask: 0b11, last: 5, extreme: -4 };
    let input = Stats { count: 2, high: 0.5, low: 7, flags: 0b10, mask: 0b10, last: 9, extreme: 3 };
    let merged = Stats::copy_update(&old, &input);
    assert_eq!(
        merged,
        Stats { count: 3, high: 1.5, low: -3, flags: 0b11, mask: 0b10, last: 9, extreme: -4 }
    );
    let mut stored = old.to_aligned_bytes();
    assert!(Stats::in_place(stored.as_mut_slice(), &input));
    assert_eq!(*Stats::view(&stored).unwrap(), merged);
}
