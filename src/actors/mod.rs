//! The actor tree: Registry → ConnectorSupervisor → Lane (child `pusher`) / Puller / Retrier
//! on the worker pool, plus the Bus, the Committer and Governance. See `docs/architecture.md`.

pub mod alerter;
pub mod attempt;
pub mod bus;
pub mod child;
pub mod cluster;
pub mod committer;
pub mod governance;
pub mod intensity;
pub mod lane;
pub mod messages;
pub mod nats;
pub mod panics;
pub mod puller;
pub mod pool;
pub mod registry;
pub mod retrier;
pub mod shared;
pub mod status;
pub mod supervisor;
pub mod two_way;

pub use governance::Governance;
pub use registry::Registry;
pub use supervisor::ConnectorSupervisor;
pub use committer::Committer;
