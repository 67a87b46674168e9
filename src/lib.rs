//! hms-sync: a supervised, actor-based runtime that keeps HMS and the outside systems
//! around it in sync.
//!
//! # Layout
//! - [`settings`]: typed settings layered by the `config` crate.
//! - [`startup`]: builds the service (database, actors, HTTP server) and runs it.
//! - [`spec`]: connector files — model, pure validation, loading.
//! - [`mapping`]: templates, filters and mapping tables, compiled once per connector.
//! - [`metrics`]: Prometheus metrics, labelled by connector.
//! - [`delivery`]: sending a request with awc, outcome classification, retry policy.
//! - [`demo`]: `up --demo`: the built-in demo target and a first sync to show.
//! - [`actors`]: the Bus (match, store durably, acknowledge), Registry → ConnectorSupervisor
//!   → Lane / Puller / Retrier on the worker pool, the Committer (the one group-commit writer), Governance.
//! - [`sync`]: two-way sync: inbound jobs, record links, echo suppression, resolvers.
//! - [`storage`]: data access over sea-orm (SQLite or PostgreSQL).
//! - [`admin`]: the admin HTTP API.
//! - [`cli`]: the `hms-sync` command line.
//! - [`telemetry`]: the tracing subscriber.
//! - [`webhook`]: inbound webhooks' signature verification (their intake is in [`admin`]).

pub mod actors;
pub mod admin;
pub mod cli;
pub mod console;
pub mod delivery;
pub mod demo;
pub mod mapping;
pub mod metrics;
pub mod settings;
pub mod spec;
pub mod startup;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod webhook;
