//! `oxifaster config`: prints the commented default configuration file
//! (store or FasterLog), or checks a file with the environment over it and
//! prints the configuration that results.

use std::path::PathBuf;

use oxifaster::StoreConfig;
use oxifaster::log::LogConfig;

use crate::Exit;

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Print the default configuration as a commented TOML file.
    #[arg(long, conflicts_with = "check")]
    print_default: bool,
    /// Read this TOML file, apply the `OXIFASTER_` environment variables
    /// over it, and print the configuration that results (exit 2 with the
    /// file, line and key if it is not valid).
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// The FasterLog's configuration (`OXIFASTER_LOG_` variables) instead
    /// of the store's.
    #[arg(long)]
    log: bool,
}

pub(crate) fn run(args: ConfigArgs) -> Result<(), Box<dyn std::error::Error>> {
    let invalid = |e: oxifaster::Error| Exit { code: 2, message: e.to_string() };
    let text = match (&args.check, args.log) {
        (None, false) => StoreConfig::default_file(),
        (None, true) => LogConfig::default().to_file(),
        (Some(file), false) => {
            let mut config = StoreConfig::default();
            config.apply_file(file).map_err(invalid)?;
            config.apply_env().map_err(invalid)?;
            config.to_file()
        }
        (Some(file), true) => {
            let mut config = LogConfig::default();
            config.apply_file(file).map_err(invalid)?;
            config.apply_env().map_err(invalid)?;
            config.to_file()
        }
    };
    print!("{text}");
    Ok(())
}
