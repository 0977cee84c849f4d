//! What each host runs (`davit status`) and container logs (`davit logs`).

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

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
}

/// One service on one host.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub release: Option<String>,
    pub image: Option<String>,
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

/// The status of `project` on every host (a host that cannot be read is reported, not fatal).
pub async fn status(project: &str, hosts: &[RemoteRef]) -> Vec<HostStatus> {
    let mut out = Vec::new();
    for h in hosts {
        out.push(match host_status(project, h).await {
            Ok(s) => s,
            Err(e) => HostStatus {
                host: h.name().to_string(),
                ok: false,
                error: Some(e),
                release: None,
                services: Vec::new(),
            },
        });
    }
    out
}

async fn host_status(project: &str, h: &RemoteRef) -> Result<HostStatus, String> {
    let docker = h.docker();
    let list = hostops::list_containers(&docker, project, None).await?;
    let releases = release::list(h, project).await?;
    let current = releases
        .iter()
        .find(|r| r.outcome == release::ReleaseOutcome::Succeeded)
        .map(|r| r.id.clone());
    let mut services: Vec<ServiceStatus> = Vec::new();
    for c in &list {
        let svc = hostops::label(c, L_SERVICE).unwrap_or_default();
        let name = hostops::name_of(c);
        let seen = hostops::inspect(&docker, &name).await.ok();
        let cs = ContainerStatus {
            name,
            state: c.state.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            health: seen.and_then(|s| s.health),
        };
        let running = cs.state == "running";
        match services.iter_mut().find(|s| s.service == svc) {
            Some(s) => {
                if running {
                    s.release = hostops::label(c, L_RELEASE);
                    s.image = hostops::label(c, L_IMAGE);
                }
                s.containers.push(cs);
            }
            None => services.push(ServiceStatus {
                service: svc,
                release: hostops::label(c, L_RELEASE),
                image: hostops::label(c, L_IMAGE),
                containers: vec![cs],
            }),
        }
    }
    services.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(HostStatus {
        host: h.name().to_string(),
        ok: true,
        error: None,
        release: current,
        services,
    })
}

/// Streams the logs of `service`'s running containers on every host to stdout, each line prefixed
/// by the host (and the container when there are several).
pub async fn logs(
    project: &str,
    service: &str,
    hosts: &[RemoteRef],
    follow: bool,
    tail: Option<u64>,
) -> Result<(), Error> {
    let mut tasks = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    for h in hosts {
        let docker = h.docker();
        let list = hostops::list_containers(&docker, project, Some(service))
            .await
            .map_err(|message| Error::Host {
                host: h.name().to_string(),
                message,
            })?;
        let names: Vec<String> = list
            .iter()
            .filter(|c| c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running"))
            .map(hostops::name_of)
            .collect();
        for n in names {
            let prefix = format!("{} {n} |", h.name());
            let docker = docker.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = docker.logs(
                    &n,
                    Some(LogsOptions {
                        follow,
                        stdout: true,
                        stderr: true,
                        tail: tail.map_or_else(|| "all".to_string(), |t| t.to_string()),
                        ..Default::default()
                    }),
                );
                let mut partial = String::new();
                while let Some(Ok(chunk)) = s.next().await {
                    let bytes = match chunk {
                        LogOutput::StdOut { message }
                        | LogOutput::StdErr { message }
                        | LogOutput::Console { message }
                        | LogOutput::StdIn { message } => message,
                    };
                    partial.push_str(&String::from_utf8_lossy(&bytes));
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        if tx
                            .send(format!("{prefix} {}", line.trim_end_matches('\n')))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                if !partial.is_empty() {
                    let _ = tx.send(format!("{prefix} {partial}")).await;
                }
            }));
        }
    }
    drop(tx);
    let mut out = tokio::io::stdout();
    while let Some(line) = rx.recv().await {
        let _ = out.write_all(line.as_bytes()).await;
        let _ = out.write_all(b"\n").await;
        let _ = out.flush().await;
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
