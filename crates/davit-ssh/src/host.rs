//! The `Host` handle: one engine, local or remote, behind one API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::{BollardRequest, ClientVersion, Docker};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::ssh::{SshConn, Target};
use crate::stream::{Inner, Stream};
use crate::{Error, HostUrl, SshOptions};

/// The Docker API version davit speaks: that of Docker 20.10, accepted by every engine from 20.10 on.
pub const DOCKER_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// A connected host: cheap to clone, shared by everything that talks to that host. For `ssh://` hosts
/// it holds ONE SSH connection, over which every Docker API connection, TCP dial and command runs as a
/// channel; the connection is re-established on the next call after it drops.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct HostInner {
    url: HostUrl,
    label: String,
    endpoint: Endpoint,
    docker: Docker,
}

#[derive(Clone)]
enum Endpoint {
    /// The engine's unix socket on this machine.
    Unix(PathBuf),
    /// `DOCKER_HOST=tcp://host:port` (plain HTTP).
    Tcp(String),
    Ssh(Arc<SshConn>),
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("url", &self.inner.label)
            .finish_non_exhaustive()
    }
}

/// The result of a command run with [`Host::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` if the command died of a signal.
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

impl Host {
    /// Connects to the host. For `ssh://` this makes the SSH connection now (TCP, host-key check,
    /// authentication, bounded by `opts.connect_timeout`), so that a bad host fails here with a clear
    /// error; for local engines nothing is touched until the first call.
    pub async fn connect(url: &HostUrl, opts: &SshOptions) -> Result<Host, Error> {
        let label = url.to_string();
        let endpoint = match url {
            HostUrl::Unix { path } => Endpoint::Unix(path.clone()),
            HostUrl::Local => match std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()) {
                None => Endpoint::Unix(PathBuf::from(crate::url::DEFAULT_LOCAL_SOCKET)),
                Some(dh) => {
                    if let Some(addr) = dh.strip_prefix("tcp://") {
                        Endpoint::Tcp(addr.trim_end_matches('/').to_string())
                    } else {
                        match HostUrl::parse(&dh) {
                            Ok(HostUrl::Unix { path }) => Endpoint::Unix(path),
                            Ok(HostUrl::Ssh {
                                user,
                                host,
                                port,
                                socket,
                            }) => {
                                let t = Target::resolve(
                                    label.clone(),
                                    &host,
                                    user.as_deref(),
                                    port,
                                    &socket,
                                    opts,
                                );
                                Endpoint::Ssh(Arc::new(SshConn::connect(t, opts.clone()).await?))
                            }
                            _ => {
                                return Err(Error::InvalidUrl {
                                    url: dh,
                                    reason: "DOCKER_HOST must be unix://, tcp:// or ssh://".into(),
                                });
                            }
                        }
                    }
                }
            },
            HostUrl::Ssh {
                user,
                host,
                port,
                socket,
            } => {
                let t = Target::resolve(label.clone(), host, user.as_deref(), *port, socket, opts);
                Endpoint::Ssh(Arc::new(SshConn::connect(t, opts.clone()).await?))
            }
        };
        let docker = docker_client(&label, endpoint.clone(), opts)?;
        Ok(Host {
            inner: Arc::new(HostInner {
                url: url.clone(),
                label,
                endpoint,
                docker,
            }),
        })
    }

    /// Connects to every host concurrently; results in the order of `urls`. A host that does not
    /// answer costs at most `opts.connect_timeout` and delays no other.
    pub async fn connect_all(urls: &[HostUrl], opts: &SshOptions) -> Vec<Result<Host, Error>> {
        futures_util::future::join_all(urls.iter().map(|u| Host::connect(u, opts))).await
    }

    /// The URL this host was connected with.
    pub fn url(&self) -> &HostUrl {
        &self.inner.url
    }

    /// True when the engine is reached over SSH.
    pub fn is_remote(&self) -> bool {
        matches!(self.inner.endpoint, Endpoint::Ssh(_))
    }

    /// A Docker API client for this host's engine (cheap: clones share the connection pool). Over SSH
    /// every HTTP connection is one `direct-streamlocal` channel to the engine socket; HTTP upgrades
    /// (exec, attach) work. Speaks API [`DOCKER_API_VERSION`].
    pub fn docker(&self) -> Docker {
        self.inner.docker.clone()
    }

    /// A TCP connection to `host:port` as seen from the host: over SSH a `direct-tcpip` channel (so
    /// `127.0.0.1` is the server's own loopback), locally a plain TCP connect.
    pub async fn dial_tcp(&self, host: &str, port: u16) -> std::io::Result<Stream> {
        match &self.inner.endpoint {
            Endpoint::Ssh(c) => Ok(Stream(Inner::Channel(Box::pin(
                c.dial_tcp(host, port).await?.into_stream(),
            )))),
            Endpoint::Unix(_) | Endpoint::Tcp(_) => {
                let s = tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("{}: cannot connect to {host}:{port}: {e}", self.inner.label),
                        )
                    })?;
                let _ = s.set_nodelay(true);
                Ok(Stream(Inner::Tcp(s)))
            }
        }
    }

    /// A connection to the unix socket `path` on the host (`direct-streamlocal` over SSH).
    pub async fn dial_unix(&self, path: impl AsRef<Path>) -> std::io::Result<Stream> {
        let path = path.as_ref();
        match &self.inner.endpoint {
            Endpoint::Ssh(c) => Ok(Stream(Inner::Channel(Box::pin(
                c.dial_unix(&path.to_string_lossy()).await?.into_stream(),
            )))),
            Endpoint::Unix(_) | Endpoint::Tcp(_) => {
                let s = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "{}: cannot connect to {}: {e}",
                            self.inner.label,
                            path.display()
                        ),
                    )
                })?;
                Ok(Stream(Inner::Unix(s)))
            }
        }
    }

    /// A connection to the engine's API socket (what [`Host::docker`] uses for each HTTP connection).
    pub async fn dial_engine(&self) -> std::io::Result<Stream> {
        dial_engine(&self.inner.label, &self.inner.endpoint).await
    }

    /// Runs a shell command on the host (`sh -c` locally, the login shell over SSH) and collects its
    /// output. A non-zero exit is not an error: look at [`Output::status`].
    pub async fn exec(&self, cmd: &str) -> Result<Output, Error> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let status = self.exec_streaming(cmd, &mut stdout, &mut stderr).await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Runs a shell command, streaming its output into `stdout` and `stderr` as it comes; returns the
    /// exit status (`None` if it died of a signal).
    pub async fn exec_streaming<O, E>(
        &self,
        cmd: &str,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<Option<u32>, Error>
    where
        O: AsyncWrite + Unpin + ?Sized,
        E: AsyncWrite + Unpin + ?Sized,
    {
        match &self.inner.endpoint {
            Endpoint::Ssh(c) => c.exec(cmd, stdout, stderr).await,
            Endpoint::Unix(_) | Endpoint::Tcp(_) => {
                let io = |what: String| {
                    let host = self.inner.label.clone();
                    move |e| Error::Io {
                        host,
                        what,
                        source: e,
                    }
                };
                let mut child = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(io(format!("cannot run `{cmd}`")))?;
                let mut out = child.stdout.take().expect("piped");
                let mut err = child.stderr.take().expect("piped");
                let (a, b) = tokio::join!(
                    tokio::io::copy(&mut out, stdout),
                    tokio::io::copy(&mut err, stderr)
                );
                a.map_err(io(format!("reading the output of `{cmd}`")))?;
                b.map_err(io(format!("reading the output of `{cmd}`")))?;
                stdout
                    .flush()
                    .await
                    .map_err(io(format!("writing the output of `{cmd}`")))?;
                stderr
                    .flush()
                    .await
                    .map_err(io(format!("writing the output of `{cmd}`")))?;
                let st = child
                    .wait()
                    .await
                    .map_err(io(format!("waiting for `{cmd}`")))?;
                Ok(st.code().and_then(|c| u32::try_from(c).ok()))
            }
        }
    }
}

async fn dial_engine(label: &str, endpoint: &Endpoint) -> std::io::Result<Stream> {
    match endpoint {
        Endpoint::Ssh(c) => Ok(Stream(Inner::Channel(Box::pin(
            c.dial_engine().await?.into_stream(),
        )))),
        Endpoint::Unix(p) => tokio::net::UnixStream::connect(p)
            .await
            .map(|s| Stream(Inner::Unix(s)))
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{label}: cannot reach the Docker engine at {}: {e} (is dockerd running?)",
                        p.display()
                    ),
                )
            }),
        Endpoint::Tcp(a) => tokio::net::TcpStream::connect(a.as_str())
            .await
            .map(|s| Stream(Inner::Tcp(s)))
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("{label}: cannot reach the Docker engine at tcp://{a}: {e}"),
                )
            }),
    }
}

/// hyper connector: every new HTTP connection to the engine is a fresh [`Stream`] from [`dial_engine`].
#[derive(Clone)]
struct EngineConnector {
    label: Arc<str>,
    endpoint: Endpoint,
}

impl tower_service::Service<http::Uri> for EngineConnector {
    type Response = hyper_util::rt::TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            dial_engine(&this.label, &this.endpoint)
                .await
                .map(hyper_util::rt::TokioIo::new)
        })
    }
}

fn docker_client(label: &str, endpoint: Endpoint, opts: &SshOptions) -> Result<Docker, Error> {
    let connector = EngineConnector {
        label: label.into(),
        endpoint,
    };
    let mut builder =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    // Keep idle HTTP connections (channels) for reuse: a new channel costs a round trip to the server.
    builder.pool_idle_timeout(std::time::Duration::from_secs(30));
    let client = Arc::new(builder.build(connector));
    let transport = move |req: BollardRequest| {
        let client = client.clone();
        async move {
            client
                .request(req)
                .await
                .map_err(bollard::errors::Error::from)
        }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some("http://docker.invalid"),
        opts.operation_timeout.as_secs().max(1),
        &DOCKER_API_VERSION,
    )
    .map_err(|e| Error::Docker {
        host: label.to_string(),
        what: "creating the API client".into(),
        source: Box::new(e),
    })
}
