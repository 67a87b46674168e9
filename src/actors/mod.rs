//! The actor tree: Registry → ConnectorSupervisor → Pusher / Puller / Retrier, plus the
//! TicketWriter and Governance singletons. See `docs/architecture.md` for the picture.

pub mod alerter;
pub mod attempt;
pub mod bus;
pub mod child;
pub mod governance;
pub mod intensity;
pub mod lane;
pub mod messages;
pub mod panics;
pub mod puller;
pub mod pool;
pub mod registry;
pub mod retrier;
pub mod shared;
pub mod status;
pub mod supervisor;
pub mod ticket_writer;
pub mod two_way;

pub use governance::Governance;
pub use registry::Registry;
pub use supervisor::ConnectorSupervisor;
pub use ticket_writer::TicketWriter;
