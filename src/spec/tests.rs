//! The validation table: documents that must be accepted, and documents that must be
//! refused with a given error (path, position, message).

use super::*;

fn errors(text: &str) -> Vec<SpecError> {
    parse("t.yaml", text).expect_err("should be refused").0
}

fn has(errs: &[SpecError], path: &str, needle: &str) -> bool {
    errs.iter().any(|e| e.path == path && e.message.contains(needle))
}

#[test]
fn the_shipped_examples_are_accepted() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/connectors");
    let all = load_dir(std::path::Path::new(dir)).expect("examples are valid");
    let ids: Vec<_> = all.iter().map(|l| l.spec.id.as_str()).collect();
    assert_eq!(ids, ["appointment", "arcgis.roadwork.v1", "calendar.crew-shifts.v1", "ddot.gis.outbound.v1", "NotesCalendar", "stripe.lane-fee.v1"]);
    let by_id = |id: &str| &all.iter().find(|l| l.spec.id == id).unwrap().spec;
    let gis = by_id("ddot.gis.outbound.v1");
    assert_eq!(gis.filter(), Some("object.agency == \"DDOT\""));
    assert_eq!(gis.retry.max, 5);
    assert_eq!(gis.retry.backoff_ms, 3000);
    assert_eq!(gis.secret_names(), ["ARC_TOKEN"]);
    let notes = by_id("NotesCalendar");
    assert_eq!(notes.mapping[1], ("startAt".to_string(), "BeginTime".to_string()));
    assert_eq!(notes.pull_view().unwrap().every, std::time::Duration::from_secs(30));
}

#[test]
fn json_documents_are_accepted() {
    let spec = parse(
        "c.json",
        r#"{"id": "a", "type": "outbound", "trigger": {"topic": ["x", "y"]}, "map": {"to": {"url": "http://h/{{ id }}"}}}"#,
    )
    .unwrap();
    assert_eq!(spec.topics(), ["x", "y"]);
    assert_eq!(spec.outbound_request().unwrap().method, "POST");
}

#[test]
fn refused_documents_say_where_and_what() {
    let bad = "id: x\ntype: outbound\ntrigger: { topic: t }\nmap:\n  to:\n    url: http://127.0.0.1:1/a\nretry: { max: many, backof: 3 }\n";
    let errs = errors(bad);
    assert_eq!(errs.len(), 2, "{errs:?}");
    let max = errs.iter().find(|e| e.path == "retry.max").unwrap();
    assert_eq!((max.line, max.column), (7, 15));
    assert!(max.message.contains("whole number") && max.message.contains("many"), "{max}");
    assert!(has(&errs, "retry.backof", "did you mean `backoffMs`"), "{errs:?}");
    assert_eq!(errs[0].to_string(), format!("t.yaml:7:15: retry.max: {}", max.message));

    let table: &[(&str, &str, &str)] = &[
        ("type: outbound\n", "id", "missing required key `id`"),
        ("id: 'a b'\ntype: outbound\n", "id", "letters, digits"),
        ("id: a\ntype: sideways\n", "type", "unknown type `sideways`"),
        ("id: a\ntype: outbound\nmap: { to: { url: 'http://h' } }\n", "trigger", "missing required key `trigger`"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\n", "map", "missing required key `map`"),
        ("id: a\ntype: outbound\ntrigger: { topic: t, filter: 'a ==' }\nmap: { to: { url: 'http://h' } }\n", "trigger.filter", "invalid filter"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'ftp://h' } }\n", "map.to.url", "http://"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h', method: FETCH } }\n", "map.to.method", "unknown method"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h', body: { a: '{{ x' } } }\n", "map.to.body.a", "invalid template"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\ncolour: red\n", "colour", "unknown key"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\nsource: { pull: { url: 'http://h' } }\n", "source", "has no source"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\n", "source", "missing required key `source`"),
        ("id: a\ntype: two-way\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\nsource: { pull: { url: 'http://h' } }\n", "map.hms", "missing required key `hms`"),
        ("id: a\ntype: two-way\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' }, hms: { url: 'http://h' } }\nsource: { pull: { url: 'http://h' } }\n", "key", "missing required key `key`"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\nresolve: manual\n", "resolve", "nothing to resolve"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\nsource: { webhook: { path: /hooks/x, verify: { scheme: token, secret: '${T}' } } }\n", "source.webhook.path", "/webhook/NAME"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\nsource: { webhook: { verify: { scheme: token, secret: 'plain-text' } } }\n", "source.webhook.verify.secret", "environment variable"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\nsource: { webhook: { verify: { scheme: hmac } } }\n", "source.webhook.verify.scheme", "unknown scheme"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\nsource: { webhook: { path: /webhook/x } }\n", "source.webhook.verify", "missing required key `verify`"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\nsource: { pull: { url: 'http://h', records: '$.a[*].b[*]' } }\n", "source.pull.records", "unsupported selector"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\nsource: { pull: { url: 'http://h', next: { link: '$.n', page: 1 } } }\n", "source.pull.next", "exactly one"),
        ("id: a\ntype: two-way\nkey: '{{ id }}'\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' }, hms: { url: 'http://h' } }\nsource: { pull: { url: 'http://h' } }\nresolve: { policy: fields }\n", "resolve.owners", "needs `owners`"),
        ("id: a\ntype: two-way\nkey: '{{ id }}'\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' }, hms: { url: 'http://h' } }\nsource: { pull: { url: 'http://h' } }\nresolve: newest\n", "resolve", "unknown policy"),
        ("id: a\ntype: inbound\nmap: { hms: { url: 'http://h' } }\nsource: { pull: { url: 'http://h', every: soon } }\n", "source.pull.every", "duration"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\nretry: { backoffMs: 10, maxBackoffMs: 5 }\n", "retry.maxBackoffMs", "at least backoffMs"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\ntimeoutMs: 0\n", "timeoutMs", "from 1 to"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\nsupervision: { maxRestart: 1 }\n", "supervision.maxRestart", "did you mean `maxRestarts`"),
        ("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h', headers: { X: 1 } } }\n", "map.to.headers.X", "expected a string"),
        ("- just\n- a list\n", "", "expected a mapping"),
        ("id: [unclosed\n", "", "not valid YAML"),
        ("", "", "empty"),
    ];
    for (doc, path, needle) in table {
        let errs = errors(doc);
        assert!(has(&errs, path, needle), "document {doc:?}: wanted `{path}` with {needle:?}, got {errs:?}");
        assert!(errs.iter().all(|e| e.line >= 1 && e.column >= 1 && e.file == "t.yaml"));
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = errors("id: 'no good'\ntype: nope\ncolour: 1\nretry: { max: -1 }\n");
    for path in ["id", "type", "colour", "retry.max"] {
        assert!(errs.iter().any(|e| e.path == path), "{path} missing from {errs:?}");
    }
}

#[test]
fn the_config_round_trips_with_the_files_key_names() {
    let spec = parse("t.yaml", "id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://h' } }\nretry: { max: 2, backoffMs: 20 }\n").unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["retry"]["backoffMs"], 20);
    assert_eq!(json["type"], "outbound");
    assert_eq!(json["timeoutMs"], 15000);
}

/// Seed 002's connector exactly as the user's document prints it (section 3.1).
const SEED_002: &str = r#"# connectors/gis-ddot.yaml
id: ddot.gis.outbound.v1
type: outbound
trigger: 
  topic: permit.updated           # HMS event bus
  filter: object.agency == "DDOT"
map:
  from: canonical                 # see Chapter 13
  to: 
    url: "https://services.arcgis.com/item/roadwork/{permitId}"
    method: PATCH
    headers: { "Authorization": "Bearer ${ARC_TOKEN}" }
    body:
      start_date: "{{ startDate }}"        # template vars
      end_date:   "{{ endDate }}"
      status:     "{{ status }}"
retry:
  max: 5
  backoffMs: 3000
"#;

#[test]
fn the_seed_connector_is_accepted_exactly_as_written() {
    let spec = parse("gis-ddot.yaml", SEED_002).expect("the seed's own text is valid");
    assert_eq!(spec.id, "ddot.gis.outbound.v1");
    let req = spec.outbound_request().unwrap();
    assert_eq!((req.method.as_str(), req.url.as_str()), ("PATCH", "https://services.arcgis.com/item/roadwork/{permitId}"));
    assert_eq!(spec.map.as_ref().unwrap().from.as_deref(), Some("canonical"));
}

#[test]
fn resolver_rules_merge_and_retry_on_are_validated() {
    let two_way = |resolve: &str, retry: &str| {
        format!(
            "id: c\ntype: two-way\ntrigger: {{ topic: t }}\nkey: \"{{{{ id }}}}\"\nmap:\n  to: {{ url: \"http://h/{{{{ id }}}}\", method: PUT }}\n  hms: {{ url: \"http://hms/{{{{ id }}}}\", method: PATCH }}\nsource:\n  webhook: {{ verify: {{ scheme: none }} }}\nresolve:\n{resolve}\nretry: {retry}\n"
        )
    };
    let ok = parse(
        "c.yaml",
        &two_way(
            "  policy: merge\n  conflicts: manual\n  rules:\n    - when: 'hms.editedBy.role == \"manager\"'\n      then: hms-wins\n  fetch: { legacy: { url: \"http://h/{{ id }}\" } }",
            "{ max: 3, on: [409, 5xx] }",
        ),
    )
    .unwrap();
    let r = ok.resolve.as_ref().unwrap();
    assert_eq!((r.policy, r.conflicts, r.rules[0].then), (model::Policy::Merge, model::FieldRule::Manual, model::Policy::HmsWins));
    let on = ok.retry.on.unwrap();
    assert!(on.contains(409) && on.contains(503) && !on.contains(404));
    assert_eq!(on.entries(), ["409", "5xx"]);

    let errs = errors(&two_way(
        "  conflicts: sometimes\n  rules:\n    - when: 'hms.role =='\n      then: everybody-wins\n    - then: manual\n    - when: hms.x\n      then: manual",
        "{ on: [200x, 42] }",
    ));
    assert!(has(&errs, "resolve.conflicts", "expected one of last-writer, manual"), "{errs:#?}");
    assert!(has(&errs, "resolve.rules[0].when", "invalid rule condition"), "{errs:#?}");
    assert!(has(&errs, "resolve.rules[0].then", "unknown policy `everybody-wins`"), "{errs:#?}");
    assert!(has(&errs, "resolve.rules[1].when", "missing required key `when`"), "{errs:#?}");
    assert!(has(&errs, "resolve.rules", "add `fetch`"), "{errs:#?}");
    assert!(has(&errs, "retry.on[0]", "expected an HTTP status"), "{errs:#?}");
    assert!(has(&errs, "retry.on[1]", "expected an HTTP status"), "{errs:#?}");
}

#[test]
fn an_id_hms_assigns_is_read_from_the_create_answer() {
    let spec = parse(
        "t.yaml",
        "id: c\ntype: inbound\nkey: \"{{ id }}\"\nmap:\n  hms: { url: 'http://hms/{{ link.hmsId }}', method: PATCH }\n  hmsCreate: { url: 'http://hms/', idField: id }\nsource: { webhook: { verify: { scheme: none } } }\n",
    )
    .expect("accepted");
    assert!(spec.assigns_ids(crate::spec::model::Side::Hms));
    let errs = errors(
        "id: c\ntype: inbound\nmap:\n  hms: { url: 'http://hms/{{ link.hmsId }}', method: PATCH }\n  hmsCreate: { url: 'http://hms/', idField: '$$bad' }\nsource: { webhook: { verify: { scheme: none } } }\n",
    );
    assert!(errs.iter().any(|e| e.path == "map.hmsCreate.idField"), "{errs:#?}");
}

/// Issue 11, item 18: a request without `url` got two errors, one of them a wrong
/// "missing required key `to`".
#[test]
fn a_request_without_url_gets_one_error() {
    let errs = errors("id: a\ntype: outbound\ntrigger: { topic: t }\nmap:\n  to:\n    method: PATCH\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(has(&errs, "map.to.url", "missing required key `url`"), "{errs:#?}");
    let errs = errors("id: a\ntype: inbound\nsource: { webhook: { verify: { scheme: none } } }\nmap:\n  hms: { method: PATCH }\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(has(&errs, "map.hms.url", "missing required key `url`"), "{errs:#?}");
    // Absent, it is still named.
    assert!(has(&errors("id: a\ntype: outbound\ntrigger: { topic: t }\nmap: { hms: { url: 'http://h' } }\n"), "map.to", "missing required key `to`"));
}

/// Issue 15, item 2: what each body encoding takes.
#[test]
fn body_encodings_are_checked_against_their_bodies() {
    let doc = |to: &str| format!("id: e\ntype: outbound\ntrigger: {{ topic: t }}\nmap:\n  to:\n    url: http://127.0.0.1:1/x\n{to}");
    assert!(parse("t.yaml", &doc("    encoding: form\n    body: { a: \"{{ a }}\" }\n")).is_ok());
    assert!(parse("t.yaml", &doc("    encoding: xml\n    body: \"<a>{{ a }}</a>\"\n")).is_ok());
    assert!(has(&errors(&doc("    encoding: yaml\n")), "map.to.encoding", "unknown encoding `yaml`: expected one of json, form, xml, text"));
    assert!(has(&errors(&doc("    encoding: xml\n    body: { a: 1 }\n")), "map.to.body", "expected the XML document as one template"));
    assert!(has(&errors(&doc("    encoding: form\n    body: \"a=1\"\n")), "map.to.body", "expected the form's fields (a mapping)"));
    assert!(has(&errors(&doc("    encoding: text\n")), "map.to.body", "missing required key `body`"));
}

/// Issue 15, item 1: what each `auth` type takes.
#[test]
fn auth_types_are_checked() {
    let doc = |auth: &str| format!("id: a\ntype: outbound\ntrigger: {{ topic: t }}\nmap: {{ to: {{ url: 'http://127.0.0.1:1/x' }} }}\nauth: {auth}\n");
    for ok in [
        "{ type: basic, username: \"${U}\", password: \"${P}\" }",
        "{ type: bearer, token: \"${T}\" }",
        "{ type: apiKey, header: X-Api-Key, value: \"${K}\" }",
        "{ type: oauth2, tokenUrl: \"https://login.example.gov/token\", clientId: hms, clientSecret: \"${S}\" }",
        "{ type: oauth2, grant: refresh_token, tokenUrl: \"https://login.example.gov/token\", clientId: hms, refreshToken: \"${R}\" }",
    ] {
        let spec = parse("t.yaml", &doc(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(!spec.secret_names().is_empty(), "auth secrets are the connector's secrets: {ok}");
    }
    assert!(has(&errors(&doc("{ type: kerberos }")), "auth.type", "unknown auth type `kerberos`"));
    assert!(has(&errors(&doc("{ type: apiKey, value: x }")), "auth", "name exactly one"));
    assert!(has(&errors(&doc("{ type: bearer, token: x, username: u }")), "auth.username", "not used by auth type `bearer`"));
    assert!(has(&errors(&doc("{ type: oauth2, grant: refresh_token, tokenUrl: 'https://x', clientId: c }")), "auth.refreshToken", "missing required key"));
}
