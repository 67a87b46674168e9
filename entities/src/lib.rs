//! sea-orm entities of hms-sync: one module per table, mirroring `migrations`.
//!
//! JSON lives in plain `text` columns (not `json`/`jsonb`) so the same schema runs on SQLite
//! and PostgreSQL; the storage layer (`hms_sync::storage`) (de)serializes it. Timestamps are
//! `DateTimeUtc` (`timestamptz` on PostgreSQL, RFC 3339 text on SQLite).

pub mod connectors;
pub mod cursors;
pub mod deliveries;
pub mod delivery_attempts;
pub mod instances;
pub mod record_links;
pub mod settings;
pub mod sync_tickets;

/// `use entities::prelude::*` brings every entity in under a table-like name.
pub mod prelude {
    pub use crate::connectors::Entity as Connectors;
    pub use crate::cursors::Entity as Cursors;
    pub use crate::deliveries::Entity as Deliveries;
    pub use crate::delivery_attempts::Entity as DeliveryAttempts;
    pub use crate::instances::Entity as Instances;
    pub use crate::record_links::Entity as RecordLinks;
    pub use crate::settings::Entity as Settings;
    pub use crate::sync_tickets::Entity as SyncTickets;
}
