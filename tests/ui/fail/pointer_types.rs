use oxifaster::FasterValue;
use std::rc::Rc;
use std::sync::Arc;

#[derive(FasterValue, Clone)]
#[repr(C)]
struct Boxed {
    a: Box<u64>,
    b: Rc<u64>,
    c: Arc<u64>,
}

fn main() {}
