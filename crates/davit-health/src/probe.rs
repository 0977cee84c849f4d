//! What to probe: the probe kinds and the `davit probe` target syntax. Pure data, no I/O.

use std::fmt;

use crate::Error;

/// One kind of health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// An HTTP or HTTPS request whose status (and optionally body) must match.
    Http(HttpProbe),
    /// A TCP connection that must be accepted.
    Tcp { host: String, port: u16 },
    /// A command run in a container (Docker exec) that must exit 0.
    Exec {
        container: String,
        command: Vec<String>,
    },
    /// The container's own Docker healthcheck status, which must be `healthy` (a container without
    /// a healthcheck counts as healthy while it runs).
    Container { container: String },
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Http(h) => write!(f, "{}", h.url),
            Probe::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracket(host)),
            Probe::Exec { container, command } => {
                write!(f, "exec {container}: {}", command.join(" "))
            }
            Probe::Container { container } => write!(f, "container://{container}"),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// An HTTP(S) probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// `http://` or `https://` URL; its host and port are what the dialer connects to.
    pub url: url::Url,
    /// Extra request headers (a `Host` here replaces the one taken from the URL).
    pub headers: Vec<(String, String)>,
    /// Status codes that count as success (default 200-399, as Kubernetes).
    pub expect_status: StatusRange,
    /// Text the response body must contain.
    pub expect_body: Option<String>,
    /// Skip TLS certificate verification (self-signed endpoints). Off by default.
    pub insecure: bool,
    /// Extra trusted root certificates (DER), on top of the system's roots.
    pub extra_roots: Vec<Vec<u8>>,
}

impl HttpProbe {
    /// A GET of `url` expecting 200-399, verifying TLS. Refuses schemes other than http and https.
    pub fn new(url: url::Url) -> Result<Self, Error> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::BadTarget {
                target: url.to_string(),
                reason: "the scheme must be http or https".into(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::BadTarget {
                target: url.to_string(),
                reason: "the URL has no host".into(),
            });
        }
        Ok(HttpProbe {
            url,
            headers: Vec::new(),
            expect_status: StatusRange::default(),
            expect_body: None,
            insecure: false,
            extra_roots: Vec::new(),
        })
    }

    /// The host to dial, without IPv6 brackets.
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }

    /// The port to dial (the scheme's default when the URL has none).
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(80)
    }

    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }
}

/// An inclusive range of HTTP status codes: `200`, `200-299`, `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

impl Default for StatusRange {
    /// 200-399: what Kubernetes counts as success.
    fn default() -> Self {
        StatusRange { min: 200, max: 399 }
    }
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

impl std::str::FromStr for StatusRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid status range {s:?}: write e.g. 200, 200-299 or 2xx (codes 100-599)")
        };
        let code = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
        };
        let range = if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let d = class
                .parse::<u16>()
                .ok()
                .filter(|d| (1..=5).contains(d))
                .ok_or_else(bad)?;
            StatusRange {
                min: d * 100,
                max: d * 100 + 99,
            }
        } else if let Some((a, b)) = s.split_once('-') {
            StatusRange {
                min: code(a).ok_or_else(bad)?,
                max: code(b).ok_or_else(bad)?,
            }
        } else {
            let c = code(s).ok_or_else(bad)?;
            StatusRange { min: c, max: c }
        };
        if range.min > range.max {
            return Err(bad());
        }
        Ok(range)
    }
}

/// A parsed `davit probe` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub probe: Probe,
    /// For `container://NAME@HOST-URL`: the host URL (`local`, `unix://…`, `ssh://…`).
    pub docker_host: Option<String>,
}

/// Parses `http://…`, `https://…`, `tcp://host:port` and `container://NAME[@HOST-URL]`.
pub fn parse_target(target: &str) -> Result<Target, Error> {
    let bad = |reason: &str| Error::BadTarget {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = target.split_once("://").ok_or_else(|| {
        bad("expected http://…, https://…, tcp://host:port or container://NAME[@HOST-URL]")
    })?;
    match scheme {
        "http" | "https" => {
            let url = url::Url::parse(target).map_err(|e| bad(&format!("not a valid URL: {e}")))?;
            Ok(Target {
                probe: Probe::Http(HttpProbe::new(url)?),
                docker_host: None,
            })
        }
        "tcp" => {
            let url =
                url::Url::parse(target).map_err(|e| bad(&format!("not a valid host:port: {e}")))?;
            if !(url.path().is_empty() || url.path() == "/")
                || url.query().is_some()
                || !url.username().is_empty()
            {
                return Err(bad("a tcp target is only tcp://host:port"));
            }
            let host = match url.host() {
                Some(url::Host::Ipv6(a)) => a.to_string(),
                Some(h) => h.to_string(),
                None => return Err(bad("missing host: write tcp://host:port")),
            };
            let port = url
                .port()
                .ok_or_else(|| bad("missing port: write tcp://host:port"))?;
            if port == 0 {
                return Err(bad("port 0 cannot be probed"));
            }
            Ok(Target {
                probe: Probe::Tcp { host, port },
                docker_host: None,
            })
        }
        "container" => {
            let (name, host) = match rest.split_once('@') {
                Some((n, h)) => (n, Some(h)),
                None => (rest, None),
            };
            if !is_container_name(name) {
                return Err(bad(
                    "a container name is letters, digits, '_', '.', '-' (first a letter or digit)",
                ));
            }
            if let Some(h) = host {
                let ok = h == "local" || h.starts_with("unix:///") || h.starts_with("ssh://");
                if !ok {
                    return Err(bad(
                        "the host after '@' must be local, unix:///path or ssh://user@host[:port]",
                    ));
                }
            }
            Ok(Target {
                probe: Probe::Container {
                    container: name.into(),
                },
                docker_host: host.map(String::from),
            })
        }
        other => Err(bad(&format!(
            "unsupported scheme {other:?}: use http, https, tcp or container"
        ))),
    }
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (an id is accepted too).
fn is_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() >= 2
}
