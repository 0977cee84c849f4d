//! A host as the engine sees it: a Docker API client and TCP dials made from the host.
//!
//! **API Boundary:** the engine reaches hosts only through [`Remote`]; `davit-ssh`'s `Host` implements
//! it (SSH `direct-streamlocal` for the engine, `direct-tcpip` for the proxy's admin API and health
//! probes of container addresses, which are reachable only from the host itself).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to something reached through a host.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// One host.
#[async_trait]
pub trait Remote: Send + Sync + 'static {
    /// The host's name as the user wrote it (its URL).
    fn name(&self) -> &str;
    /// A Docker API client of the host's engine.
    fn docker(&self) -> bollard::Docker;
    /// A TCP connection to `host:port` made from the host.
    async fn dial_tcp(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Stream>>;
}

/// Shared handle to a host.
pub type RemoteRef = Arc<dyn Remote>;
