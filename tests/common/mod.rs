//! Helpers shared by the integration tests (each test crate that needs them
//! declares `mod common;`).

use oxifaster::device::Device;

/// Flips bit `bit` of the byte at `address` on `device` and syncs it: a
/// planted bit flip for the checksum tests.
pub fn flip_bit<D: Device>(device: &D, address: u64, bit: u8) {
    let mut byte = [0u8; 1];
    device.read_at(address, &mut byte).expect("read");
    byte[0] ^= 1 << bit;
    device.write_at(address, &byte).expect("write");
    device.sync().expect("sync");
}
