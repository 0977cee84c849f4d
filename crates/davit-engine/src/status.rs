//! What each host runs (`davit status`) and container logs (`davit logs`).

use bollard::container::LogOutput;
use bollard::query_parameters::{InspectContainerOptions, LogsOptions};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::error::Error;
use crate::hostops::{self, L_IMAGE, L_RELEASE, L_SERVICE};
use crate::release;
use crate::remote::RemoteRef;

/// One container as `davit status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    pub state: String,
    /// Docker's health status, when the image has a check.
    pub health: Option<String>,
    /// The release that created it (`dev.davit.release`).
    pub release: Option<String>,
    /// When it last started (RFC 3339, as the engine reports it), if it ever did.
    pub started_at: Option<String>,
    /// Seconds since it started, while it runs.
    pub uptime_secs: Option<u64>,
    /// How many times the engine restarted it.
    pub restarts: i64,
}

/// One service on one host.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    /// The release its running containers belong to.
    pub release: Option<String>,
    /// The image they run, pinned (`registry/repo@sha256:…`).
    pub image: Option<String>,
    /// The image digest (`sha256:…`).
    pub digest: Option<String>,
    pub containers: Vec<ContainerStatus>,
}

/// One host.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The newest succeeded release recorded on the host.
    pub release: Option<String>,
    pub services: Vec<ServiceStatus>,
}

/// The status of `project` on every host, all hosts at once (a host that cannot be read is
/// reported, not fatal). Only the services in `services` when it is not empty.
pub async fn status(project: &str, hosts: &[RemoteRef], services: &[String]) -> Vec<HostStatus> {
    let futs = hosts.iter().map(|h| async move {
        match host_status(project, h, services).await {
            Ok(s) => s,
            Err(e) => HostStatus {
                host: h.name().to_string(),
                ok: false,
                error: Some(e),
                release: None,
                services: Vec::new(),
            },
        }
    });
    futures_util::future::join_all(futs).await
}

/// `sha256:…` of a pinned reference `repo@sha256:…`.
pub fn digest_of(image: &str) -> Option<String> {
    image.split_once('@').map(|(_, d)| d.to_string())
}

/// Seconds between an RFC 3339 time (`2026-11-24T01:02:03.456Z`, as Docker writes them) and
/// `now` (unix seconds).
fn seconds_since(rfc3339: &str, now: u64) -> Option<u64> {
    let t = parse_rfc3339(rfc3339)?;
    Some(now.saturating_sub(u64::try_from(t).ok()?))
}

/// Unix seconds of an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if digits == 0 {
            return None;
        }
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

async fn host_status(project: &str, h: &RemoteRef, only: &[String]) -> Result<HostStatus, String> {
    let docker = h.docker();
    let list = hostops::list_containers(&docker, project, None).await?;
    let releases = release::list(h, project).await?;
    let current = releases
        .iter()
        .find(|r| r.outcome == release::ReleaseOutcome::Succeeded)
        .map(|r| r.id.clone());
    let now = release::unix_now();
    let list: Vec<_> = list
        .into_iter()
        .filter(|c| {
            only.is_empty() || hostops::label(c, L_SERVICE).is_some_and(|s| only.contains(&s))
        })
        .collect();
    let inspected = futures_util::future::join_all(list.iter().map(|c| {
        let docker = docker.clone();
        let name = hostops::name_of(c);
        async move {
            docker
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
                .ok()
        }
    }))
    .await;
    let mut services: Vec<ServiceStatus> = Vec::new();
    for (c, seen) in list.iter().zip(inspected) {
        let svc = hostops::label(c, L_SERVICE).unwrap_or_default();
        let state = seen
            .as_ref()
            .and_then(|s| s.state.clone())
            .unwrap_or_default();
        let status = state
            .status
            .map(|s| s.to_string())
            .or_else(|| c.state.as_ref().map(|s| s.to_string()))
            .unwrap_or_default();
        let running = status == "running";
        let started_at = state
            .started_at
            .filter(|s| !s.is_empty() && !s.starts_with("0001-"));
        let cs = ContainerStatus {
            name: hostops::name_of(c),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            release: hostops::label(c, L_RELEASE),
            uptime_secs: started_at
                .as_deref()
                .filter(|_| running)
                .and_then(|t| seconds_since(t, now)),
            started_at,
            restarts: seen.as_ref().and_then(|s| s.restart_count).unwrap_or(0),
            state: status,
        };
        let image = hostops::label(c, L_IMAGE);
        match services.iter_mut().find(|s| s.service == svc) {
            Some(s) => {
                if running {
                    s.release = cs.release.clone();
                    s.digest = image.as_deref().and_then(digest_of);
                    s.image = image;
                }
                s.containers.push(cs);
            }
            None => services.push(ServiceStatus {
                service: svc,
                release: cs.release.clone(),
                digest: image.as_deref().and_then(digest_of),
                image,
                containers: vec![cs],
            }),
        }
    }
    services.sort_by(|a, b| a.service.cmp(&b.service));
    for s in &mut services {
        s.containers.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(HostStatus {
        host: h.name().to_string(),
        ok: true,
        error: None,
        release: current,
        services,
    })
}

/// Which lines `davit logs` reads.
#[derive(Debug, Clone, Default)]
pub struct LogsRequest {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Only the last N lines of each container.
    pub tail: Option<u64>,
    /// Only lines since this time (unix seconds).
    pub since: Option<i64>,
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The host, by name ([`crate::Remote::name`]).
    pub host: String,
    /// The index of the host in the list given to [`logs`].
    pub host_index: usize,
    pub container: String,
    /// True for the container's stderr.
    pub stderr: bool,
    /// The line, without its line end.
    pub text: String,
}

/// Streams the logs of `service`'s running containers on every host at once into `tx`, line by
/// line. Returns when every stream ended (with `follow`, when the containers stop or `tx` closes).
pub async fn logs(
    project: &str,
    service: &str,
    hosts: &[RemoteRef],
    req: &LogsRequest,
    tx: tokio::sync::mpsc::Sender<LogLine>,
) -> Result<(), Error> {
    // Every host is listed before any stream starts: a host that cannot be read fails the whole
    // command at once instead of after the others have printed.
    let listed = futures_util::future::join_all(hosts.iter().map(|h| async move {
        let list = hostops::list_containers(&h.docker(), project, Some(service))
            .await
            .map_err(|message| Error::Host {
                host: h.name().to_string(),
                message,
            })?;
        let mut names: Vec<String> = list
            .iter()
            .filter(|c| c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running"))
            .map(hostops::name_of)
            .collect();
        names.sort();
        Ok::<_, Error>(names)
    }))
    .await;
    let mut per_host = Vec::new();
    for l in listed {
        per_host.push(l?);
    }
    let mut tasks = Vec::new();
    for (host_index, (h, names)) in hosts.iter().zip(per_host).enumerate() {
        let docker = h.docker();
        for container in names {
            let docker = docker.clone();
            let tx = tx.clone();
            let host = h.name().to_string();
            let opts = LogsOptions {
                follow: req.follow,
                stdout: true,
                stderr: true,
                since: req
                    .since
                    .map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
                tail: req
                    .tail
                    .map_or_else(|| "all".to_string(), |t| t.to_string()),
                ..Default::default()
            };
            tasks.push(tokio::spawn(async move {
                let mut s = docker.logs(&container, Some(opts));
                let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
                let line = |stderr: bool, bytes: &[u8]| LogLine {
                    host: host.clone(),
                    host_index,
                    container: container.clone(),
                    stderr,
                    text: String::from_utf8_lossy(bytes)
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                };
                while let Some(Ok(chunk)) = s.next().await {
                    let (stderr, bytes) = match chunk {
                        LogOutput::StdErr { message } => (true, message),
                        LogOutput::StdOut { message }
                        | LogOutput::Console { message }
                        | LogOutput::StdIn { message } => (false, message),
                    };
                    let buf = &mut partial[usize::from(stderr)];
                    buf.extend_from_slice(&bytes);
                    while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                        let one: Vec<u8> = buf.drain(..=i).collect();
                        if tx.send(line(stderr, &one)).await.is_err() {
                            return;
                        }
                    }
                }
                for (i, rest) in partial.iter().enumerate() {
                    if !rest.is_empty() {
                        let _ = tx.send(line(i == 1, rest)).await;
                    }
                }
            }));
        }
    }
    drop(tx);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
