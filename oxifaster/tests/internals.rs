//! The engine's internals are out of reach of safe code: the hash index,
//! the hybrid log, the epoch table and the test doubles do not exist in a
//! normal build's public API (they could break the store's invariants).
//!
//! Run it on its own: `cargo test -p oxifaster --test internals` (`.ci/run`
//! does). In a workspace test run the project's own tests turn on the
//! `testing` feature, which exposes these on purpose, so there the check is
//! skipped.

#[test]
fn internals_are_out_of_reach() {
    if cfg!(feature = "testing") {
        eprintln!(
            "skipped: built with the `testing` feature (run `cargo test -p oxifaster --test internals`)"
        );
        return;
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/internals/*.rs");
}
