//! PostgreSQL test databases: named after the test process (`hms_test_<pid>_…`,
//! `hms_sync_stop_<pid>`), so one whose process is gone is a leftover of a run that died
//! before its cleanup, and is dropped; a suite running beside this one keeps its own.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// The creating process's id in a test database's name, if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("hms_test_").or_else(|| name.strip_prefix("hms_sync_stop_"))?;
    rest.split('_').next()?.parse().ok()
}

/// Drops the test databases whose creating process is no longer running.
pub async fn drop_leftovers(admin: &DatabaseConnection) {
    let sql = "SELECT datname FROM pg_database WHERE datname LIKE 'hms\\_test\\_%' OR datname LIKE 'hms\\_sync\\_stop\\_%'";
    let Ok(rows) = admin.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await else { return };
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else { continue };
        let Some(pid) = owner_pid(&name) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            match admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await {
                Ok(_) => eprintln!("dropped {name}, left by process {pid} (gone)"),
                Err(e) => eprintln!("cannot drop leftover {name}: {e}"),
            }
        }
    }
}

#[test]
fn the_owner_is_read_from_the_name() {
    assert_eq!(owner_pid("hms_test_4242_123456"), Some(4242));
    assert_eq!(owner_pid("hms_sync_stop_77"), Some(77));
    assert_eq!(owner_pid("hms_production"), None);
    assert_eq!(owner_pid("hms_test_x_1"), None);
}
