//! Docker operations on one host, labelled as Docker Compose labels its objects, so that
//! `docker compose ps` on a server still shows the project.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HealthConfig, HostConfig, Mount,
    MountType, NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt as _;

use crate::model::{ProjectSpec, ServiceSpec};

pub const L_PROJECT: &str = "com.docker.compose.project";
pub const L_SERVICE: &str = "com.docker.compose.service";
pub const L_NUMBER: &str = "com.docker.compose.container-number";
pub const L_ONEOFF: &str = "com.docker.compose.oneoff";
pub const L_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const L_VERSION: &str = "com.docker.compose.version";
pub const L_WORKDIR: &str = "com.docker.compose.project.working_dir";
pub const L_IMAGE: &str = "com.docker.compose.image";
pub const L_NETWORK: &str = "com.docker.compose.network";
pub const L_VOLUME: &str = "com.docker.compose.volume";
pub const L_RELEASE: &str = "dev.davit.release";
pub const L_ENV_HASH: &str = "dev.davit.env-hash";
/// The Compose version davit's labels say they come from.
pub const COMPOSE_VERSION: &str = "2.40.3";

/// Awaits `f`, logging how long it took (`DAVIT_LOG=davit_engine::timing=debug` shows where a
/// deploy's time goes: each step, Docker call group, proxy call and lock or release write, per host).
pub async fn timed<F: std::future::Future>(host: &str, what: &str, f: F) -> F::Output {
    let t = std::time::Instant::now();
    let out = f.await;
    tracing::debug!(
        target: "davit_engine::timing",
        host,
        ms = format_args!("{:.1}", t.elapsed().as_secs_f64() * 1000.0),
        "{what}"
    );
    out
}

/// A Docker error as a one-line message.
pub fn derr(what: &str, e: bollard::errors::Error) -> String {
    format!("{what}: {e}")
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409 | 304,
            ..
        }
    )
}

/// Containers of `project` (optionally of one service), running or not, one-offs excluded.
pub async fn list_containers(
    docker: &Docker,
    project: &str,
    service: Option<&str>,
) -> Result<Vec<ContainerSummary>, String> {
    let mut labels = vec![format!("{L_PROJECT}={project}")];
    if let Some(s) = service {
        labels.push(format!("{L_SERVICE}={s}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| derr("listing containers", e))?;
    Ok(list
        .into_iter()
        .filter(|c| label(c, L_ONEOFF).as_deref() != Some("True"))
        .collect())
}

pub fn label(c: &ContainerSummary, key: &str) -> Option<String> {
    c.labels.as_ref().and_then(|l| l.get(key).cloned())
}

pub fn name_of(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| c.id.clone().unwrap_or_default())
}

/// Pulls `image` (by digest or tag) unless the engine has it.
pub async fn pull(docker: &Docker, image: &str) -> Result<(), String> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    let (from, tag) = split_ref(image);
    let mut s = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(from),
            tag: Some(tag),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(r) = s.next().await {
        r.map_err(|e| derr(&format!("pulling {image}"), e))?;
    }
    Ok(())
}

/// `repo@sha256:…` → (`repo`, `sha256:…`); `repo:tag` → (`repo`, `tag`).
fn split_ref(image: &str) -> (String, String) {
    if let Some((r, d)) = image.split_once('@') {
        return (r.to_string(), d.to_string());
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_string(),
            image[slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// The Docker network name of the project's network `name`.
pub fn network_name(project: &str, name: &str) -> String {
    format!("{project}_{name}")
}

/// Creates the project's network `name` as Compose would, unless it exists.
pub async fn ensure_network(docker: &Docker, project: &str, name: &str) -> Result<(), String> {
    let full = network_name(project, name);
    if docker
        .inspect_network(
            &full,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .is_ok()
    {
        return Ok(());
    }
    let labels = HashMap::from([
        (L_PROJECT.to_string(), project.to_string()),
        (L_NETWORK.to_string(), name.to_string()),
        (L_VERSION.to_string(), COMPOSE_VERSION.to_string()),
    ]);
    match docker
        .create_network(NetworkCreateRequest {
            name: full.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(derr(&format!("creating network {full}"), e)),
    }
}

/// Creates the project's named volume `name` as Compose would, unless it exists.
pub async fn ensure_volume(docker: &Docker, project: &str, name: &str) -> Result<(), String> {
    let full = format!("{project}_{name}");
    if docker.inspect_volume(&full).await.is_ok() {
        return Ok(());
    }
    let labels = HashMap::from([
        (L_PROJECT.to_string(), project.to_string()),
        (L_VOLUME.to_string(), name.to_string()),
        (L_VERSION.to_string(), COMPOSE_VERSION.to_string()),
    ]);
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(full.clone()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|e| derr(&format!("creating volume {full}"), e))
}

/// Creates and starts container number `n` of `svc` for `release`. Returns its name.
pub async fn create_container(
    docker: &Docker,
    project: &ProjectSpec,
    svc: &ServiceSpec,
    release: &str,
    n: u32,
) -> Result<String, String> {
    let name = format!("{}-{}-{}-{n}", project.name, svc.name, short(release));
    let mut labels: HashMap<String, String> = svc
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        (L_PROJECT, project.name.clone()),
        (L_SERVICE, svc.name.clone()),
        (L_NUMBER, n.to_string()),
        (L_ONEOFF, "False".into()),
        (L_CONFIG_HASH, svc.config_hash()),
        (L_VERSION, COMPOSE_VERSION.into()),
        (L_WORKDIR, project.working_dir.clone()),
        (L_IMAGE, svc.image_ref().to_string()),
        (L_RELEASE, release.to_string()),
        (L_ENV_HASH, svc.env_hash()),
    ] {
        labels.insert(k.to_string(), v);
    }
    let networks = svc.network_names();
    let first = network_name(&project.name, &networks[0]);
    let mut endpoints = HashMap::new();
    endpoints.insert(
        first.clone(),
        EndpointSettings {
            aliases: Some(vec![svc.name.clone()]),
            ..Default::default()
        },
    );
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed: Vec<String> = Vec::new();
    for p in &svc.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        exposed.push(key.clone());
        port_bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: p.published.map(|x| x.to_string()),
            }]),
        );
    }
    let mounts: Vec<Mount> = svc
        .volumes
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: m.source.as_ref().map(|s| {
                if m.kind == "volume" {
                    format!("{}_{s}", project.name)
                } else {
                    s.clone()
                }
            }),
            typ: Some(if m.kind == "bind" {
                MountType::BIND
            } else {
                MountType::VOLUME
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let restart = match svc.restart.as_deref() {
        // A job runs once.
        _ if svc.job => Some(RestartPolicyNameEnum::NO),
        Some("always") => Some(RestartPolicyNameEnum::ALWAYS),
        Some("on-failure") => Some(RestartPolicyNameEnum::ON_FAILURE),
        Some("no") => Some(RestartPolicyNameEnum::NO),
        _ => Some(RestartPolicyNameEnum::UNLESS_STOPPED),
    };
    let body = ContainerCreateBody {
        image: Some(svc.image_ref().to_string()),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        env: Some(
            svc.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels),
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: health_config(svc),
        stop_timeout: svc.stop_grace_period.map(|d| d.as_secs() as i64),
        host_config: Some(HostConfig {
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            mounts: (!mounts.is_empty()).then_some(mounts),
            restart_policy: Some(RestartPolicy {
                name: restart,
                maximum_retry_count: None,
            }),
            network_mode: Some(first.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    };
    let create = |body| create_named(docker, &name, body);
    // A leftover of an interrupted run with the same name is replaced: removed only when the name is
    // taken, so the usual case costs one round trip, not two.
    match create(body.clone()).await {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {
            remove(docker, &name).await?;
            create(body)
                .await
                .map_err(|e| derr(&format!("creating {name}"), e))?;
        }
        Err(e) => return Err(derr(&format!("creating {name}"), e)),
    }
    for extra in networks.iter().skip(1) {
        let net = network_name(&project.name, extra);
        docker
            .connect_network(
                &net,
                bollard::models::NetworkConnectRequest {
                    container: name.clone(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![svc.name.clone()]),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map_err(|e| derr(&format!("connecting {name} to {net}"), e))?;
    }
    start(docker, &name).await?;
    Ok(name)
}

/// The container's healthcheck: the compose test and timing (Docker merges what is left out with
/// the image's own healthcheck).
fn health_config(svc: &ServiceSpec) -> Option<HealthConfig> {
    let timing = svc.healthcheck_timing.clone().unwrap_or_default();
    if svc.healthcheck.is_none() && timing.is_empty() {
        return None;
    }
    let ns = |d: Option<Duration>| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Some(HealthConfig {
        test: svc.healthcheck.clone(),
        interval: ns(timing.interval),
        timeout: ns(timing.timeout),
        retries: timing.retries.map(i64::from),
        start_period: ns(timing.start_period),
        ..Default::default()
    })
}

/// Creates container `name` from `body`, not started (each caller judges the error: a taken name is
/// a conflict).
pub async fn create_named(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<(), bollard::errors::Error> {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map(drop)
}

/// The last `tail` lines container `name` wrote (stdout and stderr), as far as they could be read.
pub async fn log_tail(docker: &Docker, name: &str, tail: &str) -> String {
    let mut logs = docker.logs(
        name,
        Some(bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.into(),
            ..Default::default()
        }),
    );
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&chunk.to_string());
    }
    text
}

pub async fn start(docker: &Docker, name: &str) -> Result<(), String> {
    match docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(derr(&format!("starting {name}"), e)),
    }
}

pub async fn stop(docker: &Docker, name: &str, grace: Option<Duration>) -> Result<(), String> {
    match docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(grace.map_or(10, |d| d.as_secs() as i32)),
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
        Err(e) => Err(derr(&format!("stopping {name}"), e)),
    }
}

pub async fn remove(docker: &Docker, name: &str) -> Result<(), String> {
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(derr(&format!("removing {name}"), e)),
    }
}

/// What the engine sees of one container.
#[derive(Debug, Clone)]
pub struct Seen {
    pub running: bool,
    /// Docker's health status (`starting`, `healthy`, `unhealthy`), when the image has a check.
    pub health: Option<String>,
    /// The first network address.
    pub ip: Option<String>,
    pub exit: Option<String>,
    /// How many times Docker restarted it (its restart policy).
    pub restarts: i64,
}

pub async fn inspect(docker: &Docker, name: &str) -> Result<Seen, String> {
    let c = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .map_err(|e| derr(&format!("inspecting {name}"), e))?;
    let state = c.state.unwrap_or_default();
    let restarts = c.restart_count.unwrap_or_default();
    let ip = c.network_settings.and_then(|n| n.networks).and_then(|n| {
        let m: BTreeMap<_, _> = n.into_iter().collect();
        m.into_values()
            .filter_map(|e| e.ip_address)
            .find(|ip| !ip.is_empty())
    });
    Ok(Seen {
        running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        ip,
        exit: (!state.running.unwrap_or(false)).then(|| {
            format!(
                "exited with code {}{}",
                state.exit_code.unwrap_or_default(),
                state
                    .error
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        }),
        restarts,
    })
}

/// The last 10 characters of a release id (without dashes), for container names.
pub fn short(release: &str) -> String {
    let s: Vec<char> = release.chars().filter(|c| *c != '-').collect();
    s[s.len().saturating_sub(10)..].iter().collect()
}
