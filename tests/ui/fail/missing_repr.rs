use oxifaster::FasterKey;

#[derive(FasterKey, Clone, Copy)]
struct Loose {
    a: u32,
    b: u32,
}

fn main() {}
