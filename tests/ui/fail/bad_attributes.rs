use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
#[faster(merge = "avg", bogus = "x")]
struct Stats {
    #[faster(merge = "median")]
    a: u64,
    #[faster(merge = 3)]
    b: u64,
    #[faster(merge = "sum", merge_with = "f")]
    c: u64,
    #[faster(merge_with = "not a path")]
    d: u64,
}

fn main() {}
