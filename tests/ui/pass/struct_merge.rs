//! Struct-level merges: a default kind for every fixed field, and a function
//! for the whole value.
use oxifaster::record::{Merge, Value};
use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
#[faster(merge = "sum")]
struct Counters {
    a: u64,
    b: u64,
    #[faster(merge = "replace")]
    epoch: u64,
}

fn append_line(stored: &mut Log, input: &Log) {
    stored.lines += input.lines;
    stored.text.push('\n');
    stored.text.push_str(&input.text);
}

#[derive(FasterValue, Clone, PartialEq, Debug)]
#[faster(merge_with = "append_line")]
struct Log {
    lines: u32,
    text: String,
}

fn main() {
    let c = Counters::copy_update(&Counters { a: 1, b: 2, epoch: 3 }, &Counters { a: 1, b: 1, epoch: 9 });
    assert_eq!(c, Counters { a: 2, b: 3, epoch: 9 });

    let first = Log { lines: 1, text: "a".into() };
    let mut stored = first.to_aligned_bytes();
    let next = Log { lines: 1, text: "b".into() };
    assert!(!Log::in_place(stored.as_mut_slice(), &next));
    let merged = Log::copy_update(Log::view(&stored).unwrap(), &next);
    assert_eq!(merged, Log { lines: 2, text: "a\nb".into() });
}
