/// Errors of `davit-engine`. `Display` describes this crate's level; `source()` gives the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request itself is wrong (refused before any host is touched): exit 2.
    #[error("{0}")]
    Input(String),
    /// An image could not be pinned to a digest (the registry is down, the tag does not exist).
    #[error("cannot pin {image} to a digest: {message}")]
    Resolve { image: String, message: String },
    /// A host could not be read or prepared.
    #[error("{host}: {message}")]
    Host { host: String, message: String },
    /// Another deploy holds the lock.
    #[error(
        "{host}: project {project} is being deployed by {who} (lock heartbeat {age}s ago); wait for it, or pass --force-unlock if it is dead"
    )]
    Locked {
        host: String,
        project: String,
        who: String,
        age: u64,
    },
    /// A rollout was rolled back or could not be.
    #[error("deploy of release {release} failed: {message}")]
    RolledBack { release: String, message: String },
    /// Nothing to roll back to.
    #[error("no release to roll back to: {0}")]
    NoRelease(String),
    /// The rollout could not be set up.
    #[error("rollout of {service}")]
    Rollout {
        service: String,
        #[source]
        source: davit_rollout::Error,
    },
}

impl Error {
    /// True when the error is the user's input (exit 2).
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Input(_) | Error::Rollout { .. })
    }
}
