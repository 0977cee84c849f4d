//! Credentials the way Docker finds them, and which registries may be spoken to in plain HTTP.
//!
//! Order (first that yields wins): explicit credentials ([`Settings::credentials`], from flags or
//! `DAVIT_REGISTRY_USER` / `DAVIT_REGISTRY_PASSWORD` in CI), then `~/.docker/config.json`
//! (`$DOCKER_CONFIG/config.json`): `credHelpers[host]`, `credsStore`, then `auths[host].auth`.
//! Anything else is anonymous.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::Error;

/// Credentials for one registry. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    Anonymous,
    /// User and password (or token used as a password): HTTP basic, or exchanged for a bearer token.
    Basic {
        user: String,
        password: String,
    },
    /// A bearer token sent as is.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user:?}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// The user name, for error messages (never the secret).
    pub fn who(&self) -> String {
        match self {
            Credentials::Anonymous => " (anonymous: no credentials found)".into(),
            Credentials::Basic { user, .. } => format!(" for user {user:?}"),
            Credentials::Bearer(_) => " for the bearer token".into(),
        }
    }

    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { user, password } => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

/// How to reach registries: credentials, plain-HTTP exceptions, parallelism.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Credentials used for every registry (CI): `DAVIT_REGISTRY_USER` / `DAVIT_REGISTRY_PASSWORD`.
    pub credentials: Option<Credentials>,
    /// Registries spoken to in plain HTTP besides loopback: `HOST`, `HOST:PORT` or a CIDR like
    /// `10.77.0.0/16` (`DAVIT_INSECURE_REGISTRIES`, comma-separated; `--insecure-registry`).
    pub insecure: Vec<String>,
    /// The Docker client config file (default `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// Blobs sent at a time.
    pub concurrency: usize,
    /// Where `docker-credential-*` helpers are looked up (default: `PATH`).
    pub helper_dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            credentials: None,
            insecure: Vec::new(),
            docker_config: None,
            concurrency: 4,
            helper_dir: None,
        }
    }
}

impl Settings {
    /// Settings from the environment: `DAVIT_REGISTRY_USER`, `DAVIT_REGISTRY_PASSWORD`,
    /// `DAVIT_INSECURE_REGISTRIES` (comma-separated), `DOCKER_CONFIG`.
    pub fn from_env() -> Self {
        let mut s = Settings::default();
        if let (Ok(user), Ok(password)) = (
            std::env::var("DAVIT_REGISTRY_USER"),
            std::env::var("DAVIT_REGISTRY_PASSWORD"),
        ) {
            s.credentials = Some(Credentials::Basic { user, password });
        }
        if let Ok(list) = std::env::var("DAVIT_INSECURE_REGISTRIES") {
            s.insecure = list
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect();
        }
        s
    }

    /// Whether `registry` (`host[:port]`) may be spoken to in plain HTTP: loopback always, others only
    /// when listed in [`Settings::insecure`].
    pub fn is_insecure(&self, registry: &str) -> bool {
        let (host, _port) = split_host_port(registry);
        if host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure.iter().any(|entry| {
            let entry = entry.trim_start_matches("http://").trim_end_matches('/');
            if let Some((net, bits)) = entry.split_once('/') {
                return match (
                    net.parse::<IpAddr>(),
                    bits.parse::<u8>(),
                    host.parse::<IpAddr>(),
                ) {
                    (Ok(net), Ok(bits), Ok(ip)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            entry == registry || (!entry.contains(':') && entry == host)
        })
    }

    fn config_path(&self) -> PathBuf {
        if let Some(p) = &self.docker_config {
            return p.clone();
        }
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return PathBuf::from(dir).join("config.json");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".docker/config.json")
    }

    /// The credentials for `registry`, found as Docker finds them (see the module docs).
    pub fn credentials_for(&self, registry: &str) -> Result<Credentials, Error> {
        if let Some(c) = &self.credentials {
            return Ok(c.clone());
        }
        let path = self.config_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Credentials::Anonymous);
            }
            Err(e) => {
                return Err(Error::Io {
                    path: path.display().to_string(),
                    action: "cannot read",
                    source: e,
                });
            }
        };
        from_docker_config(&text, &path, registry, self.helper_dir.as_deref())
    }
}

/// `host`, `port` of `host[:port]` (IPv6 in brackets kept whole).
pub(crate) fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[')
        && let Some((h, p)) = rest.split_once(']')
    {
        return (h, p.strip_prefix(':'));
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (registry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The key under which Docker files credentials for `registry`.
fn server_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ];
    }
    vec![registry.to_string()]
}

/// `https://host:port/v1/` -> `host:port`.
fn normalize_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Credentials for `registry` from the text of a Docker `config.json`.
/// Helpers are run from `helper_dir` when given, else found on `PATH`.
pub fn from_docker_config(
    text: &str,
    path: &Path,
    registry: &str,
    helper_dir: Option<&Path>,
) -> Result<Credentials, Error> {
    let cfg: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Credentials {
        registry: registry.into(),
        what: format!("{} is not valid JSON", path.display()),
        source: Some(Box::new(e)),
    })?;
    let keys = server_keys(registry);
    let wanted = |k: &str| {
        keys.iter()
            .any(|w| w == k || normalize_key(w) == normalize_key(k))
    };
    if let Some(helpers) = cfg.get("credHelpers").and_then(|h| h.as_object())
        && let Some(helper) = helpers
            .iter()
            .find(|(k, _)| wanted(k))
            .and_then(|(_, v)| v.as_str())
    {
        return from_helper(helper, &keys[0], registry, helper_dir);
    }
    if let Some(store) = cfg
        .get("credsStore")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
    {
        let found = from_helper(store, &keys[0], registry, helper_dir)?;
        if found != Credentials::Anonymous {
            return Ok(found);
        }
    }
    let Some(auths) = cfg.get("auths").and_then(|a| a.as_object()) else {
        return Ok(Credentials::Anonymous);
    };
    let Some(entry) = auths.iter().find(|(k, _)| wanted(k)).map(|(_, v)| v) else {
        return Ok(Credentials::Anonymous);
    };
    if let Some(token) = entry
        .get("registrytoken")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
    {
        return Ok(Credentials::Bearer(token.into()));
    }
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let bad = |what: &str| Error::Credentials {
            registry: registry.into(),
            what: format!("auths entry in {} {what}", path.display()),
            source: None,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("is not base64"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("is not UTF-8"))?;
        let (user, password) = raw
            .split_once(':')
            .ok_or_else(|| bad("is not USER:PASSWORD"))?;
        return Ok(Credentials::Basic {
            user: user.into(),
            password: password.into(),
        });
    }
    if let (Some(user), Some(password)) = (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        return Ok(Credentials::Basic {
            user: user.into(),
            password: password.into(),
        });
    }
    Ok(Credentials::Anonymous)
}

/// Asks `docker-credential-NAME get` (found on `PATH`) for the credentials of `server`.
fn from_helper(
    name: &str,
    server: &str,
    registry: &str,
    helper_dir: Option<&Path>,
) -> Result<Credentials, Error> {
    let program = format!("docker-credential-{name}");
    let exe = helper_dir.map_or_else(|| PathBuf::from(&program), |d| d.join(&program));
    let fail = |what: String, source: Option<crate::error::Cause>| Error::Credentials {
        registry: registry.into(),
        what,
        source,
    };
    let mut child = Command::new(&exe)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(
                format!("cannot run credential helper {program}"),
                Some(Box::new(e)),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is its own error, reported below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| {
        fail(
            format!("credential helper {program} failed"),
            Some(Box::new(e)),
        )
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The helpers' protocol: "credentials not found" on stdout means there are none.
        if stdout.contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        return Err(fail(
            format!("credential helper {program} exited with {}", out.status),
            None,
        ));
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let reply: Reply = serde_json::from_slice(&out.stdout).map_err(|_| {
        fail(
            format!("credential helper {program} printed something that is not its JSON"),
            None,
        )
    })?;
    if reply.username.is_empty() && reply.secret.is_empty() {
        return Ok(Credentials::Anonymous);
    }
    if reply.username == "<token>" {
        return Ok(Credentials::Bearer(reply.secret));
    }
    Ok(Credentials::Basic {
        user: reply.username,
        password: reply.secret,
    })
}
