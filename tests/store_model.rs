//! Model test of the store: random single-session operation sequences
//! against a `BTreeMap`, with tiny pages and a tiny memory budget so that
//! most records live on the device and the pending paths run. Fixed-size,
//! variable-length and derived value types; memory and file devices.
//!
//! `OXIFASTER_MODEL_OPS` sets the operations per run (default 20 000);
//! `OXIFASTER_MODEL_SEED` replays one seed.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;

use common::{merged, tiny};
use oxifaster::device::{Device, FileDevice, MemoryDevice};
use oxifaster::record::{Key, Merge, Value};
use oxifaster::store::{CompletedOp, ReadStatus, RmwStatus, Session, Store};
use oxifaster::{FasterKey, FasterValue};
use oxifaster_cli::workload::Rng;

fn ops() -> u64 {
    std::env::var("OXIFASTER_MODEL_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

fn seeds() -> Vec<u64> {
    match std::env::var("OXIFASTER_MODEL_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => vec![1, 2, 3],
    }
}

fn check_read<K: Key + Debug, V: Value + Merge + Clone + PartialEq + Debug, D: Device>(
    session: &mut Session<K, V, D>,
    key: &K,
    expected: Option<&V>,
    seed: u64,
    step: u64,
) -> bool {
    let went_pending = match session.read(key).expect("read") {
        ReadStatus::Found(v) => {
            assert_eq!(Some(&v), expected, "seed {seed} step {step}: read {key:?}");
            false
        }
        ReadStatus::NotFound => {
            assert_eq!(None, expected, "seed {seed} step {step}: read {key:?}");
            false
        }
        ReadStatus::Pending { serial } => {
            let done = session.complete_pending().expect("complete_pending");
            let mine = done.iter().find(|c| c.serial == serial).expect("completion");
            assert_eq!(
                mine.op,
                CompletedOp::Read(expected.cloned()),
                "seed {seed} step {step}: pending read {key:?}"
            );
            true
        }
        other => panic!("seed {seed} step {step}: read {key:?}: {other:?}"),
    };
    assert_eq!(session.read_blocking(key).expect("read_blocking").as_ref(), expected);
    went_pending
}

fn run<K, V, D>(
    store: &Store<K, V, D>,
    seed: u64,
    mut key: impl FnMut(&mut Rng) -> K,
    mut value: impl FnMut(&mut Rng) -> V,
) where
    K: Key + Ord + Clone + Debug,
    V: Value + Merge + Clone + PartialEq + Debug,
    D: Device,
{
    println!("seed {seed}");
    let mut rng = Rng::new(seed);
    let mut model: BTreeMap<K, V> = BTreeMap::new();
    let mut session = store.start_session().expect("session");
    let (mut pending_reads, mut pending_rmws) = (0u64, 0u64);
    for step in 0..ops() {
        let k = key(&mut rng);
        match rng.below(100) {
            0..40 => {
                let v = value(&mut rng);
                session.upsert(&k, &v).expect("upsert");
                model.insert(k, v);
            }
            40..65 => {
                pending_reads += u64::from(check_read(&mut session, &k, model.get(&k), seed, step));
            }
            65..85 => {
                let input = value(&mut rng);
                let expected = merged(model.get(&k), &input);
                if let RmwStatus::Pending { serial } = session.rmw(&k, &input).expect("rmw") {
                    pending_rmws += 1;
                    let done = session.complete_pending().expect("complete_pending");
                    assert!(done.iter().any(|c| c.serial == serial && c.op == CompletedOp::Rmw));
                }
                model.insert(k, expected);
            }
            _ => {
                session.delete(&k).expect("delete");
                model.remove(&k);
            }
        }
    }
    for (k, v) in &model {
        assert_eq!(
            session.read_blocking(k).expect("read").as_ref(),
            Some(v),
            "seed {seed}: final {k:?}"
        );
    }
    let log = store.log_regions();
    println!(
        "seed {seed}: {} keys, pending reads {pending_reads}, pending rmws {pending_rmws}, head {}, tail {}",
        model.len(),
        log.head_address,
        log.tail_address
    );
    assert!(pending_reads > 0 && pending_rmws > 0, "seed {seed}: the pending paths did not run");
}

#[test]
fn fixed_keys_and_values_on_a_memory_device() {
    for seed in seeds() {
        let store = tiny().open_with_device(MemoryDevice::new()).expect("store");
        run(&store, seed, |r| r.below(500), |r| r.below(1000));
    }
}

/// The fixed-size model on a device `make` opens in a fresh directory.
fn fixed_on<D: Device>(make: impl Fn(&std::path::Path) -> D) {
    for seed in seeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tiny().open_with_device(make(dir.path())).expect("store");
        run(&store, seed, |r| r.below(500), |r| r.below(1000));
    }
}

#[test]
fn fixed_keys_and_values_on_a_file_device() {
    fixed_on(|dir| FileDevice::open(dir, 16).expect("device"));
}

#[test]
fn fixed_keys_and_values_on_an_io_uring_device() {
    fixed_on(|dir| oxifaster::device::IoUringDevice::open(dir, 16).expect("io_uring"));
}

#[test]
fn fixed_keys_and_values_with_direct_io() {
    fixed_on(|dir| FileDevice::open(dir, 16).expect("device").with_direct_io());
    fixed_on(|dir| oxifaster::device::IoUringDevice::open_direct_io(dir, 16).expect("io_uring"));
}

/// The variable-length model (byte keys, text values) on a store.
fn variable_on<D: Device>(store: &Store<Vec<u8>, String, D>, seed: u64) {
    run(
        store,
        seed,
        |r| format!("key-{}", r.below(400)).into_bytes(),
        |r| "v".repeat(r.below(40) as usize),
    );
}

#[test]
fn variable_length_keys_and_values_with_direct_io_and_whole_block_pages() {
    // Pages of 4 KiB: flushes are whole blocks, written around the page
    // cache; records are read back through aligned bounce buffers.
    for seed in seeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tiny()
            .page_size_bits(12)
            .log_memory_size_bytes(32 << 10)
            .dir(dir.path())
            .direct_io(true)
            .for_types::<Vec<u8>, String>()
            .open()
            .expect("store");
        variable_on(&store, seed);
    }
}

#[test]
fn variable_length_keys_and_values() {
    for seed in seeds() {
        let store = tiny()
            .for_types::<Vec<u8>, String>()
            .open_with_device(MemoryDevice::new())
            .expect("store");
        variable_on(&store, seed);
    }
}

#[derive(FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct Counters {
    #[faster(merge = "sum")]
    hits: u64,
    #[faster(merge = "max")]
    peak: u32,
    #[faster(merge = "or")]
    flags: u32,
}

#[derive(FasterKey, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Account {
    tenant: u16,
    name: String,
}

#[derive(FasterValue, Clone, PartialEq, Debug)]
struct Profile {
    #[faster(merge = "sum")]
    visits: u64,
    nickname: String,
}

#[test]
fn derived_fixed_values() {
    for seed in seeds() {
        let store = tiny()
            .for_types::<u64, Counters>()
            .open_with_device(MemoryDevice::new())
            .expect("store");
        run(
            &store,
            seed,
            |r| r.below(500),
            |r| Counters { hits: r.below(10), peak: r.below(1000) as u32, flags: 1 << r.below(32) },
        );
    }
}

#[test]
fn derived_variable_length_keys_and_values() {
    for seed in seeds() {
        let store = tiny()
            .for_types::<Account, Profile>()
            .open_with_device(MemoryDevice::new())
            .expect("store");
        run(
            &store,
            seed,
            |r| Account { tenant: r.below(4) as u16, name: format!("user{}", r.below(100)) },
            |r| Profile { visits: r.below(5), nickname: "n".repeat(r.below(12) as usize) },
        );
    }
}

#[test]
fn oversized_records_are_errors_not_crashes() {
    let store =
        tiny().for_types::<u64, Vec<u8>>().open_with_device(MemoryDevice::new()).expect("store");
    let mut session = store.start_session().expect("session");
    let err = session.upsert(&1, &vec![0u8; 2000]).expect_err("a record larger than a page");
    assert!(matches!(err, oxifaster::Error::RecordTooLarge { .. }), "{err}");
    session.upsert(&1, &vec![7u8; 100]).expect("a record that fits");
    assert_eq!(session.read_blocking(&1).expect("read"), Some(vec![7u8; 100]));
}

#[test]
fn closure_rmw_follows_the_model_in_memory_and_on_disk() {
    for seed in seeds() {
        let store =
            tiny().for_types::<u64, String>().open_with_device(MemoryDevice::new()).expect("store");
        let mut session = store.start_session().expect("session");
        let mut model: BTreeMap<u64, String> = BTreeMap::new();
        let mut rng = Rng::new(seed);
        for step in 0..ops() / 4 {
            let key = rng.below(300);
            if rng.below(3) == 0 {
                let value = "s".repeat(rng.below(6) as usize);
                session.upsert(&key, &value).expect("upsert");
                model.insert(key, value);
            } else {
                // Grows on every update: in place only when the closure
                // keeps the size (when it truncates).
                let truncate = rng.below(4) == 0;
                let update = move |old: Option<String>| match old {
                    None => "new".to_owned(),
                    Some(old) if truncate => "x".repeat(old.len()),
                    Some(old) => old + "+",
                };
                let expected = update(model.get(&key).cloned());
                session.rmw_with(&key, update).expect("rmw_with");
                model.insert(key, expected);
            }
            if step % 97 == 0 {
                let k = rng.below(300);
                assert_eq!(
                    session.read_blocking(&k).expect("read").as_ref(),
                    model.get(&k),
                    "seed {seed} step {step}"
                );
            }
        }
        for (k, v) in &model {
            assert_eq!(
                session.read_blocking(k).expect("read").as_ref(),
                Some(v),
                "seed {seed}: final {k}"
            );
        }
        assert!(
            store.log_regions().head_address > store.log_regions().begin_address,
            "nothing went to disk"
        );
    }
}

#[test]
fn bad_configurations_are_named_errors() {
    let small = Store::<u64, u64>::builder().log_memory_size_bytes(1 << 20).page_size_bits(22);
    let err = small.open_with_device(MemoryDevice::new()).expect_err("too small");
    assert!(
        matches!(err, oxifaster::Error::InvalidConfig { what: "log_memory_size_bytes", .. }),
        "{err}"
    );
    for (builder, what) in [
        (Store::<u64, u64>::builder().table_size(1000), "table_size"),
        (Store::<u64, u64>::builder().page_size_bits(40), "page_size_bits"),
        (Store::<u64, u64>::builder().mutable_fraction(1.5), "mutable_fraction"),
        (Store::<u64, u64>::builder().max_sessions(0), "max_sessions"),
    ] {
        let err = builder.open_with_device(MemoryDevice::new()).expect_err(what);
        assert!(
            matches!(err, oxifaster::Error::InvalidConfig { what: w, .. } if w == what),
            "{what}: {err}"
        );
    }
}
