//! One-off jobs: a service that others wait on with `service_completed_successfully` (a migration,
//! say) runs once per deploy, on one host, under the deploy lock, before any dependent moves traffic.
//! It must exit 0 within the progress deadline, or the deploy fails and nothing after it changes.

use std::time::Duration;

use bollard::models::ContainerSummary;
use tokio::sync::watch;

use crate::hostops::{self, L_CONFIG_HASH, L_RELEASE};
use crate::model::{ProjectSpec, ServiceSpec};
use crate::remote::RemoteRef;

/// How often the job container is looked at while it runs.
const POLL: Duration = Duration::from_millis(250);
/// Log lines quoted when a job fails.
const LOG_LINES: u64 = 10;

/// The exit code in a container summary's status (`Exited (3) 2 minutes ago`).
pub fn exit_code(c: &ContainerSummary) -> Option<i64> {
    let status = c.status.as_deref()?;
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

/// Whether the newest run among `containers` (one service's, on one host) ran this exact spec to
/// success, so the job need not run again for it.
pub fn done(containers: &[&ContainerSummary], config_hash: &str) -> bool {
    containers
        .iter()
        .max_by_key(|c| hostops::label(c, L_RELEASE))
        .is_some_and(|c| {
            hostops::label(c, L_CONFIG_HASH).as_deref() == Some(config_hash)
                && exit_code(c) == Some(0)
        })
}

/// Runs `svc` once on `host` for `release` and waits for it to exit. Older runs of the job on that
/// host are removed after a success (the last run stays, for its logs).
pub async fn run(
    host: &RemoteRef,
    project: &ProjectSpec,
    svc: &ServiceSpec,
    release: &str,
    deadline: Duration,
    mut cancel: watch::Receiver<bool>,
) -> Result<(), String> {
    let docker = host.docker();
    hostops::pull(&docker, svc.image_ref()).await?;
    for net in svc.network_names() {
        hostops::ensure_network(&docker, &project.name, &net).await?;
    }
    for m in svc.volumes.iter().filter(|m| m.kind == "volume") {
        if let Some(src) = &m.source {
            hostops::ensure_volume(&docker, &project.name, src).await?;
        }
    }
    let older: Vec<String> = hostops::list_containers(&docker, &project.name, Some(&svc.name))
        .await?
        .iter()
        .map(hostops::name_of)
        .collect();
    let name = hostops::create_container(&docker, project, svc, release, 1).await?;
    let waited = tokio::time::timeout(deadline, async {
        loop {
            let seen = hostops::inspect(&docker, &name).await?;
            if !seen.running && seen.exit.is_some() {
                return Ok::<_, String>(seen.exit);
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = cancel.changed() => if *cancel.borrow() {
                    return Err("interrupted".to_string());
                },
            }
        }
    })
    .await;
    let failure = match waited {
        Err(_) => Some(format!(
            "job {} did not finish within {}s",
            svc.name,
            deadline.as_secs()
        )),
        Ok(Err(e)) => Some(format!("job {}: {e}", svc.name)),
        Ok(Ok(Some(exit))) if exit.starts_with("exited with code 0") => None,
        Ok(Ok(exit)) => Some(format!(
            "job {} {}",
            svc.name,
            exit.unwrap_or_else(|| "stopped".into())
        )),
    };
    if let Some(mut message) = failure {
        // A job that is still running when the deploy gives up is stopped: it must not change
        // anything behind the old release's back.
        let _ = hostops::stop(&docker, &name, svc.stop_grace_period).await;
        let tail = last_lines(host, &name).await;
        if !tail.is_empty() {
            message.push_str(&format!(" on {}; its last lines:\n{tail}", host.name()));
        }
        return Err(message);
    }
    for old in older.iter().filter(|o| **o != name) {
        let _ = hostops::remove(&docker, old).await;
    }
    Ok(())
}

/// The last lines a container wrote, indented.
async fn last_lines(host: &RemoteRef, name: &str) -> String {
    let text = hostops::log_tail(&host.docker(), name, &LOG_LINES.to_string()).await;
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
