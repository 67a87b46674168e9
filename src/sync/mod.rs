//! Two-way sync: inbound jobs from external records, record links, echo suppression and
//! the conflict resolvers.

pub mod engine;
pub mod explain;
pub mod inbound;
pub mod origin;

pub use origin::Origin;
