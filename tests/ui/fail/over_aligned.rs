use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Wide {
    big: u128,
}

fn main() {}
