use oxifaster::FasterKey;

// A key is never merged: a merge attribute on a key-only type is a mistake.
#[derive(FasterKey, Clone, Copy)]
#[repr(C)]
struct Id {
    #[faster(merge = "sum")]
    n: u64,
}

fn main() {}
