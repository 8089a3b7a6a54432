//! Larger than memory: load more data than the log's memory budget holds,
//! read every key back (most from disk) and update keys that live on disk.
//!
//! Run it with `cargo run --release --example larger_than_memory [keys]`
//! (default 20 000 000 keys, 64 MiB of log memory).

use std::time::Instant;

use oxifaster::Store;
use oxifaster::store::{CompletedOp, ReadStatus, RmwStatus};

fn main() -> Result<(), oxifaster::Error> {
    let keys: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20_000_000);
    let memory = 64u64 << 20;
    let store = Store::<u64, u64>::builder()
        .table_size((keys / 4).next_power_of_two())
        .log_memory_size_bytes(memory)
        .page_size_bits(22)
        .open()?;
    let mut session = store.start_session()?;
    println!(
        "{keys} keys × 24-byte records = {} MiB of data, {} MiB of log memory, in {}",
        (keys * 24) >> 20,
        memory >> 20,
        store.dir().map(|d| d.display().to_string()).unwrap_or_default()
    );

    let start = Instant::now();
    for k in 0..keys {
        session.upsert(&k, &(k * 2))?;
    }
    println!("load: {:.2} Mops/s", keys as f64 / start.elapsed().as_secs_f64() / 1e6);
    let log = store.log_regions();
    println!("log: head {} tail {} (below head is on disk)", log.head_address, log.tail_address);

    // Read everything back, batching the reads that go to disk.
    let start = Instant::now();
    let (mut on_disk, mut checked) = (0u64, 0u64);
    let mut waiting = std::collections::HashMap::new();
    for k in 0..keys {
        match session.read(&k)? {
            ReadStatus::Found(v) => {
                assert_eq!(v, k * 2);
                checked += 1;
            }
            ReadStatus::NotFound => panic!("key {k} not found"),
            ReadStatus::Pending { serial } => {
                waiting.insert(serial, k);
                on_disk += 1;
            }
            other => panic!("key {k}: {other:?}"),
        }
        if waiting.len() >= 256 || k + 1 == keys {
            for done in session.complete_pending()? {
                let k = waiting.remove(&done.serial).expect("a pending read");
                assert_eq!(done.op, CompletedOp::Read(Some(k * 2)), "key {k}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, keys);
    println!(
        "read back: all {keys} keys correct, {on_disk} from disk, {:.2} Mops/s",
        keys as f64 / start.elapsed().as_secs_f64() / 1e6
    );

    // RMW on keys that are on disk: the old value is read and merged.
    for k in 0..1000 {
        if let RmwStatus::Pending { .. } = session.rmw(&k, &1)? {
            session.complete_pending()?;
        }
    }
    for k in 0..1000 {
        assert_eq!(session.read_blocking(&k)?, Some(k * 2 + 1));
    }
    println!("rmw on 1000 on-disk keys kept their old values");
    Ok(())
}
