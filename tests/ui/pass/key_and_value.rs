//! One struct may derive both traits; a renamed view; a packed layout.
use oxifaster::record::{Key, Merge, Value};
use oxifaster::{FasterKey, FasterValue};

#[derive(FasterKey, FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(FasterKey, FasterValue, Clone, PartialEq, Debug)]
#[faster(view = "LabelView")]
struct Label {
    text: String,
}

#[derive(FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C, packed)]
struct Packed {
    #[faster(merge = "sum")]
    small: u8,
    #[faster(merge = "sum")]
    big: u64,
}

fn main() {
    let p = Point { x: 1, y: -1 };
    assert_eq!(Point::decode_key(&p.key_to_aligned_bytes()).unwrap(), p);
    assert_eq!(*Point::view(&p.to_aligned_bytes()).unwrap(), p);
    assert_eq!(Point::key_layout_fingerprint(), Point::layout_fingerprint());

    let label = Label { text: "x".into() };
    let bytes = label.to_aligned_bytes();
    let view: LabelView<'_> = Label::view(&bytes).unwrap();
    assert_eq!(view.text, "x");

    assert_eq!(size_of::<Packed>(), 9);
    let merged = Packed::copy_update(&Packed { small: 1, big: 2 }, &Packed { small: 1, big: 3 });
    assert_eq!({ merged.small }, 2);
    assert_eq!({ merged.big }, 5);
}
