use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Borrowed {
    name: &'static str,
}

fn main() {}
