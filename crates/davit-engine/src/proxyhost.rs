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

/// The proxy image, ready to load on hosts. Its tag is the binary's digest; the archive (a second
/// pass over tens of megabytes) is only built when a host does not have the image yet.
#[derive(Clone)]
pub struct ProxyImage {
    pub tag: String,
    binary: bytes::Bytes,
    archive: std::sync::Arc<std::sync::OnceLock<bytes::Bytes>>,
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
        Ok(ProxyImage {
            tag,
            binary: data.into(),
            archive: Default::default(),
        })
    }

    /// The `docker save` archive of the image.
    pub fn archive(&self) -> bytes::Bytes {
        self.archive
            .get_or_init(|| save_archive("davit-proxy", &self.binary, &[], &self.tag).into())
            .clone()
    }
}

/// Loads the proxy image on `remote` unless it has it.
pub async fn load_image(remote: &RemoteRef, image: &ProxyImage) -> Result<(), String> {
    let docker = remote.docker();
    if docker.inspect_image(&image.tag).await.is_ok() {
        return Ok(());
    }
    let archive = {
        let image = image.clone();
        tokio::task::spawn_blocking(move || image.archive())
            .await
            .map_err(|e| format!("building the proxy image: {e}"))?
    };
    let mut s = docker.import_image(
        ImportImageOptions::default(),
        bollard::body_full(archive),
        None,
    );
    while let Some(r) = s.next().await {
        r.map_err(|e| hostops::derr("loading the proxy image", e))?;
    }
    Ok(())
}

/// Makes sure the proxy runs on `remote` and answers on its admin API.
pub async fn ensure_proxy(remote: &RemoteRef, image: &ProxyImage) -> Result<(), String> {
    let docker = remote.docker();
    // The image also backs the lock and release containers, so it must be on the host even when a
    // proxy from an earlier davit build is already running.
    load_image(remote, image).await?;
    let existing = docker
        .inspect_container(
            PROXY_CONTAINER,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok();
    match existing {
        Some(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => {}
        Some(_) => hostops::start(&docker, PROXY_CONTAINER).await?,
        None => {
            let body = ContainerCreateBody {
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
            };
            docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(PROXY_CONTAINER.into()),
                        ..Default::default()
                    }),
                    body,
                )
                .await
                .map_err(|e| hostops::derr("creating the proxy container", e))?;
            hostops::start(&docker, PROXY_CONTAINER).await?;
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
