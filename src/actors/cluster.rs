//! Cluster membership: this process's row in `instances`, its heartbeat (every third of
//! `cluster.lease_secs`, at most 2 s apart; times from the database's clock) and what it holds, so that
//! `GET /cluster` on any instance lists them all.

use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use super::registry::Registry;
use crate::storage::{self, Db};

pub struct Heartbeat {
    db: Db,
    /// This process's id in `instances` (a UUIDv7, new at each start).
    pub id: String,
    address: String,
    registry: Addr<Registry>,
    every: Duration,
    /// A beat is being written; the next tick skips rather than piling up.
    beating: bool,
}

impl Heartbeat {
    pub fn new(db: Db, id: String, address: String, registry: Addr<Registry>, lease: Duration) -> Self {
        Self { db, id, address, registry, every: beat_interval(lease), beating: false }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.beating {
            return;
        }
        self.beating = true;
        let (db, id, address, registry) = (self.db.clone(), self.id.clone(), self.address.clone(), self.registry.clone());
        ctx.spawn(
            async move {
                let holds = holdings(&db, &id, &registry).await;
                storage::beat(&db, &id, &address, env!("CARGO_PKG_VERSION"), &holds).await
            }
            .into_actor(self)
            .map(|res, act, _| {
                act.beating = false;
                if let Err(e) = res {
                    tracing::warn!(error = %e, "cannot write this instance's heartbeat; will try again");
                }
            }),
        );
    }
}

/// How often an instance beats: a third of the lease, and at least every 2 s so the cluster
/// view stays current with a long lease.
fn beat_interval(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(2))
}

/// What this instance holds, for the cluster view: the connectors it runs and those it pulls
/// (whose pull lease it holds).
async fn holdings(db: &Db, id: &str, registry: &Addr<Registry>) -> serde_json::Value {
    let connectors = registry.send(super::registry::ConnectorIds).await.unwrap_or_default();
    let leases = storage::leases_held(db, id).await.unwrap_or_default();
    let pullers: Vec<&str> = leases.iter().filter_map(|l| l.strip_prefix(PULL_LEASE)).collect();
    json!({ "connectors": connectors.len(), "pullers": pullers })
}

/// The lease a connector's Puller holds while it pulls: `pull:ID`.
pub const PULL_LEASE: &str = "pull:";

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |act, ctx| act.beat(ctx));
    }
}

/// This instance stops cleanly: its row goes (answered once it is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for Heartbeat {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        let (db, id) = (self.db.clone(), self.id.clone());
        Box::pin(
            async move {
                if let Err(e) = storage::release_leases(&db, &id).await {
                    tracing::warn!(error = %e, "cannot give this instance's leases back; they run out by themselves");
                }
                if let Err(e) = storage::remove_instance(&db, &id).await {
                    tracing::warn!(error = %e, "cannot remove this instance from `instances`; it will show as not alive");
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// Registers this instance before anything serves (a row with a first heartbeat). Other
/// live instances are named in a warning: they do not share jobs yet, so each delivers
/// every job (at least once, with the same `Idempotency-Key`).
pub async fn join(db: &Db, id: &str, address: &str, registry: &Addr<Registry>, lease: Duration) -> Result<(), storage::StorageError> {
    let lease = chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(10));
    for other in storage::list_instances(db, lease).await?.into_iter().filter(|i| i.alive) {
        tracing::warn!(
            instance = %other.id,
            address = %other.address,
            "another instance is alive on this database; instances do not share jobs yet, so both deliver every job (at least once, with the same Idempotency-Key)"
        );
    }
    let holds = holdings(db, id, registry).await;
    storage::register_instance(db, id, address, env!("CARGO_PKG_VERSION"), &holds).await
}

/// How often an instance of a cluster applies what the database says (the control plane):
/// a change made through any instance takes effect on the others within this.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Applies the control plane's state from the database on this instance, every
/// [`RECONCILE_EVERY`]: connectors registered, replaced or deleted over the API, pause flags
/// and the governance toggle, whichever instance they were changed through. Started on
/// PostgreSQL only (on SQLite one process owns the database).
pub struct Reconciler {
    db: Db,
    registry: Addr<Registry>,
    governance: Addr<super::Governance>,
    running: bool,
}

impl Reconciler {
    pub fn new(db: Db, registry: Addr<Registry>, governance: Addr<super::Governance>) -> Self {
        Self { db, registry, governance, running: false }
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let (db, registry, governance) = (self.db.clone(), self.registry.clone(), self.governance.clone());
        let read = async move {
            let enabled = super::governance::load_enabled(&db).await?;
            let api = storage::list_connectors(&db).await?;
            let paused = storage::settings_with_prefix(&db, "connector.")
                .await?
                .into_iter()
                .filter_map(|(key, value)| Some((key.strip_prefix("connector.")?.strip_suffix(".paused")?.to_string(), value.as_bool()?)))
                .collect();
            governance.do_send(super::governance::Adopt(enabled));
            registry.do_send(super::registry::Reconcile { api, paused });
            Ok::<(), storage::StorageError>(())
        };
        ctx.spawn(read.into_actor(self).map(|res, act, _| {
            act.running = false;
            if let Err(e) = res {
                tracing::warn!(error = %e, "cannot read the control plane's state; will try again");
            }
        }));
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(RECONCILE_EVERY, |act, ctx| act.reconcile(ctx));
    }
}
