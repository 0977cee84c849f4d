use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of `davit-proxy`. `Display` describes this crate's level; `source()` gives the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The admin client could not open a stream to the proxy's admin API.
    #[error("cannot reach the proxy admin API")]
    Connect(#[source] std::io::Error),
    /// The HTTP exchange with the admin API failed.
    #[error("the proxy admin API exchange for {what} failed")]
    Http {
        what: String,
        #[source]
        source: hyper::Error,
    },
    /// The admin API answered with an error status.
    #[error("the proxy refused {what}: {status} {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },
    /// A JSON document (admin API body or state file) could not be read.
    #[error("invalid JSON in {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A route spec is not acceptable.
    #[error("invalid route {route:?}: {reason}")]
    InvalidRoute { route: String, reason: String },
    /// A listener could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be read or written.
    #[error("state file {path}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TLS certificates or keys could not be loaded.
    #[error("TLS for route {route:?}: {reason}")]
    Tls { route: String, reason: String },
    /// The handover socket (listening sockets passed to the next proxy) could not be opened.
    #[error("cannot open the handover socket {path}")]
    Handover {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No route of that name.
    #[error("no route named {0:?}")]
    NoSuchRoute(String),
}
