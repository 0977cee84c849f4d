//! The proxy on each host: a `FROM scratch` image of the static `davit-proxy` binary, built in memory
//! (a `docker save` archive loaded through the engine API, so no registry is involved), run as the
//! container `davit-proxy` with the host's network, its admin API on the host's loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::ImportImageOptions;
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

/// The Unix socket (in the state volume, which every proxy container of the host mounts) through
/// which a new proxy takes the listening sockets of the one it replaces.
pub const HANDOVER_SOCKET: &str = "/var/lib/davit-proxy/handover.sock";

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
            "--handover".into(),
            HANDOVER_SOCKET.into(),
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
    hostops::create_named(docker, PROXY_CONTAINER, proxy_body(image))
        .await
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

/// The one-shot container that sets `net.ipv4.tcp_migrate_req` before a side-by-side upgrade.
pub const SYSCTL_CONTAINER: &str = "davit-proxy-sysctl";

/// The setting that lets the kernel hand connections queued on a closing `SO_REUSEPORT` listener
/// (the old proxy's) to another listener of the same port (the new proxy's) instead of resetting them.
pub const MIGRATE_REQ: &str = "net.ipv4.tcp_migrate_req=1";

/// How long the one-shot may take (create, start, exit) before the upgrade goes on without it.
const SYSCTL_BOUND: Duration = Duration::from_secs(30);

/// The ways the one-shot may be allowed to write `/proc/sys` (Docker mounts it read-only in other
/// containers, and refuses its `sysctls` option for `net.*` keys with the host's network), tried in
/// turn: first only the read-only system paths and the AppArmor/SELinux confinement lifted (root in
/// the host's network namespace may write its `net.*` settings: no capability is added), then
/// `privileged` (for engines without `systempaths=unconfined`; it fails on an engine whose own
/// capability set lacks any capability, where runc cannot grant them all).
fn sysctl_host_configs() -> [HostConfig; 2] {
    let host = || HostConfig {
        network_mode: Some("host".into()),
        ..Default::default()
    };
    [
        HostConfig {
            // What `docker run --security-opt systempaths=unconfined` sends: no masked or read-only
            // paths under /proc.
            masked_paths: Some(Vec::new()),
            readonly_paths: Some(Vec::new()),
            security_opt: Some(vec!["apparmor=unconfined".into(), "label=disable".into()]),
            ..host()
        },
        HostConfig {
            privileged: Some(true),
            ..host()
        },
    ]
}

/// Sets [`MIGRATE_REQ`] in the host's network namespace, through the Docker API only: a one-shot
/// container of the proxy image (`davit-proxy --set-sysctl`, which writes it unless it already holds)
/// with the host's network and the right to write `/proc/sys` (see [`sysctl_host_configs`]), waited
/// for, then removed. Fails (the caller goes on without it) on a kernel without the setting (before
/// 5.14), an engine that cannot grant the right (rootless Docker, a policy), or a proxy binary
/// without the flag.
pub async fn enable_migrate_req(remote: &RemoteRef, image: &ProxyImage) -> Result<(), String> {
    let mut errors = Vec::new();
    for host_config in sysctl_host_configs() {
        match run_sysctl(remote, image, host_config).await {
            Ok(()) => return Ok(()),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; then "))
}

async fn run_sysctl(
    remote: &RemoteRef,
    image: &ProxyImage,
    host_config: HostConfig,
) -> Result<(), String> {
    let docker = remote.docker();
    hostops::remove(&docker, SYSCTL_CONTAINER).await?;
    let run = async {
        let body = ContainerCreateBody {
            image: Some(image.tag.clone()),
            cmd: Some(vec!["--set-sysctl".into(), MIGRATE_REQ.into()]),
            labels: Some(std::collections::HashMap::from([(
                "dev.davit.role".to_string(),
                "sysctl".to_string(),
            )])),
            host_config: Some(host_config),
            ..Default::default()
        };
        hostops::create_named(&docker, SYSCTL_CONTAINER, body)
            .await
            .map_err(|e| hostops::derr("creating the sysctl container", e))?;
        hostops::start(&docker, SYSCTL_CONTAINER).await?;
        let mut wait = docker.wait_container(
            SYSCTL_CONTAINER,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        match wait.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Err(format!(
                    "{MIGRATE_REQ} failed (exit {code}): {}",
                    last_log_line(&docker).await
                ))
            }
            Some(Err(e)) => Err(hostops::derr("waiting for the sysctl container", e)),
            None => Err("waiting for the sysctl container: no answer".into()),
        }
    };
    let r = match tokio::time::timeout(SYSCTL_BOUND, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the sysctl container did not exit within {}s",
            SYSCTL_BOUND.as_secs()
        )),
    };
    let removed = hostops::remove(&docker, SYSCTL_CONTAINER).await;
    r.and(removed)
}

/// The last line the sysctl container wrote (its error), or a placeholder.
async fn last_log_line(docker: &bollard::Docker) -> String {
    hostops::log_tail(docker, SYSCTL_CONTAINER, "5")
        .await
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(|| "no output".into(), |l| l.trim().to_string())
}

/// What [`ensure_proxy`] did on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChange {
    /// The proxy of this image was already running.
    Kept,
    /// The proxy was created or started again.
    Started,
    /// A proxy of another image (another davit build) was replaced, its routes kept.
    Replaced {
        /// The new proxy started beside the old one, which then drained (no connection refused);
        /// otherwise the old one was stopped first (a short switchover).
        side_by_side: bool,
        /// The new proxy took the old one's listening sockets over (through [`HANDOVER_SOCKET`]):
        /// no listener closed, so no connection could be reset. An old proxy from before this
        /// handover existed cannot give them: then the two listen side by side with `SO_REUSEPORT`.
        sockets_passed: bool,
        /// Whether [`MIGRATE_REQ`] could be set (connections queued on the old proxy's listeners
        /// when it closes go to the new one instead of being reset), or why not; `None` when it was
        /// not needed (the sockets were passed).
        migrate_req: Option<Result<(), String>>,
    },
}

impl std::fmt::Display for ProxyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyChange::Kept => f.write_str("the proxy runs"),
            ProxyChange::Started => f.write_str("the proxy was started"),
            ProxyChange::Replaced {
                side_by_side: true,
                sockets_passed: true,
                ..
            } => f.write_str(
                "the proxy of another davit build was replaced side by side (its listening sockets passed to the new one: no connection reset)",
            ),
            ProxyChange::Replaced {
                side_by_side: true,
                migrate_req,
                ..
            } => write!(
                f,
                "the proxy of another davit build was replaced side by side ({})",
                match migrate_req {
                    Some(Ok(())) => format!("{MIGRATE_REQ}: queued connections handed over"),
                    Some(Err(e)) => format!(
                        "without {MIGRATE_REQ} ({e}): connections queued at the handover may be reset"
                    ),
                    None => "its listening sockets were not passed".to_string(),
                }
            ),
            ProxyChange::Replaced { .. } => f.write_str(
                "the proxy of another davit build was replaced with a short switchover (it held its ports exclusively)",
            ),
        }
    }
}

/// Replaces a proxy that runs another image (an older davit's) by one of `image`, keeping its routes
/// (the state volume). The new proxy starts beside the old one: when both bind their ports with
/// `SO_REUSEPORT` (davit-proxy does since the handover work), the old one is then stopped with
/// SIGTERM, which drains it, and no request is lost: connections the old one accepted finish there,
/// and those still queued on its listeners when it closes them move to the new one's, because
/// [`MIGRATE_REQ`] is set on the host first (when it cannot be, a warning is logged and the upgrade
/// goes on: such connections are then reset). An old proxy that holds its ports exclusively makes the
/// new one exit at once; then the old one is stopped (drained) first and the new one started right
/// after: a short switchover during which new connections are refused (about the time the new proxy
/// takes to bind, well under a second on an idle host), and requests reaching the new proxy before
/// its targets' first health checks pass (the route's check interval) are answered 503.
async fn upgrade(
    remote: &RemoteRef,
    image: &ProxyImage,
    old_passes_sockets: bool,
) -> Result<ProxyChange, String> {
    let docker = remote.docker();
    // Only an old proxy that cannot pass its sockets needs the kernel's help (and the one-shot
    // container allowed to write /proc/sys that sets it).
    let mut migrate_req = None;
    if !old_passes_sockets {
        migrate_req = Some(set_migrate_req(remote, image).await);
    }
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
    // Beside the old one: does it keep running (its ports and admin API bound)? Once it has taken
    // the old one's listening sockets over, it does: no need to wait longer.
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    let (mut side_by_side, mut sockets_passed) = (true, false);
    while tokio::time::Instant::now() < settle {
        if running(&docker, PROXY_CONTAINER).await? != Some(true) {
            side_by_side = false;
            break;
        }
        if hostops::log_tail(&docker, PROXY_CONTAINER, "200")
            .await
            .contains(davit_proxy::TAKEN_OVER)
        {
            sockets_passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if side_by_side && !sockets_passed && migrate_req.is_none() {
        migrate_req = Some(set_migrate_req(remote, image).await);
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
    hostops::remove(&docker, RETIRING_CONTAINER).await?;
    Ok(ProxyChange::Replaced {
        side_by_side,
        sockets_passed,
        migrate_req,
    })
}

/// [`enable_migrate_req`], timed, with a warning when it cannot be set.
async fn set_migrate_req(remote: &RemoteRef, image: &ProxyImage) -> Result<(), String> {
    let r = hostops::timed(
        remote.name(),
        "proxy upgrade: tcp_migrate_req",
        enable_migrate_req(remote, image),
    )
    .await;
    if let Err(e) = &r {
        tracing::warn!(
            host = remote.name(),
            "cannot set {MIGRATE_REQ} ({e}): connections queued on the old proxy when it closes its listeners may be reset"
        );
    }
    r
}

/// Makes sure the proxy of `image` runs on `remote` and answers on its admin API; a proxy of another
/// image (started by another davit build) is replaced, its routes kept (see `upgrade`).
pub async fn ensure_proxy(remote: &RemoteRef, image: &ProxyImage) -> Result<ProxyChange, String> {
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
    let change = match existing {
        Some(c)
            if c.config.as_ref().and_then(|c| c.image.as_deref()) != Some(image.tag.as_str()) =>
        {
            let old_passes_sockets = c
                .config
                .as_ref()
                .and_then(|c| c.cmd.as_ref())
                .is_some_and(|cmd| cmd.iter().any(|a| a == "--handover"));
            upgrade(remote, image, old_passes_sockets).await?
        }
        Some(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => ProxyChange::Kept,
        Some(_) => {
            hostops::start(&docker, PROXY_CONTAINER).await?;
            ProxyChange::Started
        }
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
            ProxyChange::Started
        }
    };
    let admin = admin(remote.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match admin.healthz().await {
            Ok(()) => return Ok(change),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("the proxy does not answer on its admin API: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
