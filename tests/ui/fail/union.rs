use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
union Either {
    a: u64,
    b: f64,
}

fn main() {}
