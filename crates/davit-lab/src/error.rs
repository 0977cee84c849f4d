use std::path::PathBuf;

/// Errors of `davit-lab`. `Display` says what the lab was doing; `source()` gives the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request itself is invalid (too many hosts, bad instance): nothing was touched.
    #[error("invalid lab request: {0}")]
    Invalid(String),
    /// A system command the lab runs failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A file or directory of the lab could not be read or written.
    #[error("lab file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A service of a simulated host did not come up in time.
    #[error("{what} did not become ready within {seconds}s; see {log}")]
    NotReady {
        what: String,
        seconds: u64,
        log: PathBuf,
    },
    /// Talking to the lab registry failed.
    #[error("lab registry at {address}: {message}")]
    Registry { address: String, message: String },
    /// The lab must run as root (it creates namespaces and starts daemons).
    #[error(
        "the lab needs root (it creates network namespaces and starts Docker engines); run it as root"
    )]
    NotRoot,
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
