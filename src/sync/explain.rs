//! What a dry run says of a two-way change: how it would be decided before it is sent
//! (policy, rules, the reads), and, given the external system's current record, the
//! verdict and the rule that decided. Pure: the decision itself, nothing sent or stored.

use serde_json::{Value, json};

use super::engine::{Current, Kind, Rules, Verdict, decide, side_name};
use crate::mapping::CompiledConnector;
use crate::mapping::fields;
use crate::spec::ConnectorSpec;
use crate::spec::model::{ResolveSpec, Side};

/// `None` for a connector that is not two-way. `event` is the HMS change; `current`, when
/// given, the external system's record in its own fields (as a read would return it).
pub fn explain(spec: &ConnectorSpec, event: &Value, current: Option<&Value>) -> Option<Value> {
    if !spec.two_way() {
        return None;
    }
    let fallback = ResolveSpec::default();
    let resolve = spec.resolve.as_deref().unwrap_or(&fallback);
    let rules = Rules { resolve, table: &spec.mapping };
    let policy = serde_json::to_value(resolve.policy).unwrap_or(Value::Null);
    let listed: Vec<Value> = resolve.rules.iter().map(|r| json!({ "when": r.when, "then": r.then })).collect();
    let reads = resolve.fetch_legacy.is_some();
    let Some(current) = current else {
        let summary = if reads {
            format!("decided at send time against the external system's current record (resolve.fetch.legacy); policy {policy}, {} rule(s); pass --current to see the verdict", listed.len())
        } else {
            format!("the external system is not read (no resolve.fetch.legacy): the change is applied unless the link shows an echo or a stale change; policy {policy}")
        };
        return Some(json!({ "policy": policy, "rules": listed, "summary": summary }));
    };
    let rule = CompiledConnector::compile(spec).ok().and_then(|c| c.rule_hit(event, current));
    let in_hms = if spec.mapping.is_empty() { current.clone() } else { fields::map_in(current, &spec.mapping) };
    // A dry run knows no link: the two records are compared as never synced.
    let verdict = decide(&rules, None, Side::Hms, event, Kind::Change, &Current::Present(event.clone()), &Current::Present(in_hms), rule);
    let (what, to, why) = match &verdict {
        Verdict::Apply { to, why, .. } => ("apply", Some(*to), why.clone()),
        Verdict::Delete { to, why, .. } => ("delete", Some(*to), why.clone()),
        Verdict::AlreadyThere { why, .. } => ("already there", None, why.clone()),
        Verdict::Skip { reason, .. } => ("skip", None, reason.clone()),
        Verdict::Conflict { reason } => ("conflict", None, reason.clone()),
    };
    let rule_text = rule.and_then(|i| resolve.rules.get(i)).map(|r| format!("rule {} ({})", rule.unwrap_or(0) + 1, r.when));
    let summary = match to {
        Some(side) => format!("{what} to {}: {why}", side_name(side)),
        None => format!("{what}: {why}"),
    };
    Some(json!({
        "policy": policy,
        "rules": listed,
        "verdict": what,
        "to": to.map(|s| if s == Side::Hms { "hms" } else { "legacy" }),
        "why": why,
        "rule": rule_text,
        "summary": summary,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_names_the_rule_that_decides() {
        let yaml = "id: c\ntype: two-way\ntrigger: { topic: t }\nkey: \"{{ id }}\"\nmapping: { id: ShiftID, startAt: BeginTime, updatedAt: LastModified }\nmap:\n  to: { url: 'http://l/{{ id }}', method: PUT }\n  hms: { url: 'http://h/{{ id }}', method: PATCH }\nsource: { webhook: { verify: { scheme: none } } }\nresolve:\n  rules:\n    - when: 'hms.editedBy.role == \"manager\"'\n      then: hms-wins\n  fetch: { legacy: { url: 'http://l/{{ id }}' } }\n";
        let spec = crate::spec::parse("c.yaml", yaml).unwrap();
        let event = json!({"id": 7, "startAt": "09:00", "updatedAt": 5, "editedBy": {"role": "manager"}});
        let lotus = json!({"ShiftID": 7, "BeginTime": "08:00", "LastModified": 9});
        let d = explain(&spec, &event, Some(&lotus)).unwrap();
        assert_eq!(d["verdict"], "apply", "{d}");
        assert_eq!(d["to"], "legacy", "the manager's older edit wins by the rule: {d}");
        assert!(d["rule"].as_str().unwrap().starts_with("rule 1"), "{d}");
        // Without the rule holding, the newer Lotus record wins and goes to HMS.
        let d = explain(&spec, &json!({"id": 7, "startAt": "09:00", "updatedAt": 5}), Some(&lotus)).unwrap();
        assert_eq!((d["verdict"].as_str(), d["to"].as_str()), (Some("apply"), Some("hms")), "{d}");
        assert!(d["rule"].is_null());
        // No record given: how it will be decided.
        assert!(explain(&spec, &event, None).unwrap()["summary"].as_str().unwrap().contains("resolve.fetch.legacy"));
    }
}
