//! `oxifaster bench --workload scan`: one live-record scan of the loaded
//! store, timed, and (with `--drop-caches`, on a store directory) the
//! same directory's sequential read bandwidth as its yardstick.

use std::io::Read as _;
use std::time::Instant;

use oxifaster::Store;
use oxifaster::device::Device;

use super::BenchArgs;
use super::value::BenchValue;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Scans every live record once and reports records/s and the log bytes
/// read per second; every loaded key must come exactly once.
pub(super) fn scan<V: BenchValue, D: Device>(
    store: &Store<u64, V, D>,
    args: &BenchArgs,
) -> Result<()> {
    if args.drop_caches {
        crate::durability::drop_caches(true)?;
    }
    let regions = store.log_regions();
    let begin = regions.begin_address;
    let start = Instant::now();
    let mut scan = store.iter()?;
    let mut live = 0u64;
    let mut checksum = 0u64;
    while let Some(item) = scan.next_view() {
        let (key, _) = item?;
        live += 1;
        checksum = checksum.wrapping_add(key);
    }
    let elapsed = start.elapsed();
    let bytes = scan.end() - begin;
    let read = scan.records_read();
    drop(scan);
    if live != args.keys {
        return Err(format!("the scan returned {live} live records of {} keys", args.keys).into());
    }
    let on_device = regions.head_address.saturating_sub(begin);
    let mib_s = crate::durability::mib_per_s(bytes, elapsed);
    let mrec_s = read as f64 / elapsed.as_secs_f64() / 1e6;
    if args.json {
        println!(
            "{{\"workload\":\"scan\",\"keys\":{},\"records\":{read},\"live\":{live},\"secs\":{:.3},\"mrecords_per_s\":{mrec_s:.3},\"log_bytes\":{bytes},\"on_device_bytes\":{on_device},\"mib_per_s\":{mib_s:.1},\"cold\":{},\"checksum\":{checksum}}}",
            args.keys,
            elapsed.as_secs_f64(),
            args.drop_caches
        );
    } else {
        println!(
            " scan: {live} live of {read} records in {:.2} s: {mrec_s:.2} M records/s, {mib_s:.0} MiB/s of log ({} MiB, {} MiB of it on the device{})",
            elapsed.as_secs_f64(),
            bytes >> 20,
            on_device >> 20,
            if args.drop_caches { ", page cache dropped" } else { "" }
        );
    }
    if let (Some(dir), true) = (store.dir(), args.drop_caches) {
        let (total, seq) = first_read_yardstick(dir, on_device)?;
        println!(
            " sequential read of a new file of the same size, cold, 1 MiB requests: {} MiB at {seq:.0} MiB/s; the scan ran at {:.0}% of it",
            total >> 20,
            100.0 * mib_s / seq
        );
    }
    Ok(())
}

/// The yardstick of a cold scan: a new file of `bytes` (rounded up to
/// MiB) written in `dir`, synced, dropped from the page cache and read
/// through in 1 MiB requests — the bytes and MiB/s. A new file rather
/// than the log read again: on a VM the host caches what the guest has
/// read, so a second cold read of the same bytes can run at twice the
/// first's speed, and the scan is a first read.
fn first_read_yardstick(dir: &std::path::Path, bytes: u64) -> Result<(u64, f64)> {
    use std::io::Write as _;
    let path = dir.join("yardstick.tmp");
    let mut buf = vec![0u8; 1 << 20];
    let chunks = bytes.div_ceil(1 << 20).max(1);
    {
        let mut file = std::fs::File::create(&path)?;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..chunks {
            // Bytes that do not repeat, so nothing below can fold them.
            for word in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.copy_from_slice(&x.to_le_bytes());
            }
            file.write_all(&buf)?;
        }
        file.sync_all()?;
    }
    crate::durability::drop_caches(true)?;
    let start = Instant::now();
    let mut total = 0u64;
    let mut file = std::fs::File::open(&path)?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let seq = crate::durability::mib_per_s(total, start.elapsed());
    drop(file);
    std::fs::remove_file(&path)?;
    Ok((total, seq))
}
