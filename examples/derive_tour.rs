//! A tour of the record layer: a user's own key and value types, their
//! encodings, a zero-copy view and the derived read-modify-write merge —
//! then the same types in a store.
//!
//! Run it with `cargo run --example derive_tour`.

use oxifaster::record::{Key, Merge, Value};
use oxifaster::{FasterKey, FasterValue};

/// A user id: a fixed-size, plain-old-data key. Its bytes are its encoding.
#[derive(FasterKey, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct UserId(u64);

/// A profile: fixed fields merged by `sum` and `max`, and a variable-length
/// name that an update replaces.
#[derive(FasterValue, Clone, Debug, PartialEq)]
struct Profile {
    #[faster(merge = "sum")]
    visits: u64,
    #[faster(merge = "max")]
    last_seen: u64,
    name: String,
}

fn main() -> Result<(), oxifaster::Error> {
    let id = UserId(42);
    println!("key {id:?}: {} bytes, hash {:#018x}", id.key_size(), id.hash64());
    println!(
        "key layout: {} (fingerprint {:#018x})",
        UserId::key_layout(),
        UserId::key_layout_fingerprint()
    );

    let profile = Profile { visits: 1, last_seen: 1_700_000_000, name: "Ada".to_owned() };
    // What the store writes into a record: an 8-byte aligned encoding.
    let mut stored = profile.to_aligned_bytes();
    println!("value {profile:?}: {} bytes {:02x?}", stored.len(), stored.as_slice());
    println!(
        "value layout: {} (fingerprint {:#018x})",
        Profile::layout(),
        Profile::layout_fingerprint()
    );

    // A zero-copy read: fixed fields come out of the record, `name` borrows it.
    let view = Profile::view(&stored)?;
    println!("view: visits={} last_seen={} name={:?}", view.visits, view.last_seen, view.name);

    // RMW in place: the name keeps its length, so the record is updated where
    // it is; counters add up and the timestamp keeps its maximum.
    let visit = Profile { visits: 1, last_seen: 1_700_000_100, name: "Ada".to_owned() };
    assert!(Profile::in_place(stored.as_mut_slice(), &visit));
    let after = Profile::decode(&stored)?;
    println!("after an in-place merge: {after:?}");
    assert_eq!((after.visits, after.last_seen), (2, 1_700_000_100));

    // A longer name does not fit: the merge falls back to a copy-update,
    // which builds the new value from a view of the old one.
    let rename = Profile { visits: 1, last_seen: 5, name: "Ada Lovelace".to_owned() };
    assert!(!Profile::in_place(stored.as_mut_slice(), &rename));
    let renamed = Profile::copy_update(Profile::view(&stored)?, &rename);
    println!("after a copy-update: {renamed:?}");
    assert_eq!(
        renamed,
        Profile { visits: 3, last_seen: 1_700_000_100, name: "Ada Lovelace".into() }
    );

    // Bad bytes are an error, never a panic.
    let err = Profile::view(&stored[..5]).err();
    println!("a truncated record: {}", err.map(|e| e.to_string()).unwrap_or_default());

    // The same types in a store: RMW uses the derived merge.
    let store = oxifaster::Store::<UserId, Profile>::builder()
        .log_memory_size_bytes(1 << 20)
        .page_size_bits(16)
        .open()?;
    let mut session = store.start_session()?;
    for seen in [10, 30, 20] {
        session.rmw(&id, &Profile { visits: 1, last_seen: seen, name: "Ada".into() })?;
    }
    let name_and_visits =
        session.read_with(&id, |view| view.map(|p| (p.name.to_owned(), p.visits)))?;
    println!("in a store after three visits: {name_and_visits:?}");
    assert_eq!(session.read_blocking(&id)?.map(|p| (p.visits, p.last_seen)), Some((3, 30)));
    Ok(())
}
