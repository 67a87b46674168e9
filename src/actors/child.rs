//! What every supervised child carries: its context and the guard that reports its death.
//!
//! actix's own `Supervisor` does not restart an actor that panicked (NOTES.md), so each
//! child owns a [`ChildGuard`]; its `Drop` runs on a normal stop, during a panic's
//! unwinding and when the arbiter holding the child dies, and tells the supervisor.

use std::sync::Arc;

use actix::Addr;

use super::messages::{ChildDied, ChildKind};
use super::panics;
use super::shared::{ConnectorShared, Runtime};
use super::supervisor::ConnectorSupervisor;

/// Reports the child's death to its supervisor. Must never panic (it may run while
/// unwinding, where a second panic aborts the process).
pub struct ChildGuard {
    supervisor: Addr<ConnectorSupervisor>,
    kind: ChildKind,
    generation: u64,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        let reason = if panicked { panics::take_last() } else { None };
        self.supervisor.do_send(ChildDied { kind: self.kind, generation: self.generation, panicked, reason });
    }
}

/// Everything a child is started with.
pub struct ChildCtx {
    pub rt: Runtime,
    pub shared: Arc<ConnectorShared>,
    pub supervisor: Addr<ConnectorSupervisor>,
    pub generation: u64,
    pub guard: ChildGuard,
}

impl ChildCtx {
    pub fn new(
        rt: Runtime,
        shared: Arc<ConnectorShared>,
        supervisor: Addr<ConnectorSupervisor>,
        kind: ChildKind,
        generation: u64,
    ) -> Self {
        let guard = ChildGuard { supervisor: supervisor.clone(), kind, generation };
        Self { rt, shared, supervisor, generation, guard }
    }

    pub fn id(&self) -> &str {
        self.shared.id()
    }
}

/// The two messages every child obeys the same way: `StopChild` (stop on purpose) and
/// `InjectFault` (the test hook: panic with a message naming the child, or stop).
/// `control_handlers!(Lane, "pusher")` for an actor whose `cx` is its [`ChildCtx`].
macro_rules! control_handlers {
    ($actor:ty, $name:literal) => {
        impl actix::Handler<super::messages::StopChild> for $actor {
            type Result = ();
            fn handle(&mut self, _: super::messages::StopChild, ctx: &mut actix::Context<Self>) {
                actix::ActorContext::stop(ctx);
            }
        }

        impl actix::Handler<super::messages::InjectFault> for $actor {
            type Result = ();
            fn handle(&mut self, msg: super::messages::InjectFault, ctx: &mut actix::Context<Self>) {
                match msg.0 {
                    super::messages::Fault::Panic => panic!(concat!("injected fault in ", $name, " of {}"), self.cx.id()),
                    _ => actix::ActorContext::stop(ctx),
                }
            }
        }
    };
}
pub(crate) use control_handlers;
