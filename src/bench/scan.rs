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
        let (total, buffered, direct) = yardstick(dir, on_device)?;
        let best = direct.unwrap_or(0.0).max(buffered);
        println!(
            " sequential read of a new file of the same size, cold: {} MiB at {buffered:.0} MiB/s buffered (1 MiB requests), {} direct (4 MiB requests); the scan ran at {:.0}% of the faster",
            total >> 20,
            direct.map_or("-".into(), |d| format!("{d:.0} MiB/s")),
            100.0 * mib_s / best
        );
    }
    Ok(())
}

/// The yardstick of a cold scan: a new file of `bytes` (rounded up to
/// MiB) written beside `dir` (on its file system), synced, and read
/// through cold twice — buffered in 1 MiB requests (the kernel reading
/// ahead), and with `O_DIRECT` in 4 MiB requests — the bytes, and the
/// two rates in MiB/s (direct `None` where the file system refuses it).
/// A new file rather than the log read again: on a VM the host caches
/// what the guest has read, so a second cold read of the same bytes can
/// run at twice the first's speed, and the scan is a first read.
fn yardstick(dir: &std::path::Path, bytes: u64) -> Result<(u64, f64, Option<f64>)> {
    use oxifaster::device::{Device as _, FileDevice};
    use std::io::Write as _;
    let parent = dir.parent().unwrap_or(dir);
    let sub = parent.join(format!("oxifaster-yardstick-{}", std::process::id()));
    std::fs::create_dir_all(&sub)?;
    let path = sub.join("log.0");
    let mut buf = vec![0u8; 4 << 20];
    let chunks = bytes.div_ceil(1 << 20).max(1);
    let result = (|| -> Result<(u64, f64, Option<f64>)> {
        {
            let mut file = std::fs::File::create(&path)?;
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..chunks {
                // Bytes that do not repeat, so nothing below can fold them.
                for word in buf[..1 << 20].chunks_exact_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    word.copy_from_slice(&x.to_le_bytes());
                }
                file.write_all(&buf[..1 << 20])?;
            }
            file.sync_all()?;
        }
        let total = chunks << 20;
        crate::durability::drop_caches(true)?;
        let start = Instant::now();
        let mut file = std::fs::File::open(&path)?;
        while file.read(&mut buf[..1 << 20])? > 0 {}
        let buffered = crate::durability::mib_per_s(total, start.elapsed());
        let device = FileDevice::open(&sub, 40)?.with_direct_io();
        crate::durability::drop_caches(true)?;
        let start = Instant::now();
        let mut at = 0;
        let mut direct = true;
        while at < total && direct {
            let n = (total - at).min(buf.len() as u64) as usize;
            direct = device.read_at(at, &mut buf[..n]).is_ok();
            at += n as u64;
        }
        let direct = direct.then(|| crate::durability::mib_per_s(total, start.elapsed()));
        Ok((total, buffered, direct))
    })();
    let _ = std::fs::remove_dir_all(&sub);
    result
}
