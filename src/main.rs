//! The `oxifaster` command-line tool.

use clap::Parser;

/// oxifaster: a typed, embedded, concurrent key-value store and log engine.
#[derive(Debug, Parser)]
#[command(name = "oxifaster", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
