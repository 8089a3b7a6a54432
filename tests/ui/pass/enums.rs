use oxifaster::record::{Key, Merge, Value};
use oxifaster::{FasterKey, FasterValue};

#[derive(FasterKey, FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(u8)]
enum Color {
    Red = 1,
    Green,
    Blue = 10,
}

#[derive(FasterValue, Debug, PartialEq)]
#[repr(i32)]
enum Level {
    Low = -1,
    High = 1,
}

#[derive(FasterValue, Clone, PartialEq, Debug)]
struct Tagged {
    color: Color,
    label: String,
}

fn main() {
    let bytes = Color::Blue.to_aligned_bytes();
    assert_eq!(bytes.as_slice(), &[10]);
    assert_eq!(Color::view(&bytes).unwrap(), Color::Blue);
    assert!(Color::decode(&[3]).is_err());
    assert_eq!(Color::Green.key_size(), 1);
    assert_eq!(Level::copy_update(Level::Low, &Level::High), Level::High);
    assert_eq!(Level::decode(&(-1i32).to_le_bytes()).unwrap(), Level::Low);
    let t = Tagged { color: Color::Green, label: "g".into() };
    assert_eq!(Tagged::decode(&t.to_aligned_bytes()).unwrap(), t);
}
