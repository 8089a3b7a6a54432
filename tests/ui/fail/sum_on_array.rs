use oxifaster::FasterValue;

#[derive(FasterValue, Clone, Copy)]
#[repr(C)]
struct Bytes {
    #[faster(merge = "sum")]
    quad: [u8; 4],
    #[faster(merge = "max")]
    more: [u8; 4],
}

fn main() {}
