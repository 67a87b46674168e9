//! `hms-bus`: the seed's stand-in for HMS's event bus (seed 002 §3.3). `hms-bus publish
//! TOPIC --data JSON` publishes an HMS event to a running hms-sync, exactly as
//! `hms-sync publish` does (the same client code, the same answers and exit codes).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Publish HMS events to a running hms-sync (as HMS's event bus would).
#[derive(Parser)]
#[command(name = "hms-bus", version)]
struct Bus {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish an event on a topic: stored for every connector that subscribes, before the
    /// answer. Exit code 0: accepted; 1: refused by the service; 2: the event is not JSON
    /// or the service cannot be reached.
    Publish(hms_sync::cli::PublishArgs),
}

fn main() -> ExitCode {
    match Bus::parse().command {
        Command::Publish(args) => hms_sync::cli::publish(&args),
    }
}
