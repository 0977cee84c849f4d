//! The proxy on each host: a `FROM scratch` image of the static `davit-proxy` binary, built in memory
//! (a `docker save` archive loaded through the engine API, so no registry is involved), run as the
//! container `davit-proxy` with the host's network, its admin API on the host's loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{CreateContainerOptions, ImportImageOptions};
use futures_util::StreamExt as _;

use crate::exec::{ADMIN_PORT, admin};
use crate::hostops;
use crate::model::sha256_hex;
use crate::remote::RemoteRef;

/// The proxy container's name on every host.
pub const PROXY_CONTAINER: &str = "davit-proxy";

/// The static proxy binary: `$DAVIT_PROXY_BIN`, else `davit-proxy` beside the running executable.
pub fn find_proxy_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DAVIT_PROXY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let beside = exe.with_file_name("davit-proxy");
    if beside.exists() {
        return Ok(beside);
    }
    Err(format!(
        "no davit-proxy binary: set DAVIT_PROXY_BIN to a static build of it (looked at {})",
        beside.display()
    ))
}

/// A `docker save` archive of an image holding `binary` at `/name` as its entrypoint, tagged `tag`.
pub fn save_archive(name: &str, binary: &[u8], cmd: &[String], tag: &str) -> Vec<u8> {
    davit_image::StaticImage {
        name: name.to_string(),
        binary: binary.to_vec(),
        env: vec!["PATH=/".to_string()],
        cmd: cmd.to_vec(),
        creator: "davit".to_string(),
        ..davit_image::StaticImage::default()
    }
    .save_archive(tag)
}

/// The proxy image, ready to load on hosts.
#[derive(Clone)]
pub struct ProxyImage {
    pub tag: String,
    pub archive: bytes::Bytes,
}

impl ProxyImage {
    /// Reads the static binary at `path`.
    pub fn from_binary(path: &Path) -> Result<ProxyImage, String> {
        let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if !davit_image::is_static_elf(&data) {
            return Err(format!(
                "{} is not a static executable: build it with RUSTFLAGS=\"-C target-feature=+crt-static\" --target x86_64-unknown-linux-gnu",
                path.display()
            ));
        }
        let tag = format!("davit-proxy:{}", &sha256_hex(&data)[..12]);
        let archive = save_archive("davit-proxy", &data, &[], &tag);
        Ok(ProxyImage {
            tag,
            archive: archive.into(),
        })
    }
}

/// Loads the proxy image on `remote` unless it has it.
pub async fn load_image(remote: &RemoteRef, image: &ProxyImage) -> Result<(), String> {
    let docker = remote.docker();
    if docker.inspect_image(&image.tag).await.is_ok() {
        return Ok(());
    }
    let mut s = docker.import_image(
        ImportImageOptions::default(),
        bollard::body_full(image.archive.clone()),
        None,
    );
    while let Some(r) = s.next().await {
        r.map_err(|e| hostops::derr("loading the proxy image", e))?;
    }
    Ok(())
}

/// The proxy container's name while a newer proxy takes over from it.
pub const RETIRING_CONTAINER: &str = "davit-proxy-retiring";

fn proxy_body(image: &ProxyImage) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.tag.clone()),
        cmd: Some(vec![
            "--admin".into(),
            format!("127.0.0.1:{ADMIN_PORT}"),
            "--state".into(),
            "/var/lib/davit-proxy/routes.json".into(),
        ]),
        labels: Some(std::collections::HashMap::from([(
            "dev.davit.role".to_string(),
            "proxy".to_string(),
        )])),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            // Routes survive a restart of the proxy (or of the host).
            mounts: Some(vec![bollard::models::Mount {
                target: Some("/var/lib/davit-proxy".into()),
                source: Some("davit-proxy-state".into()),
                typ: Some(bollard::models::MountType::VOLUME),
                ..Default::default()
            }]),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create_proxy(docker: &bollard::Docker, image: &ProxyImage) -> Result<(), String> {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(PROXY_CONTAINER.into()),
                ..Default::default()
            }),
            proxy_body(image),
        )
        .await
        .map(drop)
        .map_err(|e| hostops::derr("creating the proxy container", e))
}

/// Whether container `name` runs (`None`: it does not exist).
async fn running(docker: &bollard::Docker, name: &str) -> Result<Option<bool>, String> {
    match docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => Ok(Some(c.state.is_some_and(|s| {
            s.running.unwrap_or(false) && !s.restarting.unwrap_or(false)
        }))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(hostops::derr(&format!("inspecting {name}"), e)),
    }
}

/// Replaces a proxy that runs another image (an older davit's) by one of `image`, keeping its routes
/// (the state volume). The new proxy starts beside the old one: when both bind their ports with
/// `SO_REUSEPORT` (davit-proxy does since the handover work), the old one is then stopped with
/// SIGTERM, which drains it, and no request is lost. An old proxy that holds its ports exclusively
/// makes the new one exit at once; then the old one is stopped (drained) first and the new one started
/// right after: a short switchover during which new connections are refused (about the time the new
/// proxy takes to bind, well under a second on an idle host), and requests reaching the new proxy
/// before its targets' first health checks pass (the route's check interval) are answered 503.
async fn upgrade(remote: &RemoteRef, image: &ProxyImage) -> Result<(), String> {
    let docker = remote.docker();
    hostops::remove(&docker, RETIRING_CONTAINER).await?;
    docker
        .rename_container(
            PROXY_CONTAINER,
            bollard::query_parameters::RenameContainerOptions {
                name: RETIRING_CONTAINER.into(),
            },
        )
        .await
        .map_err(|e| hostops::derr("renaming the old proxy", e))?;
    create_proxy(&docker, image).await?;
    hostops::start(&docker, PROXY_CONTAINER).await?;
    // Beside the old one: does it keep running (its ports and admin API bound)?
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut side_by_side = true;
    while tokio::time::Instant::now() < settle {
        if running(&docker, PROXY_CONTAINER).await? != Some(true) {
            side_by_side = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Drained: it stops accepting, lets what is in flight finish, and exits.
    hostops::stop(&docker, RETIRING_CONTAINER, Some(Duration::from_secs(35))).await?;
    if !side_by_side {
        tracing::info!(
            host = remote.name(),
            "the old proxy holds its ports exclusively: switching over"
        );
        hostops::start(&docker, PROXY_CONTAINER).await?;
    }
    hostops::remove(&docker, RETIRING_CONTAINER).await
}

/// Makes sure the proxy of `image` runs on `remote` and answers on its admin API; a proxy of another
/// image (started by another davit build) is replaced, its routes kept (see `upgrade`).
pub async fn ensure_proxy(remote: &RemoteRef, image: &ProxyImage) -> Result<(), String> {
    let docker = remote.docker();
    // The image also backs the lock and release containers, so it must be on the host whatever runs.
    load_image(remote, image).await?;
    let existing = docker
        .inspect_container(
            PROXY_CONTAINER,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok();
    match existing {
        Some(c)
            if c.config.as_ref().and_then(|c| c.image.as_deref()) != Some(image.tag.as_str()) =>
        {
            upgrade(remote, image).await?;
        }
        Some(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => {}
        Some(_) => hostops::start(&docker, PROXY_CONTAINER).await?,
        None => {
            // An upgrade interrupted after the rename: the old proxy may still serve.
            if running(&docker, RETIRING_CONTAINER).await?.is_some() {
                create_proxy(&docker, image).await?;
                hostops::stop(&docker, RETIRING_CONTAINER, Some(Duration::from_secs(35))).await?;
                hostops::start(&docker, PROXY_CONTAINER).await?;
                hostops::remove(&docker, RETIRING_CONTAINER).await?;
            } else {
                create_proxy(&docker, image).await?;
                hostops::start(&docker, PROXY_CONTAINER).await?;
            }
        }
    }
    let admin = admin(remote.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match admin.healthz().await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("the proxy does not answer on its admin API: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
