//! Delivery: sending a rendered request with awc, classifying the outcome, and the pure
//! retry policy that decides what happens after a failure.

pub mod auth;
pub mod breaker;
pub mod egress;
pub mod outcome;
pub mod rate;
pub mod retry;
pub mod sender;
pub mod settle;
pub mod tls;

pub use egress::Egress;
pub use outcome::Outcome;
pub use retry::{Decision, RetryPolicy};
pub use settle::{settle, Settlement};
