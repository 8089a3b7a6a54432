//! Stress test of the hash index's latch-free insert: threads racing to
//! create entries for the same hashes must all end up with one entry per
//! (bucket, tag), and never with two. A missing re-check after the tentative
//! CAS lets two racing inserts both win; this test catches that.
//!
//! `OXIFASTER_STRESS_ROUNDS` lengthens the run (default 200 rounds).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};

use oxifaster::index::{HashBucketEntry, HashIndex};

fn rounds() -> u64 {
    std::env::var("OXIFASTER_STRESS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200)
}

/// A small deterministic generator (SplitMix64), seeded per round.
/// The shared SplitMix64 generator, stepped from a plain state word.
fn splitmix(state: &mut u64) -> u64 {
    let mut rng = oxifaster_cli::workload::Rng::new(*state);
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    rng.next_u64()
}

fn race(threads: usize, seed: u64) {
    const TABLE_SIZE: u64 = 4;
    let mut state = seed;
    // Few distinct tags, so that many hashes share a (bucket, tag) and the
    // chains overflow.
    let hashes: Vec<u64> = (0..96)
        .map(|_| {
            let h = splitmix(&mut state);
            (h & !(0x3fff << 48)) | ((h % 40) << 48)
        })
        .collect();
    let index = Arc::new(HashIndex::new(TABLE_SIZE).expect("table"));
    let barrier = Arc::new(Barrier::new(threads));
    let results: Vec<HashMap<u64, usize>> = (0..threads)
        .map(|t| {
            let (index, barrier, mut order) = (index.clone(), barrier.clone(), hashes.clone());
            let mut s = seed ^ (t as u64 + 1);
            for i in (1..order.len()).rev() {
                order.swap(i, (splitmix(&mut s) % (i as u64 + 1)) as usize);
            }
            std::thread::spawn(move || {
                barrier.wait();
                order
                    .iter()
                    .map(|&h| (h, index.find_or_create_entry(h).slot as *const _ as usize))
                    .collect::<HashMap<_, _>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("thread panicked"))
        .collect();

    for &h in &hashes {
        let slots: HashSet<usize> = results.iter().map(|r| r[&h]).collect();
        assert_eq!(slots.len(), 1, "seed {seed}: hash {h:#x} got {} entries", slots.len());
        let found = index.find_entry(h).expect("entry exists after insert");
        assert_eq!(found.slot as *const _ as usize, results[0][&h], "seed {seed}");
        assert!(!found.entry.is_tentative());
    }
    let groups: HashSet<(u64, u16)> =
        hashes.iter().map(|&h| (h % TABLE_SIZE, HashBucketEntry::tag_of(h))).collect();
    let slots: HashSet<usize> = results[0].values().copied().collect();
    assert_eq!(slots.len(), groups.len(), "seed {seed}: one entry per (bucket, tag)");
}

#[test]
fn racing_inserts_create_one_entry_per_tag_2_threads() {
    for round in 0..rounds() {
        race(2, 0x5eed_0000 + round);
    }
}

#[test]
fn racing_inserts_create_one_entry_per_tag_4_threads() {
    for round in 0..rounds() {
        race(4, 0xfeed_0000 + round);
    }
}
