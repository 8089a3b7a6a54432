use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(usize)]
enum Level {
    Low,
    High,
}

fn main() {}
