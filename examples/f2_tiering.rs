//! F2 tiering: far more keys than the memory budget could index, with a
//! skewed workload served mostly from the hot tier.
//!
//! Loads `keys` keys into an `F2Store` with a small memory budget (the hot
//! tier migrates its oldest half to the cold tier whenever it outgrows its
//! size), then runs zipf-like reads and RMWs where most operations touch a
//! small hot set, and reports what each part of memory takes and what a cold
//! lookup costs in device reads.
//!
//! Run it with `cargo run --release --example f2_tiering [keys]` (default
//! 2 000 000 keys, 32 MiB of memory).

use std::time::Instant;

use oxifaster::f2::F2Store;

fn main() -> Result<(), oxifaster::Error> {
    let keys: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let budget = 32u64 << 20;
    let store: F2Store<u64, u64> = F2Store::<u64, u64>::builder()
        // Pages small enough for the budget to hold each log's four.
        .page_size_bits(18)
        .memory_budget(budget)
        .cold_index_chunks((keys / 16).max(1))
        .open()?;
    println!("{keys} keys, a memory budget of {} MiB, in {}", budget >> 20, store.dir().display());
    let mut session = store.start_session()?;

    let start = Instant::now();
    for k in 0..keys {
        session.upsert(&k, &k)?;
    }
    println!("load: {:.2} Mops/s", keys as f64 / start.elapsed().as_secs_f64() / 1e6);
    store.migrate_all()?; // everything loaded so far goes cold
    let totals = store.totals();
    println!(
        "migrations: {}, records moved to the cold tier: {}",
        totals.migrations, totals.migrated_records
    );

    // Skewed traffic: 90% of the operations on 1% of the keys.
    let hot_keys = (keys / 100).max(1);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ops = 200_000u64;
    let start = Instant::now();
    let mut found = 0u64;
    for i in 0..ops {
        let r = next();
        let key = if r % 10 < 9 { r / 10 % hot_keys } else { r / 10 % keys };
        if i % 2 == 0 {
            session.rmw(&key, &1)?;
        } else if session.read_blocking(&key)?.is_some() {
            found += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{ops} reads and RMWs (90% on 1% of the keys): {:.2} Mops/s, {found} reads found",
        ops as f64 / elapsed / 1e6
    );

    let probe = session.cold_probe();
    let cold_lookups = probe.chunks.max(1);
    println!(
        "cold lookups: {}; per lookup {:.2} chunk reads from the device and {:.2} cold records read",
        probe.chunks,
        probe.chunk_misses as f64 / cold_lookups as f64,
        probe.records as f64 / cold_lookups as f64
    );
    let memory = store.memory();
    println!(
        "memory: hot log {} KiB, hot index {} KiB, read cache {} KiB, cold index log {} KiB, cold index table {} KiB, \
         cold log {} KiB; total {} KiB = {:.2} bytes per key",
        memory.hot_log >> 10,
        memory.hot_index >> 10,
        memory.read_cache >> 10,
        memory.cold_index_log >> 10,
        memory.cold_index_table >> 10,
        memory.cold_log >> 10,
        memory.total() >> 10,
        memory.total() as f64 / keys as f64
    );
    let checkpoint = store.checkpoint()?;
    println!(
        "checkpoint: hot {} and cold index {}",
        checkpoint.hot.token, checkpoint.cold_index_token
    );
    Ok(())
}
