//! Inbound webhooks' verification, per scheme (pure). Their HTTP intake, which stores an
//! accepted webhook durably before answering, is `admin::webhooks`.

pub mod verify;
