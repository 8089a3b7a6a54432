//! Quickstart: a typed store on a temporary directory — upsert, read, rmw,
//! delete and a zero-copy read.
//!
//! Run it with `cargo run --example quickstart`.

use oxifaster::store::{ReadStatus, RmwStatus};
use oxifaster::{FasterKey, FasterValue, Store};

#[derive(FasterKey, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct UserId(u64);

#[derive(FasterValue, Clone, Debug, PartialEq)]
struct Profile {
    #[faster(merge = "sum")]
    visits: u64,
    #[faster(merge = "max")]
    last_seen: u64,
    name: String,
}

fn main() -> Result<(), oxifaster::Error> {
    // No directory given: the store lives in a temporary directory that is
    // removed when it closes. `Store::open(dir)` opens (or reopens) a store
    // that lasts, durable by default.
    let store = Store::<UserId, Profile>::builder().log_memory_size_bytes(16 << 20).open()?;
    let mut session = store.start_session()?;

    let ada = UserId(1);
    session.upsert(&ada, &Profile { visits: 1, last_seen: 100, name: "Ada".into() })?;

    // A read returns the value, NotFound, or Pending when the record is on
    // disk (then `complete_pending` finishes it).
    match session.read(&ada)? {
        ReadStatus::Found(profile) => println!("read: {profile:?}"),
        ReadStatus::NotFound => println!("read: not found"),
        ReadStatus::Pending { serial } => {
            let done = session.complete_pending()?;
            println!("read from disk (serial {serial}): {done:?}");
        }
        other => println!("read: {other:?}"),
    }

    // RMW merges with the derived merge: visits add up, last_seen keeps its max.
    let visit = Profile { visits: 1, last_seen: 250, name: "Ada".into() };
    if let RmwStatus::Pending { .. } = session.rmw(&ada, &visit)? {
        session.complete_pending()?;
    }
    let after = session.read_blocking(&ada)?;
    println!("after rmw: {after:?}");
    assert_eq!(after.map(|p| (p.visits, p.last_seen)), Some((2, 250)));

    // A zero-copy read: the closure sees a view into the record.
    let name_len = session.read_with(&ada, |view| view.map(|p| p.name.len()))?;
    if let Some(len) = name_len {
        println!("zero-copy read: the name is {len} bytes long");
    }

    session.delete(&ada)?;
    assert_eq!(session.read_blocking(&ada)?, None);
    println!("after delete: not found");
    Ok(())
}
