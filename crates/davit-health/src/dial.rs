//! How probes reach a host: this machine's TCP, or (in the engine) an SSH `direct-tcpip` channel
//! from the server's side, so nothing needs publishing and no curl is needed in the image.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a probe can speak HTTP, TLS or nothing over.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// Opens a stream to `host:port`, from wherever the implementation stands.
#[async_trait::async_trait]
pub trait Dial: Send + Sync {
    async fn dial(&self, host: &str, port: u16) -> io::Result<Box<dyn AsyncReadWrite>>;
}

/// Dials from this machine with plain TCP (`TCP_NODELAY` set).
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectDial;

#[async_trait::async_trait]
impl Dial for DirectDial {
    async fn dial(&self, host: &str, port: u16) -> io::Result<Box<dyn AsyncReadWrite>> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}
