//! The examples of `oxifaster` (see the `[[example]]` targets of this
//! package: `cargo run --example quickstart` from the checkout). The
//! library itself is empty.
