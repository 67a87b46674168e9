//! Entity of `deliveries`: the durable job queue (one row per event per connector).

use sea_orm::entity::prelude::*;

/// One delivery job. The auto-increment `id` is the acceptance order, which is what
/// per-record-key ordering is defined by; `(connector_id, event_id)` is unique so a
/// re-published event is applied once per connector.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connector_id: String,
    pub event_id: String,
    pub topic: String,
    pub record_key: String,
    /// The event payload as JSON text.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// `pending` | `done` | `parked` | `discarded` (`storage::JobStatus`).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Where the job comes from (`event`, `inbound`, `resolved:hms`, `take:legacy`,
    /// `merged:hms`, …): which side it writes and how the two-way decision treats it.
    pub origin: String,
    /// The change deletes the record.
    pub deleted: bool,
    /// A parked conflict's records (JSON: base, hms, external, rule).
    #[sea_orm(column_type = "Text", nullable)]
    pub conflict: Option<String>,
    /// The instance whose claim holds the job now (in flight there), until `lease_until`
    /// (the database's clock); both unset when no claim holds it.
    #[sea_orm(nullable)]
    pub lease_owner: Option<String>,
    #[sea_orm(nullable)]
    pub lease_until: Option<DateTimeUtc>,
    /// How many times the job was claimed: the fencing token its outcome is settled by (a
    /// later claim, by any instance, makes an earlier claim's outcome stale).
    pub claims: i32,
    /// Who put the parked job back (a token's name), carried into its ticket.
    #[sea_orm(nullable)]
    pub replayed_by: Option<String>,
    /// A two-way write on the wire (JSON: `to`, the side, and `content`, its content hash,
    /// when it updates a record; `{}` otherwise), stored before the request goes and cleared
    /// by the job's settle.
    #[sea_orm(column_type = "Text", nullable)]
    pub in_flight: Option<String>,
    /// How many of the job's attempts panicked (a poison job is parked at its second).
    pub panics: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
