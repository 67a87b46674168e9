//! Suite part: sync tickets (hash chain, concurrent appenders, filters, pagination, retention).

use chrono::Utc;
use entities::sync_tickets;
use hms_sync::storage::{self, Db, NewTicket, TicketFilter};
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::json;

fn ticket(connector: &str, status: &str, direction: &str, n: i64) -> NewTicket {
    NewTicket {
        connector_id: connector.to_owned(),
        event_id: Some(format!("ev-{n}")),
        delivery_id: Some(n),
        hms_id: Some(format!("shift/{n}")),
        external_id: (direction == "inbound").then(|| format!("ShiftID={n}")),
        direction: if direction == "inbound" { storage::Direction::Inbound } else { storage::Direction::Outbound },
        status: match status {
            "completed" => storage::TicketStatus::Completed,
            "parked" => storage::TicketStatus::Parked,
            "conflict" => storage::TicketStatus::Conflict,
            _ => storage::TicketStatus::Skipped,
        },
        reason: (status == "skipped").then(|| "echo".to_owned()),
        attempts: 1,
        last_error: None,
        detail: Some(json!({"z": 1, "a": {"y": [1, "ü\n"], "b": null}, "m": 2.5})),
    }
}

pub async fn tickets(db: &Db) {
    let ids = storage::append_tickets(
        db,
        &[
            ticket("lotus", "completed", "outbound", 1),
            ticket("lotus", "skipped", "inbound", 2),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);
    assert!(storage::append_tickets(db, &[]).await.unwrap().is_empty());

    let t1 = storage::get_ticket(db, ids[0]).await.unwrap().unwrap();
    let t2 = storage::get_ticket(db, ids[1]).await.unwrap().unwrap();
    assert_eq!(
        t1.prev_hash,
        storage::GENESIS_HASH,
        "first ticket chains to genesis"
    );
    assert_eq!(t2.prev_hash, t1.hash, "second chains to first");
    assert_eq!(t1.ticket_id, format!("SYNC-{}", ids[0]));
    assert_eq!(
        t1.detail,
        ticket("lotus", "completed", "outbound", 1).detail
    );
    assert_eq!(t2.reason.as_deref(), Some("echo"));
    assert_eq!(t2.external_id.as_deref(), Some("ShiftID=2"));
    let api = serde_json::to_value(&t1).unwrap();
    assert_eq!(api["ticketId"], json!(format!("SYNC-{}", ids[0])));
    assert_eq!(api["hmsId"], json!("shift/1"));

    // Concurrent appenders must not fork the chain.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let batch: Vec<NewTicket> = (0..5)
                .map(|i| {
                    let status = if i % 2 == 0 { "completed" } else { "parked" };
                    ticket(&format!("w{w}"), status, "outbound", 100 + i)
                })
                .collect();
            storage::append_tickets(&db, &batch).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), 5);
    }

    // Recompute the whole chain from the raw rows.
    let rows = sync_tickets::Entity::find()
        .order_by_asc(sync_tickets::Column::Id)
        .all(db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 22);
    let mut prev = storage::GENESIS_HASH.to_owned();
    for row in &rows {
        assert_eq!(row.prev_hash, prev, "chain link of ticket {}", row.id);
        assert_eq!(
            storage::ticket_row_hash(row),
            row.hash,
            "hash of ticket {}",
            row.id
        );
        prev = row.hash.clone();
    }
    assert_eq!(
        rows[0].detail.as_deref(),
        Some(r#"{"a":{"b":null,"y":[1,"ü\n"]},"m":2.5,"z":1}"#),
        "detail stored as canonical JSON"
    );

    // Filters and keyset pagination.
    let all = |f: TicketFilter| async move { storage::list_tickets(db, &f).await.unwrap() };
    assert_eq!(all(TicketFilter::default()).await.len(), 22);
    let lotus = all(TicketFilter {
        connector_id: Some("lotus".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(lotus.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    let parked = all(TicketFilter {
        status: Some("parked".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(parked.len(), 8);
    assert!(parked.iter().all(|t| t.status == "parked"));
    let inbound = all(TicketFilter {
        direction: Some("inbound".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(inbound.len(), 1);
    let w0_done = all(TicketFilter {
        connector_id: Some("w0".into()),
        status: Some("completed".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(w0_done.len(), 3);

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = all(TicketFilter {
            after_id: after,
            limit: 5,
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 5);
        after = page.last().map(|t| t.id);
        seen.extend(page.into_iter().map(|t| t.id));
    }
    assert_eq!(
        seen,
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        "pages cover all, in order"
    );

    let t0 = rows[0].created_at;
    let future = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        all(TicketFilter {
            since: Some(future),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    assert_eq!(
        all(TicketFilter {
            since: Some(t0),
            ..Default::default()
        })
        .await
        .len(),
        22
    );
    assert_eq!(
        all(TicketFilter {
            until: Some(t0),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    assert_eq!(
        all(TicketFilter {
            until: Some(future),
            ..Default::default()
        })
        .await
        .len(),
        22
    );

    let report = storage::verify_chain(db).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 22);

    // Retention keeps the newest ticket so the chain goes on from its hash.
    assert_eq!(storage::prune_tickets(db, future).await.unwrap(), 21);
    let report = storage::verify_chain(db).await.unwrap();
    assert!(report.ok, "what remains still verifies against the anchor: {report:?}");
    assert_eq!(report.anchor, rows[rows.len() - 2].hash);
    let next = storage::append_tickets(db, &[ticket("lotus", "conflict", "inbound", 3)])
        .await
        .unwrap();
    let t = storage::get_ticket(db, next[0]).await.unwrap().unwrap();
    assert_eq!(t.prev_hash, rows.last().unwrap().hash);
    assert!(storage::get_ticket(db, ids[0]).await.unwrap().is_none());

    // Tampering: an edited row and a deleted row are both reported, at the first bad link.
    let more = storage::append_tickets(db, &[ticket("lotus", "completed", "outbound", 4), ticket("lotus", "completed", "outbound", 5)])
        .await
        .unwrap();
    assert!(storage::verify_chain(db).await.unwrap().ok);
    let mut edited: sync_tickets::ActiveModel = sync_tickets::Entity::find_by_id(more[0]).one(db).await.unwrap().unwrap().into();
    edited.status = sea_orm::ActiveValue::Set("parked".into());
    sea_orm::ActiveModelTrait::update(edited, db).await.unwrap();
    let report = storage::verify_chain(db).await.unwrap();
    assert!(!report.ok);
    let broken = report.first_broken.unwrap();
    assert_eq!(broken.id, more[0]);
    assert!(broken.reason.contains("edited"), "{}", broken.reason);
}
