//! Host URLs: `local`, `unix:///path`, `ssh://[user@]host[:port][?socket=/path]`.

use std::fmt;
use std::path::PathBuf;

use crate::Error;

/// The remote socket of an `ssh://` host when the URL names none.
pub const DEFAULT_REMOTE_SOCKET: &str = "/var/run/docker.sock";
/// The local socket when `DOCKER_HOST` is unset.
pub const DEFAULT_LOCAL_SOCKET: &str = "/var/run/docker.sock";

/// Where a Docker engine is, as users name it (CONTRACT.md "Names").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostUrl {
    /// `local`: this machine's engine (`DOCKER_HOST`, else `/var/run/docker.sock`), resolved at connect time.
    Local,
    /// `unix:///path/to/docker.sock`.
    Unix {
        /// The socket path.
        path: PathBuf,
    },
    /// `ssh://[user@]host[:port][?socket=/path]`.
    Ssh {
        /// The login name; `None` means "from ~/.ssh/config, else the current user".
        user: Option<String>,
        /// Host name or address as written (IPv6 without brackets).
        host: String,
        /// The port as written; `None` means "from ~/.ssh/config, else 22".
        port: Option<u16>,
        /// The engine's socket on the server.
        socket: String,
    },
}

impl HostUrl {
    /// Parses a host URL. Errors say what is wrong and show the accepted forms.
    pub fn parse(s: &str) -> Result<HostUrl, Error> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: redact(s),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t == "local" {
            return Ok(HostUrl::Local);
        }
        if let Some(rest) = t.strip_prefix("unix://") {
            if !rest.starts_with('/') {
                return Err(bad(
                    "a unix socket path must be absolute, e.g. unix:///var/run/docker.sock",
                ));
            }
            return Ok(HostUrl::Unix {
                path: PathBuf::from(rest),
            });
        }
        if t.starts_with("ssh://") {
            let u = url::Url::parse(t).map_err(|e| bad(&e.to_string()))?;
            let host = match u.host() {
                Some(url::Host::Domain(d)) => d.to_string(),
                Some(url::Host::Ipv4(a)) => a.to_string(),
                Some(url::Host::Ipv6(a)) => a.to_string(),
                None => return Err(bad("no host name, e.g. ssh://root@203.0.113.7")),
            };
            if host.is_empty() {
                return Err(bad("no host name, e.g. ssh://root@203.0.113.7"));
            }
            if u.password().is_some() {
                return Err(bad(
                    "passwords are not accepted in host URLs: use a key (--identity) or ssh-agent",
                ));
            }
            if !(u.path().is_empty() || u.path() == "/") {
                return Err(bad(
                    "an ssh URL has no path; name another socket with ?socket=/path",
                ));
            }
            let mut socket = DEFAULT_REMOTE_SOCKET.to_string();
            for (k, v) in u.query_pairs() {
                match &*k {
                    "socket" if v.starts_with('/') => socket = v.into_owned(),
                    "socket" => return Err(bad("?socket= must be an absolute path")),
                    other => {
                        return Err(bad(&format!(
                            "unknown parameter `{other}` (only `socket` is known)"
                        )));
                    }
                }
            }
            let user = (!u.username().is_empty()).then(|| {
                url::form_urlencoded::parse(u.username().as_bytes())
                    .next()
                    .map(|(k, _)| k.into_owned())
                    .unwrap_or_else(|| u.username().to_string())
            });
            return Ok(HostUrl::Ssh {
                user,
                host,
                port: u.port(),
                socket,
            });
        }
        if t.contains("://") {
            return Err(bad(
                "unsupported scheme: use local, unix:///path or ssh://user@host[:port]",
            ));
        }
        Err(bad(
            "not a host URL: use local, unix:///path or ssh://user@host[:port]",
        ))
    }

    /// True for `ssh://` hosts.
    pub fn is_ssh(&self) -> bool {
        matches!(self, HostUrl::Ssh { .. })
    }
}

impl std::str::FromStr for HostUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        HostUrl::parse(s)
    }
}

impl fmt::Display for HostUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostUrl::Local => f.write_str("local"),
            HostUrl::Unix { path } => write!(f, "unix://{}", path.display()),
            HostUrl::Ssh {
                user,
                host,
                port,
                socket,
            } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                if socket != DEFAULT_REMOTE_SOCKET {
                    write!(f, "?socket={socket}")?;
                }
                Ok(())
            }
        }
    }
}

/// The URL with any password replaced, for messages.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &s[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &s[..scheme_end + 3], &s[at..]),
                None => s.to_string(),
            }
        }
        _ => s.to_string(),
    }
}
