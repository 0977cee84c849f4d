/// Errors of `davit-ssh`. `Display` describes this crate's level; `source()` gives the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Placeholder until the crate grows real failure modes.
    #[error("not yet supported: {0}")]
    Unsupported(String),
}
