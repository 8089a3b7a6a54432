use oxifaster::FasterValue;

#[derive(FasterValue, Clone)]
#[repr(C)]
struct Counter {
    n: u64,
}

fn main() {}
