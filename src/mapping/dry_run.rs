//! Dry run: what a connector would do with one event — the exact request (secrets masked),
//! or why the event would be filtered out or the job parked. Pure apart from reading which
//! secrets are set (never their values): no network, no database.

use serde::Serialize;
use serde_json::Value;

use super::compiled::{CompiledConnector, RenderedRequest, masked_secrets};
use crate::spec::ConnectorSpec;

/// The verdict for one event.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub connector: String,
    /// `send`, `filtered` or `rejected`.
    pub verdict: &'static str,
    /// Why it is filtered or rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_key: Option<String>,
    /// The request that would be sent, `Idempotency-Key` included, secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RenderedRequest>,
    /// Secrets the request needs that are not set in this environment: at send time the
    /// job would be parked for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_secrets: Vec<String>,
    /// A two-way connector's decision for this change (filled by the caller, which can
    /// see the decision layer): policy, rules, and, given the other side's record, the
    /// verdict and the rule that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
}

/// Runs `event` (published on `topic`, or on the connector's first topic) through `spec`.
pub fn dry_run(spec: &ConnectorSpec, topic: Option<&str>, event: &Value, event_id: &str) -> DryRun {
    let mut out = DryRun {
        connector: spec.id.clone(),
        verdict: "rejected",
        reason: None,
        record_key: None,
        request: None,
        missing_secrets: Vec::new(),
        decision: None,
    };
    let compiled = match CompiledConnector::compile(spec) {
        Ok(c) => c,
        Err(e) => {
            out.reason = Some(e.to_string());
            return out;
        }
    };
    let topics = spec.topics();
    if topics.is_empty() {
        out.reason = Some(format!("an {} connector takes no HMS events: it has nothing to send for one", spec.direction_name()));
        return out;
    }
    let topic = topic.map(str::to_string).or_else(|| topics.first().cloned()).unwrap_or_default();
    if !topics.contains(&topic) {
        out.verdict = "filtered";
        out.reason = Some(format!("the connector does not listen on topic `{topic}` (it listens on: {})", topics.join(", ")));
        return out;
    }
    if !compiled.matches(&topic, event) {
        out.verdict = "filtered";
        out.reason = Some(format!("the filter `{}` is false for this event", spec.filter().unwrap_or_default()));
        return out;
    }
    // The event as the runtime holds it, shared by the key's render and the request's.
    let event_shared = crate::mapping::Payload::shared(event.clone());
    out.record_key = compiled.record_key(&event_shared, event_id).ok();
    // The write a first change of this record makes: a delete when the change deletes, a
    // create when the connector has one (no link yet), else the update.
    use crate::spec::model::{Side, Write};
    let write = if compiled.is_delete(&topic, event) && spec.delete_request(Side::Legacy).is_some() {
        Write::Delete
    } else if spec.create_request(Side::Legacy).is_some() {
        Write::Create
    } else {
        Write::Update
    };
    let names = ConnectorSpec::secrets_of(spec.write_request(Side::Legacy, write));
    let auth = spec.auth.as_ref().map(|a| a.secret_names()).unwrap_or_default();
    out.missing_secrets = names.iter().chain(&auth).filter(|n| std::env::var_os(n).is_none()).cloned().collect();
    out.missing_secrets.dedup();
    let key = out.record_key.clone().unwrap_or_else(|| event_id.to_string());
    let extras = serde_json::json!({ "current": null, "etag": "", "link": { "hmsId": key, "externalId": if write == Write::Create { serde_json::Value::Null } else { serde_json::Value::String(key.clone()) } } });
    match compiled.render_write(Side::Legacy, write, &event_shared, &extras, &masked_secrets(&names)) {
        Ok(Some(mut req)) => {
            req.headers.push(("Idempotency-Key".into(), format!("{}:{event_id}", spec.id)));
            if let Some((wire, content_type)) = req.wire_body() {
                if !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                    req.headers.push(("Content-Type".into(), content_type.into()));
                }
                // A form or a document is shown as it goes on the wire.
                if !req.encoding.is_json() {
                    req.body = Some(crate::mapping::Payload::shared(serde_json::Value::String(wire)));
                }
            }
            out.verdict = "send";
            out.request = Some(req);
        }
        Ok(None) => out.reason = Some("the connector has no outbound request (map.to)".into()),
        Err(e) => out.reason = Some(format!("the job would be parked: {e}")),
    }
    out
}

/// The request as text, the way it would go on the wire (for `hms-sync test`).
pub fn format_request(req: &RenderedRequest) -> String {
    let mut text = format!("{} {}\n", req.method, req.url);
    for (name, value) in &req.headers {
        text.push_str(&format!("{name}: {value}\n"));
    }
    match req.body.as_deref().map(crate::mapping::Payload::value) {
        Some(serde_json::Value::String(wire)) if !req.encoding.is_json() => {
            text.push('\n');
            text.push_str(wire);
            text.push('\n');
        }
        Some(body) => {
            text.push('\n');
            text.push_str(&serde_json::to_string_pretty(body).unwrap_or_default());
            text.push('\n');
        }
        None => {}
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gis() -> ConnectorSpec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/gis-ddot.yaml");
        crate::spec::load_file(std::path::Path::new(path)).unwrap().spec
    }

    #[test]
    fn shows_the_exact_request_with_secrets_masked() {
        let event = json!({"permitId": "RW-481", "agency": "DDOT", "startDate": "2024-05-10", "status": "APPROVED"});
        let run = dry_run(&gis(), None, &event, "e1");
        assert_eq!(run.verdict, "send", "{run:?}");
        let req = run.request.unwrap();
        assert_eq!(req.method, "PATCH");
        assert_eq!(req.url, "https://services.arcgis.com/item/roadwork/RW-481");
        assert!(req.headers.contains(&("Authorization".into(), "Bearer ${ARC_TOKEN:****}".into())), "{:?}", req.headers);
        assert!(req.headers.contains(&("Idempotency-Key".into(), "ddot.gis.outbound.v1:e1".into())));
        assert_eq!(req.body.as_deref().map(crate::mapping::Payload::value), Some(&json!({"start_date": "2024-05-10", "status": "APPROVED"})), "endDate is absent: left out");
    }

    #[test]
    fn says_why_an_event_is_filtered_or_rejected() {
        let run = dry_run(&gis(), None, &json!({"permitId": "RW-1", "agency": "DCPS"}), "e");
        assert_eq!((run.verdict, run.reason.as_deref()), ("filtered", Some("the filter `object.agency == \"DDOT\"` is false for this event")));
        let run = dry_run(&gis(), Some("fee.created"), &json!({}), "e");
        assert_eq!(run.verdict, "filtered");
        let run = dry_run(&gis(), None, &json!({"agency": "DDOT"}), "e");
        assert_eq!(run.verdict, "rejected");
        assert!(run.reason.unwrap().contains("permitId"), "the missing field is named");
    }
}
