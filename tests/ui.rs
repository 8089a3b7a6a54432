//! Compile-time behaviour of the derives: what must compile (and run), and
//! what must be rejected with a message that tells the user what to do.
//!
//! The expected messages live in `tests/ui/fail/*.stderr`; regenerate them
//! with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
