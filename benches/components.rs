//! Criterion micro-benchmarks of the hot paths, one component at a time,
//! so that a regression shows up where it happens: the hash index (a
//! lookup that hits, one that misses, an insert), the hybrid log's tail
//! allocation, epoch protection (protect/unprotect and refresh), the key
//! hash, and record encode/decode/view for fixed and variable-length
//! types.
//!
//! `cargo bench --bench components`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oxifaster::address::Address;
use oxifaster::device::NullDevice;
use oxifaster::epoch::Epoch;
use oxifaster::hlog::{HybridLog, LogGeometry};
use oxifaster::index::HashIndex;
use oxifaster::record::{Key, Value};
use oxifaster_cli::workload::{Rng, fnv64};

/// Hashes of `n` keys, shuffled, so lookups do not walk the table in
/// order.
fn hashes(n: u64) -> Vec<u64> {
    let mut rng = Rng::new(7);
    let mut out: Vec<u64> = (0..n).map(|i| fnv64(i).hash64()).collect();
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i as u64 + 1) as usize);
    }
    out
}

fn index(c: &mut Criterion) {
    const KEYS: u64 = 1 << 20;
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(2));
    let index = HashIndex::new(KEYS / 2).expect("index");
    let present = hashes(KEYS);
    for (i, &hash) in present.iter().enumerate() {
        let slot = index.find_or_create_entry(hash);
        let address = Address::new(64 + 16 * i as u64).expect("address");
        slot.slot.store(
            oxifaster::index::HashBucketEntry::new(address, slot.entry.tag(), false).raw(),
            std::sync::atomic::Ordering::Release,
        );
    }
    let mut at = 0usize;
    group.bench_function("find_entry hit (1 M keys)", |b| {
        b.iter(|| {
            at = (at + 1) & (present.len() - 1);
            black_box(index.find_entry(present[at]).is_some())
        })
    });
    let absent: Vec<u64> = (0..KEYS).map(|i| fnv64(i + (1 << 40)).hash64()).collect();
    group.bench_function("find_entry miss (1 M keys)", |b| {
        b.iter(|| {
            at = (at + 1) & (absent.len() - 1);
            black_box(index.find_entry(absent[at]).is_some())
        })
    });
    group.bench_function("find_or_create_entry (fresh index)", |b| {
        let mut fresh = HashIndex::new(KEYS).expect("index");
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            if n.is_multiple_of(KEYS) {
                fresh = HashIndex::new(KEYS).expect("index");
            }
            black_box(fresh.find_or_create_entry(present[(n % KEYS) as usize]).slot as *const _)
        })
    });
    group.finish();
}

fn log(c: &mut Criterion) {
    let mut group = c.benchmark_group("hlog");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(2));
    let epoch = Epoch::new(2);
    let handle = epoch.register().expect("epoch entry");
    let log = HybridLog::new(
        LogGeometry { page_bits: 22, frames: 16, mutable_pages: 8, sealed: true },
        NullDevice,
    )
    .expect("log");
    handle.protect();
    let mut n = 0u32;
    group.bench_function("allocate 24 B (page turns, flushes to null)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            if n.is_multiple_of(256) {
                handle.refresh();
            }
            black_box(log.allocate(24, &handle).expect("allocate"))
        })
    });
    handle.unprotect();
    group.finish();
}

fn epoch(c: &mut Criterion) {
    let mut group = c.benchmark_group("epoch");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(2));
    let epoch = Epoch::new(4);
    let handle = epoch.register().expect("epoch entry");
    group.bench_function("protect + unprotect", |b| {
        b.iter(|| {
            black_box(handle.protect());
            handle.unprotect();
        })
    });
    handle.protect();
    group.bench_function("refresh", |b| b.iter(|| black_box(handle.refresh())));
    handle.unprotect();
    group.finish();
}

fn records(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(2));
    let mut buf = [0u8; 64];
    let mut k = 0u64;
    group.bench_function("u64 hash64", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            black_box(black_box(k).hash64())
        })
    });
    group.bench_function("u64 encode + decode", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            black_box(k).encode_into(&mut buf[..8]).expect("encode");
            black_box(<u64 as Value>::decode(&buf[..8]).expect("decode"))
        })
    });
    let text = "a value of some forty bytes, give or take".to_string();
    let encoded = text.to_aligned_bytes();
    group.bench_function("String encode", |b| {
        b.iter(|| black_box(black_box(&text).to_aligned_bytes()))
    });
    group.bench_function("String view (zero-copy)", |b| {
        b.iter(|| black_box(<String as Value>::view(black_box(encoded.as_slice())).expect("view")))
    });
    group.bench_function("String decode", |b| {
        b.iter(|| {
            black_box(<String as Value>::decode(black_box(encoded.as_slice())).expect("decode"))
        })
    });
    let key = "user:1234567".to_string();
    group.bench_function("String key hash64", |b| b.iter(|| black_box(black_box(&key).hash64())));
    group.finish();
}

criterion_group!(benches, index, log, epoch, records);
criterion_main!(benches);
