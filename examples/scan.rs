//! Scans and conditional operations: every live record of a store, the
//! versions of one key, a compare-and-swap loop from two threads, and an
//! insert-if-absent / delete-if pair.
//!
//! Run it with `cargo run --example scan`.

use oxifaster::store::{Decision, Outcome, UpdateStatus};
use oxifaster::{Session, Store};

/// Adds 1 to `key` with compare-and-swap retries; returns how many tries
/// it took. (`Session::rmw` does this in one operation; the loop shows
/// what a CAS can express that a merge cannot, like a condition on the old
/// value.)
fn increment(session: &mut Session<u64, u64, oxifaster::device::FileDevice>, key: u64) -> u64 {
    let mut tries = 0;
    loop {
        tries += 1;
        let status = match session.read_blocking(&key).expect("read") {
            Some(old) => session.compare_and_swap(&key, &old, &(old + 1)),
            None => session.insert_if_absent(&key, &1),
        };
        // Pending: the value is on disk; `complete_pending` decides.
        let outcome = match status.expect("cas") {
            UpdateStatus::Done(outcome) => outcome,
            _ => match session.complete_pending().expect("complete").pop().map(|c| c.op) {
                Some(oxifaster::store::CompletedOp::Update(outcome)) => outcome,
                other => panic!("unexpected completion {other:?}"),
            },
        };
        if outcome == Outcome::Set {
            return tries;
        }
    }
}

fn main() -> Result<(), oxifaster::Error> {
    let store = Store::<u64, String>::builder().log_memory_size_bytes(16 << 20).open()?;
    let mut session = store.start_session()?;
    for key in 0..10u64 {
        session.upsert(&key, format!("item {key}").as_str())?;
    }
    session.upsert(&3, "item 3, revised and longer")?;
    session.delete(&4)?;

    // Every live key once, with its newest value (in log order).
    let mut live: Vec<(u64, String)> = store.iter()?.collect::<Result<_, _>>()?;
    live.sort();
    println!("{} live records: {live:?}", live.len());

    // Every record of the log: superseded versions and deletes included.
    for record in store.scan_log(None, None)?.take(3) {
        let record = record?;
        println!("log {:#x}: key {} -> {:?}", record.address, record.key, record.value);
    }

    // The versions of key 3, newest first.
    for version in session.history(&3)? {
        println!("key 3 at {:#x}: {:?}", version.address, version.value);
    }

    // A decision on the old value: append a suffix unless it is there.
    let mark = |old: Option<&str>| match old {
        Some(text) if text.ends_with('!') => Decision::Keep,
        Some(text) => Decision::Set(format!("{text}!")),
        None => Decision::Abort,
    };
    println!("mark 5: {:?}", session.update(&5, mark)?);
    println!("mark 5 again: {:?}", session.update(&5, mark)?);
    drop(session);

    // Counters incremented by compare-and-swap from two threads.
    let counters = Store::<u64, u64>::builder().log_memory_size_bytes(16 << 20).open()?;
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut session = counters.start_session().expect("session");
            std::thread::spawn(move || {
                (0..10_000).map(|i| increment(&mut session, i % 4)).sum::<u64>()
            })
        })
        .collect();
    let tries: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let mut session = counters.start_session()?;
    let total: u64 =
        (0..4).map(|k| session.read_blocking(&k).map(|v| v.unwrap_or(0))).sum::<Result<_, _>>()?;
    println!("20000 increments by CAS: counters sum to {total} ({tries} tries)");
    assert_eq!(total, 20_000);

    // A lease: taken only if nobody holds it, given back only by its holder.
    let me = 42;
    let taken = session.insert_if_absent(&1_000, &me)?;
    let returned = session.delete_if(&1_000, move |holder| *holder == me)?;
    println!("lease taken: {taken:?}, returned: {returned:?}");
    Ok(())
}
