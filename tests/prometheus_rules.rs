//! The shipped Prometheus alert rules (deploy/prometheus/alerts.yml): valid for promtool,
//! their unit test passes (the seed's `rate(sync.fail) > 3 per 5m` fires at the 4th failure
//! in 5 minutes, not the 3rd), and every metric they read is one the service exports.
//! promtool comes with Debian's `prometheus` package (`.ci/run` installs it); without it
//! the test is skipped with a message, or fails under `CI`.

use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

fn promtool() -> Option<Command> {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    ok.then(|| Command::new("promtool"))
}

fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd.output().expect("promtool runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_alert_rules_pass_promtool_and_read_exported_metrics() {
    let Some(mut check) = promtool() else {
        assert!(std::env::var_os("CI").is_none(), "promtool is not installed (.ci/run installs Debian's prometheus package)");
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
        return;
    };
    check.args(["check", "rules", "alerts.yml"]).current_dir(DIR);
    let (ok, out) = run(check);
    assert!(ok && out.contains("SUCCESS: 3 rules found"), "{out}");
    let mut test = promtool().unwrap();
    test.args(["test", "rules", "alerts_test.yml"]).current_dir(DIR);
    let (ok, out) = run(test);
    assert!(ok, "{out}");

    // A rules file promtool rejects is reported as such (what an operator's typo gets).
    let dir = std::env::temp_dir().join(format!("hms-sync-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.yml"), "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: increase(sync_fail_total[5m] > 3\n").unwrap();
    let mut bad = promtool().unwrap();
    bad.args(["check", "rules", "bad.yml"]).current_dir(&dir);
    let (ok, out) = run(bad);
    assert!(!ok && out.contains("FAILED"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);

    // Every metric the rules read is one the service registers.
    let rules = std::fs::read_to_string(format!("{DIR}/alerts.yml")).unwrap();
    let exported = include_str!("../src/metrics.rs");
    for metric in ["sync_fail_total", "sync_parked_jobs", "sync_pull_lag_seconds"] {
        assert!(rules.contains(metric), "{metric} is in the rules");
        assert!(exported.contains(&format!("\"{metric}\"")), "{metric} is exported by src/metrics.rs");
    }
}
