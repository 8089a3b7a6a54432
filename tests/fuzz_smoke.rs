//! The CI tier of the fuzzing layer (TESTING.md, L5): every fuzz target's
//! entry point (`oxifaster::fuzzing`) runs on its committed seed corpus
//! (`fuzz/corpus/<target>/`) and on seeded mutations of it: bit flips,
//! truncations, splices and random bytes. Long runs use libFuzzer through
//! `fuzz/run.sh`.
//!
//! Knob: `OXIFASTER_FUZZ_MUTATIONS` (default 300 per seed).
//! `cargo test --test fuzz_smoke -- --ignored write_seeds` regenerates the
//! seeds.

use std::path::{Path, PathBuf};

use oxifaster::fuzzing;
use oxifaster_cli::workload::Rng;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 9] = [
    ("log_entry", fuzzing::log_entry),
    ("log_commit", fuzzing::log_commit),
    ("checkpoint_meta", fuzzing::checkpoint_meta),
    ("index_checkpoint", fuzzing::index_checkpoint),
    ("record", fuzzing::record),
    ("log_page", fuzzing::log_page),
    ("log_ops", fuzzing::log_ops),
    ("store_ops", fuzzing::store_ops),
    ("store_dir", fuzzing::store_dir),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("read a seed")).collect()
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    match rng.below(5) {
        0 | 1 => {
            for _ in 0..1 + rng.below(4) {
                if !out.is_empty() {
                    let at = rng.below(out.len() as u64) as usize;
                    out[at] ^= 1 << rng.below(8);
                }
            }
        }
        2 => out.truncate(rng.below(out.len() as u64 + 1) as usize),
        3 => {
            let cut = rng.below(out.len() as u64 + 1) as usize;
            let from = rng.below(other.len() as u64 + 1) as usize;
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        _ => {
            let len = rng.below(200) as usize;
            out = (0..len).map(|_| rng.next_u64() as u8).collect();
        }
    }
    out
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let mutations = std::env::var("OXIFASTER_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300u64);
    let mut rng = Rng::new(0xf022);
    for (name, target) in TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "no seed corpus for {name} in {}", corpus_dir(name).display());
        for seed in &seeds {
            target(seed);
        }
        let rounds = if name.ends_with("_ops") { mutations / 10 } else { mutations };
        for i in 0..rounds * seeds.len() as u64 {
            let seed = &seeds[(i % seeds.len() as u64) as usize];
            let other = &seeds[rng.below(seeds.len() as u64) as usize];
            target(&mutate(&mut rng, seed, other));
        }
    }
}

/// Writes the seed corpora (valid inputs of every decoder).
#[test]
#[ignore = "regenerates fuzz/corpus"]
fn write_seeds() {
    let write = |target: &str, seeds: Vec<Vec<u8>>| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, seed) in seeds.into_iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
        }
    };
    // Entries: address, page room, payload.
    write(
        "log_entry",
        [(64u64, 4096u64, &b"hello"[..]), (4096, 100, &[][..]), (8192, 4096, &[7u8; 300][..])]
            .iter()
            .map(|(a, room, payload)| {
                let mut seed = a.to_le_bytes().to_vec();
                seed.extend_from_slice(&room.to_le_bytes());
                let mut entry =
                    vec![0u8; oxifaster::log::entry::entry_size(payload.len()) as usize];
                oxifaster::log::entry::encode(*a, payload, &mut entry);
                seed.extend_from_slice(&entry);
                seed
            })
            .collect(),
    );
    let record = oxifaster::log::commit::CommitRecord {
        seq: 3,
        begin: 64,
        committed: 8192,
        page_bits: 12,
        segment_bits: 20,
        cookie: b"term=2".to_vec(),
        iterators: [("apply".to_string(), 4096u64)].into(),
        dropped: vec![(5000, 6000)].into(),
        spill: None,
    };
    let empty = oxifaster::log::commit::CommitRecord {
        page_bits: 12,
        segment_bits: 12,
        ..Default::default()
    };
    let (a, b) = (record.encode().expect("encode"), empty.encode().expect("encode"));
    write("log_commit", vec![a.clone(), b.clone(), [a, b].concat()]);
    write("checkpoint_meta", vec![oxifaster::checkpoint::meta_sample()]);
    // A real index checkpoint of a small store.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = oxifaster::Store::<u64, u64>::builder()
            .dir(dir.path())
            .table_size(16)
            .log_memory_size_bytes(64 << 10)
            .page_size_bits(12)
            .open()
            .expect("store");
        let mut session = store.start_session().expect("session");
        for k in 0..200u64 {
            session.upsert(&k, &k).expect("upsert");
        }
        store.checkpoint_and_wait(oxifaster::checkpoint::CheckpointKind::IndexOnly).expect("cp");
    }
    let index = find(dir.path(), "index").expect("an index file");
    write("index_checkpoint", vec![std::fs::read(index).expect("read index")]);
    use oxifaster::record::Value;
    write(
        "record",
        vec![
            "a string".to_string().to_aligned_bytes().as_slice().to_vec(),
            vec![1u64, 2, 3].to_aligned_bytes().as_slice().to_vec(),
            42u64.to_aligned_bytes().as_slice().to_vec(),
        ],
    );
    // Store log pages (address, sealed length, page bits, image): fixed
    // and variable-length records, as flushed.
    let mut pages = Vec::new();
    for var_len in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let builder = oxifaster::Store::<u64, u64>::builder()
            .dir(dir.path())
            .table_size(64)
            .log_memory_size_bytes(64 << 10)
            .page_size_bits(12);
        let end = if var_len {
            let store = builder.for_types::<String, Vec<u8>>().open().expect("store");
            let mut session = store.start_session().expect("session");
            for k in 0..300u64 {
                session.upsert(&format!("key {k}"), &vec![k as u8; (k % 40) as usize]).expect("up");
            }
            let cp = oxifaster::checkpoint::CheckpointKind::FoldOver;
            store.checkpoint_and_wait(cp).expect("cp").final_address
        } else {
            let store = builder.open().expect("store");
            let mut session = store.start_session().expect("session");
            for k in 0..300u64 {
                session.upsert(&k, &(k * 7)).expect("upsert");
            }
            let cp = oxifaster::checkpoint::CheckpointKind::FoldOver;
            store.checkpoint_and_wait(cp).expect("cp").final_address
        };
        use oxifaster::device::Device;
        let device = oxifaster::device::FileDevice::open(
            dir.path(),
            oxifaster::device::DEFAULT_SEGMENT_SIZE_BITS,
        )
        .expect("device");
        for page in [0u64, end & !4095] {
            let mut image = vec![0u8; 4096];
            device.read_at(page, &mut image).expect("read page");
            let need = (end - page).min(4096 - 16) as u16;
            pages.push([&page.to_le_bytes()[..], &need.to_le_bytes(), &[3], &image].concat());
        }
    }
    write("log_page", pages);
    // Store sequences: countdown, then op/argument pairs (op % 16: 0-4
    // upsert, 5-9 RMW, 10-11 delete, 12-13 read, 14-15 checkpoint).
    write(
        "store_ops",
        vec![
            [&[255u8][..], &[0, 1, 5, 2, 14, 0, 1, 3, 6, 1, 15, 1, 12, 1, 30, 2, 14, 3][..]]
                .concat(),
            [&[20u8][..], &[1, 7, 14, 1, 2, 9, 5, 9, 14, 2, 10, 7, 14, 3, 13, 9][..]].concat(),
            (0..200u8).map(|i| if i % 23 == 22 { 14 } else { i.wrapping_mul(29) }).collect(),
        ],
    );
    // Store directories: (file, offset u32, xor) triples.
    write(
        "store_dir",
        vec![
            vec![0, 40, 0, 0, 0, 4, 1, 200, 0, 0, 0, 1],
            vec![2, 8, 1, 0, 0, 128, 3, 100, 0, 0, 0, 2, 4, 64, 2, 0, 0, 16],
            (0..60u8).map(|i| i.wrapping_mul(53)).collect(),
        ],
    );
    // Operation sequences: countdown, then op/argument pairs.
    write(
        "log_ops",
        vec![
            [&[255u8][..], &[1, 10, 2, 200, 140, 0, 3, 50, 150, 0, 181, 1, 160, 0][..]].concat(),
            [&[3u8][..], &[7, 255, 6, 255, 145, 0, 5, 255, 4, 255, 150, 0, 200, 1, 230, 3][..]]
                .concat(),
            (0..120u8).map(|i| if i % 7 == 6 { 150 } else { i.wrapping_mul(37) % 140 }).collect(),
        ],
    );
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}
