//! `davit-ssh`: reach every server's Docker engine over SSH, in pure Rust (russh), and local engines
//! through the same API.
//!
//! # The API
//!
//! ```no_run
//! # async fn demo() -> Result<(), davit_ssh::Error> {
//! use davit_ssh::{Host, HostUrl, SshOptions};
//!
//! let url = HostUrl::parse("ssh://root@10.77.1.2:22")?; // or "local", "unix:///run/docker.sock"
//! let mut opts = SshOptions::default();                  // ~/.ssh/known_hosts, agent, default keys
//! opts.identity = Some("/path/to/key".into());
//! let host = Host::connect(&url, &opts).await?;          // one SSH connection, host key verified
//!
//! let docker: bollard::Docker = host.docker();            // the engine's API, over the connection
//! let _version = docker.version().await;
//! let _stream = host.dial_tcp("127.0.0.1", 8080).await;   // a TCP connection made from the server
//! let _sock = host.dial_unix("/run/app.sock").await;      // a unix socket on the server
//! let out = host.exec("uname -a").await?;                 // a command, its output and exit status
//! assert!(out.success());
//! let _same = host.clone();                               // cheap; shares the connection
//! # Ok(()) }
//! ```
//!
//! - [`HostUrl`]: `local` (`DOCKER_HOST`, else `/var/run/docker.sock`), `unix:///path`,
//!   `ssh://[user@]host[:port][?socket=/path]`.
//! - [`SshOptions`]: identity, known_hosts, `accept_new_host_keys`, agent, ssh config, timeouts.
//! - [`Host`]: cheap to clone; every clone shares ONE SSH connection per host, which every Docker API
//!   connection (a `direct-streamlocal` channel each; `docker system dial-stdio` where the server forbids
//!   stream-local forwarding), TCP dial (`direct-tcpip`) and command (`session` channel) rides on. When
//!   the connection drops, the call in flight fails with [`Error::Disconnected`] and the next call
//!   reconnects.
//! - [`check_hosts`]: `davit hosts check`, all hosts in parallel.
//!
//! Host keys: checked against known_hosts (plain, hashed `|1|salt|hash`, `[host]:port` for other ports,
//! wildcards, `@revoked`). Unknown keys are refused ([`Error::UnknownHostKey`]) unless
//! `accept_new_host_keys`, which records them; a changed key is ALWAYS refused
//! ([`Error::HostKeyChanged`], naming the file and line).
//!
//! Authentication: `--identity` and `IdentityFile` keys first (ed25519, ECDSA, RSA with SHA-2 signatures;
//! an encrypted key through the agent that holds it), then the agent's keys (`SSH_AUTH_SOCK`), then
//! `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` when no identity was named. `~/.ssh/config` supplies
//! `HostName`, `User`, `Port` and `IdentityFile`.

mod check;
pub mod config;
mod error;
mod host;
pub mod known_hosts;
mod options;
mod ssh;
mod stream;
mod url;

pub use check::{HostReport, check, check_hosts};
pub use error::Error;
pub use host::{DOCKER_API_VERSION, Host, Output};
pub use options::SshOptions;
pub use stream::Stream;
pub use url::{DEFAULT_LOCAL_SOCKET, DEFAULT_REMOTE_SOCKET, HostUrl};

#[cfg(test)]
mod tests;
