/// Errors of `davit-health`. `Display` describes this crate's level; `source()` gives the cause.
///
/// A probe that fails is not an error (it is an [`Outcome`](crate::Outcome)); errors are what
/// prevents probing at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The target cannot be probed as written.
    #[error("bad probe target {target:?}: {reason}")]
    BadTarget { target: String, reason: String },
    /// A container probe was asked for without a Docker engine to ask.
    #[error("probing {target} needs a Docker engine, and none was given")]
    NoDocker { target: String },
    /// TLS could not be set up (bad root certificate).
    #[cfg(feature = "probes")]
    #[error("setting up TLS for {target}")]
    Tls {
        target: String,
        #[source]
        source: rustls::Error,
    },
}
