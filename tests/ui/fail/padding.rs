use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Padded {
    flag: u8,
    count: u64,
}

fn main() {}
