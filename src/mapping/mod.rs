//! Mapping: templates, filters and mapping tables compiled once per connector and applied
//! to events. Pure: no I/O; secrets are passed in, never looked up here.

pub mod compiled;
mod context;
pub mod dry_run;
pub mod fields;
pub mod form;
pub mod payload;
pub mod selector;

pub use compiled::{Compiled, CompiledConnector, MappingError, RenderedRequest, Secrets};
pub use payload::Payload;
