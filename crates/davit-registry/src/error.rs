/// A boxed cause, for errors of the libraries underneath (oci-client, reqwest, bollard, io).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of `davit-registry`. `Display` describes this crate's level (what failed, where, and what to do);
/// `source()` gives the cause. Secrets never appear in either.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference, repository or tag that is not well formed (the user's input).
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        what: &'static str,
        value: String,
        reason: String,
    },

    /// The registry did not answer at all (connection refused, no route, DNS, TLS handshake).
    #[error(
        "registry {registry} is unreachable ({url}): check the address and that the registry runs; \
         a registry that speaks plain HTTP must be named with --insecure-registry"
    )]
    Unreachable {
        registry: String,
        url: String,
        #[source]
        source: Cause,
    },

    /// The registry refused our credentials (or asked for some and we had none).
    #[error("registry {registry} refused access{who} (HTTP {status}): {hint}")]
    Unauthorized {
        registry: String,
        who: String,
        status: u16,
        hint: &'static str,
    },

    /// A manifest, tag or repository that does not exist.
    #[error("{what} not found in registry {registry}")]
    NotFound { registry: String, what: String },

    /// The registry answered a request with an unexpected status or body.
    #[error("registry {registry}: {action} failed")]
    Registry {
        registry: String,
        action: String,
        #[source]
        source: Cause,
    },

    /// The registry answered with a status we did not expect.
    #[error("registry {registry}: {action} answered HTTP {status}: {body}")]
    Status {
        registry: String,
        action: String,
        status: u16,
        body: String,
    },

    /// Reading credentials (docker config.json or a credential helper) failed.
    #[error("credentials for {registry}: {what}")]
    Credentials {
        registry: String,
        what: String,
        #[source]
        source: Option<Cause>,
    },

    /// The Docker engine failed (image inspect, export, build).
    #[error("docker engine: {action} failed")]
    Engine {
        action: String,
        #[source]
        source: Cause,
    },

    /// The image is not in the engine.
    #[error("image {image} is not in the engine: build or pull it first")]
    NoSuchImage { image: String },

    /// The engine's export did not hold what the image's metadata promised.
    #[error("image export of {image}: {what}")]
    Export { image: String, what: String },

    /// A build failed (the Dockerfile's own error, as the engine reported it).
    #[error("build of {what} failed: {message}")]
    Build { what: String, message: String },

    /// A local file could not be read.
    #[error("{path}: {action}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether this error is the user's input (CLI exit 2), refused before any host was touched.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::InvalidInput { .. })
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidInput {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn engine(action: impl Into<String>, source: impl Into<Cause>) -> Self {
        Error::Engine {
            action: action.into(),
            source: source.into(),
        }
    }
}
