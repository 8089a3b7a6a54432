use oxifaster::FasterKey;

#[derive(FasterKey, Clone, Copy)]
#[repr(C)]
struct Coordinate {
    lat: f64,
    lon: f64,
}

fn main() {}
