//! Governance: the global `sync.enabled` toggle, persisted in `settings` so it survives a
//! restart; every change is passed to the Registry, which tells every connector.

use actix::prelude::*;
use serde_json::json;

use crate::storage::{self, Db, StorageError};

/// The settings key of the toggle (the seed's `sync.enabled`).
pub const SYNC_ENABLED_KEY: &str = "sync.enabled";

pub struct Governance {
    db: Db,
    enabled: bool,
    /// When this instance last set the toggle (its write committed): an `Adopt` read before
    /// that is older than the change, and ignored.
    set_at: Option<std::time::Instant>,
    /// Told of every change; the Registry in the running service.
    listener: Option<Recipient<GovernanceChanged>>,
}

/// Reads the persisted toggle; absent means enabled.
pub async fn load_enabled(db: &Db) -> Result<bool, StorageError> {
    Ok(storage::get_setting(db, SYNC_ENABLED_KEY).await?.and_then(|v| v.as_bool()).unwrap_or(true))
}

impl Governance {
    pub fn new(db: Db, enabled: bool) -> Self {
        Self { db, enabled, set_at: None, listener: None }
    }
}

impl Actor for Governance {
    type Context = Context<Self>;
}

/// The toggle changed.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct GovernanceChanged {
    pub enabled: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetListener(pub Recipient<GovernanceChanged>);

impl Handler<SetListener> for Governance {
    type Result = ();
    fn handle(&mut self, msg: SetListener, _: &mut Context<Self>) {
        self.listener = Some(msg.0);
    }
}

#[derive(Message)]
#[rtype(result = "bool")]
pub struct GetEnabled;

impl Handler<GetEnabled> for Governance {
    type Result = bool;
    fn handle(&mut self, _: GetEnabled, _: &mut Context<Self>) -> bool {
        self.enabled
    }
}

/// The toggle as another instance set it (read from the database): applied here, not
/// written again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt {
    pub enabled: bool,
    /// When the read of the database began.
    pub read_at: std::time::Instant,
}

impl Handler<Adopt> for Governance {
    type Result = ();
    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) {
        if self.set_at.is_some_and(|t| t >= msg.read_at) {
            return;
        }
        if self.enabled != msg.enabled {
            self.enabled = msg.enabled;
            tracing::info!(enabled = msg.enabled, "governance: sync toggled by another instance");
            if let Some(l) = &self.listener {
                l.do_send(GovernanceChanged { enabled: msg.enabled });
            }
        }
    }
}

/// Turn syncing on or off everywhere. Persisted before it takes effect, so an answer of
/// success means it survives a crash.
#[derive(Message)]
#[rtype(result = "Result<bool, StorageError>")]
pub struct SetEnabled(pub bool);

impl Handler<SetEnabled> for Governance {
    type Result = ResponseActFuture<Self, Result<bool, StorageError>>;
    fn handle(&mut self, msg: SetEnabled, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        Box::pin(
            async move { storage::put_setting(&db, SYNC_ENABLED_KEY, &json!(msg.0)).await.map(|_| msg.0) }
                .into_actor(self)
                .map(|res, act, _| {
                    if let Ok(enabled) = res {
                        act.enabled = enabled;
                        act.set_at = Some(std::time::Instant::now());
                        tracing::info!(enabled, "governance: sync toggled");
                        if let Some(l) = &act.listener {
                            l.do_send(GovernanceChanged { enabled });
                        }
                    }
                    res
                }),
        )
    }
}
