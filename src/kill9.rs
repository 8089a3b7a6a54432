//! Test support for kill -9 tests: run one of the calling test binary's
//! own (ignored) tests in a child process and SIGKILL it mid-work.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the test `name` of the current test binary in a child process (with
/// `--ignored --exact`), with the environment variables `env`; lets it work
/// for `after`, then kills it with SIGKILL and reaps it. Panics, with the
/// child's stderr, if the child exited on its own before the kill.
pub fn run_and_kill(name: &str, env: &[(&str, &OsStr)], after: Duration) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    std::thread::sleep(after);
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        child.stderr.take().map(|mut s| s.read_to_string(&mut err));
        panic!("the child exited by itself ({status}):\n{err}");
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap the child");
}
