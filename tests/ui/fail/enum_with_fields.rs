use oxifaster::FasterKey;

#[derive(FasterKey)]
#[repr(u8)]
enum Shape {
    Point,
    Circle(u32),
    Rect { w: u32, h: u32 },
}

fn main() {}
