//! Inbound webhooks: verification of each scheme (pure) and the HTTP intake that stores an
//! accepted webhook durably before answering.

pub mod intake;
pub mod verify;
