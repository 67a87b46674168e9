//! The `hms-sync` binary: parse the command line and run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hms_sync::cli::run(hms_sync::cli::Cli::parse())
}
