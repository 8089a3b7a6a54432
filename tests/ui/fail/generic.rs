use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Wrapper<T> {
    inner: T,
}

fn main() {}
