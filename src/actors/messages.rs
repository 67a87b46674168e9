//! Messages between the actors. Imperatives ask for something; past tense reports it.

use actix::prelude::*;

/// Which child of a connector supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildKind {
    Pusher,
    Puller,
    Retrier,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Pusher => "pusher",
            ChildKind::Puller => "puller",
            ChildKind::Retrier => "retrier",
        }
    }
}

/// Sent by a child's guard when the child is dropped: stopped, panicked, or its arbiter died.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ChildDied {
    pub kind: ChildKind,
    pub generation: u64,
    pub panicked: bool,
    pub reason: Option<String>,
}

/// Look at the queue now (new jobs were stored, a retry fell due, sending was resumed).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

/// Stop on purpose (the supervisor already moved to a new generation).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopChild;

/// Test-only faults, reachable only when `server.fault_injection` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// The child's handler panics.
    Panic,
    /// The child stops itself as if it hit a fatal error.
    Stop,
    /// The arbiter (thread) the connector's children run on is stopped.
    Arbiter,
}

/// Delivered to a child: behave as the fault says.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct InjectFault(pub Fault);

/// Stop for good (the service shuts down): an actor that runs a loop of its own (listening,
/// taking from NATS) ends it, which dropping its address alone would not do.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Halt;

/// Handles [`Halt`] for actors that have nothing to do but stop.
macro_rules! halt_handler {
    ($actor:ty) => {
        impl actix::Handler<$crate::actors::messages::Halt> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::actors::messages::Halt, ctx: &mut Self::Context) {
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use halt_handler;
