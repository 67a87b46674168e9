//! Fuzzed connector documents (issue 11): seeded mutants of the shipped connectors, each
//! parsed, validated, compiled and, when accepted, rendered through every request, on a
//! thread with an actix worker's stack. 0 panics and no death of the process. CI runs 2,000
//! cases; `HMS_SYNC_FUZZ_CASES=100000` runs more, `HMS_SYNC_FUZZ_FIRST` sets the first seed.
//! (`hms-sync bench --fuzz N` reports the slowest case and peak memory.) Its own test
//! binary: it silences the panic hook while it runs.

#[test]
fn fuzzed_connector_documents_never_panic_or_overflow_the_stack() {
    let n: u64 = std::env::var("HMS_SYNC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let first: u64 = std::env::var("HMS_SYNC_FUZZ_FIRST").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let report = std::thread::Builder::new().stack_size(2 * 1024 * 1024).spawn(move || hms_sync::cli::fuzz::run_cases(first, n)).unwrap().join();
    std::panic::set_hook(previous);
    let report = report.expect("the fuzz thread ran");
    eprintln!(
        "{} cases: {} accepted, {} refused, {} compile errors; slowest seed {} ({:?})",
        report.cases, report.accepted, report.refused, report.compile_errors, report.slowest.0, report.slowest.1
    );
    assert!(report.panics.is_empty(), "{} case(s) panicked (reproduce with HMS_SYNC_FUZZ_FIRST=SEED HMS_SYNC_FUZZ_CASES=1): {:?}", report.panics.len(), report.panics);
    assert!(report.accepted > 0 && report.refused > 0, "the mutants reach both outcomes: {report:?}");
}
