//! The command line (clap): `up`, `validate`, and thin clients of the admin API.

mod bench;
mod client;
pub mod fuzz;
mod test_cmd;
mod up;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// hms-sync keeps HMS and the outside systems around it in sync.
#[derive(Debug, Parser)]
#[command(name = "hms-sync", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Settings file (TOML or YAML); environment variables HMS_SYNC__SECTION__KEY override it.
    #[arg(long, global = true, env = "HMS_SYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: load connectors, start them, serve the admin API.
    Up(up::UpArgs),
    /// Check connector files; prints every error with file:line:column and exits non-zero.
    Validate {
        /// Connector files (YAML or JSON).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show the status of every connector, or of one.
    Status {
        /// A connector id: its status as JSON (default: a table of every connector).
        id: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the instances running on the service's database: alive or not, and what each holds.
    Cluster {
        /// Print the answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause syncing: every connector (governance), or one connector by id.
    Pause {
        /// A connector id (default: every connector, through governance).
        id: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume syncing: every connector (governance), or one connector by id.
    Resume {
        /// A connector id (default: every connector, through governance).
        id: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restart a connector (also the way out of the `failed` state).
    Restart {
        /// The connector id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run one reconciliation of a connector now: pull its change feed (the seed's
    /// `svc:syncNow`).
    Sync {
        /// The connector id (one that pulls: `source.pull`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy a connector file (seed 002: `deploy`, then `up`). With a service running: it is
    /// registered there, or replaces the running version (the service's own file: applied
    /// as a reload). With none: validated, then ready in the connectors folder, or stored
    /// in the database `up` will use. Says which: created, replaced, unchanged, or ok.
    Deploy {
        /// The connector file (YAML or JSON); validated here first.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Dry run: show the exact request a connector file would send for an event (read from
    /// standard input or --event), secrets masked. Sends nothing, stores nothing.
    /// Exit code 0: would send; 3: filtered out; 1: would be parked or invalid file;
    /// 2: the event (or --current) cannot be read or is not JSON.
    Test {
        /// The connector file (YAML or JSON) to try.
        file: PathBuf,
        /// The event as a JSON file (default: standard input).
        #[arg(long, value_name = "FILE")]
        event: Option<PathBuf>,
        /// The topic it is published on (default: the connector's first topic).
        #[arg(long)]
        topic: Option<String>,
        /// The event id, shown in the Idempotency-Key.
        #[arg(long)]
        id: Option<String>,
        /// Two-way connectors: the external system's current record (a JSON file, in its own
        /// fields), to see how the change would be decided against it (policy, rules).
        #[arg(long, value_name = "FILE")]
        current: Option<PathBuf>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List sync tickets, newest last (filters combine).
    Tickets {
        /// Only this connector's tickets.
        #[arg(long)]
        connector: Option<String>,
        /// completed, parked, skipped or conflict.
        #[arg(long)]
        status: Option<String>,
        /// outbound or inbound.
        #[arg(long)]
        direction: Option<String>,
        /// Only tickets created at or after this time: RFC 3339 (2026-11-30T08:00:00Z), a
        /// date (2026-11-30, midnight UTC) or an age (90s, 15m, 1h, 2d, 1w: that long ago).
        #[arg(long)]
        since: Option<String>,
        /// Only tickets created before this time (the same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Start after this cursor (the `next` of a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// How many tickets, 1 to 500.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Audit trail: `hms-sync audit verify` walks the tickets' hash chain and reports the
    /// first broken link (exit code 1 when broken).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// List parked jobs (failed past their retries or refused for good).
    Parked {
        /// Only this connector's parked jobs.
        #[arg(long)]
        connector: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send a parked job again, optionally with an edited event; or, with --connector and
    /// --since, every parked job of a connector parked in a span (bulk replay).
    Replay {
        /// The parked job's id (or --connector and --since for a bulk replay).
        #[arg(required_unless_present = "connector", conflicts_with_all = ["connector", "since", "until", "reason"])]
        id: Option<i64>,
        /// Bulk replay: this connector's parked jobs.
        #[arg(long, requires = "since")]
        connector: Option<String>,
        /// Bulk replay: parked since (RFC 3339, a date or an age: 90s, 15m, 1h, 2d, 1w).
        #[arg(long, requires = "connector")]
        since: Option<String>,
        /// Bulk replay: parked before (the same forms).
        #[arg(long, requires = "connector")]
        until: Option<String>,
        /// Bulk replay: only jobs whose error contains this text.
        #[arg(long, requires = "connector")]
        reason: Option<String>,
        /// Replacement event as JSON, or @FILE (one job only).
        #[arg(long, conflicts_with = "connector")]
        data: Option<String>,
        /// Send it even when a newer change of the same record was delivered after it (it
        /// would land after that one and undo it).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resolve a parked conflict: `--side hms|legacy` picks the winner, `--data` applies a
    /// merged record to both sides.
    Resolve {
        /// The parked conflict's job id.
        id: i64,
        /// The side whose version wins: hms or legacy.
        #[arg(long, conflicts_with = "data")]
        side: Option<String>,
        /// The merged record as JSON, or @FILE.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Discard a parked job for good (kept as history, ticketed as skipped).
    Discard {
        /// The parked job's id.
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Benchmark: a local sink and the real service on loopback; publish N events with C
    /// concurrent publishers, wait until all are delivered and ticketed, report events/s,
    /// latency and memory. Build with --release for real figures.
    Bench(bench::BenchArgs),
    /// Publish an HMS event on a topic, like the seed's `hms-bus publish`.
    Publish(PublishArgs),
}

/// `publish TOPIC --data JSON [--id ID]`: of `hms-sync publish` and `hms-bus publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The topic, e.g. permit.updated.
    pub topic: String,
    /// The event as JSON, or @FILE to read it from a file.
    #[arg(long)]
    pub data: String,
    /// Event id (Idempotency-Key): publishing the same id twice delivers once.
    #[arg(long)]
    pub id: Option<String>,
    /// Publish to NATS JetStream (on PREFIX + TOPIC, the id as `Nats-Msg-Id`) instead of
    /// the service's HTTP API; the instances with `bus.nats.url` set take it from there.
    #[arg(long)]
    pub nats: bool,
    /// The NATS server, with --nats.
    #[arg(long, env = "HMS_SYNC__BUS__NATS__URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The subject prefix, with --nats (`bus.nats.prefix`).
    #[arg(long, env = "HMS_SYNC__BUS__NATS__PREFIX", default_value = "hms.events.")]
    pub nats_prefix: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Verify the tickets' hash chain.
    Verify {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Where the running service is.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Base URL of the service.
    #[arg(long, env = "HMS_SYNC_URL", default_value = "http://127.0.0.1:7500")]
    pub url: String,
    /// Admin bearer token, when the service has one.
    #[arg(long, env = "HMS_SYNC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs the parsed command; the exit code says whether it worked.
pub fn run(cli: Cli) -> ExitCode {
    if !matches!(cli.command, Command::Up(_) | Command::Bench(_)) {
        quiet_on_closed_pipe();
    }
    match cli.command {
        Command::Up(args) => up::run(cli.config.as_deref(), args),
        Command::Validate { files } => validate::run(&files),
        Command::Status { id, client } => client::status(&client, id.as_deref()),
        Command::Cluster { json, client } => client::cluster(&client, json),
        Command::Pause { id, client } => client::set_paused(&client, id.as_deref(), true),
        Command::Resume { id, client } => client::set_paused(&client, id.as_deref(), false),
        Command::Restart { id, client } => client::restart(&client, &id),
        Command::Sync { id, client } => client::sync(&client, &id),
        Command::Deploy { file, client } => client::deploy(&client, &file, cli.config.as_deref()),
        Command::Publish(args) => publish(&args),
        Command::Bench(args) => bench::run(args),
        Command::Test { file, event, topic, id, current, json } => test_cmd::run(&file, event.as_deref(), topic.as_deref(), id.as_deref(), current.as_deref(), json),
        Command::Tickets { connector, status, direction, since, until, cursor, limit, json, client } => {
            let query = [("connector", connector), ("status", status), ("direction", direction), ("since", since), ("until", until), ("cursor", cursor), ("limit", Some(limit.to_string()))];
            client::tickets(&client, &query, json)
        }
        Command::Audit { action: AuditAction::Verify { client } } => client::audit_verify(&client),
        Command::Parked { connector, client } => client::parked(&client, connector.as_deref()),
        Command::Replay { id: Some(id), data, force, client, .. } => client::replay(&client, id, data.as_deref(), force),
        Command::Replay { connector, since, until, reason, force, client, .. } => {
            client::replay_many(&client, &serde_json::json!({ "connector": connector, "since": since, "until": until, "reason": reason, "force": force }))
        }
        Command::Resolve { id, side, data, client } => client::resolve(&client, id, side.as_deref(), data.as_deref()),
        Command::Discard { id, client } => client::discard(&client, id),
    }
}

/// `publish` for the `hms-bus` binary (the seed's `hms-bus publish`): the same command.
pub fn publish(args: &PublishArgs) -> ExitCode {
    quiet_on_closed_pipe();
    if args.nats {
        return client::publish_nats(args);
    }
    client::publish(&args.client, &args.topic, &args.data, args.id.as_deref())
}

/// A command whose output goes to a pipe closed early (`hms-sync tickets | head -1`) ends
/// there, quietly, as other Unix tools do: Rust ignores SIGPIPE, so the next write would
/// fail and `println!` would panic. The default action is restored for the commands that
/// print and exit; the service (`up`) and `bench` keep Rust's handling, so a closed
/// connection is an error to handle, never a signal that ends them. (Sockets are written
/// with `MSG_NOSIGNAL`, so a client's HTTP connection is not affected.)
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command, argument and option says what it is for in `--help` (issue 11,
    /// item 18: `parked --connector` and `test <FILE>` did not).
    #[test]
    fn every_command_and_argument_has_a_help_text() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        let mut walk = vec![(String::new(), &cli)];
        while let Some((path, cmd)) = walk.pop() {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("{name} (the command)"));
                }
                for arg in sub.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
                    if arg.get_help().is_none() {
                        missing.push(format!("{name} {}", arg.get_id()));
                    }
                }
                walk.push((name, sub));
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
        let test = cli.find_subcommand("test").unwrap().get_about().unwrap().to_string() + &cli.find_subcommand("test").unwrap().get_long_about().map(|a| a.to_string()).unwrap_or_default();
        assert!(test.contains("2: the event"), "`test --help` names exit code 2: {test}");
    }
}
