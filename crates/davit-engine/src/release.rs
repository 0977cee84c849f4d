//! Releases and the deploy lock, both kept on the hosts themselves as labelled, never-started
//! containers of the proxy image (which every host has once davit has deployed there):
//!
//! - a release is the container `davit-release-PROJECT-ID`; its label `dev.davit.release.json` holds
//!   the full snapshot ([`Release`]: image digests, the resolved model without environment values,
//!   env hashes, who, when, outcome). The environment values needed to restore it stay on the host, in
//!   that container's own `Env` (where Docker keeps every container's environment anyway), and are
//!   never printed;
//! - the lock is the container `davit-lock-PROJECT`: creating a container by name is atomic, so only
//!   one deploy holds it per host. It is a lease: its holder stamps a heartbeat (unix seconds, kept in
//!   the container's restart-policy retry count, the one field an engine lets you update in place)
//!   every few seconds; a lock whose heartbeat is older than its TTL is expired and may be taken over.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use serde::{Deserialize, Serialize};

use crate::hostops;
use crate::model::ProjectSpec;
use crate::remote::RemoteRef;

const L_REL_PROJECT: &str = "dev.davit.release.project";
const L_REL_ID: &str = "dev.davit.release.id";
const L_REL_JSON: &str = "dev.davit.release.json";
const L_LOCK_HOLDER: &str = "dev.davit.lock.holder";
const L_LOCK_WHO: &str = "dev.davit.lock.who";
const ENV_VAR: &str = "DAVIT_RELEASE_ENV";

/// How a release ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseOutcome {
    Succeeded,
    RolledBack,
    RollbackIncomplete,
}

impl std::fmt::Display for ReleaseOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReleaseOutcome::Succeeded => "succeeded",
            ReleaseOutcome::RolledBack => "rolled-back",
            ReleaseOutcome::RollbackIncomplete => "rollback-incomplete",
        })
    }
}

/// One service in a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseService {
    pub name: String,
    pub image: String,
    /// `repo@sha256:…`.
    pub pinned: String,
    pub env_hash: String,
    pub config_hash: String,
    pub strategy: String,
}

/// A release: what was deployed, by whom, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub project: String,
    /// Unix seconds.
    pub created: u64,
    /// RFC 3339 UTC.
    pub time: String,
    pub who: String,
    pub outcome: ReleaseOutcome,
    /// The deploy's message (why it failed, when it did).
    #[serde(default)]
    pub message: Option<String>,
    pub hosts: Vec<String>,
    pub services: Vec<ReleaseService>,
    /// The resolved model, environment values replaced by `***`.
    pub model: ProjectSpec,
    /// Set when this release was made by `davit rollback`.
    #[serde(default)]
    pub rollback_of: Option<String>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of unix seconds.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A new release id: `YYYYMMDD-HHMMSS-xxxx`, sortable by time.
pub fn new_release_id(secs: u64) -> String {
    let t = rfc3339(secs);
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{}-{salt:04x}", &compact[..8], &compact[8..14])
}

fn record_name(project: &str, id: &str) -> String {
    format!("davit-release-{project}-{id}")
}

/// Writes `release` on a host, with the environment values of its services (kept in the record's
/// own `Env`, never in labels).
pub async fn record(
    remote: &RemoteRef,
    image: &str,
    release: &Release,
    env: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<(), String> {
    let docker = remote.docker();
    let json = serde_json::to_string(release).map_err(|e| e.to_string())?;
    let env_json = serde_json::to_string(env).map_err(|e| e.to_string())?;
    let name = record_name(&release.project, &release.id);
    let _ = hostops::remove(&docker, &name).await;
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(vec![format!("{ENV_VAR}={env_json}")]),
        labels: Some(HashMap::from([
            (L_REL_PROJECT.to_string(), release.project.clone()),
            (L_REL_ID.to_string(), release.id.clone()),
            (L_REL_JSON.to_string(), json),
        ])),
        ..Default::default()
    };
    hostops::create_named(&docker, &name, body)
        .await
        .map_err(|e| hostops::derr(&format!("recording release {}", release.id), e))
}

/// The releases recorded on a host, newest first.
pub async fn list(remote: &RemoteRef, project: &str) -> Result<Vec<Release>, String> {
    let docker = remote.docker();
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{L_REL_PROJECT}={project}")],
    )]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| hostops::derr("listing releases", e))?;
    let mut out: Vec<Release> = list
        .iter()
        .filter_map(|c| hostops::label(c, L_REL_JSON))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect();
    out.sort_by(|a: &Release, b: &Release| b.id.cmp(&a.id));
    Ok(out)
}

/// The environment values a release recorded on a host.
pub async fn env_of(
    remote: &RemoteRef,
    project: &str,
    id: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let docker = remote.docker();
    let c = docker
        .inspect_container(&record_name(project, id), None::<InspectContainerOptions>)
        .await
        .map_err(|e| hostops::derr(&format!("reading release {id}"), e))?;
    let env = c.config.and_then(|c| c.env).unwrap_or_default();
    let v = env
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{ENV_VAR}=")))
        .unwrap_or("{}");
    serde_json::from_str(v).map_err(|e| format!("release {id}: bad environment record: {e}"))
}

/// Keeps the newest `keep` releases on a host; removes the others. Returns the removed ids.
pub async fn prune(remote: &RemoteRef, project: &str, keep: usize) -> Result<Vec<String>, String> {
    let all = list(remote, project).await?;
    let docker = remote.docker();
    let mut removed = Vec::new();
    for r in all.iter().skip(keep) {
        hostops::remove(&docker, &record_name(project, &r.id)).await?;
        removed.push(r.id.clone());
    }
    Ok(removed)
}

/// The deploy lock on one host.
#[derive(Debug, Clone)]
pub struct Lease {
    pub name: String,
    pub holder: String,
}

/// Who holds a lock and since when its heartbeat was last stamped.
#[derive(Debug, Clone)]
pub struct Holder {
    pub holder: String,
    pub who: String,
    pub heartbeat: u64,
}

fn lock_name(project: &str) -> String {
    format!("davit-lock-{project}")
}

async fn read_lock(remote: &RemoteRef, name: &str) -> Result<Option<Holder>, String> {
    let docker = remote.docker();
    match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(c) => {
            let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
            let hb = c
                .host_config
                .and_then(|h| h.restart_policy)
                .and_then(|r| r.maximum_retry_count)
                .unwrap_or(0);
            Ok(Some(Holder {
                holder: labels.get(L_LOCK_HOLDER).cloned().unwrap_or_default(),
                who: labels.get(L_LOCK_WHO).cloned().unwrap_or_default(),
                heartbeat: u64::try_from(hb).unwrap_or(0),
            }))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(hostops::derr("reading the deploy lock", e)),
    }
}

fn restart_policy(stamp: u64) -> RestartPolicy {
    RestartPolicy {
        name: Some(RestartPolicyNameEnum::ON_FAILURE),
        maximum_retry_count: Some(i64::try_from(stamp).unwrap_or(i64::MAX)),
    }
}

/// Why a lock could not be taken.
#[derive(Debug, Clone)]
pub enum LockRefused {
    /// Someone else holds a live lease.
    Held(Holder),
    Failed(String),
}

/// Takes the project's lock on a host, taking over an expired lease (or any lease with `force`).
pub async fn acquire(
    remote: &RemoteRef,
    image: &str,
    project: &str,
    holder: &str,
    who: &str,
    ttl: Duration,
    force: bool,
) -> Result<Lease, LockRefused> {
    let docker = remote.docker();
    let name = lock_name(project);
    for _ in 0..3 {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            labels: Some(HashMap::from([
                (L_LOCK_HOLDER.to_string(), holder.to_string()),
                (L_LOCK_WHO.to_string(), who.to_string()),
            ])),
            host_config: Some(bollard::models::HostConfig {
                restart_policy: Some(restart_policy(unix_now())),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = hostops::create_named(&docker, &name, body).await;
        match created {
            Ok(_) => {
                return Ok(Lease {
                    name,
                    holder: holder.to_string(),
                });
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                let Some(h) = read_lock(remote, &name)
                    .await
                    .map_err(LockRefused::Failed)?
                else {
                    continue;
                };
                let expired = unix_now().saturating_sub(h.heartbeat) > ttl.as_secs();
                if !(expired || force || h.holder == holder) {
                    return Err(LockRefused::Held(h));
                }
                hostops::remove(&docker, &name)
                    .await
                    .map_err(LockRefused::Failed)?;
            }
            Err(e) => {
                return Err(LockRefused::Failed(hostops::derr(
                    "taking the deploy lock",
                    e,
                )));
            }
        }
    }
    Err(LockRefused::Failed(
        "the deploy lock keeps changing hands".into(),
    ))
}

/// Stamps the lease's heartbeat. Fails when the lease was lost (taken over after expiring).
pub async fn heartbeat(remote: &RemoteRef, lease: &Lease) -> Result<(), String> {
    match read_lock(remote, &lease.name).await? {
        Some(h) if h.holder == lease.holder => {}
        _ => return Err("the deploy lock was taken over".into()),
    }
    remote
        .docker()
        .update_container(
            &lease.name,
            ContainerUpdateBody {
                restart_policy: Some(restart_policy(unix_now())),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| hostops::derr("renewing the deploy lock", e))
}

/// Releases the lease (only if still ours).
pub async fn release_lock(remote: &RemoteRef, lease: &Lease) {
    if let Ok(Some(h)) = read_lock(remote, &lease.name).await
        && h.holder == lease.holder
    {
        let _ = hostops::remove(&remote.docker(), &lease.name).await;
    }
}

/// Removes the project's lock on a host whoever holds it (`--force-unlock`).
pub async fn force_unlock(remote: &RemoteRef, project: &str) -> Result<(), String> {
    hostops::remove(&remote.docker(), &lock_name(project)).await
}
