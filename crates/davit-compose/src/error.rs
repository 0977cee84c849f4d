use crate::Diagnostics;

/// Errors of `davit-compose`. `Display` describes this crate's level; `source()` gives the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The compose input is invalid; the diagnostics say where and why.
    #[error("invalid compose input")]
    Invalid(#[source] Diagnostics),
    /// The project is valid but cannot be printed in the requested format.
    #[error("cannot print the project: {0}")]
    NotRepresentable(String),
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Self::Invalid(d)
    }
}
