//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `davit-ops`. No variant ever carries a secret value: secrets
/// errors name files, lines and keys only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `.env` template to copy does not exist or cannot be read.
    #[error("cannot read the template {}", path.display())]
    TemplateRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The existing output file cannot be read.
    #[error("cannot read the existing file {}", path.display())]
    OutRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The output path is a symbolic link (or something else that is not a regular file).
    #[error(
        "{} is {what}: refusing to write secrets through it; pass the path of a regular file",
        path.display()
    )]
    OutNotRegular { path: PathBuf, what: &'static str },
    /// The directory that should hold the output file does not exist.
    #[error("the directory {} (for {}) does not exist: create it first", dir.display(), path.display())]
    OutDirMissing { path: PathBuf, dir: PathBuf },
    /// Template and output are the same file: filling it would write secrets into the template.
    #[error(
        "--template and --out are the same file ({}): the template is meant to be committed, so write the secrets to another file (e.g. .env)",
        path.display()
    )]
    SameFile { path: PathBuf },
    /// A file is not UTF-8 text.
    #[error("{} is not UTF-8 text (line {line})", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    /// Writing the output file failed.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// Reading an env file for redaction failed.
    #[error("cannot read the env file {}", path.display())]
    EnvFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Notification configuration is invalid (a bad URL or format).
    #[error("invalid notification setting {what}: {reason}")]
    NotifyConfig { what: String, reason: String },
    /// Preflight refused the input; every problem is listed.
    #[error(transparent)]
    Preflight(#[from] crate::preflight::Problems),
    /// `--env NAME` names no environment, or `x-davit.environments` is malformed.
    #[error(transparent)]
    Environment(#[from] crate::environments::EnvironmentError),
}

impl Error {
    /// True when the error is the user's input (bad file, bad flag, refused preflight): the CLI maps
    /// it to exit 2, before any host is touched. Other errors are failures of the operation (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, Error::Write { .. } | Error::Random(_))
    }
}
