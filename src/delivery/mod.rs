//! Delivery: sending a rendered request with awc, classifying the outcome, and the pure
//! retry policy that decides what happens after a failure.

pub mod outcome;
pub mod retry;
pub mod sender;

pub use outcome::Outcome;
pub use retry::{Decision, RetryPolicy};
