use oxifaster::FasterKey;

#[derive(FasterKey, Clone, Copy)]
#[repr(C)]
struct Pair {
    both: (u32, u32),
}

fn main() {}
