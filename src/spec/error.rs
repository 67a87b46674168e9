//! Validation errors: each names the file, the line and column, the field path and what
//! was expected. They are collected, never thrown one at a time.

use std::fmt;

use serde::Serialize;

/// One problem in one connector document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecError {
    /// The file (or `<request>`, `<database:ID>`) the document came from.
    pub file: String,
    /// 1-based line of the offending value (or key, for an unknown key).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted field path, e.g. `retry.max`, `map.to.headers.Authorization`; empty for the
    /// document itself.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(document)" } else { &self.path };
        write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, path, self.message)
    }
}

/// Every error of one or more documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}
