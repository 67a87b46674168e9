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
    Publish {
        /// The topic, e.g. permit.updated.
        topic: String,
        /// The event as JSON, or @FILE to read it from a file.
        #[arg(long)]
        data: String,
        /// Event id (Idempotency-Key): publishing the same id twice delivers once.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        client: hms_sync::cli::ClientArgs,
    },
}

fn main() -> ExitCode {
    match Bus::parse().command {
        Command::Publish { topic, data, id, client } => hms_sync::cli::publish(&client, &topic, &data, id.as_deref()),
    }
}
