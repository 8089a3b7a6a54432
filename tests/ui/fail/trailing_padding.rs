use oxifaster::FasterKey;

#[derive(FasterKey, Clone, Copy)]
#[repr(C)]
struct Trailing {
    count: u64,
    flag: u8,
}

fn main() {}
