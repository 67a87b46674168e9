//! Reloading the connectors folder while the service runs (SIGHUP, `up --watch`,
//! `POST /reload`): validate every file first, then add, hot-replace (queued
//! work kept, as the API's replace) and remove file connectors to match the folder.
//!
//! The rule for a connector that is both a file and stored in the database: at start-up
//! that is an error (nothing starts). While running, the API owns the ids it registered (a
//! file with such an id is refused, the API's connector keeps running) and files own
//! theirs (`PUT`/`DELETE` of a file's id answer 409). An invalid file keeps its old version
//! running and is reported; a file that is gone takes its connector with it (its queued
//! jobs stay in the database, for when it comes back).

use std::path::Path;

use actix::prelude::*;
use serde::Serialize;

use super::{Origin, Registry};
use crate::spec::LoadedSpec;
use crate::storage::Db;

/// A file the reload did not apply, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Refused {
    pub file: String,
    pub reason: String,
}

/// What a reload did, by connector id.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Files not applied: invalid (their old version, if any, keeps running) or in
    /// conflict with a connector registered over the API.
    pub refused: Vec<Refused>,
}

/// The connectors folder as it is now: the valid files (each with its persisted pause
/// flag) and the paths of the invalid ones.
#[derive(Message)]
#[rtype(result = "ReloadReport")]
pub struct ReloadFiles {
    pub valid: Vec<(LoadedSpec, bool)>,
    pub invalid: Vec<Refused>,
}

impl Handler<ReloadFiles> for Registry {
    type Result = MessageResult<ReloadFiles>;
    fn handle(&mut self, msg: ReloadFiles, _: &mut Context<Self>) -> Self::Result {
        let mut report = ReloadReport { refused: msg.invalid, ..Default::default() };
        let invalid_paths: Vec<String> = report.refused.iter().map(|r| r.file.clone()).collect();
        let valid_ids: Vec<String> = msg.valid.iter().map(|(l, _)| l.spec.id.clone()).collect();
        // Gone: file connectors whose file is neither valid now nor invalid (kept).
        let gone: Vec<String> = self
            .connectors
            .iter()
            .filter(|(id, e)| e.origin == Origin::File && !valid_ids.contains(id) && !invalid_paths.contains(&e.origin_path))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(entry) = self.drop_connector(&id) {
                tracing::info!(connector = %id, file = %entry.origin_path, "connector file gone: connector removed (its queued jobs stay)");
                report.removed.push(id);
            }
        }
        for (loaded, paused) in msg.valid {
            let id = loaded.spec.id.clone();
            let file = loaded.origin.clone();
            let refuse = |report: &mut ReloadReport, reason: String| {
                tracing::error!(file = %file, reason = %reason, "connector file not applied");
                report.refused.push(Refused { file: file.clone(), reason });
            };
            if let Err(e) = self.check_paths(&loaded.spec) {
                refuse(&mut report, e.to_string());
                continue;
            }
            match self.connectors.get_mut(&id) {
                Some(e) if e.origin == Origin::Api => {
                    refuse(&mut report, format!("connector `{id}` is registered over the API; delete it there (DELETE /connectors/{id}) or give the file another id"));
                }
                // The same text and the same spec (a mapping file may have changed alone).
                Some(e) if e.source == loaded.source && serde_json::to_value(&*e.shared.spec).ok() == serde_json::to_value(&loaded.spec).ok() => {
                    e.origin_path = loaded.origin;
                    report.unchanged.push(id);
                }
                Some(_) => match self.replace(&id, loaded.spec, loaded.source) {
                    Ok(()) => {
                        if let Some(e) = self.connectors.get_mut(&id) {
                            e.origin_path = loaded.origin;
                        }
                        tracing::info!(connector = %id, file = %file, "connector file changed: connector replaced (queued work kept)");
                        report.replaced.push(id);
                    }
                    Err(e) => refuse(&mut report, e.to_string()),
                },
                None => match self.start(loaded, Origin::File, paused) {
                    Ok(()) => {
                        tracing::info!(connector = %id, file = %file, "connector file added: connector started");
                        report.added.push(id);
                    }
                    Err(e) => refuse(&mut report, e.to_string()),
                },
            }
        }
        self.reindex();
        MessageResult(report)
    }
}

/// Reads the connectors folder `dir`, validates every file, and applies the result (see
/// the module's rule). `Err`: the folder cannot be read (nothing changed).
pub async fn reload_files(registry: &Addr<Registry>, db: &Db, dir: &Path) -> Result<ReloadReport, String> {
    let (valid, invalid) = crate::spec::load_each(dir).map_err(|e| e.to_string())?;
    let invalid: Vec<Refused> = invalid
        .into_iter()
        .map(|(file, errors)| {
            tracing::error!(file = %file, errors = %errors, "invalid connector file: its old version (if any) keeps running");
            Refused { file, reason: errors.to_string() }
        })
        .collect();
    let mut with_pause = Vec::with_capacity(valid.len());
    for loaded in valid {
        let paused = super::load_paused(db, &loaded.spec.id).await.map_err(|e| e.to_string())?;
        with_pause.push((loaded, paused));
    }
    let report = registry.send(ReloadFiles { valid: with_pause, invalid }).await.map_err(|e| e.to_string())?;
    tracing::info!(added = ?report.added, replaced = ?report.replaced, removed = ?report.removed, refused = report.refused.len(), "connectors folder reloaded");
    Ok(report)
}
