use oxifaster::FasterKey;

#[derive(FasterKey, Clone, Copy)]
#[repr(C)]
struct Pointer {
    target: *const u64,
}

fn main() {}
