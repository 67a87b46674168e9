//! `hms-sync validate FILE…`: every error of every file, then a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::spec;

pub fn run(files: &[PathBuf]) -> ExitCode {
    let mut bad_files = 0;
    let mut errors = 0;
    for path in files {
        match spec::load_file(path) {
            Ok(loaded) => println!("ok: {} ({}, {})", path.display(), loaded.spec.id, loaded.spec.direction_name()),
            Err(e) => {
                bad_files += 1;
                errors += e.0.len();
                for err in &e.0 {
                    eprintln!("{err}");
                }
            }
        }
    }
    if bad_files == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{errors} error(s) in {bad_files} of {} file(s)", files.len());
        ExitCode::from(1)
    }
}
