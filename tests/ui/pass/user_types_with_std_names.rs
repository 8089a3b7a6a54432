//! User types named like standard ones (`Cell`, `String`, `Vec`) are
//! stored as the fixed-size types they are when written as paths.
use oxifaster::{FasterKey, FasterValue, Value};

mod grid {
    #[derive(oxifaster::FasterValue, oxifaster::FasterKey, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    pub struct Cell {
        pub x: u32,
        pub y: u32,
    }

    #[derive(oxifaster::FasterValue, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    pub struct String {
        pub bytes: [u8; 8],
    }
}

use grid::Cell;

#[derive(FasterValue, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Board {
    cursor: Cell,
    label: grid::String,
}

#[derive(FasterKey, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct At {
    cell: Cell,
}

fn main() {
    let board = Board { cursor: Cell { x: 1, y: 2 }, label: grid::String { bytes: *b"abcdefgh" } };
    assert_eq!(Board::FIXED_SIZE, Some(16));
    let bytes = board.to_aligned_bytes();
    assert_eq!(Board::decode(&bytes).unwrap(), board);
    let _ = At { cell: Cell { x: 0, y: 0 } };
}
