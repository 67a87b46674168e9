//! Two-way sync end to end, against a simulated Lotus Notes calendar and a simulated HMS
//! (see `helpers::twoway_sim`): the seed 000 story both ways with its echoes skipped, the
//! resolvers (last writer wins, hms-wins, legacy-wins, per-field owners, manual with
//! `POST /parked/{id}/resolve`), seed 004's appointment both ways, and a seeded, randomized
//! convergence run with injected faults.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::twoway_sim::*;
use crate::helpers::*;

const CONNECTOR: &str = "NotesCalendar";

/// The seed's NotesCalendar connector, aimed at the fakes; `resolve` is the body of the
/// `resolve:` mapping besides `versionField` and `fetch` (e.g. `policy: manual`).
/// With conditional writes when `conditional`: each write carries the revision
/// its decision read (`If-Match: {{ etag }}`), so an edit landing between the read and the
/// write is refused by the store (412) and decided again, never overwritten.
fn calendar_yaml_with(lotus: &FakeLotus, hms: &FakeHms, token_var: &str, resolve: &str, conditional: bool) -> String {
    let precondition = if conditional { "\n    headers: { If-Match: \"{{ etag }}\" }" } else { "" };
    r#"id: NotesCalendar
type: two-way
description: Ranger shifts, HMS <-> Lotus Notes calendar (test fakes)
trigger:
  topic: shift.updated
  webhook:
    path: /webhook/hms
    verify: { scheme: token, secret: "${@TOKEN@}" }
key: "{{ id }}"
deleted: object.deleted == true or object.Deleted == true
mapping:
  id: ShiftID
  startAt: BeginTime
  endAt: FinishTime
  assignee: RangerName
  updatedAt: LastModified
map:
  to:
    method: PUT
    url: "@LOTUS@/calendar/doc/ShiftID={id}"@PRECONDITION@
  hms:
    method: PATCH
    url: "@HMS@/api/shifts/{id}"@PRECONDITION@
  delete:
    method: DELETE
    url: "@LOTUS@/calendar/doc/ShiftID={id}"@PRECONDITION@
  hmsDelete:
    method: DELETE
    url: "@HMS@/api/shifts/{id}"@PRECONDITION@
source:
  pull:
    method: GET
    url: "@LOTUS@/calendar/changes?since={{ cursor }}"
    every: 1h
    records: "$.changes"
    idField: ShiftID
    cursorField: LastModified
    initialCursor: 0
resolve:
  @RESOLVE@
  versionField: updatedAt
  fetch:
    legacy: { url: "@LOTUS@/calendar/doc/ShiftID={id}" }
    hms: { url: "@HMS@/api/shifts/{id}" }
retry: { max: 5, backoffMs: 10 }
"#
    .replace("@TOKEN@", token_var)
    .replace("@LOTUS@", &lotus.base)
    .replace("@HMS@", &hms.base)
    .replace("@RESOLVE@", &resolve.replace('\n', "\n  "))
    .replace("@PRECONDITION@", precondition)
}

/// An HMS shift (with a field the mapping does not name).
fn shift(id: u64, start: &str, end: &str, who: &str, t: u64) -> Value {
    json!({"id": id, "startAt": start, "endAt": end, "assignee": who, "updatedAt": t, "notes": "bring water"})
}

/// The Lotus document of an HMS shift (the mapping table, HMS → Lotus).
fn doc_of(s: &Value) -> Value {
    json!({"ShiftID": s["id"], "BeginTime": s["startAt"], "FinishTime": s["endAt"], "RangerName": s["assignee"], "LastModified": s["updatedAt"]})
}

/// The synced content of a shift, in HMS fields.
fn hms_content(s: &Value) -> Value {
    json!({"startAt": s["startAt"], "endAt": s["endAt"], "assignee": s["assignee"]})
}

/// The synced content of a Lotus document, in HMS fields.
fn lotus_content(d: &Value) -> Value {
    json!({"startAt": d["BeginTime"], "endAt": d["FinishTime"], "assignee": d["RangerName"]})
}

/// The record a ticket is about (its key).
fn ticket_key(t: &Value) -> String {
    let k = if t["direction"] == "inbound" { &t["externalId"] } else { &t["hmsId"] };
    k.as_str().unwrap_or_default().to_string()
}

fn reason(t: &Value) -> String {
    t["reason"].as_str().unwrap_or_default().to_string()
}

fn is_echo_reason(t: &Value) -> bool {
    let r = reason(t).to_lowercase();
    r.contains("echo") || r.contains("no change")
}

/// The app, the two systems and their clock.
struct Rig {
    app: TestApp,
    lotus: FakeLotus,
    hms: FakeHms,
    clock: LogicalClock,
}

impl Rig {
    /// Both systems holding `shifts` (the same content on both sides), the connector with
    /// `resolve`, HMS pushing its changes to the service's `/webhook/hms`. The start-up
    /// pull is absorbed before this returns.
    async fn start(tag: &str, token_var: &str, resolve: &str, shifts: &[Value]) -> Rig {
        Self::start_with(tag, token_var, resolve, shifts, Behaviour::default(), false, true).await
    }

    /// [`start`](Self::start) with both stores behaving as `behaviour` once seeded, and
    /// conditional writes when `conditional`, and no read of HMS unless `fetch_hms`.
    #[allow(clippy::too_many_arguments)]
    async fn start_with(tag: &str, token_var: &str, resolve: &str, shifts: &[Value], behaviour: Behaviour, conditional: bool, fetch_hms: bool) -> Rig {
        let token = format!("token-for-{token_var}");
        if std::env::var(token_var).ok().as_deref() != Some(token.as_str()) {
            unsafe { std::env::set_var(token_var, &token) };
        }
        let clock = LogicalClock::default();
        let lotus = FakeLotus::start(clock.clone()).await;
        let hms = FakeHms::start(clock.clone()).await;
        for s in shifts {
            clock.advance_to(s["updatedAt"].as_u64().unwrap());
            hms.seed(s.clone());
            lotus.seed(doc_of(s));
        }
        let dir = temp_dir(tag);
        lotus.behave(behaviour);
        hms.behave(behaviour);
        let mut yaml = calendar_yaml_with(&lotus, &hms, token_var, resolve, conditional);
        if !fetch_hms {
            yaml = yaml.replace(&format!("    hms: {{ url: \"{}/api/shifts/{{id}}\" }}\n", hms.base), "");
        }
        std::fs::write(dir.join("connectors").join("notes-calendar.yaml"), yaml).unwrap();
        let app = TestApp::spawn(test_settings(&dir)).await;
        app.wait_state(CONNECTOR, "running").await;
        hms.echo_to(&format!("{}/webhook/hms", app.base), &token);
        let rig = Rig { app, lotus, hms, clock };
        rig.sync().await;
        rig.settle().await.unwrap();
        rig
    }

    /// `POST /connectors/NotesCalendar/sync`: one pull now.
    async fn sync(&self) -> Value {
        let (code, body) = self.app.call("POST", &format!("/connectors/{CONNECTOR}/sync"), None).await;
        assert_eq!(code, 200, "sync now: {body}");
        body
    }

    /// HMS pushes `shift` to /webhook/hms.
    async fn push(&self, shift: &Value) {
        assert_eq!(self.hms.push(shift).await, 200, "HMS push of {shift}");
    }

    /// Waits (bounded) until no job is pending and no HMS echo is on its way.
    async fn settle(&self) -> Result<(), String> {
        try_poll_until(WAIT, Duration::from_millis(5), || async {
            let before = self.hms.echoes();
            let depth = self.app.status(CONNECTOR).await["queue_depth"].as_u64().unwrap_or(u64::MAX);
            let after = self.hms.echoes();
            if depth == 0 && before == after && after.0 == after.1 {
                return Ok(());
            }
            Err(format!("not settled after {WAIT:?}: queue_depth {depth}, HMS echoes (started, done) {after:?}"))
        })
        .await
    }

    /// The tickets as one line each (key, direction, status, event, reason), for failure
    /// messages.
    async fn history(&self) -> String {
        let tickets = self.tickets().await;
        tickets.iter().map(|t| format!("{} {} {} {} {}", ticket_key(t), t["direction"], t["status"], t["eventId"], reason(t))).collect::<Vec<_>>().join("\n")
    }

    /// Asserts that shift `id` holds `want` (in HMS fields) on both sides; `what` names the
    /// case in the failure message, which shows both systems' writes and every ticket.
    async fn assert_ends_as(&self, id: u64, want: &Value, what: &str) {
        let history = self.history().await;
        let h = hms_content(&self.hms.shift(id).unwrap());
        let l = lotus_content(&self.lotus.doc(id).unwrap());
        assert!(
            h == *want && l == *want,
            "{what}: shift {id} should end as {want} on both sides; HMS has {h}, Lotus has {l}.\nLotus writes: {:?}\nHMS writes: {:?}\ntickets:\n{history}",
            self.lotus.write_log(),
            self.hms.write_log(),
        );
    }

    /// Every ticket of the connector, oldest first.
    async fn tickets(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        for _ in 0..100 {
            let (code, body) = self.app.call("GET", &format!("/tickets?connector={CONNECTOR}&limit=500{cursor}"), None).await;
            assert_eq!(code, 200, "tickets: {body}");
            all.extend(body["tickets"].as_array().cloned().unwrap_or_default());
            match body["next"].as_str() {
                Some(n) => cursor = format!("&cursor={n}"),
                None => break,
            }
        }
        all.sort_by_key(|t| t["id"].as_i64());
        all
    }

    async fn tickets_where(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.tickets().await.into_iter().filter(|t| pred(t)).collect()
    }

    /// Waits for a ticket of record `key` matching `pred`.
    async fn wait_ticket(&self, what: &str, key: &str, pred: impl Fn(&Value) -> bool) -> Value {
        poll_until(what, WAIT, || async { self.tickets().await.into_iter().find(|t| ticket_key(t) == key && pred(t)) }).await
    }

    /// (writes to Lotus, writes to HMS, tickets).
    async fn counts(&self) -> (u64, u64, usize) {
        (self.lotus.writes(), self.hms.writes(), self.tickets().await.len())
    }

    /// Sync rounds until nothing moves (no write, no ticket) over two consecutive rounds.
    async fn quiesce(&self) -> Result<(u64, u64, usize), String> {
        self.settle().await?;
        let mut last = self.counts().await;
        let mut stable = 0;
        for _ in 0..12 {
            self.sync().await;
            self.settle().await?;
            let now = self.counts().await;
            if now == last {
                stable += 1;
                if stable == 2 {
                    return Ok(now);
                }
            } else {
                stable = 0;
                last = now;
            }
        }
        Err(format!("still moving after 12 sync rounds: (lotus writes, hms writes, tickets) = {last:?}"))
    }

    /// Makes every record known to both sides through the sync (a record link): an HMS
    /// change of `endAt` to 16:30 goes to Lotus, and the Lotus echo is pulled.
    async fn link(&self, ids: &[u64]) {
        for id in ids {
            let s = self.hms.edit(*id, json!({"endAt": "16:30"}));
            self.push(&s).await;
            self.settle().await.unwrap();
            assert_eq!(self.lotus.doc(*id).unwrap()["FinishTime"], "16:30", "shift {id} linked");
        }
        self.sync().await;
        self.settle().await.unwrap();
    }

    /// Both sides of shift `id` hold `content` (HMS fields).
    fn assert_both(&self, id: u64, content: &Value, what: &str) {
        let h = hms_content(&self.hms.shift(id).unwrap());
        let l = lotus_content(&self.lotus.doc(id).unwrap());
        assert!(h == *content && l == *content, "{what}: shift {id} should be {content} on both sides; HMS has {h}, Lotus has {l}");
    }
}

// 1
#[actix_web::test]
async fn seed_000_a_shift_change_crosses_both_ways_and_the_echoes_are_skipped() {
    let rig = Rig::start("tw-seed000", "TWOWAY_SEED000_HMS_TOKEN", "policy: last-writer-wins", &[shift(72, "08:00", "16:00", "Ana", 1)]).await;

    // HMS → Lotus: the webhook {id: 72, startAt: "07:00"} becomes PUT /doc/ShiftID=72.
    let changed = rig.hms.edit(72, json!({"startAt": "07:00"}));
    let t_hms = changed["updatedAt"].as_u64().unwrap();
    rig.push(&changed).await;
    let doc = poll_until("the HMS change to reach Lotus", WAIT, || async { rig.lotus.doc(72).filter(|d| d["BeginTime"] == "07:00") }).await;
    assert_eq!(
        doc,
        json!({"ShiftID": 72, "BeginTime": "07:00", "FinishTime": "16:00", "RangerName": "Ana", "LastModified": t_hms}),
        "Lotus gets the mapped fields (and nothing the mapping does not name)"
    );
    rig.settle().await.unwrap();
    let out = rig.tickets_where(|t| t["direction"] == "outbound" && t["status"] == "completed").await;
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0]["externalId"].as_str().unwrap_or_default().ends_with("/calendar/doc/ShiftID=72"), "{}", out[0]);

    // The Lotus feed now shows what the sync wrote: an echo, not applied to HMS.
    rig.sync().await;
    rig.settle().await.unwrap();
    let feed_echo = rig.tickets_where(|t| t["eventId"].as_str().is_some_and(|e| e.starts_with(&format!("pull:72:{t_hms}:#")))).await;
    assert_eq!(feed_echo.len(), 1, "the feed's copy of our write is one job: {feed_echo:#?}");
    assert_eq!(feed_echo[0]["status"], "skipped", "{}", feed_echo[0]);
    assert!(is_echo_reason(&feed_echo[0]), "reason names the echo: {}", feed_echo[0]);
    assert_eq!(rig.hms.writes(), 0, "our own write is not applied back to HMS");

    // Lotus → HMS: a ranger reassigns the shift; the next sync patches HMS.
    let edited = rig.lotus.ranger_edit(72, json!({"RangerName": "Bo"}));
    let t_lotus = edited["LastModified"].as_u64().unwrap();
    let report = rig.sync().await;
    assert_eq!(report["pull"]["stored"], 1, "{report}");
    let now = poll_until("the Lotus edit to reach HMS", WAIT, || async { rig.hms.shift(72).filter(|s| s["assignee"] == "Bo") }).await;
    assert_eq!(
        rig.hms.write_log(),
        vec![("72".to_string(), json!({"id": 72, "startAt": "07:00", "endAt": "16:00", "assignee": "Bo", "updatedAt": t_lotus}))],
        "one PATCH with the fields mapped back"
    );
    assert_eq!(now["notes"], "bring water", "a PATCH keeps the fields the mapping does not name");

    // HMS echoes the PATCH to /webhook/hms: skipped, nothing goes back to Lotus.
    rig.settle().await.unwrap();
    assert_eq!(rig.hms.echoes(), (1, 1), "HMS pushed the patched shift back once");
    assert!(rig.hms.echo_errors().is_empty(), "{:?}", rig.hms.echo_errors());
    let hms_echo = rig.tickets_where(|t| t["direction"] == "outbound" && t["status"] == "skipped").await;
    assert_eq!(hms_echo.len(), 1, "{hms_echo:#?}");
    assert!(is_echo_reason(&hms_echo[0]), "reason names the echo: {}", hms_echo[0]);

    // No ping-pong: quiescent, and two more sync rounds change nothing.
    let counts = rig.quiesce().await.unwrap();
    assert_eq!((counts.0, counts.1), (1, 1), "one write to each side in all");
    let feeds = rig.lotus.feeds();
    for _ in 0..2 {
        rig.sync().await;
        rig.settle().await.unwrap();
        assert_eq!(rig.counts().await, counts, "nothing moves any more");
    }
    assert_eq!(rig.lotus.feeds(), feeds + 2, "each sync read the Lotus feed");
    let all = rig.tickets().await;
    assert_eq!(all.iter().filter(|t| t["status"] == "completed").count(), 2, "{all:#?}");
    assert!(all.iter().all(|t| t["status"] == "completed" || t["status"] == "skipped"), "{all:#?}");
    assert!(all.iter().filter(|t| t["status"] == "skipped").all(is_echo_reason), "every skip here is an echo or no change: {all:#?}");
    rig.assert_both(72, &json!({"startAt": "07:00", "endAt": "16:00", "assignee": "Bo"}), "end state");
    assert_eq!(rig.lotus.doc(72).unwrap()["LastModified"], t_lotus);
    assert_eq!(rig.hms.shift(72).unwrap()["updatedAt"], t_lotus);
}

// 2
#[actix_web::test]
async fn last_writer_wins_by_version_and_equal_versions_go_to_the_change_seen_later() {
    let shifts = [shift(1, "08:00", "16:00", "Ana", 1), shift(2, "08:00", "16:00", "Ana", 1), shift(3, "08:00", "16:00", "Ana", 1)];
    let rig = Rig::start("tw-lww", "TWOWAY_LWW_HMS_TOKEN", "policy: last-writer-wins", &shifts).await;
    // Shifts 1 and 2: HMS edits at 10, a ranger edits at 12 (LastModified 12 ↔ updatedAt 12).
    let mut hms_at_10 = BTreeMap::new();
    for id in [1, 2] {
        hms_at_10.insert(id, rig.hms.edit_at(id, json!({"startAt": "06:00"}), 10));
        rig.lotus.ranger_edit_at(id, json!({"RangerName": "Cy"}), 12);
    }
    // Shift 3: both at 20, different content.
    let hms_at_20 = rig.hms.edit_at(3, json!({"startAt": "05:00"}), 20);
    rig.lotus.ranger_edit_at(3, json!({"RangerName": "Di"}), 20);

    // Shift 1: HMS's push comes first; Lotus has the newer version: the conflict is lost, and
    // the winner (read from Lotus) is written to HMS at once.
    rig.push(&hms_at_10[&1]).await;
    rig.push(&hms_at_20).await;
    rig.settle().await.unwrap();
    let lost = rig.wait_ticket("HMS's older change of shift 1 to be decided", "1", |t| reason(t).contains("conflict lost")).await;
    assert_eq!((lost["status"].as_str(), lost["direction"].as_str()), (Some("completed"), Some("inbound")), "Lotus's version went to HMS: {lost}");
    // Shift 3: equal stamps are never a no-op: Lotus's state, seen after HMS's push, wins.
    let tie = rig.wait_ticket("HMS's change of shift 3 to be decided", "3", |t| reason(t).contains("tie")).await;
    assert_eq!((tie["status"].as_str(), tie["direction"].as_str()), (Some("completed"), Some("inbound")), "{tie}");
    assert_eq!(rig.lotus.writes(), 0, "nothing written to Lotus: {:?}", rig.lotus.write_log());

    // The ranger's version of shift 2 is pulled: newer than HMS's, applied to HMS.
    rig.sync().await;
    rig.settle().await.unwrap();
    // Shift 2: HMS's push arrives late, after the newer Lotus version reached HMS.
    rig.push(&hms_at_10[&2]).await;
    rig.settle().await.unwrap();
    let late = rig.wait_ticket("HMS's late change of shift 2", "2", |t| t["direction"] == "outbound" && t["eventId"] != Value::Null && (reason(t).contains("stale") || reason(t).contains("superseded"))).await;
    assert_eq!(late["status"], "skipped", "{late}");

    rig.quiesce().await.unwrap();
    for id in [1, 2] {
        rig.assert_ends_as(id, &json!({"startAt": "08:00", "endAt": "16:00", "assignee": "Cy"}), "the ranger wrote last (12 > 10)").await;
    }
    rig.assert_ends_as(3, &json!({"startAt": "08:00", "endAt": "16:00", "assignee": "Di"}), "equal stamps: the state seen later").await;
    assert_eq!(rig.lotus.writes(), 0, "{:?}", rig.lotus.write_log());
    assert_eq!(rig.hms.writes(), 3, "shifts 1, 2 and 3 patched once each: {:?}", rig.hms.write_log());
}

/// Concurrent edits of shifts 1 and 2 under `policy` (the winner's edit is the OLDER one,
/// so last-writer-wins would pick the other side). Shift 1: the loser's change is decided
/// first; shift 2: the winner's first (for HMS changes: the webhook arrives before or after
/// the sync that pulls the ranger's edit).
async fn policy_case(tag: &str, token_var: &str, policy: &str) {
    let hms_wins = policy == "hms-wins";
    let shifts = [shift(1, "08:00", "16:00", "Ana", 1), shift(2, "08:00", "16:00", "Ana", 1)];
    let rig = Rig::start(tag, token_var, &format!("policy: {policy}"), &shifts).await;
    rig.link(&[1, 2]).await;
    let base = rig.clock.now();
    let (t_hms, t_lotus) = if hms_wins { (base + 10, base + 12) } else { (base + 12, base + 10) };
    let mut pushed = BTreeMap::new();
    for id in [1, 2] {
        pushed.insert(id, rig.hms.edit_at(id, json!({"startAt": "06:00", "assignee": "Hal"}), t_hms));
        rig.lotus.ranger_edit_at(id, json!({"BeginTime": "09:00", "RangerName": "Lou"}), t_lotus);
    }
    // The HMS change that must be decided before the sync: hms-wins → shift 2 (winner
    // first); legacy-wins → shift 1 (loser first). The other one arrives after the sync.
    let (early, late) = if hms_wins { (2, 1) } else { (1, 2) };
    rig.push(&pushed[&early]).await;
    rig.settle().await.unwrap();
    rig.sync().await;
    rig.settle().await.unwrap();
    rig.push(&pushed[&late]).await;
    rig.quiesce().await.unwrap();

    // The losing change of shift 1 takes the winner's version, read from the winning side.
    let lost = rig.wait_ticket(&format!("the losing change of shift 1 to be decided under {policy}"), "1", |t| reason(t).contains(policy)).await;
    assert_eq!(lost["status"], "completed", "{lost}");
    assert_eq!(lost["direction"], if hms_wins { "outbound" } else { "inbound" }, "{lost}");
    let winner = if hms_wins {
        json!({"startAt": "06:00", "endAt": "16:30", "assignee": "Hal"})
    } else {
        json!({"startAt": "09:00", "endAt": "16:30", "assignee": "Lou"})
    };
    for id in [1, 2] {
        rig.assert_ends_as(id, &winner, policy).await;
    }
}

// 3a
#[actix_web::test]
async fn hms_wins_keeps_the_hms_version_on_both_sides() {
    policy_case("tw-hmswins", "TWOWAY_HMSWINS_HMS_TOKEN", "hms-wins").await;
}

// 3b
#[actix_web::test]
async fn legacy_wins_keeps_the_lotus_version_on_both_sides() {
    policy_case("tw-legacywins", "TWOWAY_LEGACYWINS_HMS_TOKEN", "legacy-wins").await;
}

// 4
#[actix_web::test]
async fn per_field_owners_take_start_from_hms_and_the_ranger_from_lotus() {
    let shifts = [shift(1, "08:00", "16:00", "Ana", 1), shift(2, "08:00", "16:00", "Ana", 1)];
    let rig = Rig::start("tw-fields", "TWOWAY_FIELDS_HMS_TOKEN", "policy: fields\nowners: { startAt: hms, assignee: legacy }", &shifts).await;
    rig.link(&[1, 2]).await;
    let base = rig.clock.now();
    let mut pushed = BTreeMap::new();
    for id in [1, 2] {
        pushed.insert(id, rig.hms.edit_at(id, json!({"startAt": "06:00", "assignee": "Hal"}), base + 10));
        rig.lotus.ranger_edit_at(id, json!({"BeginTime": "09:00", "RangerName": "Lou"}), base + 12);
    }
    let (lotus_before, hms_before) = (rig.lotus.writes(), rig.hms.writes());
    // Shift 1: HMS's webhook before the sync; shift 2: after it.
    rig.push(&pushed[&1]).await;
    rig.settle().await.unwrap();
    rig.sync().await;
    rig.settle().await.unwrap();
    rig.push(&pushed[&2]).await;
    rig.quiesce().await.unwrap();

    let expected = json!({"startAt": "06:00", "endAt": "16:30", "assignee": "Lou"});
    for id in [1, 2] {
        rig.assert_ends_as(id, &expected, "fields").await;
    }
    let tickets = rig.tickets().await;
    let history = rig.history().await;
    // No write moves a document back in time.
    for id in ["1", "2"] {
        let versions: Vec<u64> = rig.lotus.write_log().iter().filter(|(k, _)| k == id).map(|(_, d)| d["LastModified"].as_u64().unwrap_or(0)).collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "a write moved LastModified of shift {id} back in time: LastModified written {versions:?}.\nLotus writes: {:?}\ntickets:\n{history}",
            rig.lotus.write_log(),
        );
    }
    // Each side needed one write per shift (its other owner's field), and no conflict or
    // parked job.
    let (lotus_w, hms_w) = (rig.lotus.writes() - lotus_before, rig.hms.writes() - hms_before);
    assert!(lotus_w <= 2 && hms_w <= 2, "one write per shift and side is enough: Lotus {lotus_w} ({:?}), HMS {hms_w} ({:?})", rig.lotus.write_log(), rig.hms.write_log());
    assert!(tickets.iter().all(|t| t["status"] == "completed" || t["status"] == "skipped"), "{history}");
}

/// A conflict under `policy: manual`: shift `id` linked, then HMS (startAt 06:00 at +10)
/// and a ranger (RangerName Cy at +12) edit it; HMS's webhook arrives first. Returns the
/// parked job.
async fn manual_conflict(rig: &Rig, id: u64) -> Value {
    rig.link(&[id]).await;
    let base = rig.clock.now();
    let pushed = rig.hms.edit_at(id, json!({"startAt": "06:00"}), base + 10);
    rig.lotus.ranger_edit_at(id, json!({"RangerName": "Cy"}), base + 12);
    rig.push(&pushed).await;
    rig.settle().await.unwrap();
    let conflict = rig.wait_ticket("a conflict ticket", &id.to_string(), |t| t["status"] == "conflict").await;
    assert_eq!(conflict["direction"], "outbound", "{conflict}");
    assert!(reason(&conflict).contains("resolve"), "the reason says how to resolve it: {conflict}");
    let parked = rig.app.parked(CONNECTOR).await;
    assert_eq!(parked.len(), 1, "{parked:#?}");
    assert_eq!(parked[0]["recordKey"], id.to_string(), "{}", parked[0]);
    assert_eq!(parked[0]["id"], conflict["deliveryId"], "{}", parked[0]);
    assert_eq!(rig.lotus.doc(id).unwrap()["RangerName"], "Cy", "nothing applied while in conflict");
    parked[0].clone()
}

// 5a
#[actix_web::test]
async fn manual_conflict_resolved_for_lotus_applies_the_lotus_version_to_hms() {
    let rig = Rig::start("tw-manual-side", "TWOWAY_MANUAL_SIDE_HMS_TOKEN", "policy: manual", &[shift(1, "08:00", "16:00", "Ana", 1)]).await;
    let job = manual_conflict(&rig, 1).await;
    let job_id = job["id"].as_i64().unwrap();
    let (code, body) = rig.app.call("POST", &format!("/parked/{job_id}/resolve"), Some(r#"{"side": "legacy"}"#)).await;
    assert_eq!(code, 202, "{body}");
    assert!(rig.app.parked(CONNECTOR).await.is_empty(), "resolved: no longer parked");
    rig.settle().await.unwrap();
    // However the Lotus version gets there (applied at once, or with the next pull), HMS
    // ends with it, and the Lotus change does not raise the same conflict again.
    rig.sync().await;
    rig.settle().await.unwrap();
    let lotus_version = json!({"startAt": "08:00", "endAt": "16:30", "assignee": "Cy"});
    let again = rig.tickets_where(|t| t["status"] == "conflict").await;
    assert_eq!(
        again.len(),
        1,
        "after {{\"side\": \"legacy\"}} the Lotus change raised a new conflict instead of being applied to HMS; HMS has {}: {again:#?}",
        hms_content(&rig.hms.shift(1).unwrap())
    );
    rig.quiesce().await.unwrap();
    rig.assert_ends_as(1, &lotus_version, "side: legacy").await;
    assert!(rig.app.parked(CONNECTOR).await.is_empty());
}

// 5b
#[actix_web::test]
async fn manual_conflict_resolved_with_a_merged_record_ends_on_both_sides() {
    let rig = Rig::start("tw-manual-merge", "TWOWAY_MANUAL_MERGE_HMS_TOKEN", "policy: manual", &[shift(2, "08:00", "16:00", "Ana", 1)]).await;
    let job = manual_conflict(&rig, 2).await;
    let job_id = job["id"].as_i64().unwrap();
    let t = rig.clock.tick();
    // HMS's start time, the ranger's assignee.
    let merged = json!({"id": 2, "startAt": "06:00", "endAt": "16:30", "assignee": "Cy", "updatedAt": t});
    let (code, body) = rig.app.call("POST", &format!("/parked/{job_id}/resolve"), Some(&json!({"record": merged}).to_string())).await;
    assert_eq!(code, 202, "{body}");
    rig.settle().await.unwrap();
    rig.sync().await;
    rig.quiesce().await.unwrap();
    rig.assert_ends_as(2, &hms_content(&merged), "the merged record").await;
    assert!(rig.app.parked(CONNECTOR).await.is_empty());
}

// 6
#[actix_web::test]
async fn seed_004_appointments_both_ways() {
    let state = FakeSystem::start().await;
    let hms = FakeSystem::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    unsafe {
        std::env::set_var("TWOWAY_SEED004_HMS_TOKEN", "hms-token-004");
        std::env::set_var("TWOWAY_SEED004_STATE_SECRET", secret);
    }
    // The shipped file, aimed at the fakes.
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/appointment.yaml")).unwrap();
    assert!(shipped.contains("https://state.api.gov") && shipped.contains("https://hms.example.gov") && shipped.contains("${STATE_WEBHOOK_SECRET}"));
    let yaml = shipped
        .replace("https://state.api.gov", &state.base)
        .replace("https://hms.example.gov", &hms.base)
        .replace("${HMS_TOKEN}", "${TWOWAY_SEED004_HMS_TOKEN}")
        .replace("${STATE_WEBHOOK_SECRET}", "${TWOWAY_SEED004_STATE_SECRET}")
        .replace("backoffMs: 1000", "backoffMs: 10");
    let dir = temp_dir("tw-seed004");
    std::fs::write(dir.join("connectors").join("appointment.yaml"), yaml).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("appointment", "running").await;

    // HMS → the state scheduler (transformOut).
    app.publish("appointment.updated", json!({"id": "A-7", "newDate": "2024-06-02"})).await;
    let got = state.wait_until("the appointment at the state scheduler", |r| r.iter().any(|x| x.status == 200)).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/appointments/sync"));
    assert_eq!(got[0].body, json!({"apptId": "A-7", "scheduledDate": "2024-06-02"}));
    app.wait_tickets("connector=appointment&status=completed&direction=outbound", 1).await;

    // The state scheduler → HMS (transformIn), signed with Standard Webhooks.
    let send = |id: &'static str, body: Value, good: bool| {
        let app = &app;
        async move {
            let raw = body.to_string();
            let ts = chrono::Utc::now().timestamp();
            let sig = if good {
                hms_sync::webhook::verify::sign_standard(secret, id, ts, raw.as_bytes()).unwrap()
            } else {
                hms_sync::webhook::verify::sign_standard("whsec_c2VjcmV0LW9mLWFub3RoZXItc2VuZGVy", id, ts, raw.as_bytes()).unwrap()
            };
            let ts = ts.to_string();
            app.call_with("POST", "/webhook/appointment", Some(&raw), &[("webhook-id", id), ("webhook-timestamp", &ts), ("webhook-signature", &sig), ("Content-Type", "application/json")]).await
        }
    };
    let (code, body) = send("msg_forged", json!({"apptId": "A-7", "scheduledDate": "1999-01-01"}), false).await;
    assert_eq!(code, 401, "a wrong signature is refused: {body}");
    let (code, body) = send("msg_1", json!({"apptId": "A-7", "scheduledDate": "2024-06-05"}), true).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["stored"], 1, "{body}");
    let got = hms.wait_until("the PATCH at HMS", |r| r.iter().any(|x| x.status == 200)).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("PATCH", "/api/appointments/A-7"));
    assert_eq!(got[0].body, json!({"id": "A-7", "newDate": "2024-06-05"}));
    assert_eq!(got[0].header("authorization"), Some("Bearer hms-token-004"));
    app.wait_tickets("connector=appointment&status=completed&direction=inbound", 1).await;

    // The same webhook again: a duplicate, nothing stored.
    let (code, body) = send("msg_1", json!({"apptId": "A-7", "scheduledDate": "2024-06-05"}), true).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["stored"], 0, "{body}");
    // HMS publishing what we just applied (its own echo) is skipped: nothing goes back.
    app.publish("appointment.updated", json!({"id": "A-7", "newDate": "2024-06-05"})).await;
    let skipped = app.wait_tickets("connector=appointment&status=skipped", 1).await;
    assert!(is_echo_reason(&skipped[0]), "{}", skipped[0]);
    assert_eq!(state.received().len(), 1, "no ping-pong to the state scheduler: {:#?}", state.received());
    assert_eq!(hms.received().len(), 1, "one PATCH: {:#?}", hms.received());
}

// 9: seed 000's resolver rule, "manager edits outrank ranger edits".
#[actix_web::test]
async fn a_resolver_rule_lets_a_manager_edit_outrank_a_newer_ranger_edit() {
    let rule = "policy: last-writer-wins\nrules:\n  - when: 'hms.editedBy.role == \"manager\" and legacy.editedBy.role != \"manager\"'\n    then: hms-wins";
    let shifts = [shift(1, "08:00", "16:00", "Ana", 1), shift(2, "08:00", "16:00", "Ana", 1)];
    let rig = Rig::start("tw-rules", "TWOWAY_RULES_HMS_TOKEN", rule, &shifts).await;
    rig.link(&[1, 2]).await;
    let base = rig.clock.now();
    // Shift 1: a manager edits in HMS, then a ranger edits in Lotus (newer).
    let manager = rig.hms.edit_at(1, json!({"startAt": "06:00", "editedBy": {"role": "manager"}}), base + 10);
    rig.lotus.ranger_edit_at(1, json!({"RangerName": "Cy", "editedBy": {"role": "ranger"}}), base + 12);
    // Shift 2: the same with a supervisor (no rule holds): the newer ranger edit wins.
    let supervisor = rig.hms.edit_at(2, json!({"startAt": "06:00", "editedBy": {"role": "supervisor"}}), base + 10);
    rig.lotus.ranger_edit_at(2, json!({"RangerName": "Cy", "editedBy": {"role": "ranger"}}), base + 12);
    rig.push(&manager).await;
    rig.push(&supervisor).await;
    rig.quiesce().await.unwrap();
    rig.assert_ends_as(1, &json!({"startAt": "06:00", "endAt": "16:30", "assignee": "Ana"}), "the manager's edit outranks the ranger's").await;
    rig.assert_ends_as(2, &json!({"startAt": "08:00", "endAt": "16:30", "assignee": "Cy"}), "no rule holds: the later edit").await;
    let by_rule = rig.wait_ticket("the ticket naming the rule", "1", |t| reason(t).starts_with("rule 1 (")).await;
    assert_eq!(by_rule["status"], "completed", "{by_rule}");
    assert!(reason(&by_rule).contains("hms-wins"), "{by_rule}");
    assert!(rig.tickets_where(|t| ticket_key(t) == "2" && reason(t).starts_with("rule")).await.is_empty(), "no rule for shift 2");
}

// 10: our write reached Lotus but its outcome could not be stored (as after a kill -9
// between the answer and the commit): the retry finds Lotus holding exactly that content
// and completes the job (ticket `completed`, link updated), without writing twice.
#[actix_web::test]
async fn a_write_that_landed_before_its_outcome_was_stored_completes_on_retry() {
    use sea_orm::ConnectionTrait;
    let rig = Rig::start("tw-crash", "TWOWAY_CRASH_HMS_TOKEN", "policy: last-writer-wins", &[shift(1, "08:00", "16:00", "Ana", 1)]).await;
    rig.link(&[1]).await;
    let writes = rig.lotus.writes();
    let db = &rig.app.state().db;
    db.execute_unprepared("CREATE TRIGGER refuse_tickets BEFORE INSERT ON sync_tickets BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END").await.unwrap();
    let edited = rig.hms.edit(1, json!({"startAt": "05:00"}));
    rig.push(&edited).await;
    poll_until("the write to reach Lotus", WAIT, || async { rig.lotus.doc(1).filter(|d| d["BeginTime"] == "05:00") }).await;
    // The job is tried again only because its outcome was refused: its new read of Lotus
    // shows that it was.
    let reads = rig.lotus.reads();
    poll_until("the job's retry to read Lotus", WAIT, || async { (rig.lotus.reads() > reads).then_some(()) }).await;
    db.execute_unprepared("DROP TRIGGER refuse_tickets").await.unwrap();
    let done = rig.wait_ticket("the job to complete on its retry", "1", |t| t["eventId"].as_str().is_some_and(|e| !e.starts_with("pull:")) && t["status"] == "completed" && reason(t).contains("already holds")).await;
    assert_eq!(done["direction"], "outbound", "{done}");
    assert_eq!(rig.lotus.writes(), writes + 1, "written once: {:?}", rig.lotus.write_log());
    // The link knows it now: Lotus's copy in the feed is our echo.
    rig.quiesce().await.unwrap();
    rig.assert_ends_as(1, &json!({"startAt": "05:00", "endAt": "16:30", "assignee": "Ana"}), "after the retry").await;
    assert_eq!(rig.lotus.writes(), writes + 1);
    assert_eq!(rig.hms.writes(), 0, "nothing bounced back to HMS: {:?}", rig.hms.write_log());
}

// 11: without a read of HMS, an HMS edit can be overwritten by a sync before its webhook
// arrives. That loss is never silent: the late webhook is ticketed `conflict` and parked
// with both records.
#[actix_web::test]
async fn without_a_read_an_overwritten_edit_is_ticketed_as_a_conflict() {
    let behaviour = Behaviour { restamp: true, precision: 1, revisions: false };
    let rig = Rig::start_with("tw-blind", "TWOWAY_BLIND_HMS_TOKEN", "policy: last-writer-wins", &[shift(1, "08:00", "16:00", "Ana", 1)], behaviour, false, false).await;
    rig.link(&[1]).await;
    // An HMS user edits shift 1; HMS's webhook is late.
    let late = rig.hms.edit(1, json!({"assignee": "Hal"}));
    // A ranger's edit is pulled and written to HMS, which cannot be read first: the HMS
    // user's edit is overwritten.
    rig.lotus.ranger_edit(1, json!({"BeginTime": "09:00"}));
    rig.sync().await;
    rig.settle().await.unwrap();
    assert_eq!(rig.hms.shift(1).unwrap()["assignee"], "Ana", "the blind write overwrote Hal");
    // The late webhook: a conflict, parked with both records, not a silent skip.
    rig.push(&late).await;
    let t = rig.wait_ticket("the overwritten edit to be ticketed", "1", |t| t["status"] == "conflict").await;
    assert!(reason(&t).contains("overwritten"), "{t}");
    let parked = rig.app.wait_parked(CONNECTOR, 1).await;
    assert_eq!(parked[0]["conflict"]["hms"]["assignee"], "Hal", "the lost edit can be found: {}", parked[0]);
    // A person applies it to both sides (HMS no longer holds it either), with the ranger's
    // start time kept.
    let mut record = parked[0]["conflict"]["hms"].clone();
    record["startAt"] = json!("09:00");
    let (code, body) = rig.app.call("POST", &format!("/parked/{}/resolve", parked[0]["id"]), Some(&json!({ "record": record }).to_string())).await;
    assert_eq!(code, 202, "{body}");
    rig.settle().await.unwrap();
    rig.quiesce().await.unwrap();
    rig.assert_ends_as(1, &json!({"startAt": "09:00", "endAt": "16:30", "assignee": "Hal"}), "after the resolution").await;
}

// 12: kill -9 while two-way jobs are in flight, then start again: every HMS edit reaches
// Lotus, none is applied back to HMS, and no change is ticketed twice.
#[actix_web::test]
async fn two_way_work_survives_kill_9() {
    let token_var = "TWOWAY_KILL_HMS_TOKEN";
    let token = format!("token-for-{token_var}");
    let clock = LogicalClock::default();
    let lotus = FakeLotus::start(clock.clone()).await;
    let hms = FakeHms::start(clock.clone()).await;
    let ids: Vec<u64> = (1..=12).collect();
    for id in &ids {
        let s = shift(*id, "08:00", "16:00", "Ana", *id);
        clock.advance_to(*id);
        hms.seed(s.clone());
        lotus.seed(doc_of(&s));
    }
    let behaviour = Behaviour { restamp: true, precision: 1, revisions: true };
    lotus.behave(behaviour);
    hms.behave(behaviour);
    let dir = temp_dir("tw-kill9");
    std::fs::write(dir.join("connectors").join("notes-calendar.yaml"), calendar_yaml_with(&lotus, &hms, token_var, "policy: last-writer-wins", true)).unwrap();
    let env = [(token_var, token.as_str())];
    let mut service = Service::up(&dir, &env, std::process::Stdio::null()).await;
    hms.echo_to(&format!("{}/webhook/hms", service.base), &token);
    // Three rounds of edits of every shift, each push durable (200) before the next.
    let mut want = BTreeMap::new();
    for round in 0..3 {
        for id in &ids {
            let start = ["06:00", "07:00", "09:00"][round];
            let s = hms.edit(*id, json!({ "startAt": start }));
            want.insert(*id, hms_content(&s));
            assert_eq!(hms.push(&s).await, 200);
        }
    }
    service.kill9();
    let service = Service::up(&dir, &env, std::process::Stdio::null()).await;
    hms.echo_to(&format!("{}/webhook/hms", service.base), &token);
    let reached = try_poll_until(Duration::from_secs(60), Duration::from_millis(20), || {
        let all = ids.iter().all(|id| lotus.doc(*id).is_some_and(|d| lotus_content(&d) == want[id]));
        async move { if all { Ok(()) } else { Err(()) } }
    });
    if reached.await.is_err() {
        let (_, tickets) = service.call("GET", &format!("/tickets?connector={CONNECTOR}&limit=500"), None).await;
        let (_, parked) = service.call("GET", &format!("/parked?connector={CONNECTOR}"), None).await;
        let (_, status) = service.call("GET", &format!("/connectors/{CONNECTOR}/status"), None).await;
        let differ: Vec<String> = ids.iter().filter(|id| lotus.doc(**id).is_none_or(|d| lotus_content(&d) != want[*id])).map(|id| format!("{id}: Lotus {:?} want {}", lotus.doc(*id), want[id])).collect();
        panic!("not every HMS edit reached Lotus after the restart:\n{}\nLotus writes {:?}\nstatus {status}\nparked {parked}\ntickets {tickets:#}", differ.join("\n"), lotus.write_log());
    }
    let (code, _) = service.call("POST", &format!("/connectors/{CONNECTOR}/sync"), None).await;
    assert_eq!(code, 200);
    let tickets = poll_until("the pulled echoes to be ticketed", Duration::from_secs(60), || async {
        let (_, body) = service.call("GET", &format!("/tickets?connector={CONNECTOR}&limit=500"), None).await;
        let all = body["tickets"].as_array().cloned().unwrap_or_default();
        let (_, status) = service.call("GET", &format!("/connectors/{CONNECTOR}/status"), None).await;
        (status["queue_depth"] == 0 && all.len() >= 36).then_some(all)
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for t in &tickets {
        assert!(seen.insert(t["eventId"].as_str().unwrap_or_default().to_string()), "ticketed twice: {t}");
        assert_ne!(t["status"], "parked", "{t}");
    }
    assert_eq!(hms.writes(), 0, "nothing bounced back to HMS: {:?}", hms.write_log());
    for id in &ids {
        assert_eq!(hms_content(&hms.shift(*id).unwrap()), want[id], "HMS keeps its own latest edit");
    }
}

// 12b: a lost conflict's write-back whose answer a kill -9 took away. A pulled Lotus
// record lost to HMS's newer edit, which was written back to Lotus (re-stamped there later
// than HMS's next edit); the process died before that outcome was stored. After the restart
// the write is recognised as ours (its content noted before the request went): HMS's next
// edit reaches Lotus, and our own write-back never beats it. (The CI run of stop 34: HMS's
// latest edit was overwritten in HMS with the older one.)
#[actix_web::test]
async fn a_write_back_whose_answer_a_kill_9_lost_is_known_as_ours() {
    let token_var = "TWOWAY_WRITEBACK_HMS_TOKEN";
    let token = format!("token-for-{token_var}");
    let clock = LogicalClock::default();
    let lotus = FakeLotus::start(clock.clone()).await;
    let hms = FakeHms::start(clock.clone()).await;
    lotus.seed(doc_of(&shift(1, "08:00", "16:00", "Ana", 1)));
    hms.seed(shift(1, "07:00", "16:00", "Ana", 5));
    // Lotus stamps our write-back 21; HMS's next edit is stamped 10 by its own clock.
    clock.advance_to(20);
    let behaviour = Behaviour { restamp: true, precision: 1, revisions: true };
    lotus.behave(behaviour);
    hms.behave(behaviour);
    lotus.hold_next_answer();
    let dir = temp_dir("tw-writeback-kill9");
    std::fs::write(dir.join("connectors").join("notes-calendar.yaml"), calendar_yaml_with(&lotus, &hms, token_var, "policy: last-writer-wins", true)).unwrap();
    let env = [(token_var, token.as_str())];
    let mut service = Service::up(&dir, &env, std::process::Stdio::null()).await;
    // The start's pull finds Lotus's 08:00, which loses to HMS's 07:00: written to Lotus.
    poll_until("the write-back to reach Lotus", Duration::from_secs(30), || async { (lotus.writes() == 1).then_some(()) }).await;
    assert_eq!(lotus_content(&lotus.doc(1).unwrap()), json!({"startAt": "07:00", "endAt": "16:00", "assignee": "Ana"}));
    service.kill9();
    lotus.release_answers();
    let edited = hms.edit_at(1, json!({ "startAt": "09:00" }), 10);
    let service = Service::up(&dir, &env, std::process::Stdio::null()).await;
    hms.echo_to(&format!("{}/webhook/hms", service.base), &token);
    assert_eq!(hms.push(&edited).await, 200);
    let tickets = poll_until("every job to be ticketed", Duration::from_secs(30), || async {
        let (_, body) = service.call("GET", &format!("/tickets?connector={CONNECTOR}&limit=50"), None).await;
        let (_, status) = service.call("GET", &format!("/connectors/{CONNECTOR}/status"), None).await;
        let all = body["tickets"].as_array().cloned().unwrap_or_default();
        let pushed = all.iter().any(|t| t["direction"] == "outbound" && t["eventId"].as_str().is_some_and(|e| !e.starts_with("pull:")));
        (status["queue_depth"] == 0 && pushed).then_some(all)
    })
    .await;
    let landed = tickets.iter().find(|t| t["eventId"].as_str().is_some_and(|e| e.starts_with("pull:1:1:")));
    let landed = landed.unwrap_or_else(|| panic!("the pulled change's ticket: {tickets:#?}"));
    assert_eq!((landed["status"].as_str(), landed["direction"].as_str()), (Some("completed"), Some("outbound")), "{landed}");
    assert!(reason(landed).contains("already holds what we wrote"), "{landed}");
    assert_eq!(lotus_content(&lotus.doc(1).unwrap()), json!({"startAt": "09:00", "endAt": "16:00", "assignee": "Ana"}), "HMS's latest edit reached Lotus: {tickets:#?}");
    assert_eq!(hms.writes(), 0, "nothing written back to HMS: {:?}", hms.write_log());
    assert_eq!(hms_content(&hms.shift(1).unwrap()), json!({"startAt": "09:00", "endAt": "16:00", "assignee": "Ana"}));
}

// 8: an HMS change that leaves the mapped fields as last synced (here: only `notes`
// changed) is no change of the synced record, whatever its newer stamp: it must not undo a
// ranger's edit of a mapped field.
#[actix_web::test]
async fn an_hms_change_of_unmapped_fields_does_not_undo_a_ranger_edit() {
    let rig = Rig::start("tw-notes", "TWOWAY_NOTES_HMS_TOKEN", "policy: last-writer-wins", &[shift(1, "08:00", "16:00", "Ana", 1)]).await;
    rig.link(&[1]).await;
    let base = rig.clock.now();
    // A ranger moves the shift in Lotus (not pulled yet)…
    rig.lotus.ranger_edit_at(1, json!({"BeginTime": "09:00"}), base + 10);
    // …then an HMS user edits the shift's notes, which the mapping does not name: HMS pushes
    // the whole shift, updatedAt base+12, its mapped fields as last synced.
    let pushed = rig.hms.edit_at(1, json!({"notes": "bring a radio"}), base + 12);
    rig.push(&pushed).await;
    rig.settle().await.unwrap();
    rig.sync().await;
    rig.quiesce().await.unwrap();
    let history = rig.history().await;
    let h = hms_content(&rig.hms.shift(1).unwrap());
    let l = lotus_content(&rig.lotus.doc(1).unwrap());
    assert!(
        h == l,
        "the two sides never converge: HMS has {h} (updatedAt {}), Lotus has {l} (LastModified {}).\nLotus writes: {:?}\nHMS writes: {:?}\ntickets:\n{history}",
        rig.hms.shift(1).unwrap()["updatedAt"],
        rig.lotus.doc(1).unwrap()["LastModified"],
        rig.lotus.write_log(),
        rig.hms.write_log(),
    );
    assert_eq!(h["startAt"], "09:00", "the ranger's edit survives: HMS's newer stamp ({}) changed no synced field", base + 12);
}

// 7: convergence, seeded and randomized.

/// (HMS field, Lotus field, values).
const FIELDS: [(&str, &str, [&str; 4]); 3] = [
    ("startAt", "BeginTime", ["06:00", "07:00", "08:00", "09:00"]),
    ("endAt", "FinishTime", ["14:00", "15:00", "16:00", "17:00"]),
    ("assignee", "RangerName", ["Ana", "Bo", "Cy", "Di"]),
];

/// How a seed's systems and connector behave.
#[derive(Clone, Copy, Debug)]
struct Mode {
    /// `merge` instead of last-writer-wins; then HMS users edit the times and rangers the
    /// assignee (two people, different fields of one record, at once).
    merge: bool,
    behaviour: Behaviour,
    /// HMS is not read (no `resolve.fetch.hms`): an HMS edit can be overwritten before its
    /// webhook arrives. Then the latest edit may be lost, but never silently: its record
    /// has a `conflict` ticket.
    blind: bool,
    /// Users also delete records on both sides (last-writer-wins with HMS read). Records
    /// are created on both sides in every mode.
    deletes: bool,
    /// A resolver rule before the policy: a ranger who assigns Di outranks an HMS edit
    /// that does not (`legacy-wins` on a conflict it matches).
    rules: bool,
}

/// The resolver rule of a [`Mode`] with `rules`.
const RANGER_RULE: &str = "rules:\n  - when: 'legacy.RangerName == \"Di\" and hms.assignee != \"Di\"'\n    then: legacy-wins";

impl Mode {
    /// Seeds take turns: stores that keep our versions; re-stamping stores with ms-like and
    /// with second-like (shared) stamps, revisions and edits between read and write; the
    /// merge on re-stamping, revision-checked stores; and HMS not read at all.
    fn of(seed: u64) -> Mode {
        let restamping = |precision| Behaviour { restamp: true, precision, revisions: true };
        let mode = |merge, behaviour| Mode { merge, behaviour, blind: false, deletes: !merge, rules: false };
        match seed % 5 {
            0 => mode(false, Behaviour::default()),
            1 => mode(false, restamping(1)),
            2 => Mode { rules: true, ..mode(false, restamping(3)) },
            3 => mode(true, restamping(1)),
            _ => Mode { blind: true, deletes: false, ..mode(false, restamping(1)) },
        }
    }

    fn name(&self) -> String {
        let b = self.behaviour;
        let store = if b.restamp { format!("re-stamping (precision {}), revisions", b.precision.max(1)) } else { "keeping our versions".into() };
        let blind = if self.blind { ", HMS not read" } else { "" };
        let churn = if self.deletes { "creates and deletes" } else { "creates" };
        let rules = if self.rules { " with a resolver rule" } else { "" };
        format!("{}{rules}, stores {store}{blind}, {churn}", if self.merge { "merge" } else { "last-writer-wins" })
    }
}

/// One user edit, for the checks: (clock tick, stamp, side, field, content in HMS fields).
struct Edit {
    tick: u64,
    stamp: u64,
    lotus: bool,
    field: &'static str,
    value: String,
    content: Value,
}

/// One user delete, for the checks: (clock tick, side).
struct Delete {
    tick: u64,
    lotus: bool,
}

/// The contents a record may end with, from its edits. Last-writer-wins: the latest
/// edit's content (with stamps shared by several edits, a concurrent edit of the other side
/// with the same stamp may win: equal stamps go to the state seen later; and when the
/// latest edit restores earlier content, the other side's latest edit may win, since
/// content decides first). Merge: every field's latest edit.
/// A `notes` edit (a field the mapping does not name) is no edit of the synced record when
/// HMS's mapped fields are as last synced; when they are not, it makes HMS's record the
/// later one by its stamp. Both readings are accepted.
fn acceptable(mode: Mode, first: &Value, all: &[&Edit]) -> Vec<Value> {
    let mapped: Vec<&Edit> = all.iter().copied().filter(|e| e.field != "notes").collect();
    let mut ok = acceptable_of(mode, first, &mapped);
    // HMS's stamp counts when an HMS edit of a mapped field, then a ranger's edit, then the
    // `notes` edit came in that order (the first not synced before the ranger's, maybe).
    if !mode.merge
        && let Some(notes) = all.iter().max_by_key(|e| e.tick).filter(|e| e.field == "notes")
        && all.iter().any(|h| !h.lotus && h.field != "notes" && h.content == notes.content && all.iter().any(|l| l.lotus && h.tick < l.tick && l.tick < notes.tick))
    {
        ok.push(notes.content.clone());
    }
    ok
}

fn acceptable_of(mode: Mode, first: &Value, edits: &[&Edit]) -> Vec<Value> {
    let Some(latest) = edits.iter().max_by_key(|e| e.tick) else { return vec![first.clone()] };
    if mode.merge {
        let mut want = first.clone();
        for e in edits.iter().filter(|e| e.field != "notes") {
            let latest_of_field = edits.iter().filter(|o| o.field == e.field).max_by_key(|o| o.tick).map(|o| o.tick);
            if latest_of_field == Some(e.tick) {
                want[e.field] = json!(e.value);
            }
        }
        return vec![want];
    }
    let mut ok = vec![latest.content.clone()];
    let rival = edits.iter().filter(|e| e.lotus != latest.lotus).max_by_key(|e| e.tick);
    // A latest edit that brings back content seen before (A → B → A) may be a revert to
    // what was last synced: by content, that side did not change, and the other side's
    // latest edit is applied.
    let reverts = *first == latest.content || edits.iter().any(|e| e.tick < latest.tick && e.content == latest.content);
    if let Some(rival) = rival
        && (rival.stamp == latest.stamp || reverts)
    {
        ok.push(rival.content.clone());
    }
    ok
}

/// One seed: a fresh app and fresh systems, random edits on both sides interleaved with
/// syncs and late webhooks, faults injected, edits landing between the service's read and
/// its write; then syncs until quiescent and the checks.
/// `Ok`: a one-line summary; `Err`: why it did not converge, with the seed's history.
async fn converge_one(seed: u64) -> Result<String, String> {
    let mode = Mode::of(seed);
    let mut rng = XorShift::new(seed);
    let n = 3 + rng.below(3);
    let ids: Vec<u64> = (1..=n).map(|i| 100 + i).collect();
    let initial: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let v: Vec<&str> = FIELDS.iter().map(|(_, _, vals)| *rng.pick(vals)).collect();
            // Seeded stamps on the stores' own grid, so no later stamp falls below them.
            shift(*id, v[0], v[1], v[2], (i as u64 + 1) * mode.behaviour.precision.max(1))
        })
        .collect();
    let policy = match (mode.merge, mode.rules) {
        (true, _) => "policy: merge".to_string(),
        (false, false) => "policy: last-writer-wins".to_string(),
        (false, true) => format!("policy: last-writer-wins\n{RANGER_RULE}"),
    };
    let conditional = mode.behaviour.revisions;
    let rig = Rig::start_with(&format!("tw-conv-{seed}"), "TWOWAY_CONVERGENCE_HMS_TOKEN", &policy, &initial, mode.behaviour, conditional, !mode.blind).await;
    let mut first: BTreeMap<u64, Value> = initial.iter().map(|s| (s["id"].as_u64().unwrap(), hms_content(s))).collect();
    let mut edits: Vec<(u64, Edit)> = Vec::new();
    // Records created during the run, and deletes.
    let mut all_ids = ids.clone();
    let mut deletes: Vec<(u64, Delete)> = Vec::new();
    let live_in_hms = |all: &[u64]| all.iter().copied().filter(|id| rig.hms.shift(*id).is_some()).collect::<Vec<u64>>();
    let live_in_lotus = |all: &[u64]| all.iter().copied().filter(|id| rig.lotus.live_doc(*id).is_some()).collect::<Vec<u64>>();
    let new_values = |rng: &mut XorShift| FIELDS.map(|(_, _, vals)| *rng.pick(&vals));
    let target = 10 + rng.below(11);
    let mut history = vec![format!("mode: {}", mode.name())];
    let mut held: Vec<Value> = Vec::new();
    let (mut done, mut steps) = (0, 0);
    let fail = |history: &[String], why: String| Err(format!("seed {seed}: {why}\nhistory:\n  {}", history.join("\n  ")));
    // Which fields each side edits: all, or (merge) HMS the times and rangers the assignee.
    let hms_fields: &[usize] = if mode.merge { &[0, 1] } else { &[0, 1, 2] };
    let lotus_fields: &[usize] = if mode.merge { &[2] } else { &[0, 1, 2] };
    let pick_value = |rng: &mut XorShift, current: &Value, values: &[&'static str; 4]| loop {
        let v = *rng.pick(values);
        if *current != v {
            break v;
        }
    };
    while done < target {
        steps += 1;
        if steps > 400 {
            return fail(&history, "too many steps".into());
        }
        let (hms_live, lotus_live) = (live_in_hms(&all_ids), live_in_lotus(&all_ids));
        let churn = rng.chance(12);
        match rng.below(12) {
            0..=3 if churn || hms_live.is_empty() => {
                // A user creates a shift in HMS (pushed), or deletes one (its deletion pushed).
                if !mode.deletes || hms_live.is_empty() || rng.chance(50) {
                    let id = 100 + all_ids.len() as u64 + 1;
                    let v = new_values(&mut rng);
                    let snap = rig.hms.edit(id, json!({ "startAt": v[0], "endAt": v[1], "assignee": v[2] }));
                    all_ids.push(id);
                    first.insert(id, hms_content(&snap));
                    history.push(format!("t={} HMS creates {id} {}", snap["updatedAt"], hms_content(&snap)));
                    rig.push(&snap).await;
                } else {
                    let id = *rng.pick(&hms_live);
                    rig.clock.tick();
                    let gone = rig.hms.delete(id);
                    deletes.push((id, Delete { tick: rig.clock.now(), lotus: false }));
                    history.push(format!("t={} HMS deletes {id}", rig.clock.now()));
                    rig.push(&gone).await;
                }
                done += 1;
            }
            4..=6 if churn || lotus_live.is_empty() => {
                // A ranger creates a document in Lotus, or deletes one (a tombstone in the feed).
                if !mode.deletes || lotus_live.is_empty() || rng.chance(50) {
                    let id = 100 + all_ids.len() as u64 + 1;
                    let v = new_values(&mut rng);
                    let doc = rig.lotus.ranger_edit(id, json!({ "BeginTime": v[0], "FinishTime": v[1], "RangerName": v[2] }));
                    all_ids.push(id);
                    first.insert(id, lotus_content(&doc));
                    history.push(format!("t={} Lotus creates {id} {}", doc["LastModified"], lotus_content(&doc)));
                } else {
                    let id = *rng.pick(&lotus_live);
                    let tomb = rig.lotus.ranger_delete(id);
                    deletes.push((id, Delete { tick: rig.clock.now(), lotus: true }));
                    history.push(format!("t={} Lotus deletes {id}", tomb["LastModified"]));
                }
                done += 1;
            }
            0..=3 => {
                let id = *rng.pick(&hms_live);
                // Mostly a mapped field; sometimes only `notes`, which the mapping does not
                // name (HMS pushes the shift all the same, with a new updatedAt).
                let (field, value) = if rng.chance(25) {
                    ("notes", format!("note {}", rig.clock.now() + 1))
                } else {
                    let (field, _, values) = FIELDS[*rng.pick(hms_fields)];
                    let current = rig.hms.shift(id).unwrap()[field].clone();
                    (field, pick_value(&mut rng, &current, &values).to_string())
                };
                if rng.chance(20) {
                    rig.lotus.fail_next_write();
                    history.push("Lotus: next write fails with 503".into());
                }
                let snap = rig.hms.edit(id, json!({ field: value }));
                let t = snap["updatedAt"].as_u64().unwrap();
                // A `notes` edit changes no synced field, but it does re-stamp HMS's record
                // (see `acceptable`).
                edits.push((id, Edit { tick: rig.clock.now(), stamp: t, lotus: false, field, value: value.clone(), content: hms_content(&snap) }));
                done += 1;
                if rng.chance(25) {
                    history.push(format!("t={t} HMS edit {id} {field}={value} (webhook held back)"));
                    held.push(snap);
                } else {
                    let twice = rng.chance(20);
                    history.push(format!("t={t} HMS edit {id} {field}={value} (pushed{})", if twice { " twice" } else { "" }));
                    rig.push(&snap).await;
                    if twice {
                        rig.push(&snap).await;
                    }
                }
            }
            4..=6 => {
                let id = *rng.pick(&lotus_live);
                let (hms_field, field, values) = FIELDS[*rng.pick(lotus_fields)];
                let current = rig.lotus.doc(id).unwrap()[field].clone();
                let value = pick_value(&mut rng, &current, &values);
                if rng.chance(20) {
                    rig.hms.fail_next_write();
                    history.push("HMS: next write fails with 503".into());
                }
                if rng.chance(20) {
                    rig.hms.duplicate_next_echo();
                    history.push("HMS: next echo sent twice".into());
                }
                let doc = rig.lotus.ranger_edit(id, json!({ field: value }));
                let t = doc["LastModified"].as_u64().unwrap();
                edits.push((id, Edit { tick: rig.clock.now(), stamp: t, lotus: true, field: hms_field, value: value.to_string(), content: lotus_content(&doc) }));
                done += 1;
                history.push(format!("t={t} Lotus edit {id} {field}={value}"));
            }
            7 if mode.behaviour.revisions => {
                // An edit that lands while a sync of the same record is in flight: right
                // after the service reads the record, before it writes.
                if rng.chance(50) && !lotus_live.is_empty() {
                    let id = *rng.pick(&lotus_live);
                    let (_, field, values) = FIELDS[*rng.pick(lotus_fields)];
                    let value = pick_value(&mut rng, &rig.lotus.doc(id).unwrap()[field].clone(), &values);
                    rig.lotus.edit_after_next_read(id, json!({ field: value }));
                    history.push(format!("Lotus: ranger edit {id} {field}={value} lands after the next read"));
                } else if !hms_live.is_empty() {
                    let id = *rng.pick(&hms_live);
                    let (field, _, values) = FIELDS[*rng.pick(hms_fields)];
                    let value = pick_value(&mut rng, &rig.hms.shift(id).unwrap()[field].clone(), &values);
                    rig.hms.edit_after_next_read(id, json!({ field: value }));
                    history.push(format!("HMS: user edit {id} {field}={value} lands after the next read"));
                }
            }
            7..=9 => {
                if rng.chance(30) {
                    rig.lotus.shuffle_next_feed(seed);
                    history.push("Lotus: next feed shuffled".into());
                }
                let r = rig.sync().await;
                history.push(format!("sync: {}", r["pull"]));
            }
            _ => {
                rng.shuffle(&mut held);
                for snap in held.drain(..) {
                    history.push(format!("late webhook of HMS {} at t={}", snap["id"], snap["updatedAt"]));
                    rig.push(&snap).await;
                }
            }
        }
        if let Err(e) = rig.settle().await {
            return fail(&history, e);
        }
        // Edits that landed between a read and a write: the ranger's is in Lotus; the HMS
        // user's is pushed by HMS like any change.
        if let Err(e) = note_edits_after_reads(&rig, &mut edits, &mut history, &mut done).await {
            return fail(&history, e);
        }
    }
    for snap in held.drain(..) {
        history.push(format!("late webhook of HMS {} at t={}", snap["id"], snap["updatedAt"]));
        rig.push(&snap).await;
    }
    let mut rounds = 0;
    let (lotus_w, hms_w) = loop {
        let (lotus_w, hms_w, _) = match rig.quiesce().await {
            Ok(c) => c,
            Err(e) => return fail(&history, e),
        };
        rounds += 1;
        match note_edits_after_reads(&rig, &mut edits, &mut history, &mut done).await {
            Ok(0) => break (lotus_w, hms_w),
            Ok(_) if rounds < 5 => {}
            Ok(_) => return fail(&history, "still editing after 5 quiet rounds".into()),
            Err(e) => return fail(&history, e),
        }
    };
    // Edits still waiting for a read never happened.
    rig.lotus.take_pending_edit();
    rig.hms.take_pending_edit();
    let tickets = rig.tickets().await;
    let ticket_lines = || tickets.iter().map(|t| format!("{} {} {} {} {}", ticket_key(t), t["direction"], t["status"], t["eventId"], reason(t))).collect::<Vec<_>>().join("\n    ");
    let mut problems = Vec::new();
    for id in &all_ids {
        let h = rig.hms.shift(*id).map(|s| hms_content(&s));
        let l = rig.lotus.live_doc(*id).map(|d| lotus_content(&d));
        let of_id: Vec<&Edit> = edits.iter().filter(|(i, _)| i == id).map(|(_, e)| e).collect();
        let mut ok = acceptable(mode, &first[id], &of_id);
        // A delete after the record's last edit ends it on both sides, unless the other
        // side edited it since the last sync: an edit wins over a delete, so that side's
        // record then survives on both sides. (A `notes` edit changes no synced field: it
        // is no edit of the synced record, and cannot beat a delete.)
        let last_edit = of_id.iter().filter(|e| e.field != "notes").map(|e| e.tick).max();
        let last_delete = deletes.iter().filter(|(i, _)| i == id).map(|(_, d)| d).max_by_key(|d| d.tick);
        let deleted_last = last_delete.filter(|d| last_edit.is_none_or(|e| d.tick > e));
        if let Some(d) = deleted_last {
            let before = deletes.iter().filter(|(i, o)| i == id && o.tick < d.tick).map(|(_, o)| o.tick).max().unwrap_or(0);
            ok.extend(of_id.iter().filter(|e| e.lotus != d.lotus && e.tick > before && e.field != "notes").map(|e| e.content.clone()));
        }
        // A conflict the rule decided (its ticket says so) goes to the ranger's record that
        // assigned Di, even when an HMS edit was later.
        if mode.rules && tickets.iter().any(|t| ticket_key(t) == id.to_string() && reason(t).starts_with("rule 1 ")) {
            ok.extend(of_id.iter().filter(|e| e.lotus && e.content["assignee"] == "Di").map(|e| e.content.clone()));
        }
        // Unread, an edit may be lost: then its record has a conflict ticket (findable).
        let ticketed = mode.blind && tickets.iter().any(|t| t["status"] == "conflict" && ticket_key(t) == id.to_string());
        let want = || ok.iter().map(Value::to_string).collect::<Vec<_>>().join(" or ");
        match (h, l) {
            (None, None) if deleted_last.is_none() => problems.push(format!("shift {id}: deleted on both sides, but its latest change was an edit ({})", want())),
            (None, None) => {}
            (Some(h), Some(l)) if h == l && (ok.contains(&h) || ticketed) => {}
            (h, l) => problems.push(format!(
                "shift {id}: the latest change was {}{}; HMS has {}, Lotus has {}",
                if deleted_last.is_some() { "a delete, or " } else { "" },
                want(),
                h.map_or("nothing".into(), |v| v.to_string()),
                l.map_or("nothing".into(), |v| v.to_string())
            )),
        }
    }
    // At most one write to each side per user edit (plus one per record for the start).
    let bound = done + n;
    if lotus_w > bound || hms_w > bound {
        problems.push(format!("too many writes: Lotus {lotus_w}, HMS {hms_w} for {done} edits (bound {bound} each)"));
    }
    let completed = tickets.iter().filter(|t| t["status"] == "completed").count() as u64;
    let changed = all_ids.iter().filter(|id| edits.iter().any(|(i, e)| i == *id && e.content != first[*id])).count() as u64;
    if completed < changed.min(1) {
        problems.push(format!("{completed} completed tickets for {changed} changed records"));
    }
    // A change the target already held (the same edit on both sides) completes without a
    // write, and says so.
    let already = tickets.iter().filter(|t| t["status"] == "completed" && reason(t).contains("already holds")).count() as u64;
    if completed - already != lotus_w + hms_w {
        problems.push(format!("{completed} completed tickets ({already} already there) for {} writes", lotus_w + hms_w));
    }
    if let Some(t) = tickets.iter().find(|t| (t["status"] == "conflict" && !mode.blind) || t["status"] == "parked") {
        problems.push(format!("unexpected ticket {t}"));
    }
    if !rig.hms.echo_errors().is_empty() {
        problems.push(format!("HMS echoes failed: {:?}", rig.hms.echo_errors()));
    }
    if !problems.is_empty() {
        history.push(format!("final: Lotus writes {:?}", rig.lotus.write_log()));
        history.push(format!("final: HMS writes {:?}", rig.hms.write_log()));
        history.push(format!("tickets:\n    {}", ticket_lines()));
        return fail(&history, problems.join("; "));
    }
    rig.app.stop().await;
    Ok(format!(
        "seed {seed} ({}): {n} records ({} created, {} deletes), {done} user changes, {} writes to Lotus ({} failed once, {} refused as stale), {} to HMS ({} failed once, {} refused as stale), {completed} completed tickets, {} conflict tickets, {} decided by the rule",
        mode.name(),
        all_ids.len() as u64 - n,
        deletes.len(),
        lotus_w,
        rig.lotus.failed_writes(),
        rig.lotus.stale_refused(),
        hms_w,
        rig.hms.failed_writes(),
        rig.hms.stale_refused(),
        tickets.iter().filter(|t| t["status"] == "conflict").count(),
        tickets.iter().filter(|t| reason(t).starts_with("rule 1 ")).count(),
    ))
}

/// Records the edits that landed right after a read since the last call (the HMS ones are
/// pushed, as HMS does after every change); how many there were.
async fn note_edits_after_reads(rig: &Rig, edits: &mut Vec<(u64, Edit)>, history: &mut Vec<String>, done: &mut u64) -> Result<usize, String> {
    let mut found = 0;
    let first_field = |changes: &Value, lotus: bool| {
        FIELDS.iter().find(|(h, l, _)| changes.get(if lotus { *l } else { *h }).is_some()).map(|(h, l, _)| (*h, changes[if lotus { *l } else { *h }].as_str().unwrap_or_default().to_string()))
    };
    for (changes, doc, tick) in rig.lotus.take_edited_after_read() {
        let id = doc["ShiftID"].as_u64().unwrap_or_default();
        let t = doc["LastModified"].as_u64().unwrap_or_default();
        let (field, value) = first_field(&changes, true).unwrap_or(("assignee", String::new()));
        history.push(format!("t={t} Lotus edit {id} {changes} landed after a read"));
        edits.push((id, Edit { tick, stamp: t, lotus: true, field, value, content: lotus_content(&doc) }));
        *done += 1;
        found += 1;
    }
    for (changes, snap, tick) in rig.hms.take_edited_after_read() {
        let id = snap["id"].as_u64().unwrap_or_default();
        let t = snap["updatedAt"].as_u64().unwrap_or_default();
        let (field, value) = first_field(&changes, false).unwrap_or(("startAt", String::new()));
        history.push(format!("t={t} HMS edit {id} {changes} landed after a read (pushed)"));
        edits.push((id, Edit { tick, stamp: t, lotus: false, field, value, content: hms_content(&snap) }));
        *done += 1;
        found += 1;
        rig.push(&snap).await;
        rig.settle().await?;
    }
    Ok(found)
}

#[actix_web::test]
async fn both_sides_converge_to_the_last_writer_for_random_seeds() {
    use futures_util::FutureExt;
    let n: u64 = std::env::var("HMS_SYNC_CONVERGENCE_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let token_var = "TWOWAY_CONVERGENCE_HMS_TOKEN";
    unsafe { std::env::set_var(token_var, format!("token-for-{token_var}")) };
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut converged = 0;
    // `HMS_SYNC_CONVERGENCE_FIRST=37 HMS_SYNC_CONVERGENCE_SEEDS=1` replays one seed.
    let first: u64 = std::env::var("HMS_SYNC_CONVERGENCE_FIRST").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let seeds: Vec<u64> = (first..first + n).collect();
    // A few seeds at a time: each has its own app and systems.
    for batch in seeds.chunks(5) {
        let runs = batch.iter().map(|seed| {
            let seed = *seed;
            std::panic::AssertUnwindSafe(converge_one(seed)).catch_unwind().map(move |r| (seed, r))
        });
        for (seed, result) in futures_util::future::join_all(runs).await {
            match result {
                Ok(Ok(summary)) => {
                    converged += 1;
                    eprintln!("{summary}");
                }
                Ok(Err(why)) => failures.push(why),
                Err(panic) => {
                    let msg = hms_sync::actors::panics::message(&*panic).unwrap_or_default();
                    failures.push(format!("seed {seed}: panicked: {msg}"));
                }
            }
        }
    }
    eprintln!("converged {converged} of {n} seeds in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{} of {n} seeds did not converge:\n{}", failures.len(), failures.join("\n\n"));
}

/// Issue 14: a manual conflict settled in the console, in headless Chromium: the three
/// records side by side with each side's changes marked, then "HMS wins".
#[actix_web::test]
async fn manual_conflict_resolved_in_the_console_shows_both_sides_and_applies_the_winner() {
    let Some(b) = crate::helpers::browser::Browser::start("conflict").await else { return };
    let rig = Rig::start("tw-console", "TWOWAY_CONSOLE_HMS_TOKEN", "policy: manual", &[shift(3, "08:00", "16:00", "Ana", 1)]).await;
    let job = manual_conflict(&rig, 3).await;
    let job_id = job["id"].as_i64().unwrap();
    b.goto(&format!("{}/ui/parked/{job_id}", rig.app.base)).await;
    b.wait_text("#conflict", "startAt").await;
    // HMS changed startAt, the ranger changed assignee: each marked on its own side only.
    let marked = b
        .exec("return [...document.querySelectorAll('#conflict tbody tr')].map(r => [r.cells[0].textContent, r.cells[2].classList.contains('changed'), r.cells[3].classList.contains('changed')])")
        .await;
    let row = |name: &str| marked.as_array().unwrap().iter().find(|r| r[0] == name).cloned().unwrap_or_else(|| panic!("no row {name}: {marked}"));
    assert_eq!(row("startAt"), json!(["startAt", true, false]), "{marked}");
    assert_eq!(row("assignee"), json!(["assignee", false, true]), "{marked}");
    b.screenshot("conflict").await;
    b.click("#hms-wins").await;
    let asked = b.accept_dialog().await;
    assert!(asked.contains("HMS version"), "{asked}");
    b.wait_text("#job-status", "discarded").await;
    rig.settle().await.unwrap();
    rig.sync().await;
    rig.quiesce().await.unwrap();
    let hms_version = json!({"startAt": "06:00", "endAt": "16:30", "assignee": "Ana"});
    rig.assert_ends_as(3, &hms_version, "HMS wins, in the console").await;
    let resolved = rig.tickets_where(|t| t["status"] == "skipped" && t["deliveryId"] == job_id).await;
    assert_eq!(resolved[0]["detail"]["by"], "local", "{resolved:#?}");
    b.quit().await;
}
