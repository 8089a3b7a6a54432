use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
#[faster(view = "PointView")]
struct Point {
    x: u64,
    y: u64,
}

fn main() {}
