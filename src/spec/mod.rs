//! Connector files: the typed model, the pure validation that builds it from a YAML or JSON
//! document (every error with file, line, column and field path), and loading from disk.
//!
//! The schema is documented in `docs/connectors.md`; the tests below are its table of
//! accepted and refused documents.

mod build;
pub mod limits;
pub mod mapping_file;
pub mod error;
pub mod load;
pub mod model;
mod reader;
pub mod templates;

pub use build::valid_id;
pub use error::{SpecError, SpecErrors};
pub use load::{LoadedSpec, folder_fingerprint, load_dir, load_each, load_file, parse};
pub use model::{ConnectorSpec, Direction, PullSpec, RequestSpec};

#[cfg(test)]
mod tests;
