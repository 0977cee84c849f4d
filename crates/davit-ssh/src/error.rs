use std::path::PathBuf;
use std::time::Duration;

/// Errors of `davit-ssh`. `Display` describes this crate's level (what failed, on which host, and what
/// to do); `source()` gives the cause. No variant ever carries a secret (keys, passphrases).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A host URL that cannot be parsed.
    #[error("invalid host URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The TCP connection to the SSH server failed.
    #[error(
        "{host}: cannot connect to {addr}: {source} (is the server up and sshd listening on that port?)"
    )]
    Connect {
        host: String,
        addr: String,
        source: std::io::Error,
    },

    /// Something did not finish in time.
    #[error(
        "{host}: {what} timed out after {after:?} (the host does not answer; check the address and firewall)"
    )]
    Timeout {
        host: String,
        what: String,
        after: Duration,
    },

    /// The server's key is not in known_hosts and `--accept-new-host-keys` was not given.
    #[error(
        "{host}: host key {fingerprint} is not known: refusing to connect. Check the fingerprint, then run again with \
         --accept-new-host-keys to record it in {known_hosts}, or add it there yourself (e.g. `ssh-keyscan -p {port} {name} >> {known_hosts}`)",
        known_hosts = known_hosts.display()
    )]
    UnknownHostKey {
        host: String,
        name: String,
        port: u16,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    /// The server's key differs from the one recorded: always refused.
    #[error(
        "{host}: HOST KEY CHANGED: the server presented {fingerprint}, but {known_hosts}:{line} records another key for it. \
         Someone may be intercepting the connection, or the server was reinstalled. Refusing to connect. If the change is \
         expected, remove line {line} of {known_hosts} (e.g. `ssh-keygen -R {name} -f {known_hosts}`) and connect again",
        known_hosts = known_hosts.display()
    )]
    HostKeyChanged {
        host: String,
        name: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },

    /// known_hosts could not be read or written.
    #[error("known_hosts file {}: {source}", path.display())]
    KnownHosts {
        path: PathBuf,
        source: std::io::Error,
    },

    /// An identity file could not be used.
    #[error("identity {}: {reason}", path.display())]
    Identity { path: PathBuf, reason: String },

    /// The server accepted none of the keys offered.
    #[error(
        "{host}: permission denied for user `{user}` (tried: {tried}). Check the user name in the URL and that the key \
         is in the server's authorized_keys; pass a key with --identity FILE or load it into ssh-agent"
    )]
    AuthFailed {
        host: String,
        user: String,
        tried: String,
    },

    /// The SSH protocol failed (handshake, no common algorithm, ...).
    #[error("{host}: SSH failure during {what}")]
    Ssh {
        host: String,
        what: String,
        source: Box<russh::Error>,
    },

    /// The SSH connection went away while in use.
    #[error("{host}: the SSH connection was lost during {what}; the next call reconnects")]
    Disconnected { host: String, what: String },

    /// The server refused to open a channel (forwarding disabled, nothing listening, ...).
    #[error("{host}: the server refused to open {what}: {reason}")]
    ChannelRefused {
        host: String,
        what: String,
        reason: String,
    },

    /// A local I/O failure (local socket, local command).
    #[error("{host}: {what}")]
    Io {
        host: String,
        what: String,
        source: std::io::Error,
    },

    /// The Docker engine answered with an error, or could not be reached through the transport.
    #[error("{host}: Docker engine: {what}")]
    Docker {
        host: String,
        what: String,
        source: Box<bollard::errors::Error>,
    },
}

impl Error {
    /// True when the failure is about reaching the host at all (not an engine-level answer).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Timeout { .. }
                | Error::Disconnected { .. }
                | Error::Ssh { .. }
        )
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match &e {
            Error::Timeout { .. } => K::TimedOut,
            Error::Connect { source, .. } => source.kind(),
            Error::Disconnected { .. } => K::ConnectionAborted,
            Error::ChannelRefused { .. } => K::ConnectionRefused,
            Error::UnknownHostKey { .. }
            | Error::HostKeyChanged { .. }
            | Error::AuthFailed { .. } => K::PermissionDenied,
            Error::InvalidUrl { .. } => K::InvalidInput,
            Error::Io { source, .. } => source.kind(),
            _ => K::Other,
        };
        std::io::Error::new(kind, e)
    }
}
