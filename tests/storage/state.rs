//! Suite part: migrations, connectors, settings and cursors.

use std::time::Duration;

use hms_sync::storage::{self, Db};
use migrations::MigratorTrait;
use serde_json::json;

pub async fn migrations_are_idempotent(db: &Db) {
    migrations::Migrator::up(db, None).await.unwrap();
    migrations::Migrator::up(db, None).await.unwrap();
    let pending = migrations::Migrator::get_pending_migrations(db)
        .await
        .unwrap();
    assert!(pending.is_empty());
}

pub async fn connectors(db: &Db) {
    assert!(storage::list_connectors(db).await.unwrap().is_empty());
    assert!(
        storage::save_connector(db, "b.conn", "id: b.conn\n")
            .await
            .unwrap(),
        "created"
    );
    assert!(
        storage::save_connector(db, "a.conn", "{\"id\":\"a.conn\"}")
            .await
            .unwrap()
    );
    let before = storage::list_connectors(db).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        !storage::save_connector(db, "b.conn", "id: b.conn\ntype: outbound\n")
            .await
            .unwrap(),
        "replaced"
    );

    let list = storage::list_connectors(db).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a.conn", "b.conn"], "ordered by id");
    assert_eq!(
        list[1].source, "id: b.conn\ntype: outbound\n",
        "source kept verbatim"
    );
    assert_eq!(
        list[1].created_at, before[1].created_at,
        "created_at kept on replace"
    );
    assert!(list[1].updated_at > before[1].updated_at);

    assert!(storage::delete_connector(db, "a.conn").await.unwrap());
    assert!(!storage::delete_connector(db, "a.conn").await.unwrap());
    assert_eq!(storage::list_connectors(db).await.unwrap().len(), 1);
}

pub async fn settings(db: &Db) {
    assert_eq!(storage::get_setting(db, "governance").await.unwrap(), None);
    let v = json!({"enabled": false, "paused": ["x"], "n": 1.5});
    storage::put_setting(db, "governance", &v).await.unwrap();
    assert_eq!(
        storage::get_setting(db, "governance").await.unwrap(),
        Some(v)
    );
    storage::put_setting(db, "governance", &json!({"enabled": true}))
        .await
        .unwrap();
    assert_eq!(
        storage::get_setting(db, "governance").await.unwrap(),
        Some(json!({"enabled": true}))
    );
}

pub async fn cursors(db: &Db) {
    assert_eq!(storage::load_cursor(db, "pull").await.unwrap(), None);
    storage::save_cursor(db, "pull", &json!("2026-11-22T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        storage::load_cursor(db, "pull").await.unwrap(),
        Some(json!("2026-11-22T10:00:00Z"))
    );
    storage::save_cursor(db, "pull", &json!(12345))
        .await
        .unwrap();
    assert_eq!(
        storage::load_cursor(db, "pull").await.unwrap(),
        Some(json!(12345))
    );
}
