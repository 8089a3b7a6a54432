//! An io_uring read interrupted by a storm of signals never returns while
//! its buffer may still be written by the kernel: the segment is a FIFO, so
//! the read blocks until this test writes into it, and the read must come
//! back only then, with exactly those bytes.

#![cfg(target_os = "linux")]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use oxifaster::device::{Device, IoUringDevice};

extern "C" fn ignore(_: libc::c_int) {}

#[test]
fn a_read_interrupted_by_signals_waits_for_its_completion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("log.0");
    let path = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: a NUL-terminated path; mkfifo touches no memory of ours.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let device = match IoUringDevice::open(dir.path(), 20) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("skipped: no io_uring here ({e})");
            return;
        }
    };
    // A handler without SA_RESTART: blocking calls see EINTR.
    // SAFETY: installs a handler that does nothing; the struct is zeroed
    // and then filled as sigaction(2) expects.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as *const () as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
    }

    let returned = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let reader = {
        let returned = returned.clone();
        std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tid_tx.send(unsafe { libc::pthread_self() }).expect("tid");
            let mut buf = vec![0u8; 4096];
            let result = device.read_at(0, &mut buf);
            returned.store(true, Ordering::Release);
            (result, buf)
        })
    };
    let tid = tid_rx.recv().expect("tid");
    // The storm: a signal every 100 µs for half a second.
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_millis(500) {
        // SAFETY: `tid` is the live reader thread (it cannot finish: its
        // read has no data yet).
        unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
        sent += 1;
        std::thread::sleep(Duration::from_micros(100));
        assert!(
            !returned.load(Ordering::Acquire),
            "the read returned before its data existed ({sent} signals)"
        );
    }
    // Now the data.
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut writer =
        std::fs::OpenOptions::new().write(true).open(&fifo).expect("open the FIFO for writing");
    std::io::Write::write_all(&mut writer, &pattern).expect("write");
    let (result, buf) = reader.join().expect("reader");
    result.expect("the read succeeds");
    assert_eq!(buf, pattern, "the read returned exactly the bytes written");
    eprintln!("{sent} signals during the read");
}
