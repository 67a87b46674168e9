//! Typed settings, layered by the `config` crate: built-in defaults, an optional file,
//! then `HMS_SYNC__SECTION__KEY` environment variables.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the service can be told at start-up. Every field has a default so that
/// `hms-sync up` needs no setup at all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the default SQLite file lives.
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub connectors: ConnectorsSettings,
    pub supervision: SupervisionSettings,
    pub log: LogSettings,
    pub tickets: TicketSettings,
    pub delivery: DeliverySettings,
    pub demo: DemoSettings,
    pub alerts: AlertSettings,
    pub runtime: RuntimeSettings,
    pub cluster: ClusterSettings,
    pub bus: BusSettings,
}

/// Where HMS events come from besides `POST /events/{topic}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BusSettings {
    pub nats: NatsSettings,
}

/// HMS events from a NATS JetStream stream (`bus.nats.url` set): one durable pull consumer
/// shared by every instance, taken by one instance at a time (see `actors::nats`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// `nats://127.0.0.1:4222`; unset (the default): no NATS intake.
    pub url: Option<String>,
    /// The stream, created if missing.
    pub stream: String,
    /// The stream's subjects (when it is created).
    pub subjects: String,
    /// A message's topic is its subject after this prefix.
    pub prefix: String,
    /// The durable pull consumer's name.
    pub consumer: String,
    /// Most messages taken (and committed) at once.
    pub batch: usize,
    /// A message taken and not acknowledged within this is delivered again.
    pub ack_wait_secs: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: None,
            stream: "HMS_EVENTS".into(),
            subjects: "hms.events.>".into(),
            prefix: "hms.events.".into(),
            consumer: "hms-sync".into(),
            batch: 500,
            ack_wait_secs: 10,
        }
    }
}

/// Several instances on one PostgreSQL database. Nothing to set to form a cluster: every
/// instance registers itself; these only tune it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// An instance whose last heartbeat is older than this is not alive (it beats every
    /// third of it).
    pub lease_secs: u64,
    /// A connector's lane claims jobs from the shared queue at most this often while busy
    /// (a lane idle for longer claims at once); 0: at every wake. See docs/cluster.md.
    pub claim_gap_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self { lease_secs: 10, claim_gap_ms: 10 }
    }
}

/// Where connectors run: on a shared pool of worker threads (the default), or each on a
/// thread of its own.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Worker threads every connector's children and delivery attempts run on; 0: one per
    /// core, less one on a SQLite file (see `actors::pool::default_threads`).
    pub workers: usize,
    /// Give each connector a thread of its own instead (the design before the pool: a
    /// connector whose code blocks its thread cannot slow another, at the cost of a thread
    /// per connector and of one core at most per connector).
    pub dedicated_threads: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests do this).
    pub port: u16,
    /// Bearer token for the admin API. Without one the service refuses any
    /// non-loopback `host`, so an open admin API is never exposed by accident.
    pub admin_token: Option<String>,
    /// Largest request body accepted (events, webhooks, connector documents).
    pub max_body_bytes: usize,
    /// actix-web worker threads; 0: one per core, less one on a SQLite file (see
    /// `actors::pool::default_threads`).
    pub workers: usize,
    /// Routes `POST /connectors/{id}/faults`, which crashes connector children on demand.
    /// For tests and drills only; off by default.
    pub fault_injection: bool,
    /// Named tokens, each with a role (`[server.tokens.alice] role = "operator", token =
    /// "${ALICE_TOKEN}"`): what a person or a system may do, and whose name every change they
    /// make is recorded under. `admin_token` is the token named `admin`, role admin.
    pub tokens: std::collections::BTreeMap<String, NamedToken>,
}

/// One named token of `server.tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub role: Role,
    /// The secret itself, or `${NAME}`: read from the environment variable NAME at start-up
    /// (so settings files hold no secrets).
    pub token: String,
}

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything (connectors, tickets, parked jobs, the dry run).
    Viewer,
    /// Also pauses, resumes, restarts, syncs now, publishes, replays, discards, resolves.
    Operator,
    /// Also registers, replaces and removes connectors, reloads, and flips governance.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite:PATH` or `postgres://…`. Empty: `sqlite:{data_dir}/hms-sync.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorsSettings {
    /// Connector files (`*.yaml`, `*.yml`, `*.json`) loaded at start-up.
    pub dir: PathBuf,
}

/// OTP-style restart intensity, the default for connectors that do not set their own.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionSettings {
    /// At most this many restarts…
    pub max_restarts: u32,
    /// …within this many seconds; one more and the connector is `failed`.
    pub within_secs: u64,
    /// Wait before a restart; doubles with each restart inside the window.
    pub backoff_ms: u64,
    /// Cap of that doubling.
    pub max_backoff_ms: u64,
    /// The first restart in a window is immediate and the back-off applies from the second
    /// (OTP's timing: a one-off crash costs nothing); `false` waits `backoff_ms` first too.
    pub immediate_first_restart: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter such as `info` or `hms_sync=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketSettings {
    /// Rows (accepted jobs, outcomes, tickets) per transaction, about at most.
    pub batch_size: usize,
    /// The commit gap, in ms: while busy, the writer starts at most one transaction per gap,
    /// and what arrives meanwhile joins the next one; an entry that finds it quiet for a
    /// whole gap, or a batch of 16 entries, is written at once. 0: every batch at once (a
    /// transaction as soon as the previous one ends). Each transaction costs its statements
    /// and a commit whatever its size, so 2 ms take a fifth to a third off the CPU per event
    /// at 2,000 events/s, for at most that much latency (the README's performance section).
    pub flush_ms: u64,
    /// Tickets older than this many days are pruned (the hash chain keeps an anchor).
    pub retention_days: u32,
    /// How often pruning runs.
    pub prune_every_secs: u64,
}

/// How requests leave the process.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Send every outside request to this base URL instead (path and query kept, the real
    /// URL in the `X-Hms-Sync-Target` header): a staging capture, or the demo target.
    pub redirect_to: Option<String>,
}

/// `hms-sync up --demo`: built-in demo target on loopback, and a first event published.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DemoSettings {
    /// Serve `/demo/…`, redirect outside requests there, fill in missing secrets with
    /// placeholders. Never for production.
    pub enabled: bool,
}

/// Alerts: the seed's `rate(sync.fail) > 3 per 5m`, per connector, and one per parked job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Where alerts are POSTed as JSON; without one they are logged, counted and shown in
    /// the connector's status only.
    pub url: Option<String>,
    /// `rate(sync.fail) > N per DURATION` (s, m, h).
    pub rule: String,
    /// At most one alert of a kind per connector in this many seconds.
    pub min_interval_secs: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self { url: None, rule: "rate(sync.fail) > 3 per 5m".into(), min_interval_secs: 300 }
    }
}


impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            connectors: ConnectorsSettings { dir: PathBuf::from("./connectors") },
            supervision: SupervisionSettings::default(),
            log: LogSettings { format: "text".into(), level: "info".into() },
            tickets: TicketSettings::default(),
            delivery: DeliverySettings::default(),
            demo: DemoSettings::default(),
            alerts: AlertSettings::default(),
            runtime: RuntimeSettings::default(),
            cluster: ClusterSettings::default(),
            bus: BusSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 7500,
            admin_token: None,
            max_body_bytes: 1024 * 1024,
            workers: 0,
            fault_injection: false,
            tokens: Default::default(),
        }
    }
}

impl Default for ConnectorsSettings {
    fn default() -> Self {
        Self { dir: PathBuf::from("./connectors") }
    }
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        Self { max_restarts: 5, within_secs: 60, backoff_ms: 200, max_backoff_ms: 10_000, immediate_first_restart: true }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: "text".into(), level: "info".into() }
    }
}

impl Default for TicketSettings {
    fn default() -> Self {
        Self { batch_size: 500, flush_ms: 2, retention_days: 30, prune_every_secs: 3600 }
    }
}

impl Settings {
    /// Defaults, then `file` (TOML or YAML by extension) when given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder().add_source(config::Config::try_from(&Self::default())?);
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder
            .add_source(
                config::Environment::with_prefix("HMS_SYNC")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()
    }

    /// The database URL in force: the configured one, else a SQLite file under `data_dir`:
    /// `hms-sync.db`, or in demo mode `demo.db` (so a demo never mixes with real work).
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) if !url.trim().is_empty() => url.clone(),
            _ => format!("sqlite:{}", self.default_database_file().display()),
        }
    }

    /// The SQLite file used when no database URL is set.
    pub fn default_database_file(&self) -> PathBuf {
        self.data_dir.join(if self.demo.enabled { "demo.db" } else { "hms-sync.db" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_setup() {
        let s = Settings::load(None).unwrap();
        assert_eq!(s.server.port, 7500);
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.connectors.dir, PathBuf::from("./connectors"));
        assert!(s.database_url().starts_with("sqlite:"));
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("hms-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[server]\nport = 9999\n[supervision]\nmax_restarts = 2\n").unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.server.port, 9999);
        assert_eq!(s.supervision.max_restarts, 2);
        assert_eq!(s.supervision.within_secs, 60);
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hms-settings-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[server]\nprot = 1\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
    }
}
