//! `hms-sync up`: run the service until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::settings::Settings;
use crate::startup::Application;
use crate::telemetry;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Folder of connector files (default ./connectors).
    #[arg(long, value_name = "DIR")]
    pub connectors: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on (default 7500).
    #[arg(long)]
    pub port: Option<u16>,
    /// Database URL: sqlite:PATH or postgres://… (default: a SQLite file in ./data).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Show a sync with no outside system: every request goes to a built-in demo target on
    /// loopback, missing secrets get placeholders, and the seed's permit event is published.
    /// Without --database it runs on its own SQLite file (DATA_DIR/demo.db), new at each start.
    #[arg(long)]
    pub demo: bool,
    /// Watch the connectors folder and apply changes as they are saved (checked every
    /// second): a changed file hot-replaces its connector, a new one starts, a removed one
    /// stops; an invalid file keeps its old version running. SIGHUP does the same once.
    #[arg(long)]
    pub watch: bool,
}

pub fn run(config: Option<&Path>, args: UpArgs) -> ExitCode {
    let mut settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: settings: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = args.connectors {
        settings.connectors.dir = dir;
    }
    if let Some(host) = args.host {
        settings.server.host = host;
    }
    if let Some(port) = args.port {
        settings.server.port = port;
    }
    if let Some(url) = args.database {
        settings.database.url = Some(url);
    }
    if args.demo {
        settings.demo.enabled = true;
    }
    telemetry::init(&settings.log.format, &settings.log.level);
    // The demo starts from nothing each time, in its own file: connectors registered over
    // the API in an earlier run (or a real run's work) cannot become its headline.
    if settings.demo.enabled && settings.database.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
        let file = settings.default_database_file();
        for f in [file.clone(), file.with_extension("db-wal"), file.with_extension("db-shm")] {
            if let Err(e) = std::fs::remove_file(&f)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("error: cannot start the demo afresh: cannot remove {}: {e}", f.display());
                return ExitCode::from(2);
            }
        }
    }
    let host = settings.server.host.clone();
    let demo = settings.demo.enabled;
    let (watch, dir) = (args.watch, settings.connectors.dir.clone());
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await.map_err(|e| e.to_string())?;
        stop_on_signals(app.server_handle()).map_err(|e| format!("cannot install signal handlers: {e}"))?;
        reload_on_hangup(app.state().clone(), dir.clone()).map_err(|e| format!("cannot install signal handlers: {e}"))?;
        if watch {
            watch_folder(app.state().clone(), dir);
        }
        let base = format!("http://{host}:{}", app.port());
        println!("hms-sync is up on {base} (Ctrl-C to stop)");
        if demo {
            let state = app.state().clone();
            actix_web::rt::spawn(async move {
                if let Err(e) = crate::demo::show_a_sync(&state.bus, &state.db, &base).await {
                    eprintln!("demo: {e}");
                }
            });
        }
        app.run_until_stopped().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// SIGHUP re-reads the connectors folder (see [`reload`](crate::actors::registry::reload)).
fn reload_on_hangup(state: crate::admin::AppState, dir: PathBuf) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    actix_web::rt::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(signal = "SIGHUP", folder = %dir.display(), "reloading the connectors folder");
            reload(&state, &dir).await;
        }
    });
    Ok(())
}

/// `--watch`: the folder's fingerprint checked every second; a change reloads it. The first
/// fingerprint is taken here, before the service says it is up: a file saved right after
/// that line is a change.
fn watch_folder(state: crate::admin::AppState, dir: PathBuf) {
    let mut seen = crate::spec::folder_fingerprint(&dir);
    actix_web::rt::spawn(async move {
        tracing::info!(folder = %dir.display(), "watching the connectors folder");
        loop {
            actix_web::rt::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = crate::spec::folder_fingerprint(&dir);
            if now != seen {
                seen = now;
                reload(&state, &dir).await;
            }
        }
    });
}

async fn reload(state: &crate::admin::AppState, dir: &Path) {
    if let Err(e) = crate::actors::registry::reload::reload_files(&state.registry, &state.db, dir).await {
        tracing::error!(folder = %dir.display(), error = %e, "cannot reload the connectors folder; nothing changed");
    }
}

/// SIGINT and SIGTERM stop the server gracefully: it stops accepting, finishes open
/// requests, then `run_until_stopped` stops the connectors and flushes tickets. The
/// handlers are in place before the "up" line is printed, so a signal sent as soon as the
/// service says it is up is never lost.
fn stop_on_signals(handle: actix_web::dev::ServerHandle) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    actix_web::rt::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping");
        handle.stop(true).await;
    });
    Ok(())
}
