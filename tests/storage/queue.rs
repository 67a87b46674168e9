//! Suite part: the delivery queue (idempotent enqueue, per-key heads, retries, parking).

use std::time::Duration;

use chrono::Utc;
use hms_sync::mapping::Payload;
use hms_sync::storage::{self, Claimant, Db, NewDelivery, Share};
use sea_orm::{ConnectionTrait, DbBackend};
use serde_json::json;

use super::poll::poll_until;

/// The instance these tests claim as, when only one claims.
pub const ME: Claimant<'static> = Claimant { instance: "me", lease: Duration::from_secs(10), share: Share::ALL };

/// Two instances sharing the queue, each claiming every key.
const A: Claimant<'static> = Claimant { instance: "a", lease: Duration::from_secs(30), share: Share::ALL };
const B: Claimant<'static> = Claimant { instance: "b", lease: Duration::from_secs(30), share: Share::ALL };

fn job(connector: &str, event: &str, key: &str) -> NewDelivery {
    NewDelivery {
        connector_id: connector.to_owned(),
        event_id: event.to_owned(),
        topic: "permit.updated".to_owned(),
        record_key: key.to_owned(),
        payload: Payload::shared(json!({"permitId": key, "event": event})),
        origin: hms_sync::sync::Origin::Event,
        deleted: false,
    }
}

pub async fn enqueue_dedupes(db: &Db) {
    let jobs = [
        job("dup", "e1", "k"),
        job("dup", "e2", "k"),
        job("dup", "e1", "k"),
    ];
    assert_eq!(
        storage::enqueue(db, &jobs).await.unwrap(),
        2,
        "duplicate in the slice skipped"
    );
    assert_eq!(
        storage::enqueue(db, &jobs).await.unwrap(),
        0,
        "already queued"
    );
    // Same event id, other connector: a separate job.
    assert_eq!(
        storage::enqueue(db, &[job("dup2", "e1", "k")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(storage::enqueue(db, &[]).await.unwrap(), 0);
    assert_eq!(storage::pending_count(db, "dup").await.unwrap(), 2);

    // More than one insert chunk, in one call.
    let many: Vec<NewDelivery> = (0..450)
        .map(|i| job("bulk", &format!("e{i}"), &format!("k{}", i % 7)))
        .collect();
    assert_eq!(storage::enqueue(db, &many).await.unwrap(), 450);
    assert_eq!(storage::pending_count(db, "bulk").await.unwrap(), 450);
    let heads = storage::due_heads(db, "bulk", Utc::now(), 100)
        .await
        .unwrap();
    assert_eq!(heads.len(), 7, "one head per key");
    let events: Vec<&str> = heads.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(events, ["e0", "e1", "e2", "e3", "e4", "e5", "e6"]);
    assert_eq!(*heads[0].payload, json!({"permitId": "k0", "event": "e0"}));
}

pub async fn heads_and_retries(db: &Db) {
    let c = "ddot.gis.outbound.v1";
    let n = storage::enqueue(
        db,
        &[
            job(c, "e1", "A"),
            job(c, "e2", "B"),
            job(c, "e3", "A"),
            job(c, "e4", "C"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 4);
    assert_eq!(storage::pending_count(db, c).await.unwrap(), 4);
    let heads = storage::due_heads(db, c, Utc::now(), 10).await.unwrap();
    let ev = |h: &[storage::Delivery]| h.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(ev(&heads), ["e1", "e2", "e4"], "only heads of keys, by id");
    assert!(heads.windows(2).all(|w| w[0].id < w[1].id));
    let (e1, e2, e4) = (heads[0].clone(), heads[1].clone(), heads[2].clone());
    assert_eq!((e1.status.as_str(), e1.attempts), ("pending", 0));
    assert_eq!(
        ev(&storage::due_heads(db, c, Utc::now(), 2).await.unwrap()),
        ["e1", "e2"],
        "limit"
    );

    // The head of A waits for a retry: A is blocked, B and C still flow.
    let later = Utc::now() + chrono::Duration::seconds(60);
    storage::reschedule(db, e1.id, 1, later, "503 Service Unavailable")
        .await
        .unwrap();
    assert_eq!(
        ev(&storage::due_heads(db, c, Utc::now(), 10).await.unwrap()),
        ["e2", "e4"]
    );
    let got = storage::get_delivery(db, e1.id).await.unwrap().unwrap();
    assert_eq!(got.attempts, 1);
    assert_eq!(got.last_error.as_deref(), Some("503 Service Unavailable"));
    assert!((got.next_attempt_at - later).num_milliseconds().abs() < 1);

    // complete and park take jobs out of the heads.
    storage::complete(db, e2.id, 1).await.unwrap();
    storage::park(db, e4.id, 5, "400 Bad Request")
        .await
        .unwrap();
    assert!(
        storage::due_heads(db, c, Utc::now(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(storage::pending_count(db, c).await.unwrap(), 2, "e1 and e3");
    let parked = storage::get_delivery(db, e4.id).await.unwrap().unwrap();
    assert_eq!((parked.status.as_str(), parked.attempts), ("parked", 5));
    assert_eq!(
        storage::get_delivery(db, e2.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        storage::JobStatus::Done
    );
    // A late report about a finished job changes nothing.
    storage::reschedule(db, e2.id, 9, later, "late")
        .await
        .unwrap();
    assert_eq!(
        storage::get_delivery(db, e2.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        storage::JobStatus::Done
    );

    // Only heads count for "next due": e3 is older but stuck behind e1.
    let next = storage::next_due_at(db, c, None).await.unwrap().unwrap();
    assert!(
        (next - later).num_milliseconds().abs() < 1,
        "next due is e1's retry"
    );
    // The next one still ahead: jobs due already do not hide it (issue 11, item 15).
    assert!(storage::next_due_at(db, c, Some(later - chrono::Duration::milliseconds(1))).await.unwrap().is_some());
    assert_eq!(storage::next_due_at(db, c, Some(later + chrono::Duration::seconds(1))).await.unwrap(), None, "nothing due after e1's retry");
    let heads = storage::due_heads(db, c, later + chrono::Duration::seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(ev(&heads), ["e1"]);
    storage::complete(db, e1.id, 2).await.unwrap();
    assert_eq!(
        ev(&storage::due_heads(db, c, Utc::now(), 10).await.unwrap()),
        ["e3"],
        "A continues in order"
    );
    assert_eq!(storage::pending_count(db, c).await.unwrap(), 1);

    // Parked jobs are listable and replayable.
    let parked = storage::list_parked(db, &storage::ParkedFilter { connector_id: Some(c.into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(ev(&parked), ["e4"]);
    let edited = serde_json::json!({"fixed": true});
    let replayed = storage::replay_parked(db, e4.id, Some(&edited), "alice").await.unwrap().expect("replayed");
    assert_eq!((replayed.status.as_str(), replayed.attempts), ("pending", 0));
    assert_eq!(*replayed.payload, edited, "the operator's edited payload is what will be sent");
    assert!(storage::replay_parked(db, e4.id, None, "alice").await.unwrap().is_none(), "no longer parked");
    assert!(storage::discard_parked(db, e4.id).await.unwrap().is_none(), "only parked jobs are discarded");
    assert_eq!(
        ev(&storage::due_heads(db, c, Utc::now(), 10).await.unwrap()),
        ["e3", "e4"]
    );
    storage::complete(db, 0, 1).await.unwrap(); // unknown id: no error
    assert_eq!(storage::next_due_at(db, "nobody", None).await.unwrap(), None);
    assert!(storage::get_delivery(db, -1).await.unwrap().is_none());
}

/// A settle is fenced by its claim token: of two outcomes of one claimed job (two attempts
/// of it ran: a lane replaced while one was on the wire) only the first is written, state and
/// ticket; an outcome whose token is out of date (the job moved on) writes nothing either.
pub async fn settles_are_fenced_by_the_claim_token(db: &Db) {
    use storage::{BatchEntry, EntryWritten, JobUpdate};
    storage::enqueue(db, &[job("fence", "f1", "k1"), job("fence", "f2", "k2")]).await.unwrap();
    let claims = storage::claim(db, "fence", Utc::now(), 10, &[], ME).await.unwrap();
    assert_eq!(claims.len(), 2);
    let ticket = |c: &storage::Claim| storage::NewTicket {
        connector_id: "fence".into(),
        event_id: Some(c.job.event_id.clone()),
        delivery_id: Some(c.job.id),
        hms_id: Some(c.job.record_key.clone()),
        external_id: None,
        direction: storage::Direction::Outbound,
        status: storage::TicketStatus::Completed,
        reason: None,
        attempts: 1,
        last_error: None,
        detail: None,
    };
    let done = |c: &storage::Claim| BatchEntry::Outcome { update: JobUpdate::Complete { token: c.token, attempts: 1 }, jobs: Vec::new(), link: None, attempt: None, ticket: Some(ticket(c)) };
    let (first, second) = (done(&claims[0]), done(&claims[0]));
    let written = storage::write_batch(db, &[&first, &second]).await.unwrap();
    assert!(matches!(written[0], EntryWritten::Settled { ticket: Some(_), key_waits: false, next: None }), "{written:?}");
    assert_eq!(written[1], EntryWritten::Stale, "the same job settled twice in one batch: the second is stale");
    let again = storage::write_batch(db, &[&done(&claims[0])]).await.unwrap();
    assert_eq!(again, [EntryWritten::Stale], "a later batch: stale too");
    // The other job moved on (rescheduled: its attempts changed) before this outcome came.
    let moved = BatchEntry::Outcome { update: JobUpdate::Reschedule { token: claims[1].token, attempts: 1, at: Utc::now(), error: "503".into() }, jobs: Vec::new(), link: None, attempt: None, ticket: None };
    assert_eq!(storage::write_batch(db, &[&moved]).await.unwrap(), [EntryWritten::Settled { ticket: None, key_waits: true, next: None }], "rescheduled: the job waits in its key");
    assert_eq!(storage::write_batch(db, &[&done(&claims[1])]).await.unwrap(), [EntryWritten::Stale], "claimed at 0 attempts, the job has 1 now");
    let tickets = storage::list_tickets(db, &storage::TicketFilter { connector_id: Some("fence".into()), ..Default::default() }).await.unwrap();
    assert_eq!(tickets.len(), 1, "one ticket in all: {tickets:?}");
}

/// A claim's outcome, its ticket left out.
fn settled(c: &storage::Claim) -> storage::BatchEntry {
    storage::BatchEntry::Outcome { update: storage::JobUpdate::Complete { token: c.token, attempts: c.job.attempts + 1 }, jobs: Vec::new(), link: None, attempt: None, ticket: None }
}

/// Issue "hms-sync as a cluster", item 2, on PostgreSQL (where instances share the queue):
/// two instances claiming at once take disjoint jobs, only the heads of their keys, one per
/// key; a claim's lease keeps its job (and its key) from the other; a completed head lets
/// the key's next job be claimed anywhere.
pub async fn claims_are_shared_between_instances(db: &Db) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let jobs: Vec<NewDelivery> = (0..20).map(|i| job("shared", &format!("s{i}"), &format!("k{}", i % 5))).collect();
    storage::enqueue(db, &jobs).await.unwrap();
    let now = Utc::now();
    let (ca, cb) = tokio::join!(storage::claim(db, "shared", now, 3, &[], A), storage::claim(db, "shared", now, 10, &[], B));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let all: Vec<&storage::Claim> = ca.iter().chain(&cb).collect();
    assert_eq!(all.len(), 5, "one head per key, whoever took it: {:?}", all.iter().map(|c| c.job.id).collect::<Vec<_>>());
    let mut keys: Vec<&str> = all.iter().map(|c| c.job.record_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 5, "never two jobs of one key");
    assert!(all.iter().all(|c| c.job.event_id.trim_start_matches('s').parse::<u32>().unwrap() < 5), "only the first job of each key");
    assert!(all.iter().all(|c| c.lease_deadline.is_some() && c.token.claims == 1));
    assert!(storage::claim(db, "shared", Utc::now(), 10, &[], B).await.unwrap().is_empty(), "every key is in flight");
    // One job done (whichever instance took it): its key's next job is free for anyone, and
    // only that one.
    let first = all[0];
    let done = settled(first);
    assert_eq!(storage::write_batch(db, &[&done]).await.unwrap(), [storage::EntryWritten::Settled { ticket: None, key_waits: true, next: None }], "the key has three more jobs");
    let next = storage::claim(db, "shared", Utc::now(), 10, &[], B).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job.record_key, first.job.record_key);
    assert!(next[0].job.id > first.job.id);
    // A claim given back (not started) can be taken at once, by anyone.
    storage::release_claims(db, "b", &[next[0].job.id]).await.unwrap();
    let again = storage::claim(db, "shared", Utc::now(), 10, &[], A).await.unwrap();
    assert_eq!(again.iter().map(|c| c.job.id).collect::<Vec<_>>(), [next[0].job.id]);
    assert_eq!(again[0].token.claims, 2);
}

/// On PostgreSQL a key with a job in flight anywhere offers none of its jobs, even when the
/// one in flight is not its oldest: a parked job replayed while a later job of its key is on
/// the wire waits until that one is settled (then it goes, and the key's order is the
/// replay's: the older job first). Fails if the claim's key test looks only at the oldest.
pub async fn a_replayed_job_waits_for_its_keys_flight(db: &Db) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    storage::enqueue(db, &[job("replays", "r1", "k"), job("replays", "r2", "k"), job("replays", "r3", "other")]).await.unwrap();
    let first = storage::claim(db, "replays", Utc::now(), 10, &[], A).await.unwrap();
    assert_eq!(first.iter().map(|c| c.job.event_id.as_str()).collect::<Vec<_>>(), ["r1", "r3"]);
    let park = storage::BatchEntry::Outcome {
        update: storage::JobUpdate::Park { token: first[0].token, attempts: 1, error: "refused".into() },
        jobs: Vec::new(),
        link: None,
        attempt: None,
        ticket: None,
    };
    storage::write_batch(db, &[&park]).await.unwrap();
    let second = storage::claim(db, "replays", Utc::now(), 10, &[], A).await.unwrap();
    assert_eq!(second.iter().map(|c| c.job.event_id.as_str()).collect::<Vec<_>>(), ["r2"], "the parked job no longer holds its key");
    // r1 is pending again, older than r2, which is on the wire: nobody may take r1.
    storage::replay_parked(db, first[0].job.id, None, "ops").await.unwrap().expect("parked");
    assert!(storage::claim(db, "replays", Utc::now(), 10, &[], B).await.unwrap().is_empty(), "the key is in flight");
    storage::write_batch(db, &[&settled(&second[0])]).await.unwrap();
    let third = storage::claim(db, "replays", Utc::now(), 10, &[], B).await.unwrap();
    assert_eq!(third.iter().map(|c| c.job.event_id.as_str()).collect::<Vec<_>>(), ["r1"]);
}

/// Each instance claims the keys of its share (their hash modulo the instances alive): two
/// instances' claims split the keys between them, none taken twice; a job that waited longer
/// than `SHARE_WAIT` is anyone's (its instance is gone, behind, or does not run the connector).
pub async fn claims_follow_the_instances_shares(db: &Db) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let jobs: Vec<NewDelivery> = (0..40).map(|i| job("halves", &format!("h{i}"), &format!("key-{i}"))).collect();
    storage::enqueue(db, &jobs).await.unwrap();
    let first = Claimant { instance: "first", lease: Duration::from_secs(30), share: Share { of: 2, index: 0 } };
    let second = Claimant { instance: "second", lease: Duration::from_secs(30), share: Share { of: 2, index: 1 } };
    let keys = |claims: &[storage::Claim]| claims.iter().map(|c| c.job.record_key.clone()).collect::<std::collections::BTreeSet<_>>();
    let a = keys(&storage::claim(db, "halves", Utc::now(), 100, &[], first).await.unwrap());
    assert!(!a.is_empty() && a.len() < 40, "the first instance took its share only: {} of 40 keys", a.len());
    assert!(storage::claim(db, "halves", Utc::now(), 100, &[], first).await.unwrap().is_empty(), "nothing more of its share");
    let b = keys(&storage::claim(db, "halves", Utc::now(), 100, &[], second).await.unwrap());
    assert_eq!(a.len() + b.len(), 40, "the second took the rest");
    assert!(a.is_disjoint(&b));
    // A third instance joins (shares of 3): the jobs left to an instance that does not take
    // them are anyone's once they have waited.
    let more: Vec<NewDelivery> = (0..40).map(|i| job("thirds", &format!("t{i}"), &format!("key-{i}"))).collect();
    storage::enqueue(db, &more).await.unwrap();
    let lone = Claimant { instance: "lone", lease: Duration::from_secs(30), share: Share { of: 3, index: 1 } };
    let own = storage::claim(db, "thirds", Utc::now(), 100, &[], lone).await.unwrap();
    assert!(!own.is_empty() && own.len() < 40, "its third: {}", own.len());
    let waited = chrono::Duration::from_std(storage::SHARE_WAIT).unwrap() + chrono::Duration::seconds(1);
    db.execute_raw(sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, "UPDATE deliveries SET created_at = created_at - $1 * interval '1 millisecond' WHERE connector_id = 'thirds'", [waited.num_milliseconds().into()])).await.unwrap();
    let rest = storage::claim(db, "thirds", Utc::now(), 100, &[], lone).await.unwrap();
    assert_eq!(own.len() + rest.len(), 40, "the others' shares, once waited, taken by the one that runs");
}

/// A lease that runs out (its instance died or stalled) frees the job: the sweep finds it,
/// another instance claims it (the claim count, the fencing token, goes up), and the first
/// claim can neither renew its lease nor settle the job any more; a lane that starts gives
/// back its instance's earlier claims at once.
pub async fn a_lapsed_lease_is_fenced_off(db: &Db) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    storage::enqueue(db, &[job("lapse", "l1", "k"), job("lapse", "l2", "other")]).await.unwrap();
    let slow = Claimant { instance: "slow", lease: Duration::from_millis(300), share: Share::ALL };
    let fast = Claimant { instance: "fast", lease: Duration::from_secs(30), share: Share::ALL };
    let first = storage::claim(db, "lapse", Utc::now(), 1, &[], slow).await.unwrap().remove(0);
    assert!(storage::claim(db, "lapse", Utc::now(), 5, &[], fast).await.unwrap().iter().all(|c| c.job.id != first.job.id), "held by its lease");
    poll_until("the lease lapsed", Duration::from_secs(10), || async { storage::lapsed_lease_connectors(db).await.unwrap().contains(&"lapse".to_string()).then_some(()) }).await;
    assert!(first.lease_lapsed(), "the local deadline ends no later than the lease");
    let taken = storage::claim(db, "lapse", Utc::now(), 5, &[], fast).await.unwrap();
    let again = taken.iter().find(|c| c.job.id == first.job.id).expect("the lapsed job is claimed by another");
    assert_eq!(again.token.claims, first.token.claims + 1);
    assert_eq!(storage::renew_job_leases(db, "slow", &[first.job.id], slow.lease).await.unwrap(), vec![first.job.id], "a lapsed lease is not renewed: lost");
    assert_eq!(storage::renew_job_leases(db, "fast", &[again.job.id], fast.lease).await.unwrap(), Vec::<i64>::new(), "renewed, nothing lost");
    let late = settled(&first);
    assert_eq!(storage::write_batch(db, &[&late]).await.unwrap(), [storage::EntryWritten::Stale], "the first claim's outcome is fenced off");
    // The new owner's lane restarts: its claims are given back and can be taken at once.
    storage::release_job_leases(db, "lapse", "fast").await.unwrap();
    let retaken = storage::claim(db, "lapse", Utc::now(), 5, &[], slow).await.unwrap();
    assert_eq!(retaken.len(), 2, "both jobs free again");
    let fresh = retaken.iter().find(|c| c.job.id == first.job.id).unwrap();
    let outcome = settled(fresh);
    assert_eq!(storage::write_batch(db, &[&outcome]).await.unwrap(), [storage::EntryWritten::Settled { ticket: None, key_waits: false, next: None }]);
    let job = storage::get_delivery(db, first.job.id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.claims), ("done", 3));
    assert_eq!(storage::renew_job_leases(db, "slow", &[first.job.id], slow.lease).await.unwrap(), Vec::<i64>::new(), "a settled job is neither renewed nor lost");
}
