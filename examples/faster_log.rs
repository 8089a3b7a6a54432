//! FasterLog tour: append from several threads, commit with a cookie, scan,
//! follow the tail, truncate, and reopen after a "crash".
//!
//! `cargo run --release --example faster_log`

use std::sync::Arc;
use std::time::Duration;

use oxifaster::log::{FasterLog, LogAddress, LogConfig};

fn main() -> Result<(), oxifaster::Error> {
    let dir = tempfile::tempdir().map_err(|source| oxifaster::Error::Io {
        context: "creating a temporary directory".into(),
        source,
    })?;
    let config = || LogConfig::new(dir.path()).page_size_bits(16).log_memory_size_bytes(1 << 20);

    {
        let log = Arc::new(FasterLog::open(config())?);

        // A reader that follows the log, waiting for commits.
        let follower = {
            let mut tail = log.scan(LogAddress::FIRST, LogAddress::MAX);
            std::thread::spawn(move || -> oxifaster::Result<usize> {
                let mut seen = 0;
                while seen < 4000 {
                    if tail.next_blocking()?.is_none() {
                        break;
                    }
                    seen += 1;
                }
                Ok(seen)
            })
        };

        // Four writers append concurrently; no lock is taken.
        std::thread::scope(|s| {
            for writer in 0..4u32 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..1000u32 {
                        let entry = format!("writer {writer} entry {i}");
                        log.enqueue(entry.as_bytes()).expect("enqueue");
                    }
                });
            }
        });
        // Group commit: one call makes all 4000 entries durable, storing the
        // user's bytes (say a Raft term and vote) with them.
        let point = log.commit_with_cookie(b"term=7 vote=2")?;
        println!("committed 4000 entries up to {point}");
        println!("the follower saw {} entries", follower.join().expect("follower")?);

        // A named iterator remembers its position across restarts.
        let mut apply = log.named_iterator("apply")?;
        for _ in 0..1500 {
            let entry = apply.next().expect("an entry")?;
            apply.complete_until(entry.next_address)?;
        }

        // Release the first 1000 entries (whole segment files are deleted).
        let first_kept = log.scan_all().nth(1000).expect("entry 1000")?.address;
        log.truncate_until(first_kept)?;

        // Entries enqueued but never committed are lost in a crash.
        let lost = log.enqueue(b"not committed")?;
        println!("enqueued {lost} without committing; dropping the log (a crash)");
        std::thread::sleep(Duration::from_millis(10));
    }

    let log = FasterLog::open(config())?;
    let info = log.recovered().expect("recovered");
    println!(
        "reopened: commit #{} up to {}, cookie {:?}",
        info.commit_number,
        info.committed_until,
        String::from_utf8_lossy(&log.cookie())
    );
    println!("{} entries after the truncation", log.scan_all().count());
    let mut apply = log.named_iterator("apply")?;
    let next = apply.next().expect("an entry")?;
    println!("the apply iterator resumes at: {}", String::from_utf8_lossy(&next.data));
    println!("verify: {} entries, every checksum good", log.verify()?);
    Ok(())
}
