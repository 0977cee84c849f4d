//! How to reach hosts: keys, known_hosts, timeouts.

use std::path::PathBuf;
use std::time::Duration;

/// Options for connecting to hosts (the library side of the CLI's `--identity`, `--known-hosts`,
/// `--accept-new-host-keys`). `Default` gives OpenSSH's defaults: `~/.ssh/known_hosts`, `~/.ssh/config`,
/// the agent when `SSH_AUTH_SOCK` is set, default key files when no identity is named.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SshOptions {
    /// A private key file to offer (before the agent's keys). An encrypted key is used through the agent.
    pub identity: Option<PathBuf>,
    /// The known_hosts file; `None` is `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Record unknown host keys instead of refusing them. A changed key is refused regardless.
    pub accept_new_host_keys: bool,
    /// Use ssh-agent when `SSH_AUTH_SOCK` is set (or `agent_socket` is given).
    pub use_agent: bool,
    /// The agent's socket; `None` is `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// The ssh client config to read (`HostName`, `User`, `Port`, `IdentityFile`); `None` is
    /// `~/.ssh/config`.
    pub ssh_config: Option<PathBuf>,
    /// Bound on TCP connect + SSH handshake + authentication, and on opening one channel.
    pub connect_timeout: Duration,
    /// Bound on one Docker API request (bollard's per-request timeout).
    pub operation_timeout: Duration,
    /// SSH keepalive interval; after 3 unanswered keepalives the connection is considered dead.
    pub keepalive_interval: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            identity: None,
            known_hosts: None,
            accept_new_host_keys: false,
            use_agent: true,
            agent_socket: None,
            ssh_config: None,
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(15),
        }
    }
}

impl SshOptions {
    /// The known_hosts file in effect.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.known_hosts.clone().unwrap_or_else(|| {
            crate::config::home()
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".ssh")
                .join("known_hosts")
        })
    }

    /// The ssh config file in effect.
    pub fn ssh_config_path(&self) -> PathBuf {
        self.ssh_config.clone().unwrap_or_else(|| {
            crate::config::home()
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".ssh")
                .join("config")
        })
    }
}
