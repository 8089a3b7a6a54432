use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Flags {
    count: u32,
    enabled: bool,
    more: [bool; 3],
}

fn main() {}
