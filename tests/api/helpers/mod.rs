//! Test helpers, one module per concern; everything but the two-way simulator is
//! re-exported here, so `use crate::helpers::*` is all a test file needs.

pub mod app;
pub mod browser;
pub mod fake;
pub mod keyed;
#[path = "../../common/poll.rs"]
pub mod poll;
pub mod service;
pub mod twoway_sim;

pub use app::*;
pub use fake::*;
pub use keyed::*;
pub use poll::*;
pub use service::*;
