use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Inner {
    id: u64,
}

#[derive(FasterValue, Clone)]
#[repr(C)]
struct Named {
    id: u64,
    name: String,
}

// A variable-length struct nested in another struct's fixed part.
#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Outer {
    inner: Inner,
    named: Named,
}

fn main() {}
