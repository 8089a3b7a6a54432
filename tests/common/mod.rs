//! Helpers shared by the integration tests (each test crate that needs them
//! declares `mod common;`; each uses some of them).
#![allow(dead_code)]

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

/// Runs the `oxifaster` tool with `args`.
pub fn oxifaster(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_oxifaster"))
        .args(args)
        .output()
        .expect("run oxifaster")
}

/// A run's stdout and stderr, for assertions and their messages.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Copies a store directory (all but its lock file), to recover it while
/// the original stays open.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("ls").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Reads keys `0..keys` through a new session of `store` and checks each
/// against `model` (absent keys read as `None`).
pub fn check_model<V, D>(
    store: &oxifaster::Store<u64, V, D>,
    model: &std::collections::BTreeMap<u64, V>,
    keys: u64,
) where
    V: oxifaster::Value + PartialEq + std::fmt::Debug + Clone,
    D: Device,
{
    let mut session = store.start_session().expect("session");
    for key in 0..keys {
        assert_eq!(
            session.read_blocking(&key).expect("read"),
            model.get(&key).cloned(),
            "key {key}"
        );
    }
}

/// A `Store<u64, u64>` builder with a tiny memory (4 KiB of 1 KiB pages,
/// half mutable, 64 buckets): most records live on the device, so reads
/// and RMWs go pending.
pub fn tiny() -> oxifaster::StoreBuilder<u64, u64> {
    oxifaster::Store::<u64, u64>::builder()
        .table_size(64)
        .page_size_bits(10)
        .log_memory_size_bytes(4 << 10)
        .mutable_fraction(0.5)
}

/// What an RMW of `input` makes of `old` (the model of `Merge`).
pub fn merged<V: oxifaster::Merge + Clone>(old: Option<&V>, input: &V) -> V {
    match old {
        Some(old) => {
            let bytes = old.to_aligned_bytes();
            V::copy_update(V::view(&bytes).expect("view"), input)
        }
        None => V::initial(input),
    }
}
