//! The status of a connector as the admin API shows it.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The connector's state as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorState {
    Running,
    Paused,
    Restarting,
    Failed,
}

/// One child's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildState {
    Running,
    Restarting,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChildStatus {
    pub kind: &'static str,
    pub state: ChildState,
    pub restarts: u64,
    pub worker: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    pub id: String,
    #[serde(rename = "type")]
    pub direction: String,
    pub state: ConnectorState,
    /// Paused by an operator for this connector alone.
    pub paused: bool,
    /// `sync.enabled` is false: every connector holds.
    pub governance_paused: bool,
    pub children: Vec<ChildStatus>,
    pub restarts: u64,
    /// The last crashes of its children (at most 20), newest first, each with its reason.
    pub restart_history: Vec<LastError>,
    /// Why the connector is failed, or the last crash of one of its children.
    pub last_error: Option<LastError>,
    /// When an operator last restarted the connector on this instance (`POST
    /// /connectors/{id}/restart` through any instance of a cluster); not counted in `restarts`.
    pub restart_requested_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last failed delivery attempt (retried or parked), secrets scrubbed.
    pub last_delivery_error: Option<LastError>,
    /// `closed`, `open` (the target looks down: deliveries wait) or `half-open` (a probe is
    /// out), with `circuitBreaker`; always `closed` without.
    pub circuit: crate::delivery::breaker::Circuit,
    /// Secrets (`${NAME}`) the connector's requests name that are not set in the
    /// environment: a request that needs one parks its job.
    pub missing_secrets: Vec<String>,
    /// Jobs accepted and not yet delivered or parked.
    pub queue_depth: u64,
    pub counters: serde_json::Value,
    pub intensity: IntensityView,
    /// The connector's recent alerts, oldest first.
    pub alerts: Vec<super::alerter::AlertRecord>,
    /// The instance that answered (its children are the ones listed).
    pub instance: String,
    /// The instance pulling the connector now (holding its pull lease), cluster-wide; `null`
    /// when none does or the connector does not pull.
    pub pull_holder: Option<String>,
    /// On a cluster (PostgreSQL): the jobs each instance has in flight now, from the
    /// database (every live instance runs the connector's lane, retrier and puller; the
    /// puller pulls only on `pull_holder`). Empty on SQLite.
    pub in_flight_by_instance: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IntensityView {
    pub max_restarts: u32,
    pub within_secs: u64,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub immediate_first_restart: bool,
}
