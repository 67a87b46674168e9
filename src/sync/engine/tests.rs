//! The decision, case by case: content before versions, echoes of re-stamped writes, the
//! policies, the merge, and what the link becomes.

use serde_json::{Value, json};

use super::*;
use crate::spec::model::{FieldRule, Policy, ResolveSpec, Side};

fn resolve(policy: Policy) -> ResolveSpec {
    ResolveSpec { policy, ..ResolveSpec::default() }
}

fn table() -> Vec<(String, String)> {
    [("id", "ShiftID"), ("startAt", "BeginTime"), ("assignee", "RangerName"), ("updatedAt", "LastModified")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn shift(start: &str, who: &str, t: u64) -> Value {
    json!({"id": 7, "startAt": start, "assignee": who, "updatedAt": t})
}

/// The link after `rec` was synced to both sides (each side holding it unchanged).
fn synced(rules: &Rules, rec: &Value) -> Synced {
    let h = rules.content(rec);
    Synced { base: Some(rules.project(rec)), hms_hash: Some(h.clone()), external_hash: Some(h), ..Default::default() }
}

fn run(policy: Policy, link: Option<&Synced>, source: Side, rec: &Value, source_now: Current, target_now: Current) -> Verdict {
    let (r, t) = (resolve(policy), table());
    decide(&Rules { resolve: &r, table: &t }, link, source, rec, Kind::Change, &source_now, &target_now, None)
}

fn rules_for<T>(policy: Policy, f: impl FnOnce(&Rules) -> T) -> T {
    let (r, t) = (resolve(policy), table());
    f(&Rules { resolve: &r, table: &t })
}

fn applied(v: &Verdict) -> (Side, Value) {
    match v {
        Verdict::Apply { to, record, .. } => (*to, record.clone()),
        other => panic!("expected Apply, got {other:?}"),
    }
}

fn skipped(v: &Verdict) -> String {
    match v {
        Verdict::Skip { reason, .. } => reason.clone(),
        other => panic!("expected Skip, got {other:?}"),
    }
}

#[test]
fn a_target_that_restamped_our_write_has_not_changed() {
    // Synced A at 10 (Lotus re-stamped our write to 11). HMS edits B at 10.5: older than the
    // target's stamp, but the target holds exactly what was synced, so B is applied.
    let a = shift("08:00", "Ana", 10);
    let link = rules_for(Policy::LastWriterWins, |r| synced(r, &a));
    let b = json!({"id": 7, "startAt": "09:00", "assignee": "Ana", "updatedAt": 10.5});
    let v = run(Policy::LastWriterWins, Some(&link), Side::Hms, &b, Current::Present(b.clone()), Current::Present(shift("08:00", "Ana", 11)));
    assert_eq!(applied(&v), (Side::Legacy, b));
}

#[test]
fn an_echo_is_recognised_by_content_whatever_its_stamp() {
    let a = shift("08:00", "Ana", 10);
    let link = rules_for(Policy::LastWriterWins, |r| synced(r, &a));
    let echo = shift("08:00", "Ana", 99);
    let v = run(Policy::LastWriterWins, Some(&link), Side::Legacy, &echo, Current::Unknown, Current::Unknown);
    assert!(skipped(&v).starts_with("echo"), "{v:?}");
}

#[test]
fn a_late_echo_of_an_older_write_is_recognised_without_a_read() {
    let rules_link = rules_for(Policy::LastWriterWins, |r| {
        let mut l = synced(r, &shift("10:00", "Ana", 20));
        l.external_written = vec![r.content(&shift("09:00", "Ana", 0))];
        l
    });
    let late = shift("09:00", "Ana", 15);
    let v = run(Policy::LastWriterWins, Some(&rules_link), Side::Legacy, &late, Current::Unknown, Current::Unknown);
    assert!(skipped(&v).contains("earlier write of ours"), "{v:?}");
    // With a read of the source proving it holds that content, it is a real change.
    let v = run(Policy::LastWriterWins, Some(&rules_link), Side::Legacy, &late, Current::Present(late.clone()), Current::Unknown);
    assert_eq!(applied(&v).0, Side::Hms);
}

#[test]
fn a_superseded_notification_is_skipped() {
    let v = run(Policy::LastWriterWins, None, Side::Hms, &shift("08:00", "Ana", 1), Current::Present(shift("09:00", "Ana", 2)), Current::Unknown);
    assert!(skipped(&v).starts_with("superseded"), "{v:?}");
}

#[test]
fn a_late_webhook_older_than_the_source_version_seen_is_stale() {
    let mut link = rules_for(Policy::LastWriterWins, |r| synced(r, &shift("10:00", "Ana", 20)));
    link.hms_version = Some(json!(20));
    let v = run(Policy::LastWriterWins, Some(&link), Side::Hms, &shift("07:00", "Ana", 12), Current::Unknown, Current::Unknown);
    assert!(skipped(&v).starts_with("stale"), "{v:?}");
}

#[test]
fn both_changed_the_later_version_wins_and_a_loser_takes_the_winner() {
    let a = shift("08:00", "Ana", 10);
    let link = rules_for(Policy::LastWriterWins, |r| synced(r, &a));
    let hms = shift("09:00", "Ana", 12);
    let lotus = shift("08:00", "Bo", 13);
    // HMS's change (12) meets the ranger's (13): the ranger's version goes to HMS.
    let v = run(Policy::LastWriterWins, Some(&link), Side::Hms, &hms, Current::Present(hms.clone()), Current::Present(lotus.clone()));
    assert_eq!(applied(&v), (Side::Hms, lotus.clone()));
    // Without a read of the source, nothing is written back: the ranger's change brings it.
    let v = run(Policy::LastWriterWins, Some(&link), Side::Hms, &hms, Current::Unknown, Current::Present(lotus.clone()));
    assert!(skipped(&v).contains("conflict lost"), "{v:?}");
    // The ranger's change meets HMS's: it is newer, applied to HMS.
    let v = run(Policy::LastWriterWins, Some(&link), Side::Legacy, &lotus, Current::Present(lotus.clone()), Current::Present(hms.clone()));
    assert_eq!(applied(&v), (Side::Hms, lotus));
}

#[test]
fn a_change_that_lost_unread_is_marked_and_the_winner_goes_there_even_as_last_synced() {
    let lww = Policy::LastWriterWins;
    let a = shift("08:00", "Ana", 10);
    let link = rules_for(lww, |r| synced(r, &a));
    let hms = shift("09:00", "Ana", 12);
    let lotus = shift("08:00", "Bo", 13);
    // HMS's change loses to the ranger's, and HMS could not be read: nothing is written back
    // now, and the link marks HMS as holding a change that lost (its hash that change's).
    let v = run(lww, Some(&link), Side::Hms, &hms, Current::Unknown, Current::Present(lotus.clone()));
    let Verdict::Skip { link: Some(marked), .. } = &v else { panic!("{v:?}") };
    assert!(marked.lost(Side::Hms) && !marked.lost(Side::Legacy), "{marked:?}");
    assert_eq!(marked.hash(Side::Hms), None, "a change that lost was never synced");
    assert_eq!(marked.hms_hash, Some(rules_for(lww, |r| r.content(&hms))));
    // The ranger puts the record back as it was last synced: the content last synced, but
    // HMS holds the change that lost, so it goes there.
    let back = shift("08:00", "Ana", 14);
    let v = run(lww, Some(marked), Side::Legacy, &back, Current::Present(back.clone()), Current::Present(hms.clone()));
    let Verdict::Apply { to, record, link: mut after, .. } = v else { panic!("{v:?}") };
    assert_eq!((to, &record), (Side::Hms, &back));
    rules_for(lww, |r| after.observe_write(r, Side::Hms, &record, None));
    assert!(!after.lost(Side::Hms) && after.hash(Side::Hms).is_some(), "written there: synced, no longer marked: {after:?}");
    // Without the mark the same notification is an echo.
    let v = run(lww, Some(&link), Side::Legacy, &back, Current::Present(back.clone()), Current::Present(hms));
    assert!(skipped(&v).starts_with("echo"), "{v:?}");
}

#[test]
fn equal_stamps_with_different_content_are_never_a_no_op() {
    let link = rules_for(Policy::LastWriterWins, |r| synced(r, &shift("08:00", "Ana", 10)));
    let hms = shift("09:00", "Ana", 20);
    let lotus = shift("08:00", "Bo", 20);
    let v = run(Policy::LastWriterWins, Some(&link), Side::Hms, &hms, Current::Present(hms.clone()), Current::Present(lotus.clone()));
    // The target's state was seen later (now): it wins, and goes to HMS.
    assert_eq!(applied(&v), (Side::Hms, lotus));
}

#[test]
fn versions_compare_as_numbers_or_instants() {
    use std::cmp::Ordering::*;
    assert_eq!(compare_versions(&json!(10), &json!(9)), Greater);
    assert_eq!(compare_versions(&json!("10"), &json!(9)), Greater);
    assert_eq!(compare_versions(&json!("2024-05-10T08:00:00.5Z"), &json!("2024-05-10T08:00:00Z")), Greater);
    assert_eq!(compare_versions(&json!("2024-05-10T09:00:00+02:00"), &json!("2024-05-10T08:00:00Z")), Less);
    assert_eq!(compare_versions(&json!(3), &json!(3.0)), Equal);
}

#[test]
fn content_ignores_the_version_and_unmapped_fields() {
    let t = table();
    let a = content(&json!({"id": 72, "startAt": "08:00", "updatedAt": 5, "x": 1}), &t, "updatedAt");
    let b = content(&json!({"id": 72, "startAt": "08:00", "updatedAt": 9}), &t, "updatedAt");
    let c = content(&json!({"id": 72, "startAt": "09:00", "updatedAt": 5}), &t, "updatedAt");
    assert_eq!(a, b, "a new timestamp alone is not a change");
    assert_ne!(a, c);
}

#[test]
fn a_target_already_holding_the_content_completes_the_job() {
    // Our write landed, the outcome was not committed (crash): the retry finds it there.
    let link = rules_for(Policy::LastWriterWins, |r| synced(r, &shift("08:00", "Ana", 10)));
    let b = shift("09:00", "Ana", 12);
    let v = run(Policy::LastWriterWins, Some(&link), Side::Hms, &b, Current::Present(b.clone()), Current::Present(shift("09:00", "Ana", 13)));
    let Verdict::AlreadyThere { link, .. } = v else { panic!("{v:?}") };
    assert_eq!(link.base, rules_for(Policy::LastWriterWins, |r| Some(r.project(&b))));
}

#[test]
fn merge_takes_each_side_s_own_changes() {
    let base = shift("08:00", "Ana", 10);
    let link = rules_for(Policy::Merge, |r| synced(r, &base));
    let hms = shift("09:00", "Ana", 12);
    let lotus = shift("08:00", "Bo", 13);
    let v = run(Policy::Merge, Some(&link), Side::Hms, &hms, Current::Present(hms.clone()), Current::Present(lotus));
    let Verdict::Apply { to, record, then_back, link, .. } = v else { panic!("{v:?}") };
    assert_eq!(to, Side::Legacy);
    assert_eq!(record, json!({"id": 7, "startAt": "09:00", "assignee": "Bo", "updatedAt": 13}));
    assert_eq!(then_back, Some(record.clone()), "HMS gets the ranger's assignee too");
    // Until HMS has it, HMS's next edit starts from what it holds.
    assert_eq!(link.base, rules_for(Policy::Merge, |r| Some(r.project(&hms))));
}

#[test]
fn merge_of_one_field_changed_on_both_sides_follows_the_rule() {
    let base = shift("08:00", "Ana", 10);
    let link = rules_for(Policy::Merge, |r| synced(r, &base));
    let hms = shift("09:00", "Cy", 12);
    let lotus = shift("08:00", "Bo", 13);
    // last-writer: the ranger's assignee (13 > 12), HMS's start.
    let v = run(Policy::Merge, Some(&link), Side::Hms, &hms, Current::Present(hms.clone()), Current::Present(lotus.clone()));
    assert_eq!(applied(&v).1, json!({"id": 7, "startAt": "09:00", "assignee": "Bo", "updatedAt": 13}));
    // manual: parked, naming the field.
    let mut r = resolve(Policy::Merge);
    r.conflicts = FieldRule::Manual;
    let t = table();
    let v = decide(&Rules { resolve: &r, table: &t }, Some(&link), Side::Hms, &hms, Kind::Change, &Current::Present(hms.clone()), &Current::Present(lotus.clone()), None);
    let Verdict::Conflict { reason } = v else { panic!("{v:?}") };
    assert!(reason.contains("assignee") && !reason.contains("startAt"), "{reason}");
    // an owner settles it.
    r.owners = vec![("assignee".into(), Side::Hms)];
    let v = decide(&Rules { resolve: &r, table: &t }, Some(&link), Side::Hms, &hms, Kind::Change, &Current::Present(hms.clone()), &Current::Present(lotus), None);
    assert_eq!(applied(&v), (Side::Legacy, hms), "every field is HMS's: its record as it is");
}

#[test]
fn the_merged_second_half_is_not_taken_for_an_echo() {
    let hms = shift("09:00", "Ana", 12);
    let merged = shift("09:00", "Bo", 13);
    let mut link = rules_for(Policy::Merge, |r| synced(r, &hms));
    rules_for(Policy::Merge, |r| link.observe_write(r, Side::Legacy, &merged, None));
    let (r, t) = (resolve(Policy::Merge), table());
    let rules = Rules { resolve: &r, table: &t };
    let v = decide(&rules, Some(&link), Side::Legacy, &merged, Kind::Merged, &Current::Unknown, &Current::Present(hms.clone()), None);
    assert_eq!(applied(&v), (Side::Hms, merged.clone()));
    // A plain notification of the same content is our echo.
    let v = decide(&rules, Some(&link), Side::Legacy, &merged, Kind::Change, &Current::Unknown, &Current::Present(hms), None);
    assert!(skipped(&v).starts_with("echo"), "{v:?}");
}

#[test]
fn a_reformatting_target_is_known_by_its_answer() {
    // We send 09:00; the target stores and answers "09:00:00".
    let rules_t = (resolve(Policy::LastWriterWins), table());
    let rules = Rules { resolve: &rules_t.0, table: &rules_t.1 };
    let sent = shift("09:00", "Ana", 12);
    let stored = shift("09:00:00", "Ana", 14);
    let mut link = synced(&rules, &shift("08:00", "Ana", 10));
    link.base = Some(rules.project(&sent));
    link.observe_write(&rules, Side::Legacy, &sent, Some(&stored));
    // Its feed then shows the reformatted record: an echo, not a change.
    let v = decide(&rules, Some(&link), Side::Legacy, &stored, Kind::Change, &Current::Present(stored.clone()), &Current::Present(sent.clone()), None);
    assert!(skipped(&v).starts_with("echo"), "{v:?}");
    // And an HMS edit finds the target unchanged since the sync.
    let next = shift("10:00", "Ana", 15);
    let v = decide(&rules, Some(&link), Side::Hms, &next, Kind::Change, &Current::Present(next.clone()), &Current::Present(stored), None);
    assert_eq!(applied(&v), (Side::Legacy, next));
}

#[test]
fn sides_win_and_manual_parks() {
    let link = rules_for(Policy::HmsWins, |r| synced(r, &shift("08:00", "Ana", 10)));
    let hms = shift("09:00", "Ana", 12);
    let lotus = shift("08:00", "Bo", 13);
    let v = run(Policy::HmsWins, Some(&link), Side::Hms, &hms, Current::Present(hms.clone()), Current::Present(lotus.clone()));
    assert_eq!(applied(&v), (Side::Legacy, hms.clone()));
    let v = run(Policy::HmsWins, Some(&link), Side::Legacy, &lotus, Current::Present(lotus.clone()), Current::Present(hms.clone()));
    assert_eq!(applied(&v), (Side::Legacy, hms.clone()), "the loser takes HMS's version");
    let v = run(Policy::Manual, Some(&link), Side::Hms, &hms, Current::Present(hms.clone()), Current::Present(lotus));
    assert!(matches!(v, Verdict::Conflict { .. }), "{v:?}");
}

#[test]
fn a_resolver_rule_decides_before_the_policy_and_says_so() {
    let mut r = resolve(Policy::LastWriterWins);
    r.rules = vec![crate::spec::model::RuleSpec { when: "hms.role == 'manager'".into(), then: Policy::HmsWins }];
    let t = table();
    let rules = Rules { resolve: &r, table: &t };
    let link = synced(&rules, &shift("08:00", "Ana", 10));
    let hms = shift("09:00", "Ana", 12);
    let lotus = shift("08:00", "Bo", 13);
    // The ranger's edit is newer, but the rule (held: index 0) gives HMS the record.
    let v = decide(&rules, Some(&link), Side::Legacy, &lotus, Kind::Change, &Current::Present(lotus.clone()), &Current::Present(hms.clone()), Some(0));
    let Verdict::Apply { to, record, why, .. } = v else { panic!("{v:?}") };
    assert_eq!((to, record), (Side::Legacy, hms.clone()));
    assert!(why.starts_with("rule 1 (hms.role == 'manager'): hms-wins"), "{why}");
    // Without the rule holding, last writer wins.
    let v = decide(&rules, Some(&link), Side::Legacy, &lotus, Kind::Change, &Current::Present(lotus.clone()), &Current::Present(hms), None);
    assert_eq!(applied(&v), (Side::Hms, lotus));
}

#[test]
fn a_delete_applies_where_the_target_is_unchanged_and_loses_to_an_edit() {
    let (r, t) = (resolve(Policy::LastWriterWins), table());
    let rules = Rules { resolve: &r, table: &t };
    let a = shift("08:00", "Ana", 10);
    let link = synced(&rules, &a);
    let gone = json!({"id": 7, "deleted": true});
    // Unchanged target: deleted there, the link becomes a tombstone.
    let v = decide_delete(&rules, Some(&link), Side::Hms, &gone, &Current::Absent, &Current::Present(shift("08:00", "Ana", 11)));
    let Verdict::Delete { to, link: tomb, .. } = v else { panic!("{v:?}") };
    assert_eq!((to, tomb.base.clone()), (Side::Legacy, Some(Value::Null)));
    // Its echo from the other side is recognised.
    let v = decide_delete(&rules, Some(&tomb), Side::Legacy, &gone, &Current::Absent, &Current::Absent);
    assert!(skipped(&v).starts_with("echo"), "{v:?}");
    // An edit made since the last sync wins, and goes back to the side that deleted.
    let edited = shift("08:00", "Bo", 12);
    let v = decide_delete(&rules, Some(&link), Side::Hms, &gone, &Current::Absent, &Current::Present(edited.clone()));
    let Verdict::Apply { to, record, write, .. } = v else { panic!("{v:?}") };
    assert_eq!((to, record, write), (Side::Hms, edited, Write::Create));
    // A notification of a delete whose record is back is superseded.
    let v = decide_delete(&rules, Some(&link), Side::Hms, &gone, &Current::Present(a.clone()), &Current::Present(a));
    assert!(skipped(&v).starts_with("superseded"), "{v:?}");
}

#[test]
fn a_target_without_the_record_gets_a_create() {
    let b = shift("09:00", "Ana", 12);
    let v = run(Policy::LastWriterWins, None, Side::Hms, &b, Current::Present(b.clone()), Current::Absent);
    let Verdict::Apply { to, write, .. } = v else { panic!("{v:?}") };
    assert_eq!((to, write), (Side::Legacy, Write::Create));
}

#[test]
fn a_revert_to_content_we_once_wrote_is_a_change_when_our_write_s_stamp_is_known() {
    let (r, t) = (resolve(Policy::LastWriterWins), table());
    let rules = Rules { resolve: &r, table: &t };
    let bo = shift("08:00", "Bo", 4);
    let mut link = synced(&rules, &shift("08:00", "Ana", 1));
    // We wrote Bo to HMS; HMS answered with its stamp 4.
    link.observe_write(&rules, Side::Hms, &bo, Some(&bo));
    // A user then made it Cy (11), synced; then back to Bo (17): a revert, not our echo.
    let cy = shift("08:00", "Cy", 11);
    link.base = Some(rules.project(&cy));
    link.hms_hash = Some(rules.content(&cy));
    link.hms_version = Some(json!(11));
    link.hms_version_ours = false;
    let revert = shift("08:00", "Bo", 17);
    let v = decide(&rules, Some(&link), Side::Hms, &revert, Kind::Change, &Current::Unknown, &Current::Unknown, None);
    assert_eq!(applied(&v), (Side::Legacy, revert));
    // The notification of our own write (stamp 4) is an echo.
    let v = decide(&rules, Some(&link), Side::Hms, &bo, Kind::Change, &Current::Unknown, &Current::Unknown, None);
    assert!(skipped(&v).starts_with("echo"), "{v:?}");
}

#[test]
fn a_superseded_change_whose_write_landed_before_a_crash_is_linked() {
    let (r, t) = (resolve(Policy::LastWriterWins), table());
    let rules = Rules { resolve: &r, table: &t };
    let link = synced(&rules, &shift("08:00", "Ana", 1));
    let round2 = shift("07:00", "Ana", 5);
    let round3 = shift("09:00", "Ana", 6);
    // Round 2 reached Lotus (re-stamped 53) but its outcome was lost; HMS is at round 3.
    let in_lotus = shift("07:00", "Ana", 53);
    // Never sent before: Lotus holding it is someone's edit, which brings itself.
    let v = decide(&rules, Some(&link), Side::Hms, &round2, Kind::Change, &Current::Present(round3.clone()), &Current::Present(in_lotus.clone()), None);
    assert!(matches!(&v, Verdict::Skip { link: None, .. }), "{v:?}");
    let v = decide(&rules, Some(&link), Side::Hms, &round2, Kind::Resent, &Current::Present(round3.clone()), &Current::Present(in_lotus.clone()), None);
    let Verdict::Skip { link: Some(linked), reason } = v else { panic!("{v:?}") };
    assert!(reason.contains("before a restart"), "{reason}");
    // Round 3 then finds Lotus unchanged since that sync, whatever its newer stamp.
    let v = decide(&rules, Some(&linked), Side::Hms, &round3, Kind::Change, &Current::Present(round3.clone()), &Current::Present(in_lotus), None);
    assert_eq!(applied(&v), (Side::Legacy, round3));
}

#[test]
fn a_create_that_landed_before_a_crash_completes_and_links() {
    let rec = shift("07:00", "Ana", 1);
    let rules_v = |kind| rules_for(Policy::LastWriterWins, |rules| decide(rules, None, Side::Legacy, &rec, kind, &Current::Unknown, &Current::Present(rec.clone()), None));
    // Found by its natural key on a first sync: nothing was written, nothing to write.
    assert!(skipped(&rules_v(Kind::Change)).contains("no change"));
    // The same job sent before a restart: our create landed, the job is done.
    match rules_v(Kind::Resent) {
        Verdict::AlreadyThere { link, .. } => assert!(link.base.is_some()),
        v => panic!("expected AlreadyThere, got {v:?}"),
    }
}

#[test]
fn a_lost_conflict_s_write_back_that_landed_before_a_restart_is_linked_and_the_newer_edit_wins() {
    // The CI run of stop 34: a pulled Lotus record (08:00 at 6, never linked) lost to HMS's
    // 07:00 (at 30), which was written back to Lotus (re-stamped 51); the process was killed
    // before that outcome was stored. HMS moved on to 09:00 (at 42) meanwhile.
    let hms_then = shift("07:00", "Ana", 30);
    let lotus_now = shift("07:00", "Ana", 51);
    let hms_now = shift("09:00", "Ana", 42);
    let written = rules_for(Policy::LastWriterWins, |r| Written { to: Side::Legacy, content: r.content(&hms_then) });
    let (link, why) = rules_for(Policy::LastWriterWins, |r| landed(r, None, &written, Side::Legacy, &Current::Present(lotus_now.clone()), &Current::Present(hms_now.clone())))
        .expect("Lotus holds what was written: the write landed");
    assert!(why.contains("already holds what we wrote"), "{why}");
    let both = rules_for(Policy::LastWriterWins, |r| r.content(&hms_then));
    assert_eq!((link.hms_hash.as_deref(), link.external_hash.as_deref()), (Some(both.as_str()), Some(both.as_str())));
    assert_eq!(link.external_version, Some(json!(51)));
    assert!(link.version_is_ours(Side::Legacy), "Lotus's stamp is on our write, not a ranger's edit");
    // HMS's 09:00 then finds Lotus as last synced: applied, although Lotus's stamp (51) is
    // newer than HMS's (42). Decided without that link, it lost to our own write.
    let v = run(Policy::LastWriterWins, Some(&link), Side::Hms, &hms_now, Current::Present(hms_now.clone()), Current::Present(lotus_now.clone()));
    assert_eq!(applied(&v), (Side::Legacy, hms_now.clone()));
    let unlinked = run(Policy::LastWriterWins, None, Side::Hms, &hms_now, Current::Present(hms_now.clone()), Current::Present(lotus_now.clone()));
    assert_eq!(applied(&unlinked).0, Side::Hms, "the failure this guards against: {unlinked:?}");
}

#[test]
fn a_write_that_did_not_land_is_decided_again() {
    let written = rules_for(Policy::LastWriterWins, |r| Written { to: Side::Legacy, content: r.content(&shift("07:00", "Ana", 30)) });
    for lotus in [Current::Present(shift("08:00", "Ana", 6)), Current::Absent, Current::Unknown] {
        let got = rules_for(Policy::LastWriterWins, |r| landed(r, None, &written, Side::Legacy, &lotus, &Current::Present(shift("09:00", "Ana", 42))));
        assert_eq!(got, None, "Lotus {lotus:?}");
    }
    // The side is the one written, not the one that happens to hold the content.
    let to_hms = rules_for(Policy::LastWriterWins, |r| Written { to: Side::Hms, content: r.content(&shift("07:00", "Ana", 30)) });
    let got = rules_for(Policy::LastWriterWins, |r| landed(r, None, &to_hms, Side::Legacy, &Current::Present(shift("07:00", "Ana", 51)), &Current::Present(shift("09:00", "Ana", 42))));
    assert_eq!(got, None);
}
