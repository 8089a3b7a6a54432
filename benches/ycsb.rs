//! Criterion macro-benchmarks of the store: YCSB load, A (50:50), B (95:5),
//! C (100% read) and 100% RMW, uniform and zipfian (θ = 0.99), 8-byte keys
//! and values, one session, in memory. Each sample times a batch of
//! operations on a store loaded once per configuration.
//!
//! `cargo bench --bench ycsb` (OXIFASTER_BENCH_KEYS sets the key count,
//! default 1 000 000). The `oxifaster bench` tool measures multi-threaded
//! throughput; this bench tracks single-thread cost per operation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oxifaster::Store;
use oxifaster::device::NullDevice;
use oxifaster::store::ReadStatus;
use oxifaster_cli::workload::{Distribution, KeyChooser, Op, Rng, Workload, fnv64};

fn keys() -> u64 {
    std::env::var("OXIFASTER_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000)
}

fn store(keys: u64) -> Store<u64, u64, NullDevice> {
    Store::<u64, u64>::builder()
        .table_size((keys / 2).next_power_of_two())
        .log_memory_size_bytes((keys * 24 * 4).next_power_of_two().max(64 << 20))
        .page_size_bits(22)
        .open_with_device(NullDevice)
        .expect("store")
}

fn load(store: &Store<u64, u64, NullDevice>, keys: u64) {
    let mut session = store.start_session().expect("session");
    for i in 0..keys {
        session.upsert(&fnv64(i), &0).expect("upsert");
    }
}

fn ycsb(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ycsb");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));

    group.bench_function(BenchmarkId::new("load", keys), |b| {
        b.iter_custom(|iterations| {
            let store = store(iterations.max(1024));
            let mut session = store.start_session().expect("session");
            let start = Instant::now();
            for i in 0..iterations {
                session.upsert(&fnv64(i), &0).expect("upsert");
            }
            start.elapsed()
        })
    });

    let store = store(keys);
    load(&store, keys);
    for (dist, name) in [(Distribution::Uniform, "uniform"), (Distribution::Zipf, "zipf")] {
        let chooser = KeyChooser::new(keys, dist);
        for workload in [Workload::A, Workload::B, Workload::C, Workload::Rmw] {
            let id = BenchmarkId::new(format!("{}/{name}", workload.name()), keys);
            group.bench_function(id, |b| {
                let mut session = store.start_session().expect("session");
                let mut rng = Rng::new(7);
                b.iter(|| {
                    let key = fnv64(chooser.next(&mut rng));
                    match workload.next_op(&mut rng) {
                        Op::Read => {
                            let found = session.read(&key).expect("read");
                            assert!(
                                matches!(found, ReadStatus::Found(_)),
                                "a loaded key was not found"
                            );
                            black_box(found);
                        }
                        Op::Upsert => session.upsert(&key, &1).expect("upsert"),
                        Op::Rmw => {
                            black_box(session.rmw(&key, &1).expect("rmw"));
                        }
                        Op::Cas => {
                            black_box(session.compare_and_swap(&key, &1, &1).expect("cas"));
                        }
                        Op::Insert => {
                            black_box(session.insert_if_absent(&key, &1).expect("insert"));
                        }
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ycsb);
criterion_main!(benches);
