//! `hosts check`: connect to hosts in parallel and describe each engine.

use serde::Serialize;

use crate::{Error, Host, HostUrl, SshOptions};

/// What `davit hosts check` reports for one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// The host URL as given.
    pub url: String,
    /// The engine answered.
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Operating system, as the engine names it (e.g. "Debian GNU/Linux 12 (bookworm)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// Free space on the filesystem of the engine's data root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_disk_bytes: Option<u64>,
    /// Why the host failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostReport {
    fn failed(url: String, e: &Error) -> HostReport {
        HostReport {
            url,
            ok: false,
            engine_version: None,
            api_version: None,
            os: None,
            kernel: None,
            arch: None,
            cpus: None,
            memory_bytes: None,
            free_disk_bytes: None,
            error: Some(chain(e)),
        }
    }
}

/// Checks every host in parallel; the reports come back in the order of `urls`. Each host is bounded
/// by its own connect and operation timeouts, so a host that does not answer delays no other.
pub async fn check_hosts(urls: &[HostUrl], opts: &SshOptions) -> Vec<HostReport> {
    let futs = urls.iter().map(|u| async move {
        match Host::connect(u, opts).await {
            Ok(h) => match tokio::time::timeout(opts.operation_timeout, check(&h)).await {
                Ok(r) => r,
                Err(_) => HostReport::failed(
                    u.to_string(),
                    &Error::Timeout {
                        host: u.to_string(),
                        what: "asking the engine about itself".into(),
                        after: opts.operation_timeout,
                    },
                ),
            },
            Err(e) => HostReport::failed(u.to_string(), &e),
        }
    });
    futures_util::future::join_all(futs).await
}

/// Describes one connected host's engine.
pub async fn check(host: &Host) -> HostReport {
    let url = host.url().to_string();
    let docker = host.docker();
    let label = url.clone();
    let docker_err = |what: &str| {
        let (host, what) = (label.clone(), what.to_string());
        move |e| Error::Docker {
            host,
            what,
            source: Box::new(e),
        }
    };
    let (version, info) = tokio::join!(docker.version(), docker.info());
    let version = match version.map_err(docker_err("GET /version")) {
        Ok(v) => v,
        Err(e) => return HostReport::failed(url, &e),
    };
    let info = match info.map_err(docker_err("GET /info")) {
        Ok(i) => i,
        Err(e) => return HostReport::failed(url, &e),
    };
    let free_disk_bytes = match &info.docker_root_dir {
        Some(root) => free_disk(host, root).await,
        None => None,
    };
    HostReport {
        url,
        ok: true,
        engine_version: version.version,
        api_version: version.api_version,
        os: info.operating_system,
        kernel: info.kernel_version,
        arch: info.architecture,
        cpus: info.ncpu,
        memory_bytes: info.mem_total,
        free_disk_bytes,
        error: None,
    }
}

/// Free bytes on the filesystem holding `path`, from `df -Pk` on the host.
async fn free_disk(host: &Host, path: &str) -> Option<u64> {
    if path.contains('\'') {
        return None;
    }
    let out = host.exec(&format!("df -Pk '{path}'")).await.ok()?;
    if !out.success() {
        return None;
    }
    parse_df(&String::from_utf8_lossy(&out.stdout))
}

/// The "Available" column (KiB) of `df -Pk`, in bytes.
pub(crate) fn parse_df(text: &str) -> Option<u64> {
    let line = text.lines().nth(1)?;
    let avail: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(avail * 1024)
}

/// `e`, then its causes, on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
