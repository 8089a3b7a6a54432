//! Stress test of epoch protection: readers never see an object that an
//! epoch action has retired while they may still hold it.
//!
//! A writer swaps a shared pointer and retires the old object with
//! `bump_with_action`; the action marks it dead. Readers protect, load the
//! pointer, and check repeatedly until their next refresh that the object
//! they hold is alive. A broken epoch (an action that runs too early) shows
//! up as a reader seeing a dead object. Objects are freed only at the end,
//! so a failure is a clean assertion, never a use-after-free.
//!
//! `OXIFASTER_STRESS_SECS` lengthens the run (default 2 s per thread count).

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxifaster::epoch::Epoch;

struct Object {
    alive: AtomicBool,
}

struct SendPtr(*mut Object);
// SAFETY: the pointer is only dereferenced while the object is kept alive by
// the `all` list below; sending it to the action's thread is fine.
unsafe impl Send for SendPtr {}

fn run(readers: usize, duration: Duration) {
    let epoch = Arc::new(Epoch::new(readers + 1));
    let all: Arc<Mutex<Vec<Box<Object>>>> = Arc::new(Mutex::new(Vec::new()));
    let first = Box::into_raw(Box::new(Object { alive: AtomicBool::new(true) }));
    let shared = Arc::new(AtomicPtr::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));

    let mut threads = Vec::new();
    for _ in 0..readers {
        let (epoch, shared, stop, checks) =
            (epoch.clone(), shared.clone(), stop.clone(), checks.clone());
        threads.push(std::thread::spawn(move || {
            let handle = epoch.register().expect("entry");
            while !stop.load(Ordering::Relaxed) {
                handle.refresh();
                let object = shared.load(Ordering::SeqCst);
                for _ in 0..64 {
                    // SAFETY: objects are never freed before the threads end.
                    let alive = unsafe { (*object).alive.load(Ordering::SeqCst) };
                    assert!(alive, "a reader saw an object retired while it was protected");
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            }
            handle.unprotect();
        }));
    }
    let start = Instant::now();
    let mut swaps = 0u64;
    while start.elapsed() < duration {
        let new = Box::into_raw(Box::new(Object { alive: AtomicBool::new(true) }));
        let old = SendPtr(shared.swap(new, Ordering::SeqCst));
        let keep = all.clone();
        epoch.bump_with_action(move || {
            let old = old;
            // SAFETY: the object is alive until the end of the test; the
            // action only marks it and hands ownership to the keep list.
            unsafe { (*old.0).alive.store(false, Ordering::SeqCst) };
            // SAFETY: `old.0` came from `Box::into_raw` and is retired once.
            keep.lock().expect("lock").push(unsafe { Box::from_raw(old.0) });
        });
        swaps += 1;
        if swaps.is_multiple_of(128) {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("reader panicked");
    }
    epoch.bump();
    let retired = all.lock().expect("lock").len() as u64;
    println!(
        "readers={readers} swaps={swaps} retired={retired} checks={}",
        checks.load(Ordering::Relaxed)
    );
    assert!(checks.load(Ordering::Relaxed) > 0);
    assert!(retired > 0 && retired <= swaps, "actions ran: {retired} of {swaps}");
    // SAFETY: the current object was never retired.
    drop(unsafe { Box::from_raw(shared.load(Ordering::SeqCst)) });
}

fn secs() -> Duration {
    let secs =
        std::env::var("OXIFASTER_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    Duration::from_secs(secs)
}

#[test]
fn readers_never_see_retired_objects_2_threads() {
    run(2, secs());
}

#[test]
fn readers_never_see_retired_objects_4_threads() {
    run(4, secs());
}
