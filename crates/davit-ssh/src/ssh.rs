//! One SSH connection per host (russh), reconnected on demand, with host-key checking and
//! authentication by key files and ssh-agent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use russh::client::{self, Handle, Msg};
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::known_hosts::{self, Verdict};
use crate::{Error, SshOptions};

/// Where to connect and as whom, after `~/.ssh/config` is applied.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The URL as users wrote it, for messages.
    pub label: String,
    /// The address to connect to (`HostName`).
    pub name: String,
    pub port: u16,
    pub user: String,
    /// The engine's socket on the server.
    pub socket: String,
    /// Identity files from the config, in order.
    pub config_identities: Vec<PathBuf>,
}

impl Target {
    pub(crate) fn resolve(
        label: String,
        host: &str,
        user: Option<&str>,
        port: Option<u16>,
        socket: &str,
        opts: &SshOptions,
    ) -> Target {
        let cfg = crate::config::lookup(&opts.ssh_config_path(), host);
        let user = user
            .map(str::to_string)
            .or(cfg.user)
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "root".to_string());
        Target {
            label,
            name: cfg.host_name.unwrap_or_else(|| host.to_string()),
            port: port.or(cfg.port).unwrap_or(22),
            user,
            socket: socket.to_string(),
            config_identities: cfg.identity_files,
        }
    }
}

/// russh's callbacks: the host-key decision.
struct Client {
    target: Target,
    known_hosts: PathBuf,
    accept_new: bool,
    refusal: Arc<Mutex<Option<Error>>>,
}

impl Client {
    fn decide(&self, key: &PublicKey) -> Result<(), Error> {
        let t = &self.target;
        let path = &self.known_hosts;
        let fingerprint = known_hosts::fingerprint(key);
        match known_hosts::check(path, &t.name, t.port, key)? {
            Verdict::Known => Ok(()),
            Verdict::Unknown if self.accept_new => {
                tracing::info!(host = %t.label, %fingerprint, known_hosts = %path.display(), "recording new host key");
                known_hosts::learn(path, &t.name, t.port, key)
            }
            Verdict::Unknown => Err(Error::UnknownHostKey {
                host: t.label.clone(),
                name: t.name.clone(),
                port: t.port,
                fingerprint,
                known_hosts: path.clone(),
            }),
            Verdict::Changed { line } | Verdict::Revoked { line } => Err(Error::HostKeyChanged {
                host: t.label.clone(),
                name: known_hosts::host_pattern(&t.name, t.port),
                fingerprint,
                known_hosts: path.clone(),
                line,
            }),
        }
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let decision = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.decide(key),
            PublicKeyOrCertificate::Certificate(c) => {
                let key = PublicKey::new(c.public_key().clone(), "");
                self.decide(&key)
            }
        };
        match decision {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

/// The SSH side of a host: one authenticated connection, replaced when it drops.
pub(crate) struct SshConn {
    pub target: Target,
    opts: SshOptions,
    handle: tokio::sync::Mutex<Option<Arc<Handle<Client>>>>,
    /// Set once the server refused `direct-streamlocal`: the engine is then reached through
    /// `docker system dial-stdio`.
    use_dial_stdio: AtomicBool,
}

impl SshConn {
    pub(crate) async fn connect(target: Target, opts: SshOptions) -> Result<SshConn, Error> {
        let conn = SshConn {
            target,
            opts,
            handle: tokio::sync::Mutex::new(None),
            use_dial_stdio: AtomicBool::new(false),
        };
        conn.handle().await?;
        Ok(conn)
    }

    /// The live connection, reconnecting if the previous one dropped.
    async fn handle(&self) -> Result<Arc<Handle<Client>>, Error> {
        let mut slot = self.handle.lock().await;
        if let Some(h) = slot.as_ref()
            && !h.is_closed()
        {
            return Ok(h.clone());
        }
        if slot.take().is_some() {
            tracing::info!(host = %self.target.label, "SSH connection dropped; reconnecting");
        }
        let t = self.opts.connect_timeout;
        let h = tokio::time::timeout(t, establish(&self.target, &self.opts))
            .await
            .map_err(|_| Error::Timeout {
                host: self.target.label.clone(),
                what: format!(
                    "connecting to {}:{} over SSH",
                    self.target.name, self.target.port
                ),
                after: t,
            })??;
        let h = Arc::new(h);
        *slot = Some(h.clone());
        Ok(h)
    }

    /// Forgets `h` if it is still the current connection (it timed out or broke).
    async fn discard(&self, h: &Arc<Handle<Client>>) {
        let mut slot = self.handle.lock().await;
        if slot.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, h)) {
            *slot = None;
        }
    }

    /// Opens a channel with `open`, reconnecting once when the connection turns out to be gone.
    async fn open<F, Fut>(&self, what: &str, open: F) -> Result<Channel<Msg>, Error>
    where
        F: Fn(Arc<Handle<Client>>) -> Fut,
        Fut: Future<Output = Result<Channel<Msg>, russh::Error>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let h = self.handle().await?;
            let t = self.opts.connect_timeout;
            match tokio::time::timeout(t, open(h.clone())).await {
                Ok(Ok(ch)) => return Ok(ch),
                Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                    return Err(Error::ChannelRefused {
                        host: self.target.label.clone(),
                        what: what.to_string(),
                        reason: refusal_reason(&reason).to_string(),
                    });
                }
                Ok(Err(e)) => {
                    self.discard(&h).await;
                    if attempt >= 2 || !h.is_closed() {
                        return Err(if h.is_closed() {
                            Error::Disconnected {
                                host: self.target.label.clone(),
                                what: what.to_string(),
                            }
                        } else {
                            Error::Ssh {
                                host: self.target.label.clone(),
                                what: what.to_string(),
                                source: Box::new(e),
                            }
                        });
                    }
                }
                Err(_) => {
                    self.discard(&h).await;
                    return Err(Error::Timeout {
                        host: self.target.label.clone(),
                        what: what.to_string(),
                        after: t,
                    });
                }
            }
        }
    }

    /// A `direct-streamlocal` channel to `path` on the server.
    pub(crate) async fn dial_unix(&self, path: &str) -> Result<Channel<Msg>, Error> {
        let p = path.to_string();
        self.open(&format!("a channel to {path}"), move |h| {
            let p = p.clone();
            async move { h.channel_open_direct_streamlocal(p).await }
        })
        .await
    }

    /// A `direct-tcpip` channel to `host:port` as seen from the server.
    pub(crate) async fn dial_tcp(&self, host: &str, port: u16) -> Result<Channel<Msg>, Error> {
        let hs = host.to_string();
        self.open(&format!("a channel to {host}:{port}"), move |h| {
            let hs = hs.clone();
            async move {
                h.channel_open_direct_tcpip(hs, u32::from(port), "127.0.0.1", 0)
                    .await
            }
        })
        .await
    }

    /// The engine's API socket: `direct-streamlocal` to the socket, or where the server forbids that,
    /// `docker system dial-stdio` on a session channel.
    pub(crate) async fn dial_engine(&self) -> Result<Channel<Msg>, Error> {
        if !self.use_dial_stdio.load(Ordering::Relaxed) {
            match self.dial_unix(&self.target.socket).await {
                Ok(ch) => return Ok(ch),
                // OpenSSH answers "connect failed" both when forwarding is disabled and when nothing
                // listens: fall back only when the server has a docker CLI and the socket exists.
                Err(Error::ChannelRefused { host, what, reason }) => {
                    if !self.dial_stdio_possible().await {
                        return Err(Error::ChannelRefused {
                            host,
                            what,
                            reason: format!(
                                "{reason}; no fallback either: `docker system dial-stdio` needs the docker CLI on the \
                                 server and the socket {} to exist",
                                self.target.socket
                            ),
                        });
                    }
                    tracing::info!(host = %self.target.label, "stream-local forwarding refused; using docker system dial-stdio");
                    self.use_dial_stdio.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let ch = self.session().await?;
        ch.exec(
            true,
            format!(
                "DOCKER_HOST=unix://{} docker system dial-stdio",
                self.target.socket
            ),
        )
        .await
        .map_err(|e| self.lost(e, "docker system dial-stdio"))?;
        Ok(ch)
    }

    async fn dial_stdio_possible(&self) -> bool {
        let cmd = format!(
            "command -v docker >/dev/null && test -S '{}'",
            self.target.socket.replace('\'', "")
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        matches!(self.exec(&cmd, &mut out, &mut err).await, Ok(Some(0)))
    }

    pub(crate) async fn session(&self) -> Result<Channel<Msg>, Error> {
        self.open("a session channel", |h| async move {
            h.channel_open_session().await
        })
        .await
    }

    fn lost(&self, e: russh::Error, what: &str) -> Error {
        match e {
            russh::Error::SendError | russh::Error::Disconnect | russh::Error::HUP => {
                Error::Disconnected {
                    host: self.target.label.clone(),
                    what: what.to_string(),
                }
            }
            e => Error::Ssh {
                host: self.target.label.clone(),
                what: what.to_string(),
                source: Box::new(e),
            },
        }
    }

    /// Runs `cmd` on the server, copying its output to `stdout`/`stderr`; returns the exit status
    /// (`None` when the command died of a signal or the server sent none).
    pub(crate) async fn exec<O, E>(
        &self,
        cmd: &str,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<Option<u32>, Error>
    where
        O: AsyncWrite + Unpin + ?Sized,
        E: AsyncWrite + Unpin + ?Sized,
    {
        let what = format!("running `{cmd}`");
        let mut ch = self.session().await?;
        ch.exec(true, cmd).await.map_err(|e| self.lost(e, &what))?;
        let mut status = None;
        let mut closed = false;
        let io = |e: std::io::Error| Error::Io {
            host: self.target.label.clone(),
            what: format!("writing the output of `{cmd}`"),
            source: e,
        };
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => stdout.write_all(&data).await.map_err(io)?,
                ChannelMsg::ExtendedData { data, .. } => {
                    stderr.write_all(&data).await.map_err(io)?
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Failure => {
                    return Err(Error::ChannelRefused {
                        host: self.target.label.clone(),
                        what: what.clone(),
                        reason: "the server refused to run the command".into(),
                    });
                }
                ChannelMsg::Close => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        stdout.flush().await.map_err(io)?;
        stderr.flush().await.map_err(io)?;
        if !closed && status.is_none() {
            return Err(Error::Disconnected {
                host: self.target.label.clone(),
                what,
            });
        }
        Ok(status)
    }
}

/// TCP connect, handshake, host-key check, authentication.
async fn establish(t: &Target, opts: &SshOptions) -> Result<Handle<Client>, Error> {
    let addr = format!("{}:{}", t.name, t.port);
    let tcp = tokio::net::TcpStream::connect((t.name.as_str(), t.port))
        .await
        .map_err(|e| Error::Connect {
            host: t.label.clone(),
            addr: addr.clone(),
            source: e,
        })?;
    let _ = tcp.set_nodelay(true);
    // Ask for a host key type known_hosts can vouch for first, then the usual order.
    let mut key_order = known_hosts::known_algorithms(&opts.known_hosts_path(), &t.name, t.port);
    for a in russh::Preferred::DEFAULT.key.iter() {
        if !key_order.contains(a) {
            key_order.push(a.clone());
        }
    }
    let config = Arc::new(client::Config {
        preferred: russh::Preferred {
            key: key_order.into(),
            ..russh::Preferred::DEFAULT
        },
        keepalive_interval: Some(opts.keepalive_interval),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    });
    let refusal = Arc::new(Mutex::new(None));
    let handler = Client {
        target: t.clone(),
        known_hosts: opts.known_hosts_path(),
        accept_new: opts.accept_new_host_keys,
        refusal: refusal.clone(),
    };
    let mut handle = match client::connect_stream(config, tcp, handler).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(refused) = refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(refused);
            }
            return Err(Error::Ssh {
                host: t.label.clone(),
                what: format!("the handshake with {addr}"),
                source: Box::new(e),
            });
        }
    };
    authenticate(&mut handle, t, opts).await?;
    Ok(handle)
}

/// A key we can offer: a file we can read, or an agent identity.
enum Offer {
    File { path: PathBuf, key: Arc<PrivateKey> },
    Agent { public: PublicKey, comment: String },
}

async fn authenticate(
    handle: &mut Handle<Client>,
    t: &Target,
    opts: &SshOptions,
) -> Result<(), Error> {
    let ssh_err = |what: &str, e| Error::Ssh {
        host: t.label.clone(),
        what: what.to_string(),
        source: Box::new(e),
    };
    // Explicit identities first (--identity, then IdentityFile), then the agent, then default key files.
    let mut explicit: Vec<PathBuf> = opts.identity.iter().cloned().collect();
    explicit.extend(t.config_identities.iter().cloned());
    let defaults: Vec<PathBuf> = if explicit.is_empty() {
        crate::config::home()
            .map(|h| {
                ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .iter()
                    .map(|n| h.join(".ssh").join(n))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let agent_socket = opts.agent_socket.clone().or_else(|| {
        std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    let mut agent = match agent_socket.filter(|_| opts.use_agent) {
        Some(sock) => match AgentClient::connect_uds(&sock).await {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!("ssh-agent at {} cannot be reached: {e}", sock.display());
                None
            }
        },
        None => None,
    };
    let agent_keys: Vec<(PublicKey, String)> = match agent.as_mut() {
        Some(a) => a
            .request_identities()
            .await
            .map(|ids| {
                ids.iter()
                    .map(|id| (id.public_key().into_owned(), id.comment().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };

    let mut offers = Vec::new();
    let mut tried = Vec::new();
    let mut problems: Vec<Error> = Vec::new();
    for path in &explicit {
        match load_key(path, &agent_keys) {
            Ok(o) => offers.push(o),
            Err(e) => problems.push(e),
        }
    }
    for (public, comment) in &agent_keys {
        if !offers
            .iter()
            .any(|o| matches!(o, Offer::Agent { public: p, .. } if p == public))
        {
            offers.push(Offer::Agent {
                public: public.clone(),
                comment: comment.clone(),
            });
        }
    }
    for path in defaults.iter().filter(|p| p.exists()) {
        if let Ok(o) = load_key(path, &agent_keys) {
            offers.push(o);
        }
    }
    if offers.is_empty() {
        // An identity that was named but cannot be used is the most useful thing to report.
        if let Some(e) = problems.into_iter().next() {
            return Err(e);
        }
        return Err(Error::AuthFailed {
            host: t.label.clone(),
            user: t.user.clone(),
            tried: "no key: none given with --identity, no ssh-agent, no ~/.ssh/id_* file".into(),
        });
    }

    let rsa_hash = match handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| ssh_err("authentication", e))?
    {
        Some(Some(h)) => Some(h),
        Some(None) => None,
        None => Some(HashAlg::Sha256),
    };
    for offer in offers {
        let ok = match offer {
            Offer::File { path, key } => {
                tried.push(path.display().to_string());
                let hash = if key.algorithm().is_rsa() {
                    rsa_hash
                } else {
                    None
                };
                handle
                    .authenticate_publickey(&t.user, PrivateKeyWithHashAlg::new(key, hash))
                    .await
                    .map_err(|e| ssh_err("authentication", e))?
                    .success()
            }
            Offer::Agent { public, comment } => {
                tried.push(format!(
                    "agent key {}",
                    if comment.is_empty() {
                        known_hosts::fingerprint(&public)
                    } else {
                        comment
                    }
                ));
                let hash = if public.algorithm().is_rsa() {
                    rsa_hash
                } else {
                    None
                };
                let Some(a) = agent.as_mut() else { continue };
                match handle
                    .authenticate_publickey_with(&t.user, public, hash, a)
                    .await
                {
                    Ok(r) => r.success(),
                    Err(e) => {
                        tracing::warn!("ssh-agent failed to sign: {e}");
                        false
                    }
                }
            }
        };
        if ok {
            return Ok(());
        }
    }
    Err(Error::AuthFailed {
        host: t.label.clone(),
        user: t.user.clone(),
        tried: tried.join(", "),
    })
}

/// Loads a private key; an encrypted one is used through the agent when the agent holds it.
fn load_key(path: &Path, agent_keys: &[(PublicKey, String)]) -> Result<Offer, Error> {
    let bad = |reason: String| Error::Identity {
        path: path.to_path_buf(),
        reason,
    };
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok(Offer::File {
            path: path.to_path_buf(),
            key: Arc::new(key),
        }),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let public = public_of(path);
            match public.and_then(|p| {
                agent_keys
                    .iter()
                    .find(|(k, _)| k.key_data() == p.key_data())
                    .cloned()
            }) {
                Some((public, comment)) => Ok(Offer::Agent { public, comment }),
                None => Err(bad(format!(
                    "the key is encrypted with a passphrase: load it into ssh-agent (`ssh-add {}`) and make sure \
                     SSH_AUTH_SOCK is set",
                    path.display()
                ))),
            }
        }
        Err(russh::keys::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(bad("no such file: check --identity / IdentityFile".into()))
        }
        Err(russh::keys::Error::IO(e)) => Err(bad(format!("cannot read it: {e}"))),
        Err(e) => Err(bad(format!(
            "not a usable private key ({e}); davit reads OpenSSH and PEM keys: ed25519, ECDSA, RSA"
        ))),
    }
}

/// The public half of an encrypted key: from `PATH.pub`, or the unencrypted public part of the file.
fn public_of(path: &Path) -> Option<PublicKey> {
    let mut pubpath = path.as_os_str().to_owned();
    pubpath.push(".pub");
    if let Ok(k) = russh::keys::load_public_key(PathBuf::from(pubpath)) {
        return Some(k);
    }
    let text = std::fs::read_to_string(path).ok()?;
    russh::keys::ssh_key::PrivateKey::from_openssh(text)
        .ok()
        .map(|k| k.public_key().clone())
}

const PROHIBITED: &str = "forwarding is disabled on the server (sshd_config: AllowStreamLocalForwarding / AllowTcpForwarding)";

fn refusal_reason(r: &russh::ChannelOpenFailure) -> &'static str {
    match r {
        russh::ChannelOpenFailure::AdministrativelyProhibited => PROHIBITED,
        russh::ChannelOpenFailure::ConnectFailed => {
            "the server could not open it (is something listening there? is forwarding allowed by sshd_config \
             AllowTcpForwarding / AllowStreamLocalForwarding?)"
        }
        russh::ChannelOpenFailure::ResourceShortage => {
            "the server is short of resources (MaxSessions?)"
        }
        _ => "the server does not support this kind of channel",
    }
}
