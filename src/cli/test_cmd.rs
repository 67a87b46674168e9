//! `hms-sync test FILE < event.json`: the dry run of a connector file, offline. Prints the
//! exact request (secrets masked) or why the event would be filtered or the job parked.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use crate::mapping::dry_run::{dry_run, format_request};
use crate::spec;

/// Exit codes: 0 the request would be sent; 3 the event would be filtered out; 1 the job
/// would be parked or the file is invalid; 2 the event cannot be read.
pub fn run(file: &Path, event: Option<&Path>, topic: Option<&str>, id: Option<&str>, current: Option<&Path>, json: bool) -> ExitCode {
    let loaded = match spec::load_file(file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let text = match read_event(event) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let event: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: the event is not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let current = match current.map(|p| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display())).and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| format!("{} is not valid JSON: {e}", p.display())))) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut run = dry_run(&loaded.spec, topic, &event, id.unwrap_or("<event-id>"));
    // A two-way change is decided before it is sent: say how.
    let decision = crate::sync::explain::explain(&loaded.spec, &event, current.as_ref());
    run.decision = decision.clone();
    if json {
        println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
    } else {
        if let Some(d) = &decision {
            println!("two-way: {}", d["summary"].as_str().unwrap_or_default());
        }
        match (&run.request, &run.reason) {
            (Some(req), _) => print!("{}", format_request(req)),
            (None, Some(reason)) => println!("{}: {}", run.verdict.to_uppercase(), reason),
            (None, None) => println!("{}", run.verdict.to_uppercase()),
        }
        for name in &run.missing_secrets {
            eprintln!("warning: ${{{name}}} is not set in this environment; at send time the job would be parked");
        }
        eprintln!("(dry run: nothing was sent or stored)");
    }
    match run.verdict {
        "send" => ExitCode::SUCCESS,
        "filtered" => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}

fn read_event(path: Option<&Path>) -> Result<String, String> {
    match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display())),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read the event from standard input: {e}"))?;
            if text.trim().is_empty() {
                return Err("no event: pipe one in (hms-sync test FILE < event.json) or pass --event FILE".into());
            }
            Ok(text)
        }
    }
}
