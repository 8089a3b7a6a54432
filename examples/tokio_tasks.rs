//! Many tokio tasks, each with its own session, over a store larger than
//! its log memory: sessions move into `tokio::spawn` (they own a handle to
//! the store), and reads of records on disk await the device without
//! blocking the runtime.
//!
//! Run it with `cargo run --release --example tokio_tasks [keys] [tasks]`
//! (default 2 000 000 keys, 16 tasks, 16 MiB of log memory).

use std::time::Instant;

use oxifaster::Store;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let tasks: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(16).max(1);
    let memory = 16u64 << 20;
    // A temporary store (no directory): the policy and the final checkpoint
    // are off for it; give it a `dir` to keep the data.
    let store = Store::<u64, u64>::builder()
        .table_size((keys / 4).next_power_of_two())
        .log_memory_size_bytes(memory)
        .page_size_bits(20)
        .open()?;
    println!(
        "{keys} keys ({} MiB of records) in {} MiB of log memory",
        (keys * 24) >> 20,
        memory >> 20
    );

    // Load: each task writes its share of the keys.
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mut session = store.start_session()?;
        handles.push(tokio::spawn(async move {
            for k in (t..keys).step_by(tasks as usize) {
                session.upsert_async(&k, &(k * 3)).await?;
            }
            Ok::<_, oxifaster::Error>(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    println!("load: {:.2} Mops/s", keys as f64 / start.elapsed().as_secs_f64() / 1e6);
    let regions = store.log_regions();
    println!(
        "on disk below {:#x}, in memory up to {:#x}",
        regions.head_address, regions.tail_address
    );

    // Read back and update: most records are on disk by now.
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mut session = store.start_session()?;
        handles.push(tokio::spawn(async move {
            let mut checked = 0u64;
            for k in (t..keys).step_by(tasks as usize * 10) {
                let value = session.read_async(&k).await?;
                assert_eq!(value, Some(k * 3), "key {k}");
                session.rmw_async(&k, &1).await?; // u64 merges by adding
                assert_eq!(session.read_async(&k).await?, Some(k * 3 + 1), "key {k}");
                checked += 1;
            }
            Ok::<_, oxifaster::Error>(checked)
        }));
    }
    let mut checked = 0;
    for handle in handles {
        checked += handle.await??;
    }
    println!(
        "read, rmw and read again: {checked} keys checked in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
